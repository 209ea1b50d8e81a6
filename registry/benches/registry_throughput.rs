//! Registry throughput on a throwaway Postgres: events appended per second (single, batched, 8 concurrent writers),
//! and latency of a model's history query and chain verification with 10,000 events. Prints figures.
//!
//! Run: `cargo bench -p rampart-registry` (needs the PostgreSQL server binaries, as the tests do).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rampart_registry::{EventKind, NewEvent, NewVersion, Registry};
use serde_json::json;

fn event(i: usize) -> NewEvent {
    NewEvent {
        kind: EventKind::Verdict,
        rollout_uid: None,
        payload: json!({"step_index": 3, "evaluation": i, "verdict": "continue",
                        "statistics": {"accuracy": {"canary": 0.953, "baseline": 0.951, "lower": -0.004, "p": 0.41}}}),
        idempotency_key: None,
    }
}

async fn model(registry: &Registry, name: &str) {
    registry
        .register_version(&NewVersion {
            model: name.into(),
            version: "v1".into(),
            uri: "s3://bench/v1".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            ..NewVersion::default()
        })
        .await
        .unwrap();
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index.min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: do a quick smoke run then.
    let quick = !std::env::args().any(|arg| arg == "--bench");
    let scale = if quick { 10 } else { 1 };
    let postgres = rampart_testenv::Postgres::start().unwrap();
    let url = postgres.new_database().unwrap();
    let registry = Registry::connect(&url).await.unwrap();

    model(&registry, "single").await;
    let n = 2_000 / scale;
    let start = Instant::now();
    for i in 0..n {
        registry.append_event("single", &event(i)).await.unwrap();
    }
    let single = n as f64 / start.elapsed().as_secs_f64();
    println!("append, one event per transaction:        {single:>9.0} events/s ({n} events)");

    model(&registry, "batched").await;
    let batches = 200 / scale;
    let batch: Vec<NewEvent> = (0..100).map(event).collect();
    let start = Instant::now();
    for _ in 0..batches {
        registry.append_events("batched", &batch).await.unwrap();
    }
    let batched = (batches * batch.len()) as f64 / start.elapsed().as_secs_f64();
    println!("append, 100 events per transaction:       {batched:>9.0} events/s ({} events)", batches * batch.len());

    model(&registry, "contended").await;
    let per_writer = 250 / scale;
    let start = Instant::now();
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let registry = registry.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    registry.append_event("contended", &event(i)).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let contended = (8 * per_writer) as f64 / start.elapsed().as_secs_f64();
    println!("append, 8 writers on one model:           {contended:>9.0} events/s ({} events)", 8 * per_writer);

    // History of a model with 10,000 events.
    model(&registry, "history").await;
    let chunk: Vec<NewEvent> = (0..1_000).map(event).collect();
    for _ in 0..10 {
        registry.append_events("history", &chunk).await.unwrap();
    }
    let rounds = 300 / scale;
    let mut page = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let rows = registry.model_history("history", 100, None).await.unwrap();
        page.push(start.elapsed());
        assert_eq!(rows.len(), 100);
    }
    let mut full = Vec::with_capacity(rounds / 5);
    for _ in 0..(rounds / 5).max(3) {
        let start = Instant::now();
        let rows = registry.model_history("history", 20_000, None).await.unwrap();
        full.push(start.elapsed());
        assert!(rows.len() >= 10_000);
    }
    println!(
        "history (10,001 events), newest 100 rows:  p50 {:.2} ms, p99 {:.2} ms ({} queries)",
        ms(percentile(&mut page, 0.50)),
        ms(percentile(&mut page, 0.99)),
        page.len()
    );
    println!(
        "history (10,001 events), all rows:         p50 {:.2} ms, p99 {:.2} ms ({} queries)",
        ms(percentile(&mut full, 0.50)),
        ms(percentile(&mut full, 0.99)),
        full.len()
    );
    let start = Instant::now();
    let report = registry.verify_chain("history").await.unwrap();
    assert!(report.is_intact());
    println!("verify_chain over {} events:            {:.1} ms", report.rows_checked, ms(start.elapsed()));
}
