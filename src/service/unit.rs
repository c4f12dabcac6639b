//! The systemd user unit: rendered with every path quoted for systemd (`%` specifiers, `$`
//! variables, C escapes), and read back (its `ExecStart`) to see what an installed unit runs.

use super::ServiceError;
use super::environment::{ServiceEnv, service_path};

/// Where the unit's `Documentation=` points: the package's repository, once Cargo.toml
/// names one (the line is left out until then).
const DOCUMENTATION: &str = env!("CARGO_PKG_REPOSITORY");

/// Restart pause after a failure, as launchd's `ThrottleInterval`.
const RESTART_SEC: u32 = 30;
/// drawdrop exits within 10 s of SIGTERM; this leaves a margin before SIGKILL.
const TIMEOUT_STOP_SEC: u32 = 15;

/// The unit for `env`, ready to write to `~/.config/systemd/user/drawdrop.service`.
pub(crate) fn render_unit(env: &ServiceEnv) -> Result<String, ServiceError> {
    let binary = service_path("this drawdrop binary", &env.binary)?;
    let config = service_path("the config file", &env.config)?;
    let home = service_path("the home folder", &env.home)?;
    if binary.contains(['\\', '"', '\'']) {
        return Err(ServiceError::Refused(format!(
            "systemd cannot run a program whose path contains a quote or a backslash ({binary}): install drawdrop elsewhere (`cargo install --path .` puts it in ~/.cargo/bin)"
        )));
    }
    let documentation = if DOCUMENTATION.is_empty() {
        String::new()
    } else {
        format!("Documentation={DOCUMENTATION}\n")
    };
    Ok(format!(
        "# drawdrop's systemd user unit: runs drawdrop at login and restarts it when it fails.\n\
         # Written by `drawdrop service install`; `drawdrop service uninstall` removes it.\n\
         [Unit]\n\
         Description=drawdrop: a hot folder for img2img (Draw Things, AUTOMATIC1111)\n\
         {documentation}\
         \n\
         [Service]\n\
         Type=exec\n\
         ExecStart={} run --config {}\n\
         Environment={}\n\
         WorkingDirectory=~\n\
         Restart=on-failure\n\
         RestartSec={RESTART_SEC}\n\
         TimeoutStopSec={TIMEOUT_STOP_SEC}\n\
         KillMode=mixed\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        quote(binary, Dollar::Literal),
        quote(config, Dollar::Escaped),
        quote(&format!("HOME={home}"), Dollar::Literal),
    ))
}

/// Whether systemd would expand `$NAME` in a word: in `ExecStart=` arguments it does, in the
/// executable's path and in `Environment=` it does not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dollar {
    Escaped,
    Literal,
}

/// One word in double quotes: `\` and `"` C-escaped, `%` doubled (a specifier otherwise),
/// `$` doubled where systemd expands variables.
fn quote(text: &str, dollar: Dollar) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if dollar == Dollar::Escaped => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The words of the unit's (last) `ExecStart=` line, unquoted and unescaped as systemd
/// reads them; `None` when there is none or it cannot be read.
pub(crate) fn exec_start(unit: &str) -> Option<Vec<String>> {
    let line = unit
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("ExecStart="))
        .rfind(|value| !value.trim().is_empty())?;
    let words = split_words(line)?;
    let mut words = words.into_iter().enumerate().map(|(index, word)| {
        let word = word.replace("%%", "%");
        if index == 0 {
            word
        } else {
            word.replace("$$", "$")
        }
    });
    let first = words.next()?;
    // Prefixes such as `-` or `@` before the path change how systemd runs it, not what.
    let first = first
        .trim_start_matches(['-', '@', ':', '+', '!'])
        .to_owned();
    Some(std::iter::once(first).chain(words).collect())
}

/// Splits a command line into words: whitespace separates, double or single quotes group,
/// a backslash escapes the next character (`\n` and `\t` are a newline and a tab).
fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let escaped = match chars.next()? {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                };
                word.get_or_insert_with(String::new).push(escaped);
            }
            '"' | '\'' if quote == Some(c) => quote = None,
            '"' | '\'' if quote.is_none() => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && quote.is_none() => {
                if let Some(done) = word.take() {
                    words.push(done);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return None;
    }
    words.extend(word);
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn env(binary: &Path, root: &str) -> ServiceEnv {
        ServiceEnv {
            binary: binary.to_path_buf(),
            config: PathBuf::from(format!("{root}/config.toml")),
            home: PathBuf::from(root),
            uid: 1000,
            is_root: false,
        }
    }

    fn value<'a>(unit: &'a str, key: &str) -> &'a str {
        unit.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}= in\n{unit}"))
    }

    #[test]
    fn the_unit_has_every_setting() {
        let env = env(Path::new("/home/ann/.cargo/bin/drawdrop"), "/home/ann");
        let unit = render_unit(&env).unwrap();
        assert_eq!(
            value(&unit, "ExecStart"),
            "\"/home/ann/.cargo/bin/drawdrop\" run --config \"/home/ann/config.toml\""
        );
        assert_eq!(value(&unit, "Environment"), "\"HOME=/home/ann\"");
        assert_eq!(value(&unit, "Type"), "exec");
        assert_eq!(value(&unit, "Restart"), "on-failure");
        assert_eq!(value(&unit, "RestartSec"), "30");
        assert_eq!(value(&unit, "TimeoutStopSec"), "15");
        assert_eq!(value(&unit, "KillMode"), "mixed");
        assert_eq!(value(&unit, "WantedBy"), "default.target");
        assert!(value(&unit, "Description").starts_with("drawdrop"));
        assert_eq!(
            unit.contains("Documentation="),
            !DOCUMENTATION.is_empty(),
            "{unit}"
        );
    }

    #[test]
    fn special_characters_are_quoted_for_systemd() {
        assert_eq!(
            quote("/a b/%h/$HOME", Dollar::Escaped),
            "\"/a b/%%h/$$HOME\""
        );
        assert_eq!(
            quote("/a b/%h/$HOME", Dollar::Literal),
            "\"/a b/%%h/$HOME\""
        );
        assert_eq!(quote("a\\b\"c", Dollar::Literal), "\"a\\\\b\\\"c\"");
    }

    #[test]
    fn exec_start_reads_back_what_was_written() {
        for root in [
            "/home/ann",
            "/home/Ann Lee/my files",
            "/home/a&b/<x>/ü 描画 🎨",
            "/home/x/100%/$HOME/a\\b/\"q\" 'r'",
        ] {
            let binary = PathBuf::from(format!(
                "{}/bin/drawdrop",
                root.replace(['\\', '"', '\''], "")
            ));
            let env = env(&binary, root);
            let unit = render_unit(&env).unwrap();
            assert_eq!(
                exec_start(&unit).unwrap(),
                [
                    binary.to_str().unwrap(),
                    "run",
                    "--config",
                    env.config.to_str().unwrap()
                ],
                "{unit}"
            );
        }
        assert_eq!(
            exec_start("ExecStart=-/usr/bin/drawdrop run 'a b'").unwrap(),
            ["/usr/bin/drawdrop", "run", "a b"]
        );
        assert_eq!(exec_start("[Service]\nType=exec\n"), None);
        assert_eq!(exec_start("ExecStart=\"/unclosed"), None);
    }

    #[test]
    fn a_binary_path_systemd_refuses_is_refused_here() {
        for binary in [
            "/home/a\"b/drawdrop",
            "/home/a'b/drawdrop",
            "/home/a\\b/drawdrop",
        ] {
            let error = render_unit(&env(Path::new(binary), "/home/ann")).unwrap_err();
            assert!(matches!(error, ServiceError::Refused(_)), "{binary}");
        }
    }

    /// `systemd-analyze verify` on Linux, where it is installed: the unit must load without
    /// a single complaint, including with awkward characters in every path. The binary must
    /// exist, so the test binary is copied under such a path.
    #[test]
    fn the_unit_passes_systemd_analyze_verify() {
        let analyze = Path::new("/usr/bin/systemd-analyze");
        if !cfg!(target_os = "linux") || !analyze.exists() {
            eprintln!("systemd-analyze is not installed: skipped");
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let runtime = temp.path().join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        let this_test = std::env::current_exe().unwrap();
        for (index, name) in ["plain", "with space & <angle> ü%h $HOME"]
            .iter()
            .enumerate()
        {
            let root = temp.path().join(format!("{index} {name}"));
            let bin = root.join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let binary = bin.join("drawdrop");
            std::fs::copy(&this_test, &binary).unwrap();
            let env = env(&binary, root.to_str().unwrap());
            let unit_dir = temp.path().join(format!("units{index}"));
            std::fs::create_dir(&unit_dir).unwrap();
            let unit = unit_dir.join("drawdrop.service");
            std::fs::write(&unit, render_unit(&env).unwrap()).unwrap();
            let output = Command::new(analyze)
                .args(["verify", "--user", "--man=no"])
                .arg(&unit)
                .env("XDG_RUNTIME_DIR", &runtime)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success() && stderr.trim().is_empty(),
                "systemd-analyze verify failed ({}):\n{stderr}\n{}",
                output.status,
                std::fs::read_to_string(&unit).unwrap()
            );
        }
    }
}
