//! `rampart.dev/v1alpha1` ModelRollout: what a team applies to roll a new model version out, and the status Rampart
//! reports back. The doc comments here become `kubectl explain modelrollout.spec...` text.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A progressive rollout of one model version: verify the artifact, check it, shift traffic to it in steps while
/// comparing it with the baseline, then promote it or roll it back.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "rampart.dev",
    version = "v1alpha1",
    kind = "ModelRollout",
    plural = "modelrollouts",
    shortname = "mro",
    category = "rampart",
    doc = "A ModelRollout rolls one new version of an ML model out: Rampart verifies its signature, checks its tensor contract and a smoke-training run, shifts live traffic to it in steps while comparing it with the baseline, then promotes it or rolls it back.",
    namespaced,
    status = "ModelRolloutStatus",
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.model"}"#,
    printcolumn = r#"{"name":"Candidate","type":"string","jsonPath":".spec.candidate.version"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.canaryWeight"}"#,
    printcolumn = r#"{"name":"Step","type":"integer","jsonPath":".status.currentStep"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.candidate.artifact.signature) || (has(self.checks) && has(self.checks.insecureSkipSignature) && self.checks.insecureSkipSignature)",
        "message": "spec.candidate.artifact.signature is required: sign the model (rampart sign) and reference the bundle, or set spec.checks.insecureSkipSignature: true for an unsigned test model",
    },
    {
        "rule": "!has(self.serving.kserve) || !has(self.traffic)",
        "message": "spec.traffic must be omitted with spec.serving.kserve: KServe splits traffic itself through canaryTrafficPercent",
    },
    {
        "rule": "!has(self.serving.deployment) || has(self.traffic)",
        "message": "spec.traffic.gatewayAPI is required with spec.serving.deployment: name the HTTPRoute whose backend weights Rampart shifts",
    },
    {
        "rule": "!self.steps.exists(s, has(s.shadow)) || has(self.serving.deployment)",
        "message": "a shadow step needs spec.serving.deployment with spec.traffic.gatewayAPI: the mirror is an HTTPRoute RequestMirror filter, which the kserve backend does not use",
    },
    {
        "rule": "!self.steps.exists(s, has(s.cohort)) || has(self.serving.deployment)",
        "message": "a cohort step needs spec.serving.deployment with spec.traffic.gatewayAPI: header cohorts are HTTPRoute matches, which the kserve backend does not use",
    },
    {
        "rule": "!self.steps.exists(s, has(s.analysis)) || has(self.analysis)",
        "message": "spec.analysis is required when a step has an analysis: list the metrics to compare in spec.analysis.metrics",
    },
    {
        "rule": "!has(self.bake) || has(self.serving.deployment)",
        "message": "spec.bake needs spec.serving.deployment with spec.traffic.gatewayAPI: during the bake the previous version keeps serving from the baseline Deployment, ready to take traffic back, which the kserve backend does not offer",
    },
    {
        "rule": "!has(self.bake) || (has(self.analysis) && self.analysis.metrics.exists(m, (has(m.kind) && m.kind == 'ratio') || (has(m.preset) && m.preset == 'vllm-request-error-rate')))",
        "message": "spec.bake judges the ratio metrics of spec.analysis (e.g. accuracy from labels that arrive late): add spec.analysis with at least one metric of kind ratio",
    },
    {
        "rule": "!has(self.bake) || !has(self.serving.deployment) || !has(self.serving.deployment.capacity)",
        "message": "spec.bake cannot be combined with spec.serving.deployment.capacity yet: a bake keeps the previous version's pods running next to the candidate's, beyond a surge budget",
    },
]))]
pub struct ModelRolloutSpec {
    /// Name of the model in the Rampart registry, e.g. `fraud-detector`. Versions, aliases and the rollout history
    /// are kept under this name.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"))]
    pub model: String,

    /// The new model version to roll out. Immutable: to roll out another version, create another ModelRollout.
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "spec.candidate is immutable once set: create a new ModelRollout to roll out a different version",
    }]))]
    pub candidate: Candidate,

    /// The version the candidate is compared with. Defaults to the version the registry's `production` alias points
    /// at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,

    /// How the model is served: a Deployment Rampart clones for the canary, or a KServe InferenceService. Exactly one.
    pub serving: Serving,

    /// How live traffic is split between baseline and canary. Required with `serving.deployment`; omitted with
    /// `serving.kserve`, which splits traffic itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,

    /// Checks the candidate must pass before it gets any traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Checks>,

    /// The rollout plan, run in order: `setWeight` moves traffic, `pause` waits, `analysis` compares canary with
    /// baseline and decides. After the last step the candidate is promoted.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.exists(s, has(s.setWeight) && s.setWeight > 0)",
        "message": "spec.steps must contain at least one setWeight above 0, otherwise the canary never receives traffic",
    }]))]
    pub steps: Vec<Step>,

    /// How canary and baseline are compared during `analysis` steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,

    /// What happens when the rollout fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,

    /// A bake window after promotion: the `production` alias has moved to the candidate and it takes all traffic,
    /// while the previous version keeps serving from the baseline Deployment, ready to take traffic back. Labels
    /// that arrive late keep coming in and the ratio metrics of `spec.analysis` keep being judged (candidate
    /// against the previous version, counted from the first canary step). A Fail returns traffic and `production`
    /// to the previous version; a window that ends without a Fail finishes the promotion. Omit for no bake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<Bake>,
}

/// The bake window after promotion (see `spec.bake`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bake {
    /// How long the bake lasts after promotion, e.g. `24h`: long enough for the labels of the predictions made
    /// during the canary steps to arrive.
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$')",
        "message": "bake.duration must be a duration such as 30m, 24h or 1h30m",
    }]))]
    pub duration: String,
    /// Time between two looks at the metrics during the bake, e.g. `5m`. Default: the controller's analysis
    /// interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$')",
        "message": "bake.interval must be a duration such as 30s, 5m or 1h",
    }]))]
    pub interval: Option<String>,
    /// Replicas the baseline Deployment (serving the previous version) keeps during the bake, e.g. 1 to keep a
    /// warm standby cheaply. Default: its current replicas. Restored when the bake ends either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self >= 1 && self <= 10000",
        "message": "bake.previousReplicas must be between 1 and 10000: the previous version must stay ready to take traffic back",
    }]))]
    pub previous_replicas: Option<i32>,
}

/// The candidate model version and its artifact.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// Version label of the candidate, e.g. `v7` or `2026-11-20.1`. Unique per model in the registry.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.+]*[A-Za-z0-9])?$"))]
    pub version: String,
    /// Where the model is and what it must hash to.
    pub artifact: Artifact,
}

/// A model artifact: its location, its digest, and its signature.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Location the serving runtime loads the model from (`s3://`, `gs://`, `az://`, `abfss://`, `pvc://`,
    /// `oci://`, `https://`, `file://`, or an absolute path). Rampart passes it to the canary unchanged.
    #[schemars(length(min = 1, max = 2048))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^((s3|gs|az|azure|abfs|abfss|pvc|oci|https|file)://|/)[^\\\\s\\\\x00-\\\\x1f\\\"\\'`$]+$')",
        "message": "artifact.uri must be a model location: s3://, gs://, az://, abfss://, pvc://, oci://, https://, file:// or an absolute path, without spaces, quotes or $",
    }]))]
    pub uri: String,
    /// Expected digest of the model, `sha256:` followed by 64 lowercase hex digits, as printed by
    /// `rampart-check sign` / `rampart verify`. The signature's subject digest must match it.
    #[schemars(length(max = 71))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^sha256:[a-f0-9]{64}$')",
        "message": "digest must be 'sha256:' followed by 64 lowercase hex digits, e.g. the subject digest printed by 'rampart sign'",
    }]))]
    pub digest: String,
    /// The OpenSSF model-signing bundle for this artifact: inline, or in a Secret or ConfigMap of this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureSource>,
    /// The model name the signature was made for, when it is not `spec.model` (e.g. the directory name the reference
    /// `model_signing` tool used). The signed statement must name exactly this; default: `spec.model`. Recorded in
    /// the registry next to the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub signed_name: Option<String>,
    /// Credentials for reading the artifact: a Secret in the rollout's namespace whose keys become the environment
    /// of the fetching init container only (e.g. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`; `GOOGLE_SERVICE_ACCOUNT_KEY`; `AZURE_STORAGE_ACCOUNT_NAME`...). Without it the fetch uses
    /// the pod's own workload identity. The controller's credentials are never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<ArtifactCredentials>,
    /// Where the bytes are verified. `VerifiedCopy` (default): check Jobs, canary pods and the promoted baseline
    /// fetch the artifact through `rampart-check fetch` into a local volume and load only that verified copy, so an
    /// object replaced after verification keeps the pod from starting. `BeforeTrafficOnly`: the artifact is verified
    /// once before traffic, but serving pods load `uri` themselves (a later change in the store is not caught); the
    /// registry records the version as served unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<ArtifactVerification>,
}

/// Where a rollout's artifact bytes are verified.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum ArtifactVerification {
    /// Every consumer (check Jobs, canary pods, the promoted baseline) loads a copy fetched and verified in its own
    /// pod.
    #[default]
    VerifiedCopy,
    /// Verified once before traffic; serving pods load the URI themselves. An explicit opt-out, recorded as such.
    BeforeTrafficOnly,
}

/// A Secret in the rollout's namespace holding object-store credentials as environment variables.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactCredentials {
    /// The Secret, in the rollout's own namespace.
    pub secret_ref: SecretName,
}

/// The name of a Secret in the rollout's own namespace (other namespaces cannot be referenced).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretName {
    /// Name of the Secret, in the rollout's namespace.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",
        "message": "must be the name of a Secret in the rollout's own namespace (lowercase, no namespace/ prefix): cross-namespace references are not allowed",
    }]))]
    pub name: String,
}

/// Where the signature bundle is. Exactly one of `bundle`, `secretRef`, `configMapRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.bundle), has(self.secretRef), has(self.configMapRef)].filter(x, x).size() == 1",
    "message": "signature needs exactly one of bundle, secretRef or configMapRef",
}]))]
pub struct SignatureSource {
    /// The bundle JSON inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub bundle: Option<String>,
    /// A key of a Secret in the rollout's namespace that holds the bundle JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<KeyRef>,
    /// A key of a ConfigMap in the rollout's namespace that holds the bundle JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<KeyRef>,
}

/// A key of a Secret or ConfigMap in the rollout's own namespace (other namespaces cannot be referenced).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// Name of the object, in the rollout's namespace.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",
        "message": "must be the name of an object in the rollout's own namespace (lowercase, no namespace/ prefix): cross-namespace references are not allowed",
    }]))]
    pub name: String,
    /// Key within the object's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The version the candidate is compared with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.version) && has(self.alias))",
    "message": "baseline takes either version or alias, not both",
}]))]
pub struct Baseline {
    /// An explicit registry version to compare with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub version: Option<String>,
    /// A registry alias to compare with, e.g. `production`. Informational for now: the version compared with comes
    /// from `version`, else the baseline Deployment's (or InferenceService's) `rampart.dev/model-version` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub alias: Option<String>,
}

/// How the model is served. Exactly one of `deployment` and `kserve`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.deployment) != has(self.kserve)",
    "message": "spec.serving needs exactly one backend: deployment or kserve",
}]))]
pub struct Serving {
    /// Serve with Deployments: Rampart creates `<name>-canary` from the baseline Deployment's pod template with the
    /// candidate's URI, and removes it when the rollout ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentServing>,
    /// Serve with a KServe InferenceService: Rampart sets the predictor's storage URI and `canaryTrafficPercent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kserve: Option<KServeServing>,
}

/// The baseline Deployment and where its pod template takes the model URI.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.modelEnv) != has(self.modelArg)",
    "message": "deployment needs exactly one of modelEnv (an environment variable) or modelArg (a --flag) to carry the model URI",
}]))]
pub struct DeploymentServing {
    /// Name of the baseline Deployment in the rollout's namespace.
    #[schemars(length(min = 1, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",
        "message": "must be the name of an object in the rollout's own namespace (lowercase, no namespace/ prefix): cross-namespace references are not allowed",
    }]))]
    pub name: String,
    /// Container of the pod template that serves the model. Default: the first container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Environment variable that holds the model URI, e.g. `MODEL_URI`. The Deployment must name the same variable
    /// in its `rampart.dev/model-uri-env` annotation (its owner's opt-in); otherwise the rollout fails before traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub model_env: Option<String>,
    /// Command-line flag that holds the model URI, e.g. `--model-uri`; Rampart sets `--model-uri=<uri>`. The
    /// Deployment must name the same flag in its `rampart.dev/model-uri-arg` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub model_arg: Option<String>,
    /// Capacity-aware steps for clusters without room for a second full copy (GPU serving): the canary grows as the
    /// baseline shrinks, so the two together never run more than the baseline's replicas plus this surge budget, and
    /// the canary's traffic weight follows its ready share of the pods. Without it the canary gets the baseline's
    /// replica count and the baseline keeps its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
}

/// The surge budget of capacity-aware steps: how many pods (or GPUs) the baseline and canary together may use beyond
/// the baseline's replica count before the rollout. Exactly one of `surgeReplicas` and `surgeGPUs`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.surgeReplicas) != has(self.surgeGPUs)",
    "message": "capacity needs exactly one of surgeReplicas or surgeGPUs, e.g. surgeGPUs: 1",
}]))]
pub struct Capacity {
    /// Extra pods allowed at any moment, e.g. `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub surge_replicas: Option<i32>,
    /// Extra GPUs allowed at any moment, e.g. `1`. A pod's GPUs are read from its template's resource requests (or
    /// limits) of `nvidia.com/gpu`, `amd.com/gpu` or another `*/gpu` resource; the budget must fit at least one pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "surgeGPUs")]
    #[schemars(range(min = 1, max = 100000))]
    pub surge_gpus: Option<i32>,
}

/// The KServe InferenceService serving the model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KServeServing {
    /// Name of the InferenceService in the rollout's namespace.
    #[schemars(length(min = 1, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",
        "message": "must be the name of an object in the rollout's own namespace (lowercase, no namespace/ prefix): cross-namespace references are not allowed",
    }]))]
    pub inference_service: String,
}

/// How traffic is split.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.gatewayAPI)",
    "message": "spec.traffic needs gatewayAPI",
}]))]
pub struct Traffic {
    /// Split with the backendRef weights of a Gateway API HTTPRoute.
    #[serde(rename = "gatewayAPI", default, skip_serializing_if = "Option::is_none")]
    pub gateway_api: Option<GatewayApiTraffic>,
}

/// The HTTPRoute and the two Services whose weights Rampart sets (server-side apply, field manager `rampart`). Only
/// these two backendRefs are touched.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.baselineBackend != self.canaryBackend",
    "message": "gatewayAPI.baselineBackend and canaryBackend must be different Services",
}]))]
pub struct GatewayApiTraffic {
    /// Name of the HTTPRoute in the rollout's namespace.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",
        "message": "must be the name of an object in the rollout's own namespace (lowercase, no namespace/ prefix): cross-namespace references are not allowed",
    }]))]
    pub http_route: String,
    /// Service that fronts the baseline Deployment.
    #[schemars(length(min = 1, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",
        "message": "must be the name of an object in the rollout's own namespace (lowercase, no namespace/ prefix): cross-namespace references are not allowed",
    }]))]
    pub baseline_backend: String,
    /// Service that fronts the canary Deployment.
    #[schemars(length(min = 1, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",
        "message": "must be the name of an object in the rollout's own namespace (lowercase, no namespace/ prefix): cross-namespace references are not allowed",
    }]))]
    pub canary_backend: String,
    /// Port of both Services. Default: 80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// Checks before any traffic moves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Checks {
    /// Roll out an unsigned artifact. Only honoured when the controller's configuration allows it; meant for test
    /// models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_signature: Option<bool>,
    /// Compare the candidate's tensor contract (inputs, outputs, shapes) with the baseline's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractCheck>,
    /// Run a short training Job (usually on a GPU node) and judge its loss and gradients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_training: Option<SmokeTraining>,
}

/// Tensor-contract check settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContractCheck {
    /// Batch sizes at which shapes are inferred and residual Add/Mul/Sub/Concat inputs are checked. Default: 1, 8, 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub batch_sizes: Option<Vec<BatchSize>>,
    /// Accept outputs the baseline does not have. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_new_outputs: Option<bool>,
    /// Accept outputs the baseline has and the candidate lacks. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_removed_outputs: Option<bool>,
}

/// A batch size between 1 and 65536.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, JsonSchema)]
#[serde(transparent)]
pub struct BatchSize(#[schemars(range(min = 1, max = 65536))] pub u32);

/// A short training run of the candidate, judged by the smoke-training protocol (docs/smoke-training.md).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmokeTraining {
    /// Training image. Must match the controller's allow-list of image prefixes.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Command of the training container. Default: the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Arguments of the training container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Number of training steps to run. Default: 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 100000))]
    pub steps: Option<i32>,
    /// Resources of the training container, e.g. `limits: {nvidia.com/gpu: 1}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector of the training pod, e.g. a GPU node pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the training pod, e.g. for tainted GPU nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Time limit of the Job, e.g. `15m`. Default: 15m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// Pass/fail thresholds for the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<SmokeThresholds>,
}

/// Thresholds of the smoke-training verdict. Every loss and gradient norm must also be finite.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SmokeThresholds {
    /// The mean of the last `window` losses must be at most this fraction of the mean of the first `window`.
    /// Default: 0.9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_loss_ratio: Option<f64>,
    /// Steps averaged at the start and at the end. Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub window: Option<i32>,
    /// Largest allowed gradient norm. Default: 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_grad_norm: Option<f64>,
    /// Largest allowed median step time, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_step_time_seconds: Option<f64>,
    /// Largest allowed peak GPU memory, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_gpu_memory_bytes: Option<i64>,
}

/// One step of the plan. Exactly one of `setWeight`, `pause`, `analysis`, `cohort`, `shadow`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.setWeight), has(self.pause), has(self.analysis), has(self.cohort), has(self.shadow)].filter(x, x).size() == 1",
    "message": "each step needs exactly one of setWeight, pause, analysis, cohort or shadow",
}]))]
pub struct Step {
    /// Percentage of traffic sent to the canary, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self >= 0 && self <= 100",
        "message": "setWeight is a percentage of traffic: use a value from 0 to 100",
    }]))]
    pub set_weight: Option<i32>,
    /// Wait: for `duration`, or without one until `rampart promote` (the `rampart.dev/promote` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// Compare canary and baseline on `spec.analysis.metrics`, every `interval`, for up to `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStep>,
    /// Send every request that carries the given headers to the canary (a cohort: internal users, one tenant), on
    /// top of the weighted split of the other requests. The cohort stays routed to the canary through the later steps
    /// and is removed on promotion and on rollback. The sample-ratio check is off while a cohort is routed (the
    /// cohort's share of traffic is not known in advance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<Cohort>,
    /// Mirror live requests to the candidate while users get only the baseline's answers, and judge how often the
    /// two predictions agree (paired by request id by `rampart-shadow`, see docs/shadow.md). Must come before any
    /// step that sends traffic to the canary (`setWeight` above 0, `cohort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStep>,
}

/// A shadow step: mirrored requests, compared predictions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShadowStep {
    /// Longest time the step may take, e.g. `10m`. It ends earlier when agreement passes, or at once when it fails.
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$')",
        "message": "shadow.duration must be a duration such as 30s, 10m or 1h30m",
    }]))]
    pub duration: String,
    /// Time between two looks, e.g. `30s`. Default: the controller's analysis interval (1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$')",
        "message": "shadow.interval must be a duration such as 10s or 1m",
    }]))]
    pub interval: Option<String>,
    /// Largest share of disagreeing predictions the candidate may have and still pass, e.g. 0.01 (agreement of at
    /// least 99%). How predictions are compared (top-1, numeric tolerance, JSON path) is set in `rampart-shadow`.
    /// Default: 0.01.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self >= 0.0 && self < 1.0",
        "message": "shadow.tolerance is a share of requests: use a value from 0 up to (not including) 1, e.g. 0.01",
    }]))]
    pub tolerance: Option<f64>,
    /// The `model` label of the pairing metrics. Default: `spec.model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub model_label: Option<String>,
}

/// A header cohort: requests matching every header rule go to the canary.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Cohort {
    /// Header rules, all of which a request must match (HTTPRoute header matches). Header names must be unique.
    #[schemars(length(min = 1, max = 8))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(h, self.filter(o, o.name.lowerAscii() == h.name.lowerAscii()).size() == 1)",
        "message": "cohort.headers names must be unique (header names are case-insensitive)",
    }]))]
    pub headers: Vec<HeaderRule>,
}

/// One header rule of a cohort, e.g. `{name: x-tenant, value: internal}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRule {
    /// HTTP header name, e.g. `x-tenant` (case-insensitive).
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"))]
    pub name: String,
    /// The value the header must have (`Exact`) or match (`RegularExpression`).
    #[schemars(length(min = 1, max = 4096))]
    pub value: String,
    /// `Exact` (default) or `RegularExpression` (the gateway's regular-expression dialect).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub match_type: Option<HeaderMatchType>,
}

/// How a header value is matched.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum HeaderMatchType {
    /// The header's value equals `value`.
    #[default]
    Exact,
    /// The header's value matches the regular expression `value`.
    RegularExpression,
}

/// A pause step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    /// How long to wait, e.g. `10m`. Omit to wait until promoted by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$')",
        "message": "pause.duration must be a duration such as 30s, 10m or 1h30m",
    }]))]
    pub duration: Option<String>,
}

/// An analysis step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStep {
    /// Longest time the step may take, e.g. `30m`. The step ends earlier when every metric passes, or at once when
    /// one fails.
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$')",
        "message": "analysis.duration must be a duration such as 30s, 10m or 1h30m",
    }]))]
    pub duration: String,
    /// Time between two looks at the metrics, e.g. `1m`. Default: 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$')",
        "message": "analysis.interval must be a duration such as 30s, 10m or 1h30m",
    }]))]
    pub interval: Option<String>,
}

/// How canary and baseline are compared.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// The metrics to compare. Names must be unique.
    #[schemars(length(min = 1, max = 16))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(m, self.filter(o, o.name == m.name).size() == 1)",
        "message": "spec.analysis.metrics names must be unique",
    }]))]
    pub metrics: Vec<Metric>,
    /// Chance of rolling back a candidate that is not worse than the baseline by more than the tolerance, over the
    /// whole rollout however often it looks (the tests are anytime-valid). Between 0 and 0.5, default 0.05.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self > 0.0 && self < 0.5",
        "message": "spec.analysis.alpha must be above 0 and below 0.5 (typical: 0.05)",
    }]))]
    pub alpha: Option<f64>,
    /// Samples each version must have before any verdict. Default: 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_samples: Option<i64>,
    /// The sample-ratio-mismatch check of the traffic split itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srm: Option<SrmCheck>,
    /// What to do when an analysis step runs out of time without a verdict: `rollback` (default), `promote`, or
    /// `pause` (wait for a person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_inconclusive: Option<OnInconclusive>,
    /// Prometheus server queried for the metrics, e.g. `http://prometheus.monitoring:9090`. Default: the controller's
    /// configured Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub prometheus_address: Option<String>,
}

/// Sample-ratio-mismatch check: is traffic reaching the canary in the configured proportion?
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SrmCheck {
    /// Check the split. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// p-value below which the split is a mismatch. Default: 0.001.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self > 0.0 && self < 0.5",
        "message": "spec.analysis.srm.pValue must be above 0 and below 0.5 (typical: 0.001)",
    }]))]
    pub p_value: Option<f64>,
    /// PromQL for the cumulative request count of one version; `{{version}}` and `{{namespace}}` are substituted.
    /// Default: the `total` query of the first ratio metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_query: Option<String>,
}

/// Policy when an analysis step ends without a verdict.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum OnInconclusive {
    /// Roll back (the safe default).
    #[default]
    Rollback,
    /// Carry on as if the step had passed.
    Promote,
    /// Stay at the current weight and wait for `rampart promote` or `rampart abort`.
    Pause,
}

/// One metric compared between canary and baseline: `kind`, `direction` and `queries`, or a `preset`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.preset) || (has(self.kind) && has(self.direction) && has(self.queries))",
        "message": "a metric needs kind, direction and queries, or a preset such as vllm-time-to-first-token (see docs/llm-metrics.md)",
    },
    {
        "rule": "!has(self.preset) || (!has(self.kind) && !has(self.direction) && !has(self.queries))",
        "message": "a preset metric takes its kind, direction and queries from the preset: remove them, or drop the preset and write your own",
    },
    {
        "rule": "!has(self.kind) || self.kind != 'ratio' || (has(self.queries) && has(self.queries.success) && has(self.queries.total))",
        "message": "a ratio metric needs queries.success and queries.total",
    },
    {
        "rule": "!has(self.kind) || self.kind != 'mean' || (has(self.queries) && has(self.queries.sum) && has(self.queries.sumOfSquares) && has(self.queries.count))",
        "message": "a mean metric needs queries.sum, queries.sumOfSquares and queries.count",
    },
    {
        "rule": "!has(self.kind) || self.kind != 'latency' || (has(self.queries) && has(self.queries.buckets))",
        "message": "a latency metric needs queries.buckets (a histogram's cumulative le buckets)",
    },
]))]
pub struct Metric {
    /// Name shown in status, events and history, e.g. `accuracy`. Unique within the rollout.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$"))]
    pub name: String,
    /// A named definition instead of `kind`, `direction` and `queries`, e.g. `vllm-time-to-first-token` (the
    /// list and the queries behind each are in docs/llm-metrics.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<crate::presets::MetricPreset>,
    /// `ratio` (successes out of trials: accuracy, error rate), `mean` (a per-request value), or `latency` (a
    /// histogram). Not with `preset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<MetricKind>,
    /// Whether a higher value is better (accuracy) or a lower one (error rate, latency). Not with `preset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// How much worse than the baseline the canary may be and still pass (the non-inferiority margin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<Tolerance>,
    /// PromQL returning cumulative counters for one version: `{{version}}` and `{{namespace}}` are substituted. Not
    /// with `preset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<MetricQueries>,
    /// Latency metrics: the verdict compares the whole histograms, look by look: how often a canary request is
    /// slower than a baseline request (ties within a bucket count half). `tolerance` is in points of that
    /// probability above ½ (0.05 = the canary may be slower in up to 55% of pairs). These settings define the
    /// slow-request threshold shown beside the verdict; they do not decide it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySettings>,
}

/// How a latency metric defines the slow-request threshold shown beside its verdict.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct LatencySettings {
    /// Baseline quantile the threshold starts from. Default: 0.95 (the baseline's p95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self > 0.0 && self < 1.0",
        "message": "latency.quantile must be between 0 and 1, e.g. 0.95 for p95",
    }]))]
    pub quantile: Option<f64>,
    /// Slack on that quantile: threshold = baseline quantile x (1 + slack). Default: 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub threshold_slack: Option<f64>,
    /// A fixed threshold in seconds instead of one derived from the baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub threshold_seconds: Option<f64>,
}

/// Kind of metric.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MetricKind {
    /// Successes out of trials, e.g. correct predictions out of labelled ones.
    Ratio,
    /// The mean of a per-request value, from its sum, sum of squares and count.
    Mean,
    /// A latency histogram, from cumulative `le` buckets.
    Latency,
}

/// Which way is better.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Higher is better (accuracy).
    HigherIsBetter,
    /// Lower is better (error rate, latency).
    LowerIsBetter,
}

/// The non-inferiority margin: `absolute` in the metric's unit, or `relative` to the baseline (0.1 = 10%).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.absolute) && has(self.relative))",
    "message": "tolerance takes either absolute or relative, not both",
}]))]
pub struct Tolerance {
    /// Absolute margin, e.g. 0.01 for one accuracy point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self >= 0.0",
        "message": "tolerance.absolute must be 0 or more: it is how much worse the canary may be",
    }]))]
    pub absolute: Option<f64>,
    /// Relative margin, e.g. 0.1 for 10% of the baseline's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self >= 0.0",
        "message": "tolerance.relative must be 0 or more: it is how much worse the canary may be, as a fraction of the baseline",
    }]))]
    pub relative: Option<f64>,
}

/// PromQL templates. Each returns a cumulative counter for one version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricQueries {
    /// Ratio: count of successes, e.g. `sum(model_predictions_correct_total{version="{{version}}"})`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<String>,
    /// Ratio: count of trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
    /// Mean: sum of the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<String>,
    /// Mean: sum of the squared values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum_of_squares: Option<String>,
    /// Mean: count of the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<String>,
    /// Latency: cumulative histogram buckets by `le`, e.g.
    /// `sum by (le) (model_request_duration_seconds_bucket{version="{{version}}"})`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<String>,
}

/// What happens on failure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    /// Roll back automatically when a check or analysis fails. Default: true. When false the rollout stops in
    /// Paused with the canary at weight 0 until `rampart abort` or `rampart retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<bool>,
    /// How long the canary keeps running at weight 0 after a rollback or promotion before it is deleted, e.g. `30s`.
    /// Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$')",
        "message": "rollback.scaleDownDelay must be a duration such as 30s or 5m",
    }]))]
    pub scale_down_delay: Option<String>,
}

/// What Rampart observed and decided. Written by the controller only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelRolloutStatus {
    /// Where the rollout is: Pending, Verifying, Checking, Progressing, Paused, Promoting, Baking, Succeeded,
    /// RollingBack, RolledBack, Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Index of the step being run (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<i32>,
    /// Percentage of traffic the canary receives now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Kubernetes-style conditions, kstatus-compatible (`kubectl wait`, Flux and Argo CD read them): `Ready` (True once
    /// the candidate is promoted), `Reconciling` (True while Rampart is working towards an outcome), `Stalled` (True
    /// when it cannot get there without a person: a failed check, a rollback, a pause), `ChecksPassed` and
    /// `Promoted`. Each carries the `observedGeneration` it was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<Condition>>,
    /// Results of the checks before traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<ChecksStatus>,
    /// The latest analysis verdicts, per metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,
    /// Human-readable summary of the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the current step started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<String>,
    /// The model version label of the baseline the canary is compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_version: Option<String>,
    /// The model URI the baseline served before this rollout (restored on a KServe rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_uri: Option<String>,
    /// Registry records not yet written to Postgres (kept here during an outage, flushed in order). Internal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<Vec<String>>,
    /// The last `rampart.dev/retry` annotation value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_retry: Option<String>,
    /// The serving and traffic targets this attempt started with, written when it took its claim on them (the
    /// `rampart.dev/claimed-by` annotation on the Deployment or InferenceService and the HTTPRoute). Until the attempt
    /// ends Rampart acts on these, not on later edits of `spec.serving` / `spec.traffic`. Internal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<RolloutTargets>,
    /// When traffic first went to the canary (RFC 3339): a bake counts the metrics from here, so the labels that
    /// arrive late for predictions made during the steps count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_started_at: Option<String>,
    /// The bake after promotion (`spec.bake`), once it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<BakeStatus>,
    /// The last transitions, newest last (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryEntry>>,
    /// Capacity-aware steps: the sizes this attempt works within, read from the baseline when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityStatus>,
    /// Rampart's seal over the fields that gate traffic (phase, step, weight, check results, baseline, targets,
    /// capacity): an HMAC-SHA256 under a key only the controller holds. A status changed by anyone else no longer
    /// matches it, and Rampart then trusts none of it (see docs/security.md). Internal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

/// The sizes capacity-aware steps work within, and what they last saw.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct CapacityStatus {
    /// The baseline Deployment's replicas when the rollout started (restored on rollback and promotion).
    pub baseline_replicas: i32,
    /// The surge budget in pods (`surgeGPUs` divided by the GPUs one pod requests, rounded down).
    pub surge_replicas: i32,
    /// GPUs one pod of the baseline's template requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "gpusPerPod")]
    pub gpus_per_pod: Option<i32>,
    /// Ready baseline and canary pods at the last look, e.g. `6/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
}

/// Where the bake after promotion stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BakeStatus {
    /// When the bake started (promotion recorded, the candidate took all traffic), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// The metrics are counted from here (the first canary step), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counting_since: Option<String>,
    /// The baseline Deployment's replicas before the bake scaled it to `spec.bake.previousReplicas`; restored when
    /// the bake ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_replicas: Option<i32>,
    /// How the bake ended: `Passed` (no Fail in the window: the promotion is finished) or `RolledBack` (a Fail
    /// returned traffic and `production` to the previous version). Absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<BakeOutcome>,
}

/// How a bake ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BakeOutcome {
    /// The window ended without a Fail.
    Passed,
    /// A Fail during the window rolled the promotion back.
    RolledBack,
}

/// The targets an attempt holds: copies of `spec.serving` and `spec.traffic` taken at its start.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTargets {
    /// `spec.serving` as it was when the attempt started.
    pub serving: Serving,
    /// `spec.traffic` as it was when the attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
}

/// Rollout phase.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Accepted, not started.
    Pending,
    /// Verifying the artifact's digest and signature.
    Verifying,
    /// Running the contract and smoke-training checks.
    Checking,
    /// Running the steps.
    Progressing,
    /// Waiting (a pause step, or a person).
    Paused,
    /// Moving the baseline to the candidate.
    Promoting,
    /// Promoted (`production` names the candidate, which takes all traffic) and in the bake window: late labels are
    /// judged and the previous version stays ready to take traffic back.
    Baking,
    /// The candidate is the new baseline.
    Succeeded,
    /// Sending all traffic back to the baseline.
    RollingBack,
    /// All traffic is back on the baseline.
    RolledBack,
    /// A check failed before any traffic moved.
    Failed,
}

impl Phase {
    /// True when the rollout has ended and nothing more will happen without `rampart retry`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::RolledBack | Phase::Failed)
    }
}

/// A Kubernetes-style condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Verified`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One-word reason in CamelCase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Results of the checks before traffic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ChecksStatus {
    /// Digest and signature verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<CheckResult>,
    /// The artifact's files fetched from `uri` and checked against the signed manifest (the artifact-verification
    /// Job). Its message names the verified digest, or the file that differs with both digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<CheckResult>,
    /// Tensor-contract check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<CheckResult>,
    /// Smoke-training check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_training: Option<CheckResult>,
}

/// The outcome of one check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// `Passed`, `Failed`, `Running` or `Skipped`.
    #[schemars(with = "String")]
    pub result: CheckOutcome,
    /// Why, in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who signed, for the signature check (key id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Name of the Job that ran the check, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The smoke-training run's loss, sampled evenly over its steps (at most 40 points, first and last included), for
    /// `rampart dashboard` and `kubectl get -o yaml`. A missing `loss` is a step whose loss was not finite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_curve: Option<Vec<LossPoint>>,
}

/// One point of a smoke-training loss curve.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct LossPoint {
    /// Training step.
    pub step: i64,
    /// Loss at that step; absent when it was NaN or infinite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
}

/// Where one check stands. Serialized as the plain strings the status has always carried; a value this version does
/// not know (written by hand, or by a newer controller) reads as `Unknown`, which no gate treats as passed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckOutcome {
    /// The check passed.
    Passed,
    /// The check failed; nothing moved.
    Failed,
    /// The check is running (its Job exists).
    Running,
    /// The check was not run (allowed by the spec and the controller's configuration).
    Skipped,
    /// A value this controller does not know.
    #[serde(other)]
    Unknown,
}

impl CheckOutcome {
    /// The value as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckOutcome::Passed => "Passed",
            CheckOutcome::Failed => "Failed",
            CheckOutcome::Running => "Running",
            CheckOutcome::Skipped => "Skipped",
            CheckOutcome::Unknown => "Unknown",
        }
    }
}

impl std::fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verdict as shown in status: the analysis engine's four outcomes, serialized as plain strings. An unknown value
/// reads as `Unknown`, which is never taken for a pass.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Verdict {
    /// The canary is no worse than the tolerance.
    Pass,
    /// The canary is worse than the tolerance, or traffic is misrouted.
    Fail,
    /// Not enough evidence yet.
    #[default]
    Continue,
    /// The data cannot support a verdict.
    Inconclusive,
    /// A value this controller does not know.
    #[serde(other)]
    Unknown,
}

impl Verdict {
    /// The value as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "Pass",
            Verdict::Fail => "Fail",
            Verdict::Continue => "Continue",
            Verdict::Inconclusive => "Inconclusive",
            Verdict::Unknown => "Unknown",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The analysis verdicts of the current (or last) analysis step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// Index of the analysis step these results belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    /// Verdict of the step: Pass, Fail, Continue or Inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub verdict: Option<Verdict>,
    /// Looks taken in this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub looks: Option<i32>,
    /// When the look shown here was taken (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_look_at: Option<String>,
    /// Per-metric results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<MetricStatus>>,
    /// Sample-ratio-mismatch result, when checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srm: Option<MetricStatus>,
    /// Looks in a row whose metrics could not be read (Prometheus down or a query failing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_errors: Option<i32>,
    /// The last error reading the metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The statistics engine's carried state (running minima of the always-valid p-values), as JSON. Internal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_state: Option<String>,
}

/// One metric's verdict and the numbers behind it. Numbers are strings formatted for people, so that no precision
/// games happen in YAML.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// Metric name.
    pub name: String,
    /// Pass, Fail, Continue or Inconclusive.
    #[schemars(with = "String")]
    pub verdict: Verdict,
    /// The canary's estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// The baseline's estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Canary minus baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// Anytime-valid confidence bounds of the effect, `[low, high]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Always-valid p-value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<String>,
    /// Samples as `canary/baseline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<String>,
    /// One line for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One transition of the rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When (RFC 3339).
    pub time: String,
    /// Phase entered.
    pub phase: Phase,
    /// Step index, when relevant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
