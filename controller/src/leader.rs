//! Leader election with a `coordination.k8s.io/v1` Lease: only the holder reconciles and writes.
//!
//! Time is judged by this replica's own monotonic clock, never by comparing it with a timestamp another replica wrote
//! (clocks differ between nodes): a follower remembers when it last saw the Lease change (a renewal, a new holder) and
//! takes it over only once the holder's `leaseDurationSeconds` plus a safety margin have passed since then with no
//! change. The holder stops writing once [`renew_deadline`] has passed since the start of its last successful renewal;
//! that deadline is shorter than the lease, so the old leader has stopped before anyone may take over. Losing the
//! lease (another holder, or no renewal within the deadline) flips the flag to false at once, which stops writing.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::watch;

use crate::config::ControllerConfig;

/// Runs the election loop until `shutdown` fires; `leader` says whether this replica holds the lease right now. On
/// shutdown a held lease is released so another replica takes over at once.
pub async fn run_election(
    client: kube::Client,
    config: ControllerConfig,
    leader: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.lease_namespace);
    let deadline = renew_deadline(config.lease_duration);
    // When the round that last renewed the lease started (the renewal is valid from before it was written).
    let mut renewed_at: Option<Instant> = None;
    let mut observed = Observed::default();
    loop {
        let started = Instant::now();
        // A round may not outlast the leader's deadline: a hanging API call must not keep it writing.
        let limit = match (renewed_at, *leader.borrow()) {
            (Some(at), true) => deadline.saturating_sub(at.elapsed()).min(config.renew_interval),
            _ => config.renew_interval.max(Duration::from_secs(1)),
        };
        let round = match tokio::time::timeout(limit, try_acquire_or_renew(&api, &config, &mut observed)).await {
            Ok(result) => result,
            Err(_) => Err(kube::Error::Service(format!("the Lease round took longer than {limit:?}").into())),
        };
        match round {
            Ok(true) => {
                renewed_at = Some(started);
                if !*leader.borrow() {
                    tracing::info!(identity = %config.identity, lease = %config.lease_name, "acquired the leader lease");
                }
                leader.send_replace(true);
            }
            Ok(false) => {
                if *leader.borrow() {
                    tracing::warn!(identity = %config.identity, "another replica holds the lease now; stopping writes");
                }
                leader.send_replace(false);
                renewed_at = None;
            }
            Err(err) => {
                tracing::warn!(error = %err, "leader lease renewal failed");
            }
        }
        if *leader.borrow() && renewed_at.is_none_or(|at| at.elapsed() >= deadline) {
            tracing::warn!("the lease could not be renewed within the renew deadline; stopping writes");
            leader.send_replace(false);
            renewed_at = None;
        }
        let wait = match (renewed_at, *leader.borrow()) {
            // Renew in time: never sleep past the deadline.
            (Some(at), true) => config.renew_interval.min(deadline.saturating_sub(at.elapsed())),
            _ => config.renew_interval.min(Duration::from_secs(2)),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {
                if *leader.borrow() {
                    leader.send_replace(false);
                    if let Err(err) = release(&api, &config).await {
                        tracing::warn!(error = %err, "could not release the leader lease");
                    }
                }
                return;
            }
        }
    }
}

/// How long after the start of its last successful renewal the leader keeps writing: two thirds of the lease, so it
/// has stopped well before a follower (which waits the whole lease plus [`takeover_margin`] after it last saw a
/// change) may take over.
pub fn renew_deadline(lease_duration: Duration) -> Duration {
    lease_duration * 2 / 3
}

/// What a follower waits beyond the holder's lease duration before taking over: a tenth of the lease, at least
/// 200 ms (for requests still in flight and scheduling delays).
pub fn takeover_margin(lease_duration: Duration) -> Duration {
    (lease_duration / 10).max(Duration::from_millis(200))
}

/// The Lease record as this replica last saw it, and when (on its own monotonic clock).
#[derive(Default)]
pub struct Observed {
    record: Option<String>,
    at: Option<Instant>,
}

impl Observed {
    /// Notes the record seen now; returns how long it has stayed unchanged, as observed here.
    pub fn see(&mut self, record: String, now: Instant) -> Duration {
        if self.record.as_ref() != Some(&record) || self.at.is_none() {
            self.record = Some(record);
            self.at = Some(now);
        }
        self.at.map(|at| now.saturating_duration_since(at)).unwrap_or_default()
    }
}

/// Whether a lease held by another replica may be taken: it has not changed for its duration plus the margin, as
/// observed by this replica. The holder's `renewTime` is not compared with this replica's clock.
pub fn may_take_over(unchanged_for: Duration, lease_duration: Duration) -> bool {
    unchanged_for >= lease_duration + takeover_margin(lease_duration)
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn lease_seconds(config: &ControllerConfig) -> i32 {
    i32::try_from(config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// One round: returns whether this replica holds the lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &ControllerConfig,
    observed: &mut Observed,
) -> Result<bool, kube::Error> {
    let existing = match api.get(&config.lease_name).await {
        Ok(lease) => lease,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(config.lease_name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.identity.clone()),
                    lease_duration_seconds: Some(lease_seconds(config)),
                    acquire_time: Some(now_micro()),
                    renew_time: Some(now_micro()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(err) => Err(err),
            };
        }
        Err(err) => return Err(err),
    };
    let spec = existing.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let ours = holder == config.identity;
    let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
    if !ours && !holder.is_empty() {
        // Any write to the Lease (a renewal, a new holder) changes its resourceVersion and renewTime.
        let record = format!(
            "{holder}|{:?}|{}",
            spec.renew_time.as_ref().map(|t| t.0),
            existing.metadata.resource_version.as_deref().unwrap_or_default()
        );
        let unchanged_for = observed.see(record, Instant::now());
        if !may_take_over(unchanged_for, duration) {
            return Ok(false);
        }
        tracing::warn!(%holder, unchanged_for_s = unchanged_for.as_secs_f64(), "the leader lease was not renewed in time; taking it over");
    }
    let mut lease = existing;
    let mut new_spec = spec.clone();
    new_spec.holder_identity = Some(config.identity.clone());
    new_spec.lease_duration_seconds = Some(lease_seconds(config));
    new_spec.renew_time = Some(now_micro());
    if !ours {
        new_spec.acquire_time = Some(now_micro());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    lease.spec = Some(new_spec);
    // replace carries the resourceVersion we read: a concurrent writer makes this fail with 409 instead of both
    // replicas believing they lead.
    match api.replace(&config.lease_name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

/// Gives the lease up (holder cleared) so another replica can take it without waiting for it to expire.
async fn release(api: &Api<Lease>, config: &ControllerConfig) -> Result<(), kube::Error> {
    let mut lease = api.get(&config.lease_name).await?;
    if let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(config.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        api.replace(&config.lease_name, &PostParams::default(), &lease).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_leader_stops_writing_before_a_follower_may_take_over() {
        for seconds in [1, 4, 15, 60] {
            let lease = Duration::from_secs(seconds);
            assert!(renew_deadline(lease) < lease, "{lease:?}");
            assert!(!may_take_over(renew_deadline(lease), lease));
        }
    }

    #[test]
    fn expiry_is_judged_by_how_long_this_replica_saw_no_change() {
        let lease = Duration::from_secs(4);
        let start = Instant::now();
        let mut observed = Observed::default();
        // A holder whose clock is an hour behind (or ahead) looks no different: only changes count.
        assert_eq!(observed.see("a|renewed an hour ago|1".into(), start), Duration::ZERO);
        let later = start + Duration::from_secs(3);
        assert_eq!(observed.see("a|renewed an hour ago|2".into(), later), Duration::ZERO, "a renewal resets");
        let quiet = later + lease;
        assert!(!may_take_over(observed.see("a|renewed an hour ago|2".into(), quiet), lease), "within the margin");
        let past = quiet + takeover_margin(lease);
        assert!(may_take_over(observed.see("a|renewed an hour ago|2".into(), past), lease));
    }
}
