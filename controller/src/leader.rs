//! Leader election with a `coordination.k8s.io/v1` Lease: only the holder reconciles and writes. The holder renews
//! every `renew_interval`; another replica takes over once `lease_duration` passes without renewal. Losing the lease
//! (a failed renewal past its validity, or another holder) flips the flag to false at once, which stops writing.

use std::time::Duration;

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
    let mut last_renewal: Option<std::time::Instant> = None;
    loop {
        match try_acquire_or_renew(&api, &config).await {
            Ok(true) => {
                last_renewal = Some(std::time::Instant::now());
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
                last_renewal = None;
            }
            Err(err) => {
                tracing::warn!(error = %err, "leader lease renewal failed");
                let expired = last_renewal.is_none_or(|at| at.elapsed() >= config.lease_duration);
                if expired && *leader.borrow() {
                    tracing::warn!("the lease could not be renewed in time; stopping writes");
                    leader.send_replace(false);
                }
            }
        }
        let wait =
            if *leader.borrow() { config.renew_interval } else { config.renew_interval.min(Duration::from_secs(2)) };
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

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn lease_seconds(config: &ControllerConfig) -> i32 {
    i32::try_from(config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// One round: returns whether this replica holds the lease afterwards.
async fn try_acquire_or_renew(api: &Api<Lease>, config: &ControllerConfig) -> Result<bool, kube::Error> {
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
    let expired = match &spec.renew_time {
        Some(MicroTime(renewed)) => {
            let age = Timestamp::now().duration_since(*renewed);
            age.unsigned_abs() >= duration && age.is_positive()
        }
        None => true,
    };
    if !ours && !holder.is_empty() && !expired {
        return Ok(false);
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
