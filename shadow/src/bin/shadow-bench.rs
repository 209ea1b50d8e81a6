//! `shadow-bench`: measures what rampart-shadow costs at a given rate of mirrored requests, over real loopback HTTP.
//!
//! The server runs in this process on its own runtime whose threads are named `shadow-server`, so its CPU time is
//! read per thread from /proc and not mixed with the load generator's. Phase 1 drives baseline and candidate
//! responses (binary-mode CloudEvents, keep-alive connections, a few concurrent clients) at `--rate` pairs/s;
//! phase 2 leaves `--unpaired` baseline responses without partner to show the memory held at the pending bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rampart_shadow::client::Connection;
use rampart_shadow::{ShadowConfig, ShadowServer};

const SERVER_THREAD: &str = "shadow-server";

/// Drives rampart-shadow with paired CloudEvents and reports throughput, CPU per 1,000 pairs and peak memory.
#[derive(Debug, Parser)]
#[command(name = "shadow-bench")]
struct Args {
    /// Target pairs per second (each pair = one baseline + one candidate response); 0 = as fast as possible.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Length of the paced phase in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive connections (client tasks).
    #[arg(long, default_value_t = 8)]
    clients: u64,
    /// Also send the two logged *request* events per pair, as KServe's logger does (4 events per pair).
    #[arg(long)]
    with_requests: bool,
    /// Baseline-only responses left waiting at the end (memory at the pending bound).
    #[arg(long, default_value_t = 100_000)]
    unpaired: u64,
    /// Worker threads of the server runtime.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let defaults = ShadowConfig::default();
    // Room for every deliberately unpaired response, and never less than the production default.
    let max_pending = usize::try_from(args.unpaired).unwrap_or(usize::MAX).max(defaults.max_pending);
    let config = ShadowConfig { max_pending, ..defaults };
    let server = server_rt.block_on(ShadowServer::spawn(config))?;
    let addr = server.addr();
    println!(
        "shadow-bench: server at {}, {} client connections, {} server threads",
        server.url(),
        args.clients,
        args.server_threads
    );
    let ticks = clock_ticks();

    // Phase 1: paced pairs.
    let cpu_before = (server_cpu_ticks(), process_cpu_ticks());
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (latencies, errors) = client_rt.block_on(drive_pairs(addr, &args, Arc::clone(&sent)))?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = (server_cpu_ticks(), process_cpu_ticks());
    let pairs = sent.load(Ordering::Relaxed);
    let metrics = client_rt.block_on(scrape(addr))?;
    let paired = series(&metrics, "rampart_shadow_pairs_total{namespace=\"bench\",model=\"fraud\"}");
    let agreed = series(&metrics, "rampart_shadow_agreements_total{namespace=\"bench\",model=\"fraud\"}");
    let server_cpu = (cpu_after.0 - cpu_before.0) as f64 / ticks;
    let process_cpu = (cpu_after.1 - cpu_before.1) as f64 / ticks;
    let events_per_pair = if args.with_requests { 4 } else { 2 };
    let hwm_after_pairs = proc_status_kib("VmHWM");

    println!(
        "\n== paced phase: target {} pairs/s for {} s, {} events per pair ==",
        args.rate, args.seconds, events_per_pair
    );
    println!(
        "pairs sent           {pairs} in {elapsed:.2} s = {:.0} pairs/s ({:.0} events/s)",
        pairs as f64 / elapsed,
        (pairs * events_per_pair) as f64 / elapsed
    );
    println!("pairs counted        {paired} (agreements {agreed}, {:.1}%)", 100.0 * agreed / paired.max(1.0));
    println!("HTTP errors          {errors}");
    if paired != pairs as f64 {
        println!("WARNING: {pairs} pairs sent but {paired} counted");
    }
    let mut sorted = latencies;
    sorted.sort_unstable();
    println!(
        "event latency        p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.99),
        percentile(&sorted, 1.0)
    );
    println!(
        "server CPU           {server_cpu:.2} s = {:.3} CPU-s per 1,000 pairs ({:.0}% of one core)",
        1000.0 * server_cpu / pairs.max(1) as f64,
        100.0 * server_cpu / elapsed
    );
    println!(
        "process CPU (+load)  {process_cpu:.2} s = {:.3} CPU-s per 1,000 pairs",
        1000.0 * process_cpu / pairs.max(1) as f64
    );
    println!("peak RSS after pairs {:.1} MiB", hwm_after_pairs as f64 / 1024.0);

    // Phase 2: baseline responses whose candidate never answers.
    let started = Instant::now();
    client_rt.block_on(drive_unpaired(addr, &args))?;
    let fill = started.elapsed().as_secs_f64();
    let metrics = client_rt.block_on(scrape(addr))?;
    let pending = series(&metrics, "rampart_shadow_pending");
    println!("\n== unpaired phase: {} baseline-only responses ==", args.unpaired);
    println!("sent in              {fill:.2} s ({:.0} events/s unpaced)", args.unpaired as f64 / fill);
    println!("pending (gauge)      {pending}");
    println!("RSS now              {:.1} MiB", proc_status_kib("VmRSS") as f64 / 1024.0);
    println!("peak RSS (VmHWM)     {:.1} MiB", proc_status_kib("VmHWM") as f64 / 1024.0);
    println!(
        "held by pending      ~{:.0} bytes per unpaired response (VmHWM growth / pending)",
        (proc_status_kib("VmHWM") - hwm_after_pairs) as f64 * 1024.0 / pending.max(1.0)
    );

    server_rt.block_on(server.shutdown());
    Ok(())
}

fn headers<'a>(id: &'a str, kind: &'a str, endpoint: &'a str) -> [(&'a str, &'a str); 8] {
    [
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-type", kind),
        ("ce-source", "http://fraud-predictor.bench.svc/"),
        ("ce-inferenceservicename", "fraud"),
        ("ce-namespace", "bench"),
        ("ce-endpoint", endpoint),
        ("content-type", "application/json"),
    ]
}

const RESPONSE: &str = "org.kubeflow.serving.inference.response";
const REQUEST: &str = "org.kubeflow.serving.inference.request";
const REQUEST_BODY: &[u8] = br#"{"instances": [[0.3, 1.2, 5.1, 0.0, 2.2, 7.5, 0.1, 0.9]]}"#;
const AGREE: &[u8] = br#"{"predictions": [[0.01, 0.02, 0.81, 0.03, 0.02, 0.05, 0.01, 0.02, 0.02, 0.01]]}"#;
const CANDIDATE: &[u8] = br#"{"predictions": [[0.02, 0.01, 0.77, 0.04, 0.03, 0.06, 0.02, 0.02, 0.02, 0.01]]}"#;
const DIFFER: &[u8] = br#"{"predictions": [[0.02, 0.01, 0.30, 0.04, 0.03, 0.45, 0.02, 0.02, 0.10, 0.01]]}"#;

type Latencies = Vec<u64>;

async fn drive_pairs(
    addr: std::net::SocketAddr,
    args: &Args,
    sent: Arc<AtomicU64>,
) -> Result<(Latencies, u64), Box<dyn std::error::Error>> {
    let mut tasks = Vec::new();
    let deadline = Duration::from_secs(args.seconds);
    let per_client_rate = args.rate as f64 / args.clients as f64;
    for client in 0..args.clients {
        let sent = Arc::clone(&sent);
        let with_requests = args.with_requests;
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(addr).await?;
            let started = Instant::now();
            let mut latencies = Vec::with_capacity(200_000);
            let mut errors = 0u64;
            let mut n = 0u64;
            loop {
                let elapsed = started.elapsed();
                if elapsed >= deadline {
                    break;
                }
                if per_client_rate > 0.0 && n as f64 >= elapsed.as_secs_f64() * per_client_rate {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let id = format!("c{client}-{n}");
                // About 3% of candidate answers pick another class.
                let candidate = if n % 33 == 7 { DIFFER } else { CANDIDATE };
                let mut events: Vec<(&str, &str, &[u8])> = Vec::with_capacity(4);
                if with_requests {
                    events.push((REQUEST, "default", REQUEST_BODY));
                    events.push((REQUEST, "canary", REQUEST_BODY));
                }
                events.push((RESPONSE, "default", AGREE));
                events.push((RESPONSE, "canary", candidate));
                for (kind, endpoint, body) in events {
                    let t = Instant::now();
                    let reply = conn.post("/", &headers(&id, kind, endpoint), body).await?;
                    latencies.push(t.elapsed().as_micros() as u64);
                    if reply.status != 202 {
                        errors += 1;
                    }
                }
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, std::io::Error>((latencies, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, task_errors) = task.await??;
        all.extend(latencies);
        errors += task_errors;
    }
    Ok((all, errors))
}

async fn drive_unpaired(addr: std::net::SocketAddr, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let count = args.unpaired / args.clients + u64::from(client < args.unpaired % args.clients);
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(addr).await?;
            for n in 0..count {
                // Realistic request ids (36-character UUID-like), as KServe would log.
                let id = format!("{:08x}-0000-4000-8000-{:012x}", client, n);
                conn.post("/", &headers(&id, RESPONSE, "default"), AGREE).await?;
            }
            Ok::<_, std::io::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn scrape(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut conn = Connection::open(addr).await?;
    Ok(conn.get("/metrics").await?.text())
}

fn series(text: &str, name_and_labels: &str) -> f64 {
    let prefix = format!("{name_and_labels} ");
    text.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(f64::NAN)
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)] as f64
}

/// utime + stime (fields 14 and 15) of a /proc stat line, counted after the parenthesised command name.
fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let mut fields = stat.get(close + 2..)?.split(' ');
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime + stime))
}

fn server_cpu_ticks() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| stat_ticks(&stat))
        .filter(|(name, _)| name.starts_with(SERVER_THREAD))
        .map(|(_, ticks)| ticks)
        .sum()
}

fn process_cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat").ok().and_then(|stat| stat_ticks(&stat)).map_or(0, |(_, t)| t)
}

/// Clock ticks per second for /proc CPU times (`getconf CLK_TCK`, 100 on Linux unless configured otherwise).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(field)?.strip_prefix(':')?;
                rest.trim().trim_end_matches("kB").trim().parse().ok()
            })
        })
        .unwrap_or(0)
}
