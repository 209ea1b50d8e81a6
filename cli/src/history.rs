//! `rampart history`: from the registry, a model's rollouts with their outcome, its rollbacks with the reason and the
//! statistics behind them, and the production version; or (`--rollout NS/NAME`) one rollout's full event trail.
//! Both check the model's hash-chained event log and exit 1 when it was tampered with.

use std::process::ExitCode;

use rampart_registry::{ChainReport, EventRecord, RollbackRecord, RolloutRecord, VersionRecord};
use serde_json::{Value, json};

use crate::args::{GlobalArgs, HistoryArgs, HistoryFormat};
use crate::database::Database;
use crate::error::CliError;
use crate::render::table;

pub async fn run(args: &HistoryArgs, global: &GlobalArgs) -> Result<ExitCode, CliError> {
    match (&args.model, &args.rollout) {
        (_, Some(rollout)) => rollout_trail(args, global, rollout).await,
        (Some(model), None) => model_history(args, global, model).await,
        (None, None) => Err(CliError::input(
            "name a model, or a rollout with --rollout NS/NAME",
            Some("for example `rampart history fraud-detector`".into()),
        )),
    }
}

async fn model_history(args: &HistoryArgs, global: &GlobalArgs, model: &str) -> Result<ExitCode, CliError> {
    let database = Database::connect(global).await?;
    let registry = &database.registry;
    let rollouts = registry.rollouts(model).await.map_err(|err| database.error(err))?;
    let rollbacks = registry.rollbacks(model).await.map_err(|err| database.error(err))?;
    let production = registry.production(model).await.map_err(|err| database.error(err))?;
    let chain = registry.verify_chain(model).await.map_err(|err| database.error(err))?;
    let shown: Vec<&RolloutRecord> = rollouts.iter().take(args.limit).collect();
    let rollback_of = |uid: &str| rollbacks.iter().find(|rollback| rollback.rollout.uid == uid);
    match args.format {
        HistoryFormat::Json => {
            let items: Vec<Value> = shown
                .iter()
                .map(|rollout| {
                    let mut value = rollout_json(rollout);
                    if let (Some(object), Some(rollback)) = (value.as_object_mut(), rollback_of(&rollout.uid)) {
                        object.insert("rollback".into(), rollback_json(rollback));
                    }
                    value
                })
                .collect();
            print_json(&json!({
                "model": model,
                "production": production.as_ref().map(version_json),
                "rollouts": items,
                "totalRollouts": rollouts.len(),
                "chain": chain_json(&chain),
            }));
        }
        HistoryFormat::Table => {
            match &production {
                Some(version) => println!("model {model}: production is {} ({})", version.version, version.digest),
                None => println!("model {model}: no production version yet"),
            }
            println!();
            if shown.is_empty() {
                println!("no rollouts recorded");
            } else {
                let rows: Vec<Vec<String>> = shown
                    .iter()
                    .map(|rollout| {
                        vec![
                            // A retried rollout (rampart retry) is one row per attempt.
                            match rollout.attempt {
                                1 => format!("{}/{}", rollout.namespace, rollout.name),
                                n => format!("{}/{} (attempt {n})", rollout.namespace, rollout.name),
                            },
                            rollout.candidate_version.clone(),
                            rollout.baseline_version.clone().unwrap_or_else(|| "-".into()),
                            rollout.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                            rollout.outcome.map(|o| o.to_string()).unwrap_or_else(|| "in progress".into()),
                            rollout.outcome_reason.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print!("{}", table(&["ROLLOUT", "CANDIDATE", "BASELINE", "STARTED (UTC)", "OUTCOME", "REASON"], &rows));
                if rollouts.len() > shown.len() {
                    println!("({} older rollout(s) not shown; raise --limit)", rollouts.len() - shown.len());
                }
            }
            let shown_rollbacks: Vec<&RollbackRecord> =
                shown.iter().filter_map(|rollout| rollback_of(&rollout.uid)).collect();
            if !shown_rollbacks.is_empty() {
                println!();
                println!("rollbacks:");
                for rollback in shown_rollbacks {
                    println!(
                        "  {}/{} ({}) at {}: {}",
                        rollback.rollout.namespace,
                        rollback.rollout.name,
                        rollback.rollout.candidate_version,
                        rollback.decided_at.format("%Y-%m-%d %H:%M:%S"),
                        rollback.reason
                    );
                    for line in statistics_lines(&rollback.statistics) {
                        println!("    {line}");
                    }
                }
            }
            println!();
            println!("{}", chain_text(&chain));
        }
    }
    Ok(chain_exit(&chain))
}

async fn rollout_trail(args: &HistoryArgs, global: &GlobalArgs, id: &str) -> Result<ExitCode, CliError> {
    let (namespace, name) = match id.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => (ns, name),
        _ => {
            return Err(CliError::input(
                format!("--rollout takes NAMESPACE/NAME, got `{id}`"),
                Some("for example --rollout ml/fraud-detector-v8".into()),
            ));
        }
    };
    let database = Database::connect(global).await?;
    let uids: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.uid, m.name FROM rollouts r JOIN models m ON m.id = r.model_id
         WHERE r.namespace = $1 AND r.name = $2 ORDER BY r.started_at DESC, r.id DESC",
    )
    .bind(namespace)
    .bind(name)
    .fetch_all(database.registry.pool())
    .await
    .map_err(|err| database.error(err.into()))?;
    let Some((uid, model)) = uids.first().cloned() else {
        return Err(CliError::registry(
            format!("no rollout {namespace}/{name} is recorded in the registry at {}", database.location),
            Some("the controller records a rollout when it starts; `rampart history MODEL` lists recorded ones".into()),
        ));
    };
    let registry = &database.registry;
    let rollout = registry.rollout(&uid).await.map_err(|err| database.error(err))?;
    let events = registry.rollout_events(&uid).await.map_err(|err| database.error(err))?;
    let chain = registry.verify_chain(&model).await.map_err(|err| database.error(err))?;
    match args.format {
        HistoryFormat::Json => print_json(&json!({
            "rollout": rollout_json(&rollout),
            "events": events.iter().map(event_json).collect::<Vec<_>>(),
            "earlierRollouts": uids.iter().skip(1).map(|(uid, _)| uid).collect::<Vec<_>>(),
            "chain": chain_json(&chain),
        })),
        HistoryFormat::Table => {
            println!(
                "rollout {namespace}/{name} (uid {uid}): model {model} {} -> {}, started {}, {}",
                rollout.baseline_version.as_deref().unwrap_or("(no baseline)"),
                rollout.candidate_version,
                rollout.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                match (&rollout.outcome, &rollout.outcome_reason) {
                    (Some(outcome), Some(reason)) => format!("{outcome}: {reason}"),
                    (Some(outcome), None) => outcome.to_string(),
                    (None, _) => "in progress".into(),
                }
            );
            if uids.len() > 1 {
                println!("({} earlier rollout(s) had the same name; showing the newest)", uids.len() - 1);
            }
            println!();
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|event| {
                    vec![
                        event.seq.to_string(),
                        event.occurred_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                        event.kind.as_str().to_string(),
                        shorten(&event.payload.to_string(), 160),
                    ]
                })
                .collect();
            print!("{}", table(&["SEQ", "TIME (UTC)", "EVENT", "DETAILS"], &rows));
            println!();
            println!("{}", chain_text(&chain));
        }
    }
    Ok(chain_exit(&chain))
}

fn chain_exit(chain: &ChainReport) -> ExitCode {
    if chain.is_intact() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn chain_text(chain: &ChainReport) -> String {
    match &chain.first_break {
        None => format!(
            "event log of {}: hash chain intact ({} event(s) checked, head {} #{})",
            chain.model,
            chain.rows_checked,
            shorten(&chain.head_hash, 12),
            chain.head_seq
        ),
        Some(broken) => format!(
            "event log of {}: HASH CHAIN BROKEN at event #{} ({:?}): {}\n  the registry's history was altered; \
             investigate before trusting it",
            chain.model, broken.seq, broken.kind, broken.reason
        ),
    }
}

pub(crate) fn chain_json(chain: &ChainReport) -> Value {
    json!({
        "intact": chain.is_intact(),
        "rowsChecked": chain.rows_checked,
        "headSeq": chain.head_seq,
        "headHash": chain.head_hash,
        "firstBreak": chain.first_break,
    })
}

pub(crate) fn rollout_json(rollout: &RolloutRecord) -> Value {
    json!({
        "namespace": rollout.namespace,
        "name": rollout.name,
        "uid": rollout.uid,
        "attempt": rollout.attempt,
        "candidate": rollout.candidate_version,
        "baseline": rollout.baseline_version,
        "startedAt": rollout.started_at,
        "finishedAt": rollout.finished_at,
        "outcome": rollout.outcome,
        "reason": rollout.outcome_reason,
    })
}

pub(crate) fn rollback_json(rollback: &RollbackRecord) -> Value {
    json!({"reason": rollback.reason, "statistics": rollback.statistics, "decidedAt": rollback.decided_at})
}

pub(crate) fn version_json(version: &VersionRecord) -> Value {
    json!({
        "version": version.version,
        "digest": version.digest,
        "uri": version.uri,
        "signerKeyId": version.signer_key_id,
        "verifiedAt": version.verified_at,
    })
}

fn event_json(event: &EventRecord) -> Value {
    json!({
        "seq": event.seq,
        "kind": event.kind.as_str(),
        "occurredAt": event.occurred_at,
        "payload": event.payload,
        "hash": event.hash,
        "prevHash": event.prev_hash,
    })
}

/// The statistics behind a rollback, one line per metric when they have that shape, else compact JSON.
fn statistics_lines(statistics: &Value) -> Vec<String> {
    let metrics = statistics.get("metrics").and_then(Value::as_array);
    match metrics {
        Some(metrics) if !metrics.is_empty() => metrics
            .iter()
            .map(|metric| {
                let field = |key: &str| match metric.get(key) {
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Null) | None => "-".into(),
                    Some(other) => other.to_string(),
                };
                format!(
                    "{}: {} (canary {}, baseline {}, effect {}, interval {})",
                    field("name"),
                    field("verdict"),
                    field("canary"),
                    field("baseline"),
                    field("effect"),
                    field("interval")
                )
            })
            .collect(),
        _ if statistics.is_null() => Vec::new(),
        _ => vec![format!("statistics: {}", shorten(&statistics.to_string(), 200))],
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}
