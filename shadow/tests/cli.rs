//! The `rampart-shadow` binary as an operator meets it: `--help` teaches the event format, bad flags are refused,
//! and SIGTERM stops it cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rampart-shadow");

#[test]
fn help_shows_an_example_with_the_cloudevent_headers() {
    let out = Command::new(BIN).arg("--help").output().expect("run rampart-shadow --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["ce-specversion: 1.0", "ce-id:", "org.kubeflow.serving.inference.response", "ce-endpoint: canary"] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    for flag in ["--candidate-endpoint", "--prediction-path", "--pair-timeout", "--max-pending", "--max-models"] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn unusable_settings_are_refused_at_start() {
    let out = Command::new(BIN).args(["--listen", "127.0.0.1:0", "--prediction-path", "a..b"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid prediction path"));
    let out = Command::new(BIN).args(["--listen", "127.0.0.1:0", "--max-pending", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-pending"));
}

#[test]
fn stops_cleanly_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "rampart-shadow did not stop within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}
