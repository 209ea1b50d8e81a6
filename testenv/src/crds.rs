//! Installs CustomResourceDefinitions from YAML files and waits until the API server serves them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::Error;

/// Applies every CRD found in the `*.yaml` files of `dirs` (server-side apply, field manager `rampart-testenv`) and
/// waits until each is Established.
pub async fn install_crds(client: &kube::Client, dirs: &[PathBuf]) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|source| Error::Io { context: format!("reading {}", file.display()), source })?;
            let documents: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&text).map_err(|err| {
                Error::Kube { context: format!("parsing CRDs in {}", file.display()), message: err.to_string() }
            })?;
            for crd in documents {
                let name = crd.metadata.name.clone().unwrap_or_default();
                api.patch(&name, &PatchParams::apply("rampart-testenv").force(), &Patch::Apply(&crd)).await.map_err(
                    |err| Error::Kube {
                        context: format!("installing CRD {name} from {}", file.display()),
                        message: err.to_string(),
                    },
                )?;
                names.push(name);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            let crd = api
                .get(&name)
                .await
                .map_err(|err| Error::Kube { context: format!("reading CRD {name}"), message: err.to_string() })?;
            let established = crd
                .status
                .and_then(|status| status.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady { name: format!("CRD {name}"), log_tail: String::new() });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
