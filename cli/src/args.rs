//! The command-line grammar: every command, flag and help text of `rampart`, in one place.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  rampart validate --candidate model-v8.onnx --baseline model-v7.onnx --format junit --output contract.xml
  rampart sign --key signer.pem ./model-v8/
  rampart register fraud-detector v8 --path ./model-v8/ --uri s3://models/fraud/v8/ --bundle ./model-v8.sig --key signer.pub
  rampart status fraud-detector-v8 -n ml --watch
  rampart promote fraud-detector-v8 -n ml
  rampart history fraud-detector --limit 10
  rampart history --rollout ml/fraud-detector-v8
  rampart analyze --input look-by-look.json

Exit codes: 0 success, 1 a check or rollout did not pass, 2 the command could not do its job.
Installed as `kubectl-rampart` on PATH, every command also runs as `kubectl rampart ...`.";

/// Roll ML model versions out safely: validate, sign and register models, follow and steer rollouts, review history.
#[derive(Parser, Debug)]
#[command(name = "rampart", version, propagate_version = true, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the cluster and the registry are; accepted by every command.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Kubeconfig file to use (default: $KUBECONFIG, a ':'-separated list merged like kubectl does, else
    /// ~/.kube/config, else the in-cluster service account).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use instead of the current one.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace of the rollout (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
    /// Postgres URL of the Rampart registry, e.g. postgres://rampart@db:5432/rampart.
    #[arg(long, global = true, env = "RAMPART_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a candidate model's tensor contract against the baseline, and its residual shapes at each batch size.
    #[command(after_help = "\
Examples:
  rampart validate --candidate v8.onnx --baseline v7.onnx
  rampart validate --candidate v8.onnx --baseline-from-registry fraud-detector --batch-sizes 1,32
  rampart validate --candidate v8.onnx --baseline v7.onnx --format junit --output reports/contract.xml

Exit codes: 0 compatible, 1 incompatible (each problem is listed), 2 a model could not be read.")]
    Validate(ValidateArgs),
    /// Sign a model file or directory into an OpenSSF model-signing bundle (ECDSA P-256 key).
    #[command(after_help = "\
Examples:
  rampart sign --key signer.pem ./model-v8/              # writes ./model-v8.sig
  rampart sign --key signer.pem --out v8.sig model.onnx

Print the digest for spec.candidate.artifact.digest; put the bundle in a Secret the rollout references.")]
    Sign(SignArgs),
    /// Verify a model against a signature bundle and trusted public keys.
    #[command(after_help = "\
Examples:
  rampart verify --key signer.pub --bundle model-v8.sig ./model-v8/
  rampart verify --key team-a.pub --key team-b.pub --bundle v8.sig --expected-digest sha256:3b2f... model.onnx

Exit codes: 0 verified, 1 not verified (the reason is printed), 2 a file could not be read.")]
    Verify(VerifyArgs),
    /// Verify a model version, then record it in the registry as verified.
    #[command(after_help = "\
Examples:
  rampart register fraud-detector v8 --path ./model-v8/ --uri s3://models/fraud/v8/ \\
      --bundle ./model-v8.sig --key signer.pub --database-url postgres://rampart@db/rampart

Nothing is written unless the signature verifies. Exit codes: 0 registered, 1 not verified, 2 error.")]
    Register(RegisterArgs),
    /// Show a rollout: phase, step, canary weight and the verdict of every metric.
    #[command(after_help = "\
Examples:
  rampart status fraud-detector-v8 -n ml
  rampart status fraud-detector-v8 -n ml --watch       # redraws until the rollout ends
  rampart status fraud-detector-v8 --format json

With --watch the exit code is 0 when the rollout succeeded and 1 when it was rolled back or failed.")]
    Status(StatusArgs),
    /// Skip the remaining steps and promote the candidate (writes the rampart.dev/promote annotation).
    #[command(after_help = "Example:\n  rampart promote fraud-detector-v8 -n ml")]
    Promote(IntentArgs),
    /// Roll the rollout back now: all traffic returns to the baseline (writes the rampart.dev/abort annotation).
    #[command(after_help = "Example:\n  rampart abort fraud-detector-v8 -n ml")]
    Abort(IntentArgs),
    /// Start a finished rollout again from its first step (writes rampart.dev/retry, clears abort and promote).
    #[command(after_help = "Example:\n  rampart retry fraud-detector-v8 -n ml")]
    Retry(IntentArgs),
    /// A model's rollouts, rollbacks and production version from the registry, or one rollout's full event trail.
    #[command(after_help = "\
Examples:
  rampart history fraud-detector
  rampart history fraud-detector --limit 5 --format json
  rampart history --rollout ml/fraud-detector-v8          # every event, with the hash chain checked

Exit codes: 0 shown, 1 the event log's hash chain is broken (tampering), 2 error.")]
    History(HistoryArgs),
    /// Run the statistics engine offline on a document of cumulative counts, look by look.
    #[command(after_help = "\
Examples:
  rampart analyze --input looks.json
  rampart analyze --input looks.json --format text
  cat looks.json | rampart analyze --input -

The input format (apiVersion rampart.dev/analysis/v1) is described by analysis/schema/analysis-document.schema.json.
Exit codes: 0 no look failed, 1 the analysis decided Fail, 2 the document is invalid.")]
    Analyze(AnalyzeArgs),
    /// A local web dashboard: rollouts across namespaces, one rollout's steps, checks and per-look analysis charts,
    /// a model's versions and history. Uses your kubeconfig (your RBAC applies) and, when given, the registry.
    #[command(after_help = "\
Examples:
  rampart dashboard                                   # http://127.0.0.1:3100
  rampart dashboard --database-url postgres://rampart@db:5432/rampart --address 127.0.0.1:8080

Read-only unless your rights allow patching a rollout (then promote, abort and retry buttons appear). It listens on
loopback by default; everything it serves is built into the binary.")]
    Dashboard(DashboardArgs),
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  rampart completions bash > /etc/bash_completion.d/rampart
  rampart completions zsh > \"${fpath[1]}/_rampart\"
  rampart completions fish > ~/.config/fish/completions/rampart.fish")]
    Completions(CompletionsArgs),
}

/// Output formats of `validate`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidateFormat {
    Text,
    Json,
    Junit,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("baseline_source").required(true).args(["baseline", "baseline_from_registry"])))]
pub struct ValidateArgs {
    /// The candidate model file (ONNX or safetensors).
    #[arg(long, value_name = "PATH")]
    pub candidate: PathBuf,
    /// The baseline model file to compare with.
    #[arg(long, value_name = "PATH")]
    pub baseline: Option<PathBuf>,
    /// Compare with the tensor contract the registry holds for this model's `production` version.
    #[arg(long, value_name = "MODEL")]
    pub baseline_from_registry: Option<String>,
    /// Batch sizes for the residual-shape check.
    #[arg(long, value_delimiter = ',', value_name = "N,N,...", default_value = "1,8,64")]
    pub batch_sizes: Vec<u64>,
    /// Treat outputs the baseline does not have as breaking.
    #[arg(long)]
    pub disallow_new_outputs: bool,
    /// Output format; junit is read by CI systems that show test reports.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ValidateFormat,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// PEM private key (ECDSA P-256, PKCS#8 or SEC1, unencrypted).
    #[arg(long, value_name = "PRIVATE.pem")]
    pub key: PathBuf,
    /// Where to write the bundle (default: MODEL_PATH with `.sig` appended, next to it).
    #[arg(long, value_name = "BUNDLE")]
    pub out: Option<PathBuf>,
    /// A path, relative to the model directory, to leave out of the signature (repeatable).
    #[arg(long = "ignore-path", value_name = "PATH")]
    pub ignore_paths: Vec<String>,
    /// Sign git metadata (.git, .gitignore, ...) too; left out by default.
    #[arg(long)]
    pub include_git_paths: bool,
    /// The model name the signature vouches for: the registry name rollouts give as `spec.model` (default: the file
    /// or directory name, as the reference model_signing tool does). Rollouts of other models refuse the bundle.
    #[arg(long = "model-name", value_name = "NAME")]
    pub model_name: Option<String>,
    /// The model: one file or a directory.
    #[arg(value_name = "MODEL_PATH")]
    pub model_path: PathBuf,
}

/// Output formats of `verify`, `status` and `analyze`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextOrJson {
    Text,
    Json,
}

/// The signature inputs shared by `verify` and `register`.
#[derive(Args, Debug, Clone)]
pub struct SignatureInputs {
    /// A trusted PEM public key (ECDSA P-256); repeat for several.
    #[arg(long = "key", value_name = "PUBLIC.pem", required = true)]
    pub keys: Vec<PathBuf>,
    /// The signature bundle (from `rampart sign` or the reference model_signing tool).
    #[arg(long, value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// The digest the bundle must sign (`sha256:<hex>`).
    #[arg(long, value_name = "sha256:HEX")]
    pub expected_digest: Option<String>,
    /// The model name the bundle must be signed for (`register` always checks its MODEL argument).
    #[arg(long = "model", value_name = "NAME")]
    pub model_name: Option<String>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub signature: SignatureInputs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TextOrJson,
    /// The model: one file or a directory.
    #[arg(value_name = "MODEL_PATH")]
    pub model_path: PathBuf,
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Registry model name, e.g. fraud-detector.
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// The version to register, e.g. v8.
    #[arg(value_name = "VERSION")]
    pub model_version: String,
    /// The model on local disk (file or directory), verified against the bundle.
    #[arg(long, value_name = "MODEL_PATH")]
    pub path: PathBuf,
    /// Where serving loads the model from (the rollout's spec.candidate.artifact.uri).
    #[arg(long, value_name = "URI")]
    pub uri: String,
    #[command(flatten)]
    pub signature: SignatureInputs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The ModelRollout's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Redraw until the rollout succeeds, rolls back or fails.
    #[arg(short, long)]
    pub watch: bool,
    /// Seconds between redraws with --watch.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub interval: f64,
    /// Output format (json prints the status object; with --watch, one line per change).
    #[arg(long, value_enum, default_value = "text")]
    pub format: TextOrJson,
}

#[derive(Args, Debug)]
pub struct IntentArgs {
    /// The ModelRollout's name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// Output formats of `history`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("subject").required(true).args(["model", "rollout"])))]
pub struct HistoryArgs {
    /// Registry model name.
    #[arg(value_name = "MODEL")]
    pub model: Option<String>,
    /// One rollout's full event trail, as NAMESPACE/NAME.
    #[arg(long, value_name = "NS/NAME")]
    pub rollout: Option<String>,
    /// How many rollouts to show, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: HistoryFormat,
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// The analysis document (JSON, apiVersion rampart.dev/analysis/v1); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Output format: the report as JSON (the engine's schema), or a summary per look.
    #[arg(long, value_enum, default_value = "json")]
    pub format: TextOrJson,
}

#[derive(Args, Debug)]
pub struct DashboardArgs {
    /// Address to listen on. Keep it on loopback: the dashboard acts with your Kubernetes credentials.
    #[arg(long, default_value = "127.0.0.1:3100", value_name = "HOST:PORT")]
    pub address: String,
    /// Seconds between refreshes of what the pages show (sent to the browser as server-sent events).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub refresh: f64,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_grammar_has_no_conflicting_arguments() {
        super::Cli::command().debug_assert();
    }
}
