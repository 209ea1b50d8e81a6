//! A throwaway PostgreSQL cluster: `initdb` into a temporary directory, started on a random loopback port, removed when
//! the handle drops (or when the test binary exits). Tests get a fresh database each with [`Postgres::new_database`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::Error;
use crate::process::{Supervised, free_port, run};

/// The unprivileged OS user that runs Postgres when the tests run as root (Postgres refuses to run as root).
const POSTGRES_OS_USER: &str = "postgres";

/// A running throwaway Postgres server. Superuser `postgres`, trust authentication, loopback only.
pub struct Postgres {
    port: u16,
    bin_dir: PathBuf,
    server: Supervised,
    next_database: AtomicU32,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Creates a new cluster and starts it. Takes a second or two.
    pub fn start() -> Result<Self, Error> {
        let bin_dir = find_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("rampart-postgres-")
            .tempdir()
            .map_err(|source| Error::Io { context: "creating the Postgres directory".into(), source })?;
        let data = dir.path().join("data");
        let as_root = is_root();
        if as_root {
            run(
                "handing the Postgres directory to the postgres user",
                Command::new("chown").args(["-R", POSTGRES_OS_USER]).arg(dir.path()),
            )?;
        }
        let initdb = bin_dir.join("initdb");
        run(
            "initdb",
            as_user(as_root, &initdb)
                .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-sync", "-D"])
                .arg(&data),
        )?;
        let port = free_port()?;
        let server = spawn_server(&bin_dir, dir.path(), port, "postgres.log")?;
        let mut postgres = Self { port, bin_dir, server, next_database: AtomicU32::new(0), dir };
        postgres.wait_ready(Duration::from_secs(30))?;
        Ok(postgres)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            self.server.ensure_running()?;
            let ready = Command::new(self.bin_dir.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                .output()
                .map(|out| out.status.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady { name: "postgres".into(), log_tail: self.server.log_tail() });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of the `postgres` maintenance database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates a new, empty database and returns its URL, so tests sharing the server stay isolated.
    pub fn new_database(&self) -> Result<String, Error> {
        let n = self.next_database.fetch_add(1, Ordering::SeqCst);
        let name = format!("rampart_test_{}_{n}", std::process::id());
        self.psql(&format!("CREATE DATABASE {name}"))?;
        Ok(format!("postgres://postgres@127.0.0.1:{}/{name}", self.port))
    }

    /// Runs one SQL statement with `psql` on the maintenance database and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> Result<String, Error> {
        run(
            "running psql",
            Command::new(self.bin_dir.join("psql"))
                .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
                .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql]),
        )
        .map(|out| out.trim().to_string())
    }

    /// Stops the server (for outage tests). [`Postgres::restart`] brings it back on the same port with the same data.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts the server again after [`Postgres::stop`], on the same port and data directory.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.server.stop();
        self.server = spawn_server(&self.bin_dir, self.dir.path(), self.port, "postgres-restart.log")?;
        self.wait_ready(Duration::from_secs(30))
    }
}

/// Starts `postgres` on `dir/data` under the watchdog (as the postgres OS user when we are root).
fn spawn_server(bin_dir: &Path, dir: &Path, port: u16, log_name: &str) -> Result<Supervised, Error> {
    let mut args: Vec<String> = Vec::new();
    let program = if is_root() {
        args.extend([
            format!("--reuid={POSTGRES_OS_USER}"),
            format!("--regid={POSTGRES_OS_USER}"),
            "--init-groups".into(),
            "--".into(),
            bin_dir.join("postgres").display().to_string(),
        ]);
        PathBuf::from("setpriv")
    } else {
        bin_dir.join("postgres")
    };
    args.extend(["-D".into(), dir.join("data").display().to_string()]);
    args.extend(["-p".into(), port.to_string(), "-k".into(), dir.display().to_string()]);
    for setting in [
        "listen_addresses=127.0.0.1",
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "max_connections=200",
    ] {
        args.extend(["-c".into(), setting.into()]);
    }
    // INT is Postgres' fast shutdown: it does not wait for clients to disconnect.
    Supervised::spawn("postgres", &program, &args, &dir.join(log_name), "INT", None)
}

fn as_user(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={POSTGRES_OS_USER}"))
            .arg(format!("--regid={POSTGRES_OS_USER}"))
            .arg("--init-groups")
            .arg("--")
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0").unwrap_or(false)
}

/// Finds the Postgres server binaries: `$RAMPART_PG_BIN`, then `pg_config --bindir`, then Debian's versioned paths.
fn find_bin_dir() -> Result<PathBuf, Error> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::env::var("RAMPART_PG_BIN") {
        candidates.push(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    for version in ["17", "16", "15", "14"] {
        candidates.push(PathBuf::from(format!("/usr/lib/postgresql/{version}/bin")));
    }
    candidates.into_iter().find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file()).ok_or_else(|| {
        Error::Missing {
            what: "PostgreSQL server binaries (initdb, postgres)".into(),
            hint: "install them (Debian: apt-get install postgresql) or set RAMPART_PG_BIN to their directory".into(),
        }
    })
}
