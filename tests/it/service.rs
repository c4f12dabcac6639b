//! `drawdrop service` through the real binary: `print` renders either kind on any system
//! (a LaunchAgent that parses as a property list, a unit that passes `systemd-analyze
//! verify`), and the other system's service manager is refused before anything is touched.
//! Nothing here installs a real service: HOME points at a temporary folder throughout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use plist::Value;

/// A temporary home folder and a config file in a folder with awkward characters.
struct Setup {
    home: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let home = tempfile::tempdir().unwrap();
        let config = home.path().join("My Configs & <Drafts> ü/config.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, "inbox = \"in\"\noutbox = \"out\"\n").unwrap();
        Setup { home, config }
    }

    fn drawdrop(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_drawdrop"))
            .env_remove("DRAWDROP_CONFIG")
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    fn print(&self, kind: &str) -> String {
        let output = self.drawdrop(&["service", "print", kind]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

/// The binary the service would run: this test's drawdrop, symlinks resolved.
fn binary() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_drawdrop"))
        .canonicalize()
        .unwrap()
}

#[test]
fn print_launchd_writes_a_property_list_with_absolute_paths() {
    let setup = Setup::new();
    let text = setup.print("--launchd");
    let Value::Dictionary(agent) = Value::from_reader_xml(text.as_bytes()).unwrap() else {
        panic!("not a dictionary:\n{text}");
    };
    assert_eq!(agent["Label"].as_string(), Some("com.drawdrop.agent"));
    let arguments: Vec<&str> = agent["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_string().unwrap())
        .collect();
    assert_eq!(
        arguments,
        [
            binary().to_str().unwrap(),
            "run",
            "--config",
            setup.config.to_str().unwrap()
        ]
    );
    assert_eq!(agent["RunAtLoad"].as_boolean(), Some(true));
    let keep_alive = agent["KeepAlive"].as_dictionary().unwrap();
    assert_eq!(keep_alive["SuccessfulExit"].as_boolean(), Some(false));
    assert!(agent["ThrottleInterval"].as_signed_integer().unwrap() > 0);
    assert!(agent["ExitTimeOut"].as_signed_integer().unwrap() > 10);
    assert_eq!(agent["ProcessType"].as_string(), Some("Background"));
    let logs = setup.home.path().join("Library/Logs/drawdrop");
    for key in ["StandardOutPath", "StandardErrorPath"] {
        let path = Path::new(agent[key].as_string().unwrap());
        assert!(
            path.is_absolute() && path.starts_with(&logs),
            "{key}: {path:?}"
        );
    }
    let environment = agent["EnvironmentVariables"].as_dictionary().unwrap();
    assert_eq!(
        Path::new(environment["HOME"].as_string().unwrap()),
        setup.home.path()
    );
    assert!(environment["PATH"].as_string().unwrap().starts_with('/'));
    assert_eq!(
        environment["DRAWDROP_STDERR_LOG"].as_string(),
        Some("warn"),
        "launchd's stderr file is not rotated: only warnings go there"
    );
}

#[test]
fn print_systemd_writes_a_unit_that_systemd_accepts() {
    let setup = Setup::new();
    let text = setup.print("--systemd");
    let exec_start = text
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .unwrap();
    assert_eq!(
        exec_start,
        format!(
            "\"{}\" run --config \"{}\"",
            binary().display(),
            setup.config.display()
        )
    );
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !cfg!(target_os = "linux") || !analyze.exists() {
        eprintln!("systemd-analyze is not installed: verify skipped");
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let unit = temp.path().join("drawdrop.service");
    std::fs::write(&unit, &text).unwrap();
    let runtime = temp.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let output = Command::new(analyze)
        .args(["verify", "--user", "--man=no"])
        .arg(&unit)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}\n{text}"
    );
}

#[test]
fn the_two_kinds_cannot_be_asked_for_at_once() {
    let setup = Setup::new();
    let output = setup.drawdrop(&["service", "print", "--launchd", "--systemd"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
}

#[test]
fn the_other_systems_service_manager_is_refused_untouched() {
    let setup = Setup::new();
    let other = if cfg!(target_os = "macos") {
        "--systemd"
    } else {
        "--launchd"
    };
    for action in ["install", "uninstall", "status"] {
        let output = setup.drawdrop(&["service", action, other]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{action}: {stderr}");
        assert!(stderr.contains("service manager"), "{action}: {stderr}");
    }
    let entries: Vec<_> = std::fs::read_dir(setup.home.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(
        entries,
        ["My Configs & <Drafts> ü"],
        "nothing else was written"
    );
}
