//! Reaching the cluster the way kubectl does: kubeconfig (`--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`, else the
//! in-cluster service account), `--context`, `-n`; and turning API errors into messages that say what to do.

use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Api, Client, Config};
use rampart_api::ModelRollout;

use crate::args::GlobalArgs;
use crate::error::CliError;

/// A client plus the namespace commands act in.
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
    /// The API server's URL, for error messages.
    pub server: String,
}

impl Cluster {
    /// Connects using the global flags.
    pub async fn connect(global: &GlobalArgs) -> Result<Self, CliError> {
        let mut config = load_config(global).await?;
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(30));
        let namespace = global.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|err| {
            CliError::kubernetes(
                format!("cannot create a Kubernetes client: {err}"),
                Some("check the cluster and user entries of your kubeconfig".into()),
            )
        })?;
        Ok(Cluster { client, namespace, server })
    }

    pub fn rollouts(&self) -> Api<ModelRollout> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Reads a ModelRollout, with a helpful error when it is missing or the cluster refuses.
    pub async fn get_rollout(&self, name: &str) -> Result<ModelRollout, CliError> {
        self.rollouts().get(name).await.map_err(|err| self.api_error(err, "ModelRollout", name, "get"))
    }

    /// Maps a kube error to a message naming the object and a hint.
    pub fn api_error(&self, err: kube::Error, kind: &str, name: &str, verb: &str) -> CliError {
        let ns = &self.namespace;
        match err {
            kube::Error::Api(status) if status.code == 404 => {
                if status.message.contains("the server could not find the requested resource") {
                    CliError::kubernetes(
                        format!("the cluster at {} has no {kind} resource type", self.server),
                        Some("install Rampart's CRDs first: kubectl apply -f crds/ (or install the Helm chart)".into()),
                    )
                } else {
                    CliError::kubernetes(
                        format!("{kind} {ns}/{name} not found"),
                        Some(format!(
                            "list the rollouts with `kubectl get modelrollouts -n {ns}`, or pass -n for another namespace"
                        )),
                    )
                }
            }
            kube::Error::Api(status) if status.code == 401 => CliError::kubernetes(
                format!("the API server at {} did not accept your credentials: {}", self.server, status.message),
                Some("log in again or pick another context with --context".into()),
            ),
            kube::Error::Api(status) if status.code == 403 => CliError::kubernetes(
                format!("forbidden to {verb} {kind} {ns}/{name}: {}", status.message),
                Some(format!("ask for RBAC permission to {verb} modelrollouts.rampart.dev in namespace {ns}")),
            ),
            kube::Error::Api(status) if status.code == 409 => CliError::kubernetes(
                format!("conflict writing {kind} {ns}/{name}: {}", status.message),
                Some("someone changed it meanwhile; run the command again".into()),
            ),
            kube::Error::Api(status) => CliError::kubernetes(
                format!("the API server refused to {verb} {kind} {ns}/{name}: {} ({})", status.message, status.code),
                None,
            ),
            other => CliError::kubernetes(
                format!("cannot reach the Kubernetes API server at {}: {other}", self.server),
                Some("check that the cluster is up and that --context / --kubeconfig point at it".into()),
            ),
        }
    }
}

async fn load_config(global: &GlobalArgs) -> Result<Config, CliError> {
    let kubeconfig = match &global.kubeconfig {
        Some(path) => Some((
            Kubeconfig::read_from(path).map_err(|err| {
                CliError::kubernetes(
                    format!("cannot read kubeconfig {}: {}", path.display(), describe_kubeconfig_error(&err)),
                    Some("pass a readable kubeconfig with --kubeconfig, or leave it out to use $KUBECONFIG".into()),
                )
            })?,
            path.display().to_string(),
        )),
        None => match Kubeconfig::read() {
            Ok(kubeconfig) => Some((kubeconfig, describe_default_source())),
            Err(KubeconfigError::FindPath) => None,
            Err(err) if std::env::var_os("KUBECONFIG").is_none() && is_missing_file(&err) => None,
            Err(err) => {
                return Err(CliError::kubernetes(
                    format!(
                        "cannot read kubeconfig {}: {}",
                        describe_default_source(),
                        describe_kubeconfig_error(&err)
                    ),
                    Some("fix the file, or pass another one with --kubeconfig".into()),
                ));
            }
        },
    };
    let Some((kubeconfig, source)) = kubeconfig else {
        return Config::incluster().map_err(|_| {
            CliError::kubernetes(
                "no kubeconfig found and not running inside a cluster",
                Some("set KUBECONFIG or pass --kubeconfig FILE (the file kubectl uses)".into()),
            )
        });
    };
    if let Some(context) = &global.context
        && !kubeconfig.contexts.iter().any(|named| &named.name == context)
    {
        let known: Vec<&str> = kubeconfig.contexts.iter().map(|named| named.name.as_str()).collect();
        return Err(CliError::kubernetes(
            format!("context `{context}` is not in kubeconfig {source} (it has: {})", list_or_none(&known)),
            Some("pick one of those with --context, or see `kubectl config get-contexts`".into()),
        ));
    }
    let options = KubeConfigOptions { context: global.context.clone(), cluster: None, user: None };
    Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|err| {
        CliError::kubernetes(
            format!("cannot use kubeconfig {source}: {}", describe_kubeconfig_error(&err)),
            Some("check its current-context, or choose one with --context".into()),
        )
    })
}

fn describe_default_source() -> String {
    match std::env::var("KUBECONFIG") {
        Ok(value) if !value.is_empty() => format!("$KUBECONFIG ({value})"),
        _ => "~/.kube/config".to_string(),
    }
}

fn is_missing_file(err: &KubeconfigError) -> bool {
    matches!(err, KubeconfigError::ReadConfig(io, _) if io.kind() == std::io::ErrorKind::NotFound)
}

fn describe_kubeconfig_error(err: &KubeconfigError) -> String {
    match err {
        KubeconfigError::ReadConfig(io, path) => format!("{} ({io})", path.display()),
        other => other.to_string(),
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() { "no contexts".to_string() } else { items.join(", ") }
}
