//! A real Kubernetes control plane on loopback: etcd plus kube-apiserver built by `testenv/build`, with a generated CA,
//! serving certificate, service-account keys and a static admin token. No kubelet, scheduler or controller-manager
//! runs: tests play them by patching Job/Pod/Deployment status themselves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Error;
use crate::process::{Supervised, free_port, run};

/// The admin bearer token written into the token file and the kubeconfig (member of `system:masters`).
const ADMIN_TOKEN: &str = "rampart-testenv-admin-token";

/// etcd + kube-apiserver processes and the files a client needs to reach them.
pub struct ControlPlane {
    api_port: u16,
    kubeconfig_path: PathBuf,
    // Field order is drop order: the API server stops before etcd, and the directory goes last.
    apiserver: Supervised,
    etcd: Supervised,
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver from `bin_dir` and waits until the API server's `/readyz` answers `ok`.
    pub fn start(bin_dir: &Path) -> Result<Self, Error> {
        let etcd_bin = bin_dir.join("etcd");
        let apiserver_bin = bin_dir.join("kube-apiserver");
        for bin in [&etcd_bin, &apiserver_bin] {
            if !bin.is_file() {
                return Err(Error::Missing {
                    what: bin.display().to_string(),
                    hint: "run testenv/build first (it builds etcd and kube-apiserver from Go modules)".into(),
                });
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("rampart-controlplane-")
            .tempdir()
            .map_err(|source| Error::Io { context: "creating the control plane directory".into(), source })?;
        let d = dir.path();
        write_pki(d)?;
        std::fs::write(d.join("tokens.csv"), format!("{ADMIN_TOKEN},rampart-admin,1,\"system:masters\"\n"))
            .map_err(|source| Error::Io { context: "writing the token file".into(), source })?;

        let client_port = free_port()?;
        let peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let etcd_args: Vec<String> = vec![
            "--name=rampart-test".into(),
            format!("--data-dir={}", d.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster=rampart-test=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
            "--quota-backend-bytes=4294967296".into(),
        ];
        let etcd = Supervised::spawn("etcd", &etcd_bin, &etcd_args, &d.join("etcd.log"), "TERM", None)?;

        let api_port = free_port()?;
        let api_args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", d.join("certs").display()),
            format!("--tls-cert-file={}", d.join("serving.crt").display()),
            format!("--tls-private-key-file={}", d.join("serving.key").display()),
            format!("--client-ca-file={}", d.join("ca.crt").display()),
            format!("--token-auth-file={}", d.join("tokens.csv").display()),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", d.join("sa.pub").display()),
            format!("--service-account-signing-key-file={}", d.join("sa.key").display()),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--allow-privileged=true".into(),
            "--enable-priority-and-fairness=false".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ];
        let apiserver = Supervised::spawn(
            "kube-apiserver",
            &apiserver_bin,
            &api_args,
            &d.join("kube-apiserver.log"),
            "TERM",
            None,
        )?;

        let kubeconfig_path = d.join("kubeconfig");
        std::fs::write(&kubeconfig_path, kubeconfig(api_port, &d.join("ca.crt"))?)
            .map_err(|source| Error::Io { context: "writing the kubeconfig".into(), source })?;

        let mut plane = Self { api_port, kubeconfig_path, apiserver, etcd, dir };
        plane.wait_ready(Duration::from_secs(120))?;
        Ok(plane)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let ca = self.dir.path().join("ca.crt");
        loop {
            self.etcd.ensure_running()?;
            self.apiserver.ensure_running()?;
            // curl keeps this synchronous and free of a runtime; the Rust client is checked by the caller.
            let out = Command::new("curl")
                .args(["-s", "--max-time", "2", "--cacert"])
                .arg(&ca)
                .arg("-H")
                .arg(format!("Authorization: Bearer {ADMIN_TOKEN}"))
                .arg(format!("https://127.0.0.1:{}/readyz", self.api_port))
                .output();
            if let Ok(out) = out
                && String::from_utf8_lossy(&out.stdout).trim() == "ok"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    name: "kube-apiserver".into(),
                    log_tail: format!(
                        "--- kube-apiserver ---\n{}\n--- etcd ---\n{}",
                        self.apiserver.log_tail(),
                        self.etcd.log_tail()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Path of a kubeconfig file (admin token, CA pinned) for this control plane, for `kubectl` or the CLI.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The API server's URL.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// The admin bearer token (for tests that talk HTTP directly).
    pub fn admin_token(&self) -> &'static str {
        ADMIN_TOKEN
    }

    /// Creates a `kube::Client` for the current tokio runtime. Make one per test: a client is tied to the runtime it
    /// was created in.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        client_from_kubeconfig(&self.kubeconfig_path).await
    }

    /// The directory holding the control plane's certificates, logs and data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Builds a client from a kubeconfig file, like kubectl would.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|err| Error::Kube {
        context: format!("reading kubeconfig {}", path.display()),
        message: err.to_string(),
    })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|err| Error::Kube { context: "loading kubeconfig".into(), message: err.to_string() })?;
    kube::Client::try_from(config)
        .map_err(|err| Error::Kube { context: "creating the Kubernetes client".into(), message: err.to_string() })
}

/// Writes a CA, a serving certificate for 127.0.0.1/localhost signed by it, and the service-account key pair.
fn write_pki(d: &Path) -> Result<(), Error> {
    let openssl = |context: &str, args: &[&str]| run(context, Command::new("openssl").args(args).current_dir(d));
    openssl("generating the test CA key", &["genrsa", "-out", "ca.key", "2048"])?;
    openssl(
        "generating the test CA",
        &["req", "-x509", "-new", "-key", "ca.key", "-days", "2", "-subj", "/CN=rampart-testenv-ca", "-out", "ca.crt"],
    )?;
    openssl("generating the serving key", &["genrsa", "-out", "serving.key", "2048"])?;
    openssl(
        "generating the serving CSR",
        &["req", "-new", "-key", "serving.key", "-subj", "/CN=kube-apiserver", "-out", "serving.csr"],
    )?;
    std::fs::write(
        d.join("serving.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default\n\
         extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )
    .map_err(|source| Error::Io { context: "writing the certificate extensions".into(), source })?;
    openssl(
        "signing the serving certificate",
        &[
            "x509",
            "-req",
            "-in",
            "serving.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "serving.ext",
            "-out",
            "serving.crt",
        ],
    )?;
    openssl("generating the service-account key", &["genrsa", "-out", "sa.key", "2048"])?;
    openssl("extracting the service-account public key", &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(())
}

fn kubeconfig(api_port: u16, ca_path: &Path) -> Result<String, Error> {
    let ca = std::fs::read(ca_path).map_err(|source| Error::Io { context: "reading the test CA".into(), source })?;
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "rampart-test", "cluster": {
            "server": format!("https://127.0.0.1:{api_port}"),
            "certificate-authority-data": base64(&ca),
        }}],
        "users": [{"name": "rampart-admin", "user": {"token": ADMIN_TOKEN}}],
        "contexts": [{"name": "rampart-test", "context": {"cluster": "rampart-test", "user": "rampart-admin"}}],
        "current-context": "rampart-test",
    });
    // JSON is valid YAML, and every kubeconfig reader accepts it.
    serde_json::to_string_pretty(&config)
        .map_err(|err| Error::Kube { context: "writing kubeconfig".into(), message: err.to_string() })
}

/// Standard base64 with padding (the kubeconfig's `*-data` fields).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
