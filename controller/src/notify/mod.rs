//! Notifications: CloudEvents (CDEvents types) and Slack-style webhooks for a rollout's deployment, promotion and
//! rollback, delivered at least once from a durable queue in the registry.
//!
//! The reconcile only offers the rollout it just wrote to [`Notifier::offer`] (a non-blocking send; nothing waits).
//! Everything else runs in its own task, [`run`]: it derives the events the status owes ([`event::events_for`]),
//! queues them in Postgres by stable id, and sends what is due, retrying failures with capped exponential backoff.
//! The task also looks at every rollout when this replica becomes leader and once a minute, so an event whose offer was lost (a crash
//! right after the status write, Postgres down, a full channel) is derived and queued again with the same id. A
//! failing or hanging sink therefore never delays a reconcile, a rollback least of all.

pub mod event;
pub mod render;
pub mod sinks;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::ListParams;
use rampart_api::ModelRollout;
use rampart_registry::{NewNotification, PendingDelivery, Registry};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::trail::RegistryConnection;
use event::RolloutEvent;
use sinks::{Kind, NotifyConfig, Resolver, Scope, SinkKey, Target};

/// Rollouts waiting for the task; beyond this an offer is dropped (the next sweep derives its events again).
const CHANNEL_CAPACITY: usize = 1024;
/// How often the task enqueues what it derived and sends what is due.
const TICK: Duration = Duration::from_secs(1);
/// How often every rollout is looked at again.
const SWEEP: Duration = Duration::from_secs(60);
/// Rows claimed per round.
const BATCH: i64 = 64;
/// A claimed row is left alone by other replicas this long.
const LEASE: Duration = Duration::from_secs(300);
/// Wait after the registry could not be reached.
const REGISTRY_BACKOFF: Duration = Duration::from_secs(5);
/// Ids remembered as queued before the set is cleared (the queue's primary key deduplicates anyway).
const REMEMBERED: usize = 100_000;

/// The reconcile's side of the notifier.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<ModelRollout>,
}

impl Notifier {
    /// A notifier and the receiver its task reads.
    pub fn channel() -> (Notifier, mpsc::Receiver<ModelRollout>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        (Notifier { tx }, rx)
    }

    /// Hands a rollout whose status just changed to the notification task. Never waits.
    pub fn offer(&self, rollout: ModelRollout) {
        if self.tx.try_send(rollout).is_err() {
            tracing::debug!("notification channel full; the next sweep picks the rollout up");
        }
    }
}

/// What the task needs.
pub struct Task {
    pub client: kube::Client,
    pub config: NotifyConfig,
    /// Only watch this namespace (all when None).
    pub namespace: Option<String>,
    pub registry: Arc<RegistryConnection>,
    pub metrics: Metrics,
    pub leader: watch::Receiver<bool>,
    pub shutdown: watch::Receiver<bool>,
}

/// Runs the notification task until shutdown. Idle while this replica does not lead.
pub async fn run(task: Task, mut offers: mpsc::Receiver<ModelRollout>) {
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(task.config.timeout)
        .connect_timeout(task.config.timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("rampart-controller/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(http) => http,
        Err(err) => {
            tracing::error!(error = %err, "cannot build the HTTP client for notifications; none will be sent");
            return;
        }
    };
    let mut state = State {
        resolver: Resolver::new(task.client.clone(), task.config.clone()),
        pending: BTreeMap::new(),
        queued: HashSet::new(),
        http,
        busy: Default::default(),
        registry_retry_at: None,
    };
    let mut shutdown = task.shutdown.clone();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut swept_as_leader = false;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            offered = offers.recv() => match offered {
                Some(rollout) => state.derive(&rollout),
                None => return,
            },
            _ = sweep.tick() => {
                if *task.leader.borrow() {
                    state.sweep(&task).await;
                }
            }
            _ = tick.tick() => {
                if !*task.leader.borrow() {
                    swept_as_leader = false;
                    continue;
                }
                // On becoming leader (at start, or after a takeover) every rollout is looked at once at once.
                if !swept_as_leader {
                    state.sweep(&task).await;
                    swept_as_leader = true;
                }
                state.round(&task).await;
            }
        }
    }
}

struct State {
    resolver: Resolver,
    /// Derived events not yet queued, by id.
    pending: BTreeMap<String, RolloutEvent>,
    /// Ids already queued by this process.
    queued: HashSet<String>,
    http: reqwest::Client,
    /// Sinks (by name and, for namespace sinks, namespace) whose task is still sending.
    busy: Arc<Mutex<HashSet<(String, String)>>>,
    /// No connection attempt before this (the registry failed the last one).
    registry_retry_at: Option<Instant>,
}

impl State {
    fn derive(&mut self, rollout: &ModelRollout) {
        let now = jiff::Timestamp::now().to_string();
        for event in event::events_for(rollout, &now) {
            if !self.queued.contains(&event.id) {
                self.pending.entry(event.id.clone()).or_insert(event);
            }
        }
    }

    /// Derives the events of every rollout.
    async fn sweep(&mut self, task: &Task) {
        let api: Api<ModelRollout> = match &task.namespace {
            Some(ns) => Api::namespaced(task.client.clone(), ns),
            None => Api::all(task.client.clone()),
        };
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                for rollout in &list.items {
                    self.derive(rollout);
                }
            }
            Err(err) => tracing::warn!(error = %err, "notifications: cannot list ModelRollouts; retrying later"),
        }
    }

    /// Queues what was derived, then sends what is due.
    async fn round(&mut self, task: &Task) {
        if self.registry_retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let registry = match task.registry.get().await {
            Ok(registry) => registry,
            Err(err) => {
                tracing::warn!(error = %err, pending = self.pending.len(), "notifications wait for the registry");
                self.registry_retry_at = Some(Instant::now() + REGISTRY_BACKOFF);
                return;
            }
        };
        self.registry_retry_at = None;
        self.enqueue(task, &registry).await;
        self.deliver(task, &registry).await;
        if let Ok(backlog) = registry.notification_backlog().await {
            task.metrics.notification_backlog.set(backlog);
        }
    }

    async fn enqueue(&mut self, task: &Task, registry: &Registry) {
        let ids: Vec<String> = self.pending.keys().cloned().collect();
        for id in ids {
            let Some(event) = self.pending.get(&id) else { continue };
            let targets = match self.resolver.targets(&event.namespace).await {
                Ok(targets) => targets,
                Err(err) => {
                    tracing::warn!(error = %err, "notifications: cannot resolve sinks; retrying");
                    continue;
                }
            };
            let sinks: Vec<String> = targets.iter().map(|(key, _)| key.name().to_string()).collect();
            if !sinks.is_empty() {
                let notification = NewNotification {
                    event_id: event.id.clone(),
                    namespace: event.namespace.clone(),
                    rollout: event.name.clone(),
                    event: serde_json::to_value(event).unwrap_or_default(),
                };
                match registry.enqueue_notification(&notification, &sinks).await {
                    Ok(new) => {
                        if new > 0 {
                            tracing::info!(
                                rollout = %format!("{}/{}", event.namespace, event.name),
                                event = %event.id,
                                transition = event.transition.word(),
                                sinks = new,
                                "notification queued"
                            );
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "notifications: cannot queue; retrying");
                        task.metrics.count_notification_failure("queue", "registry");
                        return;
                    }
                }
            }
            if self.queued.len() >= REMEMBERED {
                self.queued.clear();
            }
            self.queued.insert(id.clone());
            self.pending.remove(&id);
        }
    }

    async fn deliver(&mut self, task: &Task, registry: &Registry) {
        let claimed = match registry.claim_notifications(BATCH, LEASE).await {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %err, "notifications: cannot claim due deliveries");
                return;
            }
        };
        if claimed.is_empty() {
            return;
        }
        // One sink's rows go in order; after a failure the rest of that sink waits for the next round.
        let mut groups: BTreeMap<(String, String), Vec<PendingDelivery>> = BTreeMap::new();
        for row in claimed {
            let scope_key = match SinkKey::parse(&row.sink) {
                Some(SinkKey { scope: Scope::Namespace, .. }) => row.namespace.clone(),
                _ => String::new(),
            };
            groups.entry((row.sink.clone(), scope_key)).or_default().push(row);
        }
        // Each sink sends in its own task, so a sink that hangs until the timeout holds up no other sink; rows of a
        // sink still busy with an earlier round are put back for the next one.
        for (key, rows) in groups {
            if !self.busy.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
                for row in rows {
                    let _ = registry.defer_notification(&row.event_id, &row.sink, Duration::from_secs(1)).await;
                }
                continue;
            }
            let mut group = Vec::new();
            for row in rows {
                let target = self.target(&row).await;
                group.push((row, target));
            }
            let sender = Sender {
                registry: registry.clone(),
                http: self.http.clone(),
                metrics: task.metrics.clone(),
                retry_max: task.config.retry_max,
                give_up_after: task.config.give_up_after,
            };
            let busy = self.busy.clone();
            tokio::spawn(async move {
                sender.send_group(&key.0, group).await;
                busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            });
        }
    }

    /// The target of a claimed row, or why it has none.
    async fn target(&mut self, row: &PendingDelivery) -> Result<Target, Missing> {
        let key = SinkKey::parse(&row.sink).ok_or(Missing::Gone)?;
        let targets = match key.scope {
            Scope::Controller => sinks::controller_targets(self.resolver.config()),
            Scope::Namespace => self.resolver.namespace(&row.namespace).await.map_err(Missing::Unreadable)?,
        };
        targets.into_iter().find(|(k, _)| *k == key).map(|(_, target)| target).ok_or(Missing::Gone)
    }
}

/// Why a row has no target now.
enum Missing {
    /// The sink is no longer configured: the row is abandoned.
    Gone,
    /// The namespace's Secret could not be read: retried.
    Unreadable(String),
}

/// What a sink's task needs.
struct Sender {
    registry: Registry,
    http: reqwest::Client,
    metrics: Metrics,
    retry_max: Duration,
    give_up_after: Duration,
}

impl Sender {
    /// Sends one sink's rows in order, stopping at the first failure (the rest are put back untried).
    async fn send_group(&self, sink: &str, group: Vec<(PendingDelivery, Result<Target, Missing>)>) {
        let registry = &self.registry;
        let mut failed = false;
        for (row, target) in group {
            if failed {
                let _ = registry.defer_notification(&row.event_id, &row.sink, Duration::from_secs(1)).await;
                continue;
            }
            let outcome = match target {
                Err(Missing::Gone) => {
                    let _ = registry
                        .mark_notification_failed(&row.event_id, &row.sink, "the sink is no longer configured", None)
                        .await;
                    self.metrics.count_notification_failure(sink, "not_configured");
                    continue;
                }
                Err(Missing::Unreadable(err)) => Err(("secret", err)),
                Ok(target) => send(&self.http, &row, &target).await,
            };
            match outcome {
                Ok(()) => {
                    if let Err(err) = registry.mark_notification_delivered(&row.event_id, &row.sink).await {
                        tracing::warn!(error = %err, event = %row.event_id, "delivered, but not recorded; it may be sent again");
                    }
                    self.metrics.count_notification_delivered(sink);
                }
                Err((reason, err)) => {
                    failed = true;
                    self.metrics.count_notification_failure(sink, reason);
                    let age = (chrono_now() - row.created_at.timestamp()).max(0);
                    let give_up = u64::try_from(age).unwrap_or(0) >= self.give_up_after.as_secs();
                    let retry_in = (!give_up).then(|| backoff(row.attempts, &row.event_id, self.retry_max));
                    tracing::warn!(
                        rollout = %format!("{}/{}", row.namespace, row.rollout),
                        event = %row.event_id,
                        %sink,
                        attempt = row.attempts + 1,
                        retry_in_s = retry_in.map(|d| d.as_secs_f64()),
                        "notification not delivered: {err}"
                    );
                    let _ = registry.mark_notification_failed(&row.event_id, &row.sink, &err, retry_in).await;
                }
            }
        }
    }
}

fn chrono_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Sends one row. `Err((metric reason, message))`.
async fn send(http: &reqwest::Client, row: &PendingDelivery, target: &Target) -> Result<(), (&'static str, String)> {
    let event: RolloutEvent = serde_json::from_value(row.event.clone())
        .map_err(|err| ("invalid", format!("the queued event cannot be read: {err}")))?;
    let message = match SinkKey::parse(&row.sink).map(|k| k.kind) {
        Some(Kind::Slack) => render::slack(&event),
        _ => render::cloudevent(&event, target.mode),
    };
    let host = target.url.host_str().unwrap_or_default().to_string();
    let mut request = http.post(target.url.clone()).body(message.body);
    for (name, value) in &message.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            let status = response.status();
            let reason = if status.is_client_error() { "http_4xx" } else { "http_5xx" };
            Err((reason, format!("{host} answered {status}")))
        }
        Err(err) if err.is_timeout() => Err(("timeout", format!("{host} did not answer in time"))),
        Err(err) if err.is_connect() => Err(("connect", format!("cannot connect to {host}"))),
        Err(err) if err.is_redirect() => Err(("redirect", format!("{host} redirected (redirects are not followed)"))),
        Err(_) => Err(("request", format!("the request to {host} failed"))),
    }
}

/// Wait before the next attempt: 1 s doubling per attempt, capped, with up to 20% jitter (spread by the event id so
/// that a sink coming back is not hit by every event at once).
pub fn backoff(attempts: i32, event_id: &str, cap: Duration) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 20)).unwrap_or(0);
    let base = Duration::from_secs(1u64 << exponent).min(cap);
    let spread = event_id.bytes().fold(u64::from(exponent), |acc, b| acc.wrapping_mul(31).wrapping_add(u64::from(b)));
    let jitter = base.mul_f64((spread % 21) as f64 / 100.0);
    base.saturating_sub(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_at_the_cap() {
        let cap = Duration::from_secs(300);
        let first = backoff(0, "e", cap);
        assert!(first <= Duration::from_secs(1) && first >= Duration::from_millis(800), "{first:?}");
        let fifth = backoff(4, "e", cap);
        assert!(fifth <= Duration::from_secs(16) && fifth >= Duration::from_millis(12_800), "{fifth:?}");
        assert!(backoff(30, "e", cap) <= cap);
        assert!(backoff(-3, "e", cap) <= Duration::from_secs(1));
    }
}
