//! Shared helpers for the CLI tests: run the real `rampart` binary with a clean environment, and make fixtures
//! (signing keys, model files) the commands work on.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rampart_checks::signing::PrivateKey;

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Panics with the whole output unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }
}

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rampart"))
}

/// A command for the binary with no kubeconfig or database settings inherited from the machine.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command.args(args).env_remove("KUBECONFIG").env_remove("RAMPART_DATABASE_URL").env("HOME", "/nonexistent");
    command
}

/// Runs the binary to completion.
pub fn run(args: &[&str]) -> Outcome {
    run_command(command(args))
}

pub fn run_command(mut command: Command) -> Outcome {
    let output = command.output().unwrap();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A fixture model of the checks crate.
pub fn model_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../checks/fixtures").join(name)
}

/// A signing key pair written as PEM files into `dir`: (private, public).
pub fn key_pair(dir: &Path, name: &str, seed: u8) -> (PathBuf, PathBuf) {
    let key = PrivateKey::from_scalar_bytes(&[seed; 32]).unwrap();
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    std::fs::write(&private, key.to_pkcs8_pem().unwrap()).unwrap();
    std::fs::write(&public, key.public_key_pem().unwrap()).unwrap();
    (private, public)
}

/// A small model directory with two files.
pub fn model_dir(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("weights.bin"), vec![7u8; 4096]).unwrap();
    std::fs::write(model.join("config.json"), br#"{"layers": 4}"#).unwrap();
    model
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}
