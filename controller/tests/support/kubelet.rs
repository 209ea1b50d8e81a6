//! The test kubelet for `rampart-check fetch` (see `rampart_testenv::kubelet`), bound to this workspace's binary.
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;
pub use rampart_testenv::kubelet::{Ran, fetch_container};

/// The `rampart-check` binary of this workspace (built by `cargo test --workspace`).
pub fn rampart_check() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join("rampart-check");
    assert!(path.is_file(), "{} is missing: cargo build -p rampart-checks --bin rampart-check", path.display());
    path
}

/// Plays the kubelet in `namespace`.
pub async fn play(client: kube::Client, namespace: String) {
    assert_eq!(rampart_testenv::kubelet::FETCH_CONTAINER, rampart_controller::jobs::FETCH_CONTAINER);
    rampart_testenv::kubelet::play(client, Some(namespace), rampart_check()).await;
}

/// Runs one container with the pod's volume at `model_dir`.
pub async fn run_container_in(client: &kube::Client, namespace: &str, container: &Container, model_dir: &Path) -> Ran {
    rampart_testenv::kubelet::run_container_in(&rampart_check(), client, namespace, container, model_dir).await
}

/// Completes a Job with what its container ran.
pub async fn complete_job(client: &kube::Client, namespace: &str, job: &str, container: &str, ran: &Ran) {
    rampart_testenv::kubelet::complete_job(client, namespace, job, container, ran).await.unwrap();
}
