//! The Rampart operator: one idempotent state machine per ModelRollout, which shifts traffic to a candidate model in
//! steps, judges it with the statistics engine, and promotes it or rolls it back.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod claims;
pub mod config;
pub mod decide;
pub mod error;
pub mod images;
pub mod jobs;
pub mod labels;
pub mod leader;
pub mod look;
pub mod metrics;
pub mod notify;
pub mod observe;
pub mod outbox;
pub mod prometheus;
pub mod reconcile;
pub mod seal;
pub mod serving;
pub mod status;
pub mod traffic;
pub mod trail;
pub mod verify;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use rampart_api::ModelRollout;
use tokio::sync::watch;

pub use config::ControllerConfig;
pub use error::Error;
pub use metrics::Metrics;

/// Wakes a promoting rollout when its baseline Deployment changes (it is waiting for the candidate to roll out), so
/// promotion needs no polling; and a rollout with capacity-aware steps when its baseline or canary changes (each
/// move waits for pods to become ready). Only the Deployments' metadata is kept from each event.
fn watch_baselines(
    controller: Controller<ModelRollout>,
    client: &kube::Client,
    config: &ControllerConfig,
) -> Controller<ModelRollout> {
    let deployments: Api<PartialObjectMeta<Deployment>> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let rollouts = controller.store();
    controller.watches(deployments, watcher::Config::default(), move |deployment| {
        let namespace = deployment.metadata.namespace.clone();
        let name = deployment.metadata.name.clone().unwrap_or_default();
        rollouts
            .state()
            .into_iter()
            .filter(|rollout| {
                let Some(serving) = rollout.spec.serving.deployment.as_ref() else { return false };
                let status = rollout.status.as_ref();
                let moving = status.is_some_and(|s| s.capacity.is_some());
                let (baseline, canary) = (serving.name == name, serving::canary_name(serving) == name);
                rollout.metadata.namespace == namespace
                    && match status.and_then(|s| s.phase) {
                        Some(rampart_api::Phase::Promoting) => baseline || (moving && canary),
                        Some(rampart_api::Phase::Baking) => baseline,
                        Some(rampart_api::Phase::Progressing) => moving && (baseline || canary),
                        _ => false,
                    }
            })
            .map(|rollout| ObjectRef::from_obj(rollout.as_ref()))
            .collect::<Vec<_>>()
    })
}

/// True when any notification sink is configured (controller-wide, or namespace sinks allowed).
fn notifications_enabled(config: &ControllerConfig) -> bool {
    let sinks = &config.notifications;
    sinks.cloudevents_url.is_some() || sinks.slack_webhook_url.is_some() || !sinks.allowed_hosts.is_empty()
}

/// Aborts a spawned task when dropped (the controller returned), so no task outlives [`run`].
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Wakes a rollout with traffic on its canary when one of its canary pods changes, so a verifying init container that
/// refused the artifact (an object replaced after verification) rolls the rollout back at once, even during an
/// indefinite pause. Only canary pods (`rampart.dev/role=canary`) are watched, and only their metadata is kept; a
/// change marks the pods' (namespace, version) in `changed`, and only a marked rollout lists its canary pods.
fn watch_canary_pods(
    controller: Controller<ModelRollout>,
    client: &kube::Client,
    config: &ControllerConfig,
    changed: Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
) -> Controller<ModelRollout> {
    let pods: Api<PartialObjectMeta<Pod>> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let rollouts = controller.store();
    let canaries = watcher::Config::default().labels(&format!("{}=canary", serving::ROLE_LABEL));
    controller.watches(pods, canaries, move |pod| {
        let namespace = pod.metadata.namespace.clone();
        let version = pod.metadata.labels.as_ref().and_then(|l| l.get(serving::VERSION_LABEL)).cloned();
        if let (Some(ns), Some(v)) = (&namespace, &version) {
            changed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert((ns.clone(), v.clone()));
        }
        rollouts
            .state()
            .into_iter()
            .filter(|rollout| {
                rollout.metadata.namespace == namespace
                    && matches!(
                        rollout.status.as_ref().and_then(|s| s.phase),
                        Some(rampart_api::Phase::Progressing | rampart_api::Phase::Paused)
                    )
                    && rollout.spec.serving.deployment.is_some()
                    && version.as_deref() == Some(labels::label_value(&rollout.spec.candidate.version).as_str())
            })
            .map(|rollout| ObjectRef::from_obj(rollout.as_ref()))
            .collect::<Vec<_>>()
    })
}

/// Runs the controller until `shutdown` becomes true: leader election, and the reconcile loop while this replica
/// leads. Losing the lease stops the loop at once; regaining it starts a new one.
pub async fn run(client: kube::Client, config: ControllerConfig, metrics: Metrics, shutdown: watch::Receiver<bool>) {
    // The key that seals status (see `seal`): a replica without it never leads, since it could not tell Rampart's
    // status from a forged one.
    let mut stopping = shutdown.clone();
    let status_key = loop {
        match seal::load_or_create_key(&client, &config.lease_namespace).await {
            Ok(key) => break key,
            Err(err) => {
                tracing::error!(error = %err, "no status key: not taking part in leader election until there is one");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                    _ = stopping.changed() => return,
                }
            }
        }
    };
    let (leader_tx, leader_rx) = watch::channel(false);
    let election = tokio::spawn(leader::run_election(client.clone(), config.clone(), leader_tx, shutdown.clone()));
    let (notifier, offers) = notify::Notifier::channel();
    let notifying = notifications_enabled(&config);
    let mut context = reconcile::Context::new(
        client.clone(),
        config.clone(),
        metrics.clone(),
        Recorder::new(
            client.clone(),
            Reporter { controller: "rampart-controller".into(), instance: Some(config.identity.clone()) },
        ),
        leader_rx.clone(),
    );
    let notifications = match (&config.database_url, notifying) {
        (Some(url), true) => {
            context.notifier = Some(notifier);
            let task = notify::Task {
                client: client.clone(),
                config: config.notifications.clone(),
                namespace: config.namespace.clone(),
                // Its own connection: the notification task's retries against a Postgres that is down never hold
                // the lock the reconcile's outbox flush takes.
                registry: Arc::new(trail::RegistryConnection::new(url)),
                metrics: metrics.clone(),
                leader: leader_rx.clone(),
                shutdown: shutdown.clone(),
            };
            Some(tokio::spawn(notify::run(task, offers)))
        }
        (None, true) => {
            tracing::warn!("notification sinks are configured but no --database-url: notifications need the registry");
            None
        }
        _ => None,
    };
    context.status_key = Some(status_key);
    let context = Arc::new(context);
    let _notifications = AbortOnDrop(notifications);

    let mut leader = leader_rx.clone();
    let mut stop = shutdown.clone();
    loop {
        // Wait until this replica leads (or shutdown).
        while !*leader.borrow() {
            metrics.is_leader.set(0);
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return },
                _ = stop.changed() => { let _ = election.await; return; }
            }
        }
        metrics.is_leader.set(1);
        tracing::info!(identity = %config.identity, "leading: reconciling ModelRollouts");
        let rollouts: Api<ModelRollout> = match &config.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let controller = Controller::new(rollouts, watcher::Config::default().any_semantic())
            .with_config(kube::runtime::controller::Config::default().concurrency(config.max_concurrent_reconciles));
        let controller = watch_baselines(controller, &client, &config);
        let controller = watch_canary_pods(controller, &client, &config, context.canary_pods_changed.clone())
            .run(reconcile::reconcile, reconcile::error_policy, context.clone())
            .for_each(|result| async move {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "reconcile loop");
                }
            });
        tokio::select! {
            _ = controller => {}
            _ = async { while *leader.borrow() { if leader.changed().await.is_err() { break } } } => {
                tracing::warn!(identity = %config.identity, "lost the leader lease: stopped reconciling");
            }
            _ = stop.changed() => {
                tracing::info!("shutting down");
                let _ = election.await;
                return;
            }
        }
    }
}
