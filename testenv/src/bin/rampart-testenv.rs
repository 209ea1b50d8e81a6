//! `rampart-testenv`: the test environment as a long-running process, for the demo and for trying Rampart by hand.
//! `up` starts the control plane, Postgres, Prometheus and an S3 server (with the demo's models in a bucket), plays
//! the Deployment controller and the kubelet (artifact fetches run the real `rampart-check`), optionally builds demo
//! "worlds" (Deployment, HTTPRoute, model servers, load driver) and runs a command under the watchdog; `apply`
//! applies YAML files to the API server (server-side apply) where no kubectl is installed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::Scope;
use rampart_testenv::{
    Error, LoadDriver, ModelServer, ModelServerConfig, Postgres, Prometheus, PrometheusOptions, RouteSource, S3Server,
    Supervised, TestEnv,
};
use serde_json::{Value, json};

/// The demo application's name: its Deployment, HTTPRoute and baseline backend. The canary backend adds `-canary`.
const APP: &str = "fraud-detector";
/// The Namespace the controller's leader-election Lease lives in (as in a cluster installed with the Helm chart).
const SYSTEM_NAMESPACE: &str = "rampart-system";
/// The label the controller reads the baseline's version from.
const VERSION_LABEL: &str = "rampart.dev/model-version";
/// Field manager of what this tool applies.
const FIELD_MANAGER: &str = "rampart-testenv";

/// Rampart's test environment as a process: a real kube-apiserver + etcd, Postgres and Prometheus on loopback.
#[derive(Parser, Debug)]
#[command(
    name = "rampart-testenv",
    version,
    after_help = "\
Examples:
  rampart-testenv up --dir /tmp/rampart-env                 # then: source /tmp/rampart-env/env
  rampart-testenv up --dir /tmp/demo --world demo:v1@0.90:v2@0.92 -- rampart-controller --log-format text
  rampart-testenv apply -n demo examples/demo-good.yaml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the environment and keep it running until SIGINT or SIGTERM.
    Up(UpArgs),
    /// Apply YAML files (one or more documents each) with server-side apply, like `kubectl apply --server-side`.
    Apply(ApplyArgs),
}

#[derive(Args, Debug)]
struct UpArgs {
    /// Where to write `kubeconfig`, `env` (shell exports; written last, once everything is ready) and logs.
    #[arg(long)]
    dir: PathBuf,
    /// A demo world: NAMESPACE:BASELINE@ACCURACY:CANARY@ACCURACY, e.g. `demo:v1@0.90:v2@0.92`. Creates the namespace,
    /// the baseline Deployment and HTTPRoute `fraud-detector` (backends `fraud-detector` and `fraud-detector-canary`),
    /// a baseline and a canary model server (scraped by Prometheus, metrics labelled with the namespace) and a load
    /// driver that follows the route's weights. Repeatable.
    #[arg(long = "world", value_parser = parse_world)]
    worlds: Vec<World>,
    /// Upload a model directory to the S3 server's `models` bucket: `PREFIX=DIR` puts every file of DIR under
    /// `s3://models/PREFIX/`. Repeatable.
    #[arg(long = "upload", value_name = "PREFIX=DIR")]
    uploads: Vec<String>,
    /// The `rampart-check` binary the kubelet stand-in runs for artifact-verification Jobs and `rampart-fetch` init
    /// containers. Default: next to this program.
    #[arg(long, value_name = "PATH")]
    rampart_check: Option<PathBuf>,
    /// Requests per second the load driver of each world sends.
    #[arg(long, default_value_t = 200.0)]
    rps: f64,
    /// Stop when the process that started this one exits (checked every second), even if it was SIGKILLed: what
    /// scripts want, so nothing outlives them.
    #[arg(long)]
    exit_with_parent: bool,
    /// A command to run once the environment is ready, with the exports of DIR/env in its environment, under the
    /// watchdog (it stops with the environment); its output goes to DIR/<program name>.log.
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Args, Debug)]
struct ApplyArgs {
    /// Kubeconfig to use.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Namespace for namespaced objects that name none.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// YAML files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// One model server's part in a world: the version it plays and its accuracy.
#[derive(Clone, Debug, PartialEq)]
struct Model {
    version: String,
    accuracy: f64,
}

/// A demo world: a namespace with a baseline that serves one version and a canary server for the next.
#[derive(Clone, Debug, PartialEq)]
struct World {
    namespace: String,
    baseline: Model,
    canary: Model,
}

fn parse_world(text: &str) -> Result<World, String> {
    let usage = "expected NAMESPACE:BASELINE@ACCURACY:CANARY@ACCURACY, e.g. demo:v1@0.90:v2@0.92";
    let parts: Vec<&str> = text.split(':').collect();
    let [namespace, baseline, canary] = parts.as_slice() else { return Err(usage.into()) };
    let model = |part: &str| -> Result<Model, String> {
        let (version, accuracy) = part.split_once('@').ok_or(usage)?;
        let accuracy: f64 = accuracy.parse().map_err(|_| format!("accuracy `{accuracy}` is not a number; {usage}"))?;
        if version.is_empty() || !(0.0..=1.0).contains(&accuracy) {
            return Err(format!("`{part}`: a version and an accuracy between 0 and 1; {usage}"));
        }
        Ok(Model { version: version.to_string(), accuracy })
    };
    if namespace.is_empty() {
        return Err(usage.into());
    }
    Ok(World { namespace: namespace.to_string(), baseline: model(baseline)?, canary: model(canary)? })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up(args),
        Command::Apply(args) => runtime().and_then(|rt| rt.block_on(apply(args))),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rampart-testenv: {err}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Io { context: "starting the async runtime".into(), source })
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

fn kube_err(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let context = context.into();
    move |err| Error::Kube { context, message: err.to_string() }
}

/// A progress line, with the seconds since `start`.
fn say(start: Instant, text: &str) {
    println!("[testenv {:>5.1}s] {text}", start.elapsed().as_secs_f64());
}

// ----- up ----------------------------------------------------------------------------------------------------------

fn up(args: UpArgs) -> Result<ExitCode, Error> {
    let start = Instant::now();
    std::fs::create_dir_all(&args.dir).map_err(io(format!("creating {}", args.dir.display())))?;
    let dir = args.dir.canonicalize().map_err(io(format!("resolving {}", args.dir.display())))?;
    let env_file = dir.join("env");
    // A stale env file from an earlier run would tell a waiting script we are ready.
    match std::fs::remove_file(&env_file) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Io { context: format!("removing the old {}", env_file.display()), source: err });
        }
        _ => {}
    }

    say(start, "starting etcd + kube-apiserver and installing the CRDs");
    let env = TestEnv::start()?;
    say(start, &format!("API server ready at {}", env.control_plane().server_url()));
    let kubeconfig = dir.join("kubeconfig");
    std::fs::copy(env.kubeconfig_path(), &kubeconfig).map_err(io(format!("writing {}", kubeconfig.display())))?;

    say(start, "starting Postgres (the registry)");
    let postgres = Postgres::start()?;
    postgres.psql("CREATE DATABASE rampart")?;
    let database_url = format!("postgres://postgres@127.0.0.1:{}/rampart", postgres.port());

    // A short scrape interval keeps the skew between the baseline's and the canary's samples small next to the
    // demo's 1 s analysis looks (a skewed pair of counters looks like a traffic-split mismatch).
    say(start, "starting Prometheus (250 ms scrape interval)");
    let prometheus = Prometheus::start_with(PrometheusOptions::default().scrape_interval(Duration::from_millis(250)))?;
    say(start, &format!("Prometheus ready at {}", prometheus.url()));

    say(start, "starting the S3 server (SeaweedFS) with a `models` bucket");
    let s3 = S3Server::start()?;
    s3.create_bucket("models")?;
    for upload in &args.uploads {
        let (prefix, local) = upload.split_once('=').ok_or_else(|| Error::Missing {
            what: format!("`=` in --upload {upload}"),
            hint: "write --upload PREFIX=DIR".into(),
        })?;
        s3.put_dir("models", prefix, Path::new(local))?;
        say(start, &format!("uploaded {local} to s3://models/{prefix}/"));
    }

    let mut exports = vec![
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("RAMPART_DATABASE_URL", database_url),
        ("RAMPART_PROMETHEUS_URL", prometheus.url()),
        ("RAMPART_PROMETHEUS_TARGETS", prometheus.dir().join("targets").display().to_string()),
    ];
    // The S3 settings a credentials Secret carries (scripts/demo puts them in one per namespace).
    let aws: Vec<(String, String)> = s3.aws_env();
    for (key, value) in &aws {
        let key: &'static str = match key.as_str() {
            "AWS_ENDPOINT_URL" => "AWS_ENDPOINT_URL",
            "AWS_REGION" => "AWS_REGION",
            "AWS_ACCESS_KEY_ID" => "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY" => "AWS_SECRET_ACCESS_KEY",
            "AWS_ALLOW_HTTP" => "AWS_ALLOW_HTTP",
            _ => continue,
        };
        exports.push((key, value.clone()));
    }

    let rt = runtime()?;
    let code = rt.block_on(run_up(&args, &dir, &env, &prometheus, &exports, start))?;
    // Servers stop in reverse order of start as their handles drop: Prometheus, Postgres, then the control plane.
    drop(s3);
    drop(prometheus);
    drop(postgres);
    drop(env);
    say(start, "stopped");
    Ok(code)
}

/// Everything after the servers are up: worlds, the Deployment stand-in, the command, the env file, then waiting.
async fn run_up(
    args: &UpArgs,
    dir: &Path,
    env: &TestEnv,
    prometheus: &Prometheus,
    exports: &[(&str, String)],
    start: Instant,
) -> Result<ExitCode, Error> {
    let client = env.client().await?;
    ensure_model_rollout_crd(&client).await?;
    ensure_namespace(&client, SYSTEM_NAMESPACE).await?;
    let rampart_check = match &args.rampart_check {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("rampart-check")))
            .unwrap_or_else(|| PathBuf::from("rampart-check")),
    };
    let deployment_controller = tokio::spawn(rampart_testenv::kubelet::play(client.clone(), None, rampart_check));

    let mut worlds = Vec::new();
    for world in &args.worlds {
        worlds.push(RunningWorld::start(&client, prometheus, world, args.rps, start).await?);
    }

    let mut command = match args.command.split_first() {
        Some((program, rest)) => {
            let name = Path::new(program).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let log = dir.join(format!("{name}.log"));
            // `env` puts the exports in the command's environment without touching ours.
            let mut env_args: Vec<String> = exports.iter().map(|(key, value)| format!("{key}={value}")).collect();
            env_args.push(program.clone());
            env_args.extend(rest.iter().cloned());
            let supervised = Supervised::spawn(&name, Path::new("env"), &env_args, &log, "TERM", None)?;
            say(start, &format!("started {name} (log: {})", log.display()));
            Some((name, supervised))
        }
        None => None,
    };

    let mut text = String::from("# Written by `rampart-testenv up`; valid while it runs.\n");
    for (key, value) in exports {
        text.push_str(&format!("export {key}={}\n", shell_quote(value)));
    }
    let temporary = dir.join("env.tmp");
    std::fs::write(&temporary, text).map_err(io(format!("writing {}", temporary.display())))?;
    std::fs::rename(&temporary, dir.join("env")).map_err(io("publishing the env file"))?;
    say(start, &format!("ready: source {}/env", dir.display()));

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io("listening for SIGTERM"))?;
    let parent = std::os::unix::process::parent_id();
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut reported_errors: BTreeMap<String, String> = BTreeMap::new();
    let code = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break ExitCode::SUCCESS,
            _ = terminate.recv() => break ExitCode::SUCCESS,
            _ = check.tick() => {
                if args.exit_with_parent && std::os::unix::process::parent_id() != parent {
                    eprintln!("rampart-testenv: the process that started me exited; stopping");
                    break ExitCode::from(1);
                }
                if let Some((name, supervised)) = &mut command
                    && let Err(err) = supervised.ensure_running()
                {
                    eprintln!("rampart-testenv: {name} stopped: {err}");
                    break ExitCode::from(1);
                }
                for world in &worlds {
                    if let Some(err) = world.driver.last_error()
                        && reported_errors.get(&world.namespace) != Some(&err)
                    {
                        eprintln!("rampart-testenv: load driver in {}: {err}", world.namespace);
                        reported_errors.insert(world.namespace.clone(), err);
                    }
                }
            }
        }
    };
    say(start, "stopping");
    if let Some((_, mut supervised)) = command {
        supervised.stop();
    }
    for world in worlds {
        world.stop(prometheus).await;
    }
    deployment_controller.abort();
    Ok(code)
}

/// Quotes a value for a POSIX shell.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Fails when `crds/` held no ModelRollout CRD (an empty or missing `crds/modelrollout.yaml` installs nothing).
async fn ensure_model_rollout_crd(client: &kube::Client) -> Result<(), Error> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let name = "modelrollouts.rampart.dev";
    match Api::<CustomResourceDefinition>::all(client.clone()).get_opt(name).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::Missing {
            what: format!("the CRD {name}"),
            hint: "crds/modelrollout.yaml is empty or missing: regenerate it with \
                   `cargo run -q -p rampart-api --bin crdgen > crds/modelrollout.yaml`"
                .into(),
        }),
        Err(err) => Err(kube_err(format!("reading CRD {name}"))(err)),
    }
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), Error> {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))
        .map_err(|err| Error::Kube { context: "building a namespace".into(), message: err.to_string() })?;
    match Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(err) => Err(kube_err(format!("creating namespace {name}"))(err)),
    }
}

/// A world's running parts.
struct RunningWorld {
    namespace: String,
    baseline: ModelServer,
    canary: ModelServer,
    driver: LoadDriver,
}

impl RunningWorld {
    async fn start(
        client: &kube::Client,
        prometheus: &Prometheus,
        world: &World,
        rps: f64,
        start: Instant,
    ) -> Result<Self, Error> {
        let ns = &world.namespace;
        ensure_namespace(client, ns).await?;
        let baseline_uri = format!("s3://models/{APP}/{}/", world.baseline.version);
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {
                "name": APP,
                "labels": {"app": APP, VERSION_LABEL: world.baseline.version},
                "annotations": {"rampart.dev/model-uri-env": "MODEL_URI"},
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": APP}},
                "template": {
                    "metadata": {"labels": {"app": APP}},
                    "spec": {"containers": [{
                        "name": "server",
                        "image": "registry.example.com/model-server:1",
                        "env": [{"name": "MODEL_URI", "value": baseline_uri}],
                    }]},
                },
            },
        }))
        .map_err(|err| Error::Kube { context: "building the baseline Deployment".into(), message: err.to_string() })?;
        Api::<Deployment>::namespaced(client.clone(), ns)
            .patch(APP, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&deployment))
            .await
            .map_err(kube_err(format!("creating Deployment {ns}/{APP}")))?;
        let route = json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": APP},
            "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [{"name": APP, "port": 8080}]}]},
        });
        let routes: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            ns,
            &ApiResource::from_gvk(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute")),
        );
        routes
            .patch(APP, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&route))
            .await
            .map_err(kube_err(format!("creating HTTPRoute {ns}/{APP}")))?;

        let server = |model: &Model| {
            ModelServerConfig::new(&model.version)
                .namespace(ns)
                .accuracy(model.accuracy)
                .latency(Duration::from_millis(2), 0.3)
        };
        let baseline = ModelServer::spawn(server(&world.baseline)).await?;
        let canary = ModelServer::spawn(server(&world.canary)).await?;
        for (role, model_server) in [("baseline", &baseline), ("canary", &canary)] {
            prometheus.add_target(&model_server.addr().to_string(), &[("role", role)])?;
        }
        for model_server in [&baseline, &canary] {
            prometheus.wait_for_target(&model_server.addr().to_string(), Duration::from_secs(30)).await?;
        }
        let backends: BTreeMap<String, SocketAddr> =
            [(APP.to_string(), baseline.addr()), (format!("{APP}-canary"), canary.addr())].into();
        let driver = LoadDriver::start(client.clone(), ns, RouteSource::http_route(APP), backends, rps).await?;
        say(
            start,
            &format!(
                "world {ns}: Deployment + HTTPRoute {APP}; baseline {} (accuracy {:.2}) at {}, canary {} \
                 (accuracy {:.2}) at {}; load {rps} req/s",
                world.baseline.version,
                world.baseline.accuracy,
                baseline.addr(),
                world.canary.version,
                world.canary.accuracy,
                canary.addr()
            ),
        );
        Ok(Self { namespace: ns.clone(), baseline, canary, driver })
    }

    async fn stop(self, prometheus: &Prometheus) {
        self.driver.stop().await;
        for model_server in [&self.baseline, &self.canary] {
            let _ = prometheus.remove_target(&model_server.addr().to_string());
        }
        self.baseline.shutdown().await;
        self.canary.shutdown().await;
    }
}

// ----- apply -------------------------------------------------------------------------------------------------------

async fn apply(args: ApplyArgs) -> Result<ExitCode, Error> {
    let client = rampart_testenv::client_from_kubeconfig(&args.kubeconfig).await?;
    for file in &args.files {
        let text = std::fs::read_to_string(file).map_err(io(format!("reading {}", file.display())))?;
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
            .map_err(|err| Error::Kube { context: format!("parsing {}", file.display()), message: err.to_string() })?;
        for document in documents.into_iter().filter(|d| !d.is_null()) {
            apply_one(&client, &args.namespace, document, file).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn apply_one(client: &kube::Client, namespace: &str, document: Value, file: &Path) -> Result<(), Error> {
    let field = |pointer: &str| document.pointer(pointer).and_then(Value::as_str).map(str::to_string);
    let (Some(api_version), Some(kind), Some(name)) = (field("/apiVersion"), field("/kind"), field("/metadata/name"))
    else {
        return Err(Error::Kube {
            context: format!("applying {}", file.display()),
            message: "every document needs apiVersion, kind and metadata.name".into(),
        });
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &kind);
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(kube_err(format!("looking up {api_version} {kind} (is its CRD installed?)")))?;
    let object_namespace = field("/metadata/namespace").unwrap_or_else(|| namespace.to_string());
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), &object_namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&document))
        .await
        .map_err(kube_err(format!("applying {} {name} from {}", kind.to_lowercase(), file.display())))?;
    let group_suffix = if resource.group.is_empty() { String::new() } else { format!(".{}", resource.group) };
    println!("{}{group_suffix}/{name} applied", kind.to_lowercase());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_world_names_a_namespace_and_two_versions_with_accuracies() {
        let world = parse_world("demo:v1@0.90:v2@0.92").unwrap();
        assert_eq!(world.namespace, "demo");
        assert_eq!(world.baseline, Model { version: "v1".into(), accuracy: 0.90 });
        assert_eq!(world.canary, Model { version: "v2".into(), accuracy: 0.92 });
        for bad in ["demo", "demo:v1:v2", "demo:v1@x:v2@0.9", "demo:v1@1.5:v2@0.9", ":v1@0.9:v2@0.9"] {
            assert!(parse_world(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
