//! The LaunchAgent property list: rendered from the template in `launchd/` with every path
//! XML-escaped, and read back (its `ProgramArguments`, with the `plist` crate) to see what an
//! installed agent runs.

use super::ServiceError;
use super::environment::{ServiceEnv, service_path};

/// The template, with `{{BINARY}}`, `{{CONFIG}}`, `{{HOME}}` and `{{LOG_DIR}}` to fill in.
const TEMPLATE: &str = include_str!("../../launchd/com.drawdrop.agent.plist");

/// The LaunchAgent for `env`, ready to write to `~/Library/LaunchAgents/`.
pub(crate) fn render_plist(env: &ServiceEnv) -> Result<String, ServiceError> {
    let log_dir = env.log_dir();
    let values = [
        ("BINARY", service_path("this drawdrop binary", &env.binary)?),
        ("CONFIG", service_path("the config file", &env.config)?),
        ("HOME", service_path("the home folder", &env.home)?),
        ("LOG_DIR", service_path("the log folder", &log_dir)?),
    ];
    fill(TEMPLATE, &values)
}

/// Replaces each `{{NAME}}` in one pass (so a path that itself contains `{{CONFIG}}` stays
/// as it is), XML-escaping the values. An unknown name is a bug in the template.
fn fill(template: &str, values: &[(&str, &str)]) -> Result<String, ServiceError> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| template_error("an unclosed {{"))?;
        let name = &after[..end];
        let (_, value) = values
            .iter()
            .find(|(key, _)| *key == name)
            .ok_or_else(|| template_error(&format!("an unknown field {{{{{name}}}}}")))?;
        out.push_str(&xml_escape(value));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn template_error(what: &str) -> ServiceError {
    ServiceError::Refused(format!("the LaunchAgent template has {what}"))
}

/// Text safe inside an XML element or attribute.
pub(crate) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The `ProgramArguments` strings of a property list, XML or binary (as an editor may have
/// saved it); `None` when it has none (or is no property list, or one of them is no string).
pub(crate) fn program_arguments(plist: &[u8]) -> Option<Vec<String>> {
    let agent = plist::Value::from_reader(std::io::Cursor::new(plist)).ok()?;
    agent
        .as_dictionary()?
        .get("ProgramArguments")?
        .as_array()?
        .iter()
        .map(|argument| argument.as_string().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plist::Value;
    use std::path::{Path, PathBuf};

    fn env(root: &str) -> ServiceEnv {
        ServiceEnv {
            binary: PathBuf::from(format!("{root}/bin/drawdrop")),
            config: PathBuf::from(format!("{root}/config/config.toml")),
            home: PathBuf::from(root),
            uid: 501,
            is_root: false,
        }
    }

    fn parse(text: &str) -> plist::Dictionary {
        match Value::from_reader_xml(text.as_bytes()).unwrap() {
            Value::Dictionary(dict) => dict,
            other => panic!("not a dictionary: {other:?}"),
        }
    }

    fn string<'a>(dict: &'a plist::Dictionary, key: &str) -> &'a str {
        dict.get(key)
            .and_then(Value::as_string)
            .unwrap_or_else(|| panic!("{key} is not a string"))
    }

    /// Every key the issue asks for, with the paths of `env`, all absolute.
    fn assert_agent(text: &str, env: &ServiceEnv) {
        let dict = parse(text);
        assert_eq!(string(&dict, "Label"), "com.drawdrop.agent");
        let arguments: Vec<&str> = dict["ProgramArguments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|value| value.as_string().unwrap())
            .collect();
        assert_eq!(
            arguments,
            [
                env.binary.to_str().unwrap(),
                "run",
                "--config",
                env.config.to_str().unwrap()
            ]
        );
        assert_eq!(dict["RunAtLoad"].as_boolean(), Some(true));
        let keep_alive = dict["KeepAlive"].as_dictionary().unwrap();
        assert_eq!(keep_alive["SuccessfulExit"].as_boolean(), Some(false));
        assert_eq!(keep_alive.len(), 1);
        assert_eq!(dict["ThrottleInterval"].as_signed_integer(), Some(30));
        assert_eq!(dict["ExitTimeOut"].as_signed_integer(), Some(15));
        assert_eq!(string(&dict, "ProcessType"), "Background");
        let logs = env.home.join("Library/Logs/drawdrop");
        for key in ["StandardOutPath", "StandardErrorPath"] {
            let path = Path::new(string(&dict, key));
            assert_eq!(path.parent(), Some(logs.as_path()), "{key}");
        }
        assert_eq!(
            Path::new(string(&dict, "WorkingDirectory")),
            env.home.as_path()
        );
        let environment = dict["EnvironmentVariables"].as_dictionary().unwrap();
        assert_eq!(Path::new(string(environment, "HOME")), env.home.as_path());
        let path_variable = string(environment, "PATH");
        assert!(path_variable.split(':').all(|dir| dir.starts_with('/')));
        assert!(path_variable.split(':').any(|dir| dir == "/usr/bin"));
        assert_eq!(
            string(environment, crate::report::logging::STDERR_FILTER_VARIABLE),
            "warn"
        );
        for (key, value) in [
            ("StandardOutPath", string(&dict, "StandardOutPath")),
            ("StandardErrorPath", string(&dict, "StandardErrorPath")),
            ("WorkingDirectory", string(&dict, "WorkingDirectory")),
            ("HOME", string(environment, "HOME")),
            ("binary", arguments[0]),
            ("config", arguments[3]),
        ] {
            assert!(Path::new(value).is_absolute(), "{key}: {value}");
        }
        let fields_in_paths = env.home.to_str().unwrap().contains("{{");
        assert!(
            fields_in_paths || !text.contains("{{"),
            "a field was left unfilled:\n{text}"
        );
    }

    #[test]
    fn the_agent_has_every_key_with_absolute_paths() {
        let env = env("/Users/ann");
        let text = render_plist(&env).unwrap();
        assert_agent(&text, &env);
        assert!(text.contains("<string>/Users/ann/bin/drawdrop</string>"));
    }

    #[test]
    fn paths_with_spaces_ampersands_angle_brackets_quotes_and_unicode_survive() {
        for root in [
            "/Users/Ann Lee/Mes Documents",
            "/Users/a&b/<x>/\"q\" 'r'",
            "/Users/zoë/描画/🎨",
            "/Users/x/]]>/&amp;/{{CONFIG}}",
        ] {
            let env = env(root);
            let text = render_plist(&env).unwrap();
            assert_agent(&text, &env);
            assert_eq!(
                program_arguments(text.as_bytes()).unwrap(),
                [
                    env.binary.to_str().unwrap(),
                    "run",
                    "--config",
                    env.config.to_str().unwrap()
                ]
            );
        }
    }

    #[test]
    fn relative_or_unrepresentable_paths_are_refused() {
        let mut env = env("/Users/ann");
        env.config = "config.toml".into();
        assert!(matches!(
            render_plist(&env),
            Err(ServiceError::Refused(message)) if message.contains("absolute")
        ));
        let mut env = self::env("/Users/ann");
        env.binary = "/Users/ann/bin\n/drawdrop".into();
        assert!(matches!(render_plist(&env), Err(ServiceError::Refused(_))));
    }

    #[test]
    fn the_arguments_are_read_back_from_a_plist() {
        let document = |body: &str| {
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\">\n{body}\n</plist>\n"
            )
        };
        let text = document(
            "<dict>\n\t<key>Label</key><string>x</string>\n\t<key>ProgramArguments</key>\n\t<array>\n\t\t<string>/a&amp;b/&#233;&#x20;x</string>\n\t\t<string>run</string>\n\t</array>\n</dict>",
        );
        assert_eq!(
            program_arguments(text.as_bytes()).unwrap(),
            ["/a&b/é x", "run"]
        );
        assert_eq!(
            program_arguments(document("<dict></dict>").as_bytes()),
            None
        );
        assert_eq!(
            program_arguments(
                document(
                    "<dict><key>ProgramArguments</key><array><integer>1</integer></array></dict>"
                )
                .as_bytes()
            ),
            None
        );
        assert_eq!(
            program_arguments(
                document("<dict><key>ProgramArguments</key><array><string>/cut").as_bytes()
            ),
            None
        );
        assert_eq!(program_arguments(b"not a property list"), None);
    }

    #[test]
    fn the_arguments_are_read_back_from_a_binary_plist() {
        let env = env("/Users/ann");
        let text = render_plist(&env).unwrap();
        let mut binary = Vec::new();
        Value::from_reader_xml(text.as_bytes())
            .unwrap()
            .to_writer_binary(&mut binary)
            .unwrap();
        assert!(binary.starts_with(b"bplist00"));
        assert_eq!(
            program_arguments(&binary).unwrap(),
            program_arguments(text.as_bytes()).unwrap()
        );
    }

    #[test]
    fn what_is_rendered_reads_back_as_written() {
        let env = env("/Users/a&b/<x>/\"q\" 'r' ü");
        let text = render_plist(&env).unwrap();
        let dict = parse(&text);
        assert_eq!(
            string(&dict, "WorkingDirectory"),
            env.home.to_str().unwrap()
        );
    }

    #[test]
    fn the_template_has_only_known_fields() {
        let env = env("/Users/ann");
        assert!(fill("x {{NOPE}} y", &[("BINARY", "b")]).is_err());
        assert!(fill("x {{BINARY", &[("BINARY", "b")]).is_err());
        assert_eq!(fill("<{{A}}>", &[("A", "&")]).unwrap(), "<&amp;>");
        assert!(render_plist(&env).is_ok());
    }
}
