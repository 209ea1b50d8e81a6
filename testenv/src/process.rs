//! Child processes that cannot outlive the test binary: each server runs under a small bash watchdog that holds a pipe
//! from us on its stdin. When we exit for any reason (normal end, panic, SIGKILL), the pipe closes and the watchdog
//! stops the server, then removes the server's state directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// Runs `"$@"` with its stdin closed, and stops it with `$STOP_SIGNAL` once our end of fd 3 (the watchdog's stdin)
/// reaches EOF. After the server exits, `$CLEANUP_DIR` (when set) is removed.
const WATCHDOG: &str = r#"
exec 3<&0
"$@" </dev/null &
server=$!
( cat <&3 >/dev/null; kill -"${STOP_SIGNAL:-TERM}" "$server" 2>/dev/null; sleep 10; kill -KILL "$server" 2>/dev/null ) &
watcher=$!
wait "$server"
status=$?
kill "$watcher" 2>/dev/null
if [ -n "${CLEANUP_DIR:-}" ]; then rm -rf -- "$CLEANUP_DIR"; fi
exit "$status"
"#;

/// A server process supervised by the watchdog. Dropping it stops the server and waits for it.
pub struct Supervised {
    name: String,
    child: Child,
    lifeline: Option<ChildStdin>,
    log_path: PathBuf,
}

impl Supervised {
    /// Starts `program args` under the watchdog. Output goes to `log_path`. `stop_signal` is the signal name sent on
    /// shutdown (`TERM`, or `INT` for Postgres' fast shutdown).
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log_path: &Path,
        stop_signal: &str,
        cleanup_dir: Option<&Path>,
    ) -> Result<Self, Error> {
        let log = File::create(log_path)
            .map_err(|source| Error::Io { context: format!("creating log file {}", log_path.display()), source })?;
        let log_err = log
            .try_clone()
            .map_err(|source| Error::Io { context: format!("duplicating log file {}", log_path.display()), source })?;
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("rampart-testenv-watchdog")
            .arg(program)
            .args(args)
            .env("STOP_SIGNAL", stop_signal)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        if let Some(dir) = cleanup_dir {
            command.env("CLEANUP_DIR", dir);
        }
        let mut child = command
            .spawn()
            .map_err(|source| Error::Io { context: format!("starting {name} ({})", program.display()), source })?;
        let lifeline = child.stdin.take();
        Ok(Self { name: name.to_string(), child, lifeline, log_path: log_path.to_path_buf() })
    }

    /// Fails with the tail of the server's log when it has already exited.
    pub fn ensure_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                Err(Error::Exited { name: self.name.clone(), status: status.to_string(), log_tail: self.log_tail() })
            }
            Err(source) => Err(Error::Io { context: format!("checking on {}", self.name), source }),
        }
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    /// Stops the server (closing the lifeline) and waits up to 15 s for it to exit.
    pub fn stop(&mut self) {
        self.lifeline.take();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it again right away).
pub fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|source| Error::Io { context: "finding a free loopback port".into(), source })?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|source| Error::Io { context: "reading a loopback port".into(), source })
}

/// Runs a short command to completion and fails with its output when it does not succeed.
pub fn run(context: &str, command: &mut Command) -> Result<String, Error> {
    let output =
        command.output().map_err(|source| Error::Io { context: format!("{context}: starting {command:?}"), source })?;
    if !output.status.success() {
        return Err(Error::Command {
            context: context.to_string(),
            status: output.status.to_string(),
            output: format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
