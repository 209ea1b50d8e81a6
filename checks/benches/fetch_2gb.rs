//! Bench: a 2 GiB model of 8 files fetched and verified from the S3 server (SeaweedFS on loopback, started by
//! `rampart_testenv`), side by side in one run with a plain parallel download of the same objects that does not hash
//! (the same listing and ranged reads, `download_without_verifying_for_benchmarks`). Each download runs in a child
//! process (this binary with `--child`), so its peak RSS (VmHWM, sampled from /proc while it runs) is its own.
//!
//! `cargo bench -p rampart-checks --no-default-features --features fetch --bench fetch_2gb`
//! Sizes: `RAMPART_BENCH_FILES` (default 8) files of `RAMPART_BENCH_FILE_MIB` (default 256) MiB; `RAMPART_BENCH_ROUNDS`
//! (default 3) rounds, each running both downloads, in alternating order. Needs about three times the model's size of
//! free disk (the store, the signed copy while uploading, one download at a time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_checks::fetch::{FetchOptions, download_without_verifying_for_benchmarks, fetch_verified};
use rampart_checks::signing::{HashingOptions, PrivateKey, TrustedKey, hash_model, sign_manifest};

const MODEL: &str = "bench-model";

fn key() -> PrivateKey {
    PrivateKey::from_scalar_bytes(&[7u8; 32]).unwrap()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], &args[3], Path::new(&args[4]), Path::new(&args[5]));
        return;
    }
    // `cargo bench` passes `--bench`; anything else starting with `--` is not ours to run.
    parent();
}

/// One download in this process: `mode` is `verified` or `plain`; prints `seconds bytes`.
fn child(mode: &str, uri: &str, bundle: &Path, destination: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let bundle = std::fs::read(bundle).unwrap();
    let options = FetchOptions::new(vec![TrustedKey::from_private(&key(), "bench.pem")], bundle, MODEL, destination);
    let started = Instant::now();
    let report = runtime.block_on(async {
        match mode {
            "verified" => fetch_verified(uri, &options, Arc::new(|_| {})).await,
            _ => download_without_verifying_for_benchmarks(uri, &options).await,
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    match report {
        Ok(report) => println!("{seconds} {}", report.bytes),
        Err(err) => {
            eprintln!("{mode} download failed: {err}");
            std::process::exit(1);
        }
    }
}

/// Peak resident set (VmHWM) of a running process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Run {
    seconds: f64,
    bytes: u64,
    peak_rss_kib: u64,
}

fn run_child(mode: &str, uri: &str, bundle: &Path, destination: &Path, env: &[(String, String)]) -> Run {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--child", mode, uri])
        .arg(bundle)
        .arg(destination)
        .envs(env.iter().cloned())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{mode} download failed");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace();
    let seconds: f64 = fields.next().unwrap().parse().unwrap();
    let bytes: u64 = fields.next().unwrap().parse().unwrap();
    Run { seconds, bytes, peak_rss_kib: peak }
}

/// Fills `path` with `mib` MiB of pseudo-random bytes (xorshift; incompressible enough for a store that compresses).
fn write_file(path: &Path, mib: usize, seed: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

fn parent() {
    let files = env_usize("RAMPART_BENCH_FILES", 8);
    let file_mib = env_usize("RAMPART_BENCH_FILE_MIB", 256);
    let rounds = env_usize("RAMPART_BENCH_ROUNDS", 3);
    let s3 = rampart_testenv::S3Server::start().expect("the S3 server (run testenv/build first)");
    let bucket = format!("bench-{}", std::process::id());
    s3.create_bucket(&bucket).unwrap();

    let work = tempfile::tempdir().unwrap();
    let model_dir = work.path().join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    eprintln!("bench: writing {files} files of {file_mib} MiB and uploading them to the S3 server");
    for index in 0..files {
        let name = format!("model-{index:02}.safetensors");
        write_file(&model_dir.join(&name), file_mib, index as u64 + 1);
    }
    let options = HashingOptions::default();
    let mut manifest = hash_model(&model_dir, &options).unwrap();
    manifest.model_name = MODEL.into();
    let signed = sign_manifest(&manifest, &key(), &options).unwrap();
    let bundle = work.path().join("model.sig");
    std::fs::write(&bundle, &signed.bundle_json).unwrap();
    for index in 0..files {
        let name = format!("model-{index:02}.safetensors");
        let path = model_dir.join(&name);
        s3.put_file(&bucket, &format!("{MODEL}/{name}"), &path).unwrap();
        std::fs::remove_file(&path).unwrap();
    }
    let uri = format!("s3://{bucket}/{MODEL}");
    let env = s3.aws_env();

    let mut verified = Vec::new();
    let mut plain = Vec::new();
    for round in 0..rounds {
        let order: [&str; 2] = if round % 2 == 0 { ["verified", "plain"] } else { ["plain", "verified"] };
        for mode in order {
            let destination = work.path().join(format!("{mode}-{round}"));
            let run = run_child(mode, &uri, &bundle, &destination, &env);
            std::fs::remove_dir_all(&destination).ok();
            let mib_s = run.bytes as f64 / (1 << 20) as f64 / run.seconds;
            eprintln!(
                "bench: round {round} {mode:>8}: {:.1} MiB in {:.2}s = {mib_s:.0} MiB/s, peak RSS {:.1} MiB",
                run.bytes as f64 / (1 << 20) as f64,
                run.seconds,
                run.peak_rss_kib as f64 / 1024.0
            );
            if mode == "verified" { verified.push(run) } else { plain.push(run) }
        }
    }
    let throughput =
        |runs: &[Run]| -> Vec<f64> { runs.iter().map(|r| r.bytes as f64 / (1 << 20) as f64 / r.seconds).collect() };
    let verified_mib_s = median(&mut throughput(&verified));
    let plain_mib_s = median(&mut throughput(&plain));
    let peak = |runs: &[Run]| runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    let total_gib = (files * file_mib) as f64 / 1024.0;
    println!(
        "fetch bench: {files} files x {file_mib} MiB = {total_gib:.2} GiB from SeaweedFS S3 on loopback, {rounds} rounds"
    );
    println!(
        "  verified fetch (rampart-check fetch): median {verified_mib_s:.0} MiB/s, peak RSS {:.1} MiB",
        peak(&verified)
    );
    println!("  plain parallel download (no hashing): median {plain_mib_s:.0} MiB/s, peak RSS {:.1} MiB", peak(&plain));
    let mut paired: Vec<f64> = verified.iter().zip(&plain).map(|(v, p)| p.seconds / v.seconds).collect();
    println!(
        "  throughput ratio verified/plain: {:.2} of the medians, {:.2} median of the {rounds} paired rounds (goal >= 0.8)",
        verified_mib_s / plain_mib_s,
        median(&mut paired)
    );
    println!("  peak RSS of the verified fetch: {:.1} MiB (goal <= 64 MiB)", peak(&verified));
}
