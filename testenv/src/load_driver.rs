//! A load driver that plays the Gateway: it reads the traffic split from the API server (Gateway API HTTPRoute
//! backendRef weights, or a KServe InferenceService's `canaryTrafficPercent`) every few hundred milliseconds and sends
//! labelled prediction requests to the model servers behind each backend in that proportion, at a fixed rate, counting
//! what went where. [`LoadDriver::drop_backend`] plays a broken gateway that starves one backend whatever the weights
//! say (for sample-ratio-mismatch tests). Requests go only to loopback addresses.
//!
//! ```no_run
//! # async fn example(client: kube::Client, baseline: std::net::SocketAddr, canary: std::net::SocketAddr)
//! # -> Result<(), rampart_testenv::Error> {
//! use rampart_testenv::{LoadDriver, RouteSource};
//! let backends = [("fraud-baseline".to_string(), baseline), ("fraud-canary".to_string(), canary)].into();
//! let driver = LoadDriver::start(client, "my-test", RouteSource::http_route("fraud"), backends, 100.0).await?;
//! // ... the controller shifts weights ...
//! let counts = driver.counts();
//! println!("canary got {} requests", counts["fraud-canary"].sent);
//! driver.stop().await;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::Error;
use crate::model_server::{PredictRequest, PredictResponse};

/// Where the traffic split comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteSource {
    /// A Gateway API `HTTPRoute` (`gateway.networking.k8s.io/v1`): `spec.rules[*].backendRefs[*].{name, weight}`.
    /// Weights are relative within a rule; a missing weight is 1; a rule whose weights are all 0 (or that has no
    /// backends) sends nothing. Header matches (`Exact` only; a `RegularExpression` match never matches here) pick the
    /// rules a request can take, the rules with the most matching headers win as on a gateway (paths and methods are
    /// not played: every request is `POST /predict`), and among the winners each rule gets an equal share.
    HttpRoute {
        /// The route's name.
        name: String,
    },
    /// A KServe `InferenceService` (`serving.kserve.io/v1beta1`): `spec.predictor.canaryTrafficPercent` percent of
    /// the requests go to `canary`, the rest to `baseline`. A missing `canaryTrafficPercent` sends everything to
    /// `baseline`.
    InferenceService {
        /// The InferenceService's name.
        name: String,
        /// The backend (key of the backends map) serving the previous revision.
        baseline: String,
        /// The backend serving the canary revision.
        canary: String,
    },
    /// An Istio `VirtualService` (`networking.istio.io/v1alpha3`), the route Argo Rollouts' Istio traffic router
    /// writes: the first `spec.http[*]` entry without `match` conditions takes every request (as on a mesh, where the
    /// first matching entry wins and every request here is a plain `POST /predict`), split by its
    /// `route[*].{destination.host, weight}`. A missing weight is 100 when the entry has one destination, 0 otherwise.
    VirtualService {
        /// The VirtualService's name.
        name: String,
    },
}

impl RouteSource {
    /// Follows the HTTPRoute `name`.
    pub fn http_route(name: impl Into<String>) -> Self {
        Self::HttpRoute { name: name.into() }
    }

    /// Follows the InferenceService `name`, splitting between the backends `baseline` and `canary`.
    pub fn inference_service(name: impl Into<String>, baseline: impl Into<String>, canary: impl Into<String>) -> Self {
        Self::InferenceService { name: name.into(), baseline: baseline.into(), canary: canary.into() }
    }

    /// Follows the Istio VirtualService `name`; its destination hosts are the backends' names.
    pub fn virtual_service(name: impl Into<String>) -> Self {
        Self::VirtualService { name: name.into() }
    }

    fn describe(&self, namespace: &str) -> String {
        match self {
            Self::VirtualService { name } => format!("VirtualService {namespace}/{name}"),
            Self::HttpRoute { name } => format!("HTTPRoute {namespace}/{name}"),
            Self::InferenceService { name, .. } => format!("InferenceService {namespace}/{name}"),
        }
    }
}

/// Tuning of a [`LoadDriver`]; the defaults suit tests.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// How often the traffic split is re-read from the API server (default 250 ms).
    pub poll_interval: Duration,
    /// Most requests in flight at once (default 64); beyond it the driver waits, so the rate drops.
    pub max_in_flight: usize,
    /// Timeout of one request (default 5 s); a timed-out request counts as failed.
    pub request_timeout: Duration,
    /// Labels are drawn uniformly from `0..classes` (default 10; must match the model servers').
    pub classes: u32,
    /// Seed of the backend and label choices; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// A share of the requests that carry a header (a cohort), e.g. 20% with `x-tenant: internal`.
    pub cohort: Option<CohortTraffic>,
}

/// Requests of a cohort: `share` (0 to 1) of all requests carry the header `name: value`.
#[derive(Clone, Debug, PartialEq)]
pub struct CohortTraffic {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
    /// Share of the requests that carry it.
    pub share: f64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            max_in_flight: 64,
            request_timeout: Duration::from_secs(5),
            classes: 10,
            seed: None,
            cohort: None,
        }
    }
}

/// What the driver did for one backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendCounts {
    /// Requests sent to the backend's model server.
    pub sent: u64,
    /// Of those, answered with a 2xx status.
    pub succeeded: u64,
    /// Of those, answered with another status, or not at all (connection refused, timeout).
    pub failed: u64,
    /// Successful answers whose prediction was correct.
    pub correct: u64,
    /// Requests the weights gave this backend that were not sent: the backend is dropped
    /// ([`LoadDriver::drop_backend`]) or has no address in the backends map.
    pub dropped: u64,
    /// Of the requests sent, those that carried the cohort header ([`LoadOptions::cohort`]).
    pub cohort_sent: u64,
    /// Copies of other backends' requests sent here by a route's `RequestMirror` filter; their answers are
    /// dropped, as a gateway drops them.
    pub mirrored: u64,
}

/// The traffic split last read from the API server: per rule, each backend's weight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficSplit {
    /// One entry per rule; each lists `(backend name, weight)`.
    pub rules: Vec<Vec<(String, u64)>>,
    /// Per rule (same order), its matches' header conditions: the rule takes a request when every condition of one
    /// of its matches holds. Missing or empty: the rule takes every request.
    pub header_matches: Vec<Vec<Vec<HeaderCondition>>>,
    /// Per rule (same order), the backends its `RequestMirror` filters copy each request to.
    pub mirrors: Vec<Vec<String>>,
}

/// One header condition of a route match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderCondition {
    /// Header name, lower-cased.
    pub name: String,
    /// The exact value; `None` for a match type the driver does not play (never matches).
    pub exact: Option<String>,
}

impl TrafficSplit {
    /// The expected share of all requests without headers for each backend, in `[0, 1]`; the shares add up to 1
    /// minus the share that goes nowhere (rules whose weights are all 0).
    pub fn shares(&self) -> BTreeMap<String, f64> {
        self.shares_for(&[])
    }

    /// [`TrafficSplit::shares`] for requests that carry `headers` (`(name, value)`).
    pub fn shares_for(&self, headers: &[(String, String)]) -> BTreeMap<String, f64> {
        let mut shares = BTreeMap::new();
        let candidates = self.candidate_rules(headers);
        let rules = candidates.len() as f64;
        for rule in candidates.iter().map(|&i| &self.rules[i]) {
            let total: u64 = rule.iter().map(|(_, weight)| weight).sum();
            for (name, weight) in rule {
                let share = if total == 0 { 0.0 } else { *weight as f64 / total as f64 / rules };
                *shares.entry(name.clone()).or_insert(0.0) += share;
            }
        }
        shares
    }

    /// The rules a request with `headers` can take: of the rules with a match it satisfies, those whose satisfied
    /// match has the most header conditions (a gateway's precedence, paths and methods aside).
    fn candidate_rules(&self, headers: &[(String, String)]) -> Vec<usize> {
        let holds = |c: &HeaderCondition| {
            c.exact.as_ref().is_some_and(|want| {
                headers.iter().any(|(name, value)| name.eq_ignore_ascii_case(&c.name) && value == want)
            })
        };
        let specificity = |index: usize| -> Option<usize> {
            match self.header_matches.get(index) {
                None => Some(0),
                Some(matches) if matches.is_empty() => Some(0),
                Some(matches) => matches.iter().filter(|m| m.iter().all(holds)).map(Vec::len).max(),
            }
        };
        let scored: Vec<(usize, usize)> =
            (0..self.rules.len()).filter_map(|i| specificity(i).map(|score| (i, score))).collect();
        let best = scored.iter().map(|(_, score)| *score).max();
        scored.into_iter().filter(|(_, score)| Some(*score) == best).map(|(i, _)| i).collect()
    }

    /// Picks the backend for one request carrying `headers`, or `None` when the chosen rule sends nothing.
    #[cfg(test)]
    fn choose(&self, rng: &mut StdRng, headers: &[(String, String)]) -> Option<&str> {
        self.route(rng, headers).and_then(|(_, backend)| backend)
    }

    /// Picks the rule for one request carrying `headers` and its backend (`None` when the rule's weights send
    /// nothing); `None` when no rule takes the request.
    fn route(&self, rng: &mut StdRng, headers: &[(String, String)]) -> Option<(usize, Option<&str>)> {
        let candidates = self.candidate_rules(headers);
        if candidates.is_empty() {
            return None;
        }
        let index = candidates[rng.gen_range(0..candidates.len())];
        let rule = &self.rules[index];
        let total: u64 = rule.iter().map(|(_, weight)| weight).sum();
        if total == 0 {
            return Some((index, None));
        }
        let mut point = rng.gen_range(0..total);
        for (name, weight) in rule {
            if point < *weight {
                return Some((index, Some(name)));
            }
            point -= weight;
        }
        Some((index, None))
    }
}

/// State shared by the handle and the driver's tasks.
struct DriverState {
    backends: BTreeMap<String, SocketAddr>,
    split: Mutex<TrafficSplit>,
    counts: Mutex<BTreeMap<String, BackendCounts>>,
    unrouted: AtomicU64,
    dropped_backends: Mutex<BTreeSet<String>>,
    requests_per_second: Mutex<f64>,
    split_reads: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The model version of every answer users got, counted.
    answered_by: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl DriverState {
    fn count(&self, backend: &str, update: impl FnOnce(&mut BackendCounts)) {
        update(lock(&self.counts).entry(backend.to_string()).or_default());
    }
}

/// A running load driver on the current tokio runtime. Stops on [`LoadDriver::stop`] or when dropped.
pub struct LoadDriver {
    state: Arc<DriverState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl LoadDriver {
    /// Starts driving `requests_per_second` requests at the backends (`Service name -> model server address`, on
    /// loopback) as `route` in `namespace` splits them, with the default [`LoadOptions`]. Reads the split once before
    /// returning, so a route that does not exist (or a wrong name) fails here; one deleted later gets no traffic.
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        route: RouteSource,
        backends: BTreeMap<String, SocketAddr>,
        requests_per_second: f64,
    ) -> Result<Self, Error> {
        Self::start_with(client, namespace, route, backends, requests_per_second, LoadOptions::default()).await
    }

    /// [`LoadDriver::start`] with options.
    pub async fn start_with(
        client: kube::Client,
        namespace: &str,
        route: RouteSource,
        backends: BTreeMap<String, SocketAddr>,
        requests_per_second: f64,
        options: LoadOptions,
    ) -> Result<Self, Error> {
        check_rate(requests_per_second)?;
        if let Some((name, addr)) = backends.iter().find(|(_, addr)| !addr.ip().is_loopback()) {
            return Err(Error::Missing {
                what: format!("a loopback address for backend {name}"),
                hint: format!("the load driver only sends to 127.0.0.1 (or ::1), not {addr}"),
            });
        }
        if options.classes == 0 || options.max_in_flight == 0 {
            return Err(Error::Missing {
                what: "usable load driver options".into(),
                hint: "classes and max_in_flight must be at least 1".into(),
            });
        }
        let reader = SplitReader::new(client, namespace, route);
        let split = reader.read().await?.ok_or_else(|| Error::Kube {
            context: format!("starting the load driver for {}", reader.what),
            message: "not found; create it before starting the driver (a route deleted later just gets no traffic)"
                .into(),
        })?;
        let state = Arc::new(DriverState {
            counts: Mutex::new(backends.keys().map(|name| (name.clone(), BackendCounts::default())).collect()),
            backends,
            split: Mutex::new(split),
            unrouted: AtomicU64::new(0),
            dropped_backends: Mutex::new(BTreeSet::new()),
            requests_per_second: Mutex::new(requests_per_second),
            split_reads: AtomicU64::new(1),
            last_error: Mutex::new(None),
            answered_by: Mutex::new(BTreeMap::new()),
        });
        let (shutdown, stopped) = watch::channel(false);
        let poller = tokio::spawn(poll_split(reader, state.clone(), options.poll_interval, stopped.clone()));
        let sender = tokio::spawn(send_requests(state.clone(), options, stopped));
        Ok(Self { state, shutdown, tasks: vec![poller, sender] })
    }

    /// What was sent to each backend so far (every backend of the map appears, and any other name the route gave
    /// weight to).
    pub fn counts(&self) -> BTreeMap<String, BackendCounts> {
        lock(&self.state.counts).clone()
    }

    /// Requests sent to `backend` so far.
    pub fn sent_to(&self, backend: &str) -> u64 {
        lock(&self.state.counts).get(backend).map(|counts| counts.sent).unwrap_or(0)
    }

    /// Requests that went nowhere because the chosen rule's weights were all 0 (or the route is gone).
    pub fn unrouted(&self) -> u64 {
        self.state.unrouted.load(Ordering::Relaxed)
    }

    /// Returns the counts so far and starts counting from zero (handy around a weight change).
    pub fn reset_counts(&self) -> BTreeMap<String, BackendCounts> {
        self.state.unrouted.store(0, Ordering::Relaxed);
        let mut counts = lock(&self.state.counts);
        let fresh = counts.keys().map(|name| (name.clone(), BackendCounts::default())).collect();
        std::mem::replace(&mut *counts, fresh)
    }

    /// How many answers users got from each model version (the `version` of each successful answer): a version that
    /// only receives mirrored copies never appears here.
    pub fn answered_by(&self) -> BTreeMap<String, u64> {
        lock(&self.state.answered_by).clone()
    }

    /// The traffic split last read from the API server.
    pub fn split(&self) -> TrafficSplit {
        lock(&self.state.split).clone()
    }

    /// How many times the split has been read successfully (starts at 1).
    pub fn split_reads(&self) -> u64 {
        self.state.split_reads.load(Ordering::Relaxed)
    }

    /// The last error reading the split, if the latest read failed (the driver keeps the split it had).
    pub fn last_error(&self) -> Option<String> {
        lock(&self.state.last_error).clone()
    }

    /// Waits until the driver has read a split in which `backend`'s share of the requests is within 0.001 of `share`,
    /// or fails after `timeout` with the split it has.
    pub async fn wait_for_share(&self, backend: &str, share: f64, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let split = self.split();
            if (split.shares().get(backend).copied().unwrap_or(0.0) - share).abs() < 1e-3 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    name: format!("a {share} share for backend {backend} in the load driver"),
                    log_tail: format!("the driver's split is {split:?}; last error: {:?}", self.last_error()),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Plays a broken gateway: from now on nothing is sent to `backend`, whatever its weight (its share is counted as
    /// `dropped`).
    pub fn drop_backend(&self, backend: &str) {
        lock(&self.state.dropped_backends).insert(backend.to_string());
    }

    /// Undoes [`LoadDriver::drop_backend`].
    pub fn restore_backend(&self, backend: &str) {
        lock(&self.state.dropped_backends).remove(backend);
    }

    /// Changes the request rate (requests per second, > 0).
    pub fn set_rate(&self, requests_per_second: f64) -> Result<(), Error> {
        check_rate(requests_per_second)?;
        *lock(&self.state.requests_per_second) = requests_per_second;
        Ok(())
    }

    /// Stops sending, waits up to the request timeout for requests in flight, and returns the final counts.
    pub async fn stop(mut self) -> BTreeMap<String, BackendCounts> {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.counts()
    }
}

impl Drop for LoadDriver {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn check_rate(requests_per_second: f64) -> Result<(), Error> {
    if requests_per_second.is_finite() && requests_per_second > 0.0 && requests_per_second <= 100_000.0 {
        Ok(())
    } else {
        Err(Error::Missing {
            what: "a usable request rate".into(),
            hint: format!("requests per second must be in (0, 100000], not {requests_per_second}"),
        })
    }
}

/// Reads the traffic split of one route from the API server.
struct SplitReader {
    api: Api<DynamicObject>,
    route: RouteSource,
    what: String,
}

impl SplitReader {
    fn new(client: kube::Client, namespace: &str, route: RouteSource) -> Self {
        let (gvk, plural) = match &route {
            RouteSource::HttpRoute { .. } => {
                (GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"), "httproutes")
            }
            RouteSource::InferenceService { .. } => {
                (GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"), "inferenceservices")
            }
            RouteSource::VirtualService { .. } => {
                (GroupVersionKind::gvk("networking.istio.io", "v1alpha3", "VirtualService"), "virtualservices")
            }
        };
        let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
        let what = route.describe(namespace);
        Self { api: Api::namespaced_with(client, namespace, &resource), route, what }
    }

    /// The current split; `Ok(None)` when the object does not exist.
    async fn read(&self) -> Result<Option<TrafficSplit>, Error> {
        let name = match &self.route {
            RouteSource::HttpRoute { name }
            | RouteSource::InferenceService { name, .. }
            | RouteSource::VirtualService { name } => name,
        };
        let object = self
            .api
            .get_opt(name)
            .await
            .map_err(|err| Error::Kube { context: format!("reading {}", self.what), message: err.to_string() })?;
        let Some(object) = object else { return Ok(None) };
        let split = match &self.route {
            RouteSource::HttpRoute { .. } => http_route_split(&object.data),
            RouteSource::InferenceService { baseline, canary, .. } => {
                inference_service_split(&object.data, baseline, canary)
            }
            RouteSource::VirtualService { .. } => virtual_service_split(&object.data),
        };
        split.map(Some).map_err(|message| Error::Kube { context: format!("reading {}", self.what), message })
    }
}

/// `spec.rules[*].backendRefs[*].{name, weight}`; weight defaults to 1; `spec.rules[*].matches[*].headers`.
fn http_route_split(route: &serde_json::Value) -> Result<TrafficSplit, String> {
    let mut rules = Vec::new();
    let mut header_matches = Vec::new();
    let mut mirrors = Vec::new();
    let Some(spec_rules) = route["spec"]["rules"].as_array() else { return Ok(TrafficSplit::default()) };
    for (index, rule) in spec_rules.iter().enumerate() {
        let mut backends = Vec::new();
        for backend in rule["backendRefs"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let name = backend["name"]
                .as_str()
                .ok_or_else(|| format!("spec.rules[{index}] has a backendRef without a name: {backend}"))?;
            let weight = match &backend["weight"] {
                serde_json::Value::Null => 1,
                weight => weight
                    .as_u64()
                    .ok_or_else(|| format!("backendRef {name} in spec.rules[{index}] has weight {weight}"))?,
            };
            backends.push((name.to_string(), weight));
        }
        // A rule without backends still takes its share of the requests, and answers them with an error.
        rules.push(backends);
        let filters = rule["filters"].as_array().map(Vec::as_slice).unwrap_or_default();
        mirrors.push(
            filters
                .iter()
                .filter(|f| f["type"] == "RequestMirror")
                .filter_map(|f| f["requestMirror"]["backendRef"]["name"].as_str().map(str::to_string))
                .collect(),
        );
        let matches = rule["matches"].as_array().map(Vec::as_slice).unwrap_or_default();
        header_matches.push(
            matches
                .iter()
                .map(|m| {
                    let headers = m["headers"].as_array().map(Vec::as_slice).unwrap_or_default();
                    headers
                        .iter()
                        .map(|h| HeaderCondition {
                            name: h["name"].as_str().unwrap_or_default().to_ascii_lowercase(),
                            exact: match h["type"].as_str() {
                                None | Some("Exact") => h["value"].as_str().map(str::to_string),
                                Some(_) => None,
                            },
                        })
                        .collect()
                })
                .collect(),
        );
    }
    Ok(TrafficSplit { rules, header_matches, mirrors })
}

/// `spec.predictor.canaryTrafficPercent` to canary, the rest to baseline.
fn inference_service_split(service: &serde_json::Value, baseline: &str, canary: &str) -> Result<TrafficSplit, String> {
    let percent = match &service["spec"]["predictor"]["canaryTrafficPercent"] {
        serde_json::Value::Null => 0,
        value => value
            .as_u64()
            .filter(|percent| *percent <= 100)
            .ok_or_else(|| format!("spec.predictor.canaryTrafficPercent is {value}, not 0..=100"))?,
    };
    Ok(TrafficSplit {
        rules: vec![vec![(baseline.to_string(), 100 - percent), (canary.to_string(), percent)]],
        ..Default::default()
    })
}

/// The first `spec.http[*]` entry without `match`: its `route[*].{destination.host, weight}`.
fn virtual_service_split(service: &serde_json::Value) -> Result<TrafficSplit, String> {
    let entries = service["spec"]["http"].as_array().map(Vec::as_slice).unwrap_or_default();
    let Some((index, entry)) = entries.iter().enumerate().find(|(_, entry)| entry["match"].is_null()) else {
        return Ok(TrafficSplit::default());
    };
    let destinations = entry["route"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut backends = Vec::new();
    for destination in destinations {
        let host = destination["destination"]["host"]
            .as_str()
            .ok_or_else(|| format!("spec.http[{index}] has a route without destination.host: {destination}"))?;
        let weight = match &destination["weight"] {
            serde_json::Value::Null if destinations.len() == 1 => 100,
            serde_json::Value::Null => 0,
            weight => weight
                .as_u64()
                .ok_or_else(|| format!("destination {host} in spec.http[{index}] has weight {weight}"))?,
        };
        backends.push((host.to_string(), weight));
    }
    Ok(TrafficSplit { rules: vec![backends], ..Default::default() })
}

/// Re-reads the split every `interval` until shutdown. A route that disappeared sends nothing; other errors keep the
/// last split and are recorded.
async fn poll_split(
    reader: SplitReader,
    state: Arc<DriverState>,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        match reader.read().await {
            Ok(split) => {
                *lock(&state.split) = split.unwrap_or_default();
                *lock(&state.last_error) = None;
                state.split_reads.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => *lock(&state.last_error) = Some(err.to_string()),
        }
    }
}

/// Sends requests at the configured rate until shutdown, then waits for the ones in flight.
async fn send_requests(state: Arc<DriverState>, options: LoadOptions, mut stopped: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder().no_proxy().timeout(options.request_timeout).build() {
        Ok(client) => client,
        Err(err) => {
            *lock(&state.last_error) = Some(format!("building the HTTP client: {err}"));
            return;
        }
    };
    let mut rng = match options.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_entropy(),
    };
    let permits = Arc::new(Semaphore::new(options.max_in_flight));
    let mut in_flight = JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rate = *lock(&state.requests_per_second);
    let mut since = Instant::now();
    let mut issued: u64 = 0;
    'run: loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => break 'run,
        }
        while in_flight.try_join_next().is_some() {}
        let wanted = *lock(&state.requests_per_second);
        if wanted != rate {
            rate = wanted;
            since = Instant::now();
            issued = 0;
        }
        let due = (since.elapsed().as_secs_f64() * rate) as u64;
        // More than a second behind (the servers are slow and max_in_flight is reached): forget the backlog rather
        // than burst.
        let backlog_limit = rate.ceil() as u64;
        if due > issued + backlog_limit {
            issued = due - backlog_limit;
        }
        while issued < due {
            issued += 1;
            let split = lock(&state.split).clone();
            let headers: Vec<(String, String)> = match &options.cohort {
                Some(cohort) if rng.gen_bool(cohort.share.clamp(0.0, 1.0)) => {
                    vec![(cohort.name.clone(), cohort.value.clone())]
                }
                _ => Vec::new(),
            };
            let Some((rule, backend)) = split.route(&mut rng, &headers) else {
                state.unrouted.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let Some(backend) = backend.map(str::to_string) else {
                state.unrouted.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let address = state.backends.get(&backend).copied();
            let dropped = lock(&state.dropped_backends).contains(&backend);
            let Some(address) = address.filter(|_| !dropped) else {
                state.count(&backend, |counts| counts.dropped += 1);
                continue;
            };
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit,
                _ = stopped.wait_for(|stop| *stop) => break 'run,
            };
            let Ok(permit) = permit else { break 'run };
            let in_cohort = !headers.is_empty();
            state.count(&backend, |counts| {
                counts.sent += 1;
                counts.cohort_sent += u64::from(in_cohort);
            });
            let label = rng.gen_range(0..options.classes);
            let request_id = format!("{:016x}{:08x}", rng.r#gen::<u64>(), issued & 0xffff_ffff);
            let body = PredictRequest { label: Some(label), features: Vec::new() };
            let mut request =
                client.post(format!("http://{address}/predict")).header("x-request-id", &request_id).json(&body);
            for (name, value) in &headers {
                request = request.header(name.as_str(), value.as_str());
            }
            // The rule's RequestMirror filters: a copy of the request (same id, same headers) to each mirror backend,
            // whose answer nobody waits for or sees.
            for mirror in split.mirrors.get(rule).map(Vec::as_slice).unwrap_or_default() {
                let Some(address) = state.backends.get(mirror).copied() else { continue };
                state.count(mirror, |counts| counts.mirrored += 1);
                let mut copy =
                    client.post(format!("http://{address}/predict")).header("x-request-id", &request_id).json(&body);
                for (name, value) in &headers {
                    copy = copy.header(name.as_str(), value.as_str());
                }
                in_flight.spawn(async move {
                    let _ = copy.send().await;
                });
            }
            let state = state.clone();
            in_flight.spawn(async move {
                let outcome = send_one(request).await;
                if let Some((_, version)) = &outcome {
                    *lock(&state.answered_by).entry(version.clone()).or_insert(0) += 1;
                }
                state.count(&backend, |counts| match outcome {
                    Some((correct, _)) => {
                        counts.succeeded += 1;
                        counts.correct += u64::from(correct);
                    }
                    None => counts.failed += 1,
                });
                drop(permit);
            });
        }
    }
    let drain = async { while in_flight.join_next().await.is_some() {} };
    if tokio::time::timeout(options.request_timeout, drain).await.is_err() {
        in_flight.abort_all();
    }
}

/// Sends one request: `Some((correct, version that answered))` for a 2xx answer, `None` for anything else.
async fn send_one(request: reqwest::RequestBuilder) -> Option<(bool, String)> {
    let response = request.send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let answer: Option<PredictResponse> = response.json().await.ok();
    Some(match answer {
        Some(answer) => (answer.correct.unwrap_or(false), answer.version),
        None => (false, String::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(rules: serde_json::Value) -> serde_json::Value {
        serde_json::json!({ "spec": { "rules": rules } })
    }

    #[test]
    fn http_route_weights_are_relative_and_default_to_one() {
        let split = http_route_split(&route(serde_json::json!([
            { "backendRefs": [ { "name": "base", "weight": 3 }, { "name": "canary" } ] }
        ])))
        .unwrap();
        let shares = split.shares();
        assert!((shares["base"] - 0.75).abs() < 1e-9, "{shares:?}");
        assert!((shares["canary"] - 0.25).abs() < 1e-9, "{shares:?}");
    }

    #[test]
    fn all_zero_weights_send_nothing() {
        let split = http_route_split(&route(serde_json::json!([
            { "backendRefs": [ { "name": "base", "weight": 0 }, { "name": "canary", "weight": 0 } ] }
        ])))
        .unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        assert!((0..100).all(|_| split.choose(&mut rng, &[]).is_none()));
        assert_eq!(split.shares()["base"], 0.0);
    }

    #[test]
    fn a_negative_or_fractional_weight_is_reported() {
        let err = http_route_split(&route(serde_json::json!([
            { "backendRefs": [ { "name": "base", "weight": -1 } ] }
        ])))
        .unwrap_err();
        assert!(err.contains("base") && err.contains("-1"), "{err}");
    }

    #[test]
    fn several_rules_share_the_requests_equally() {
        let split = http_route_split(&route(serde_json::json!([
            { "backendRefs": [ { "name": "a", "weight": 1 } ] },
            { "backendRefs": [ { "name": "a", "weight": 1 }, { "name": "b", "weight": 1 } ] }
        ])))
        .unwrap();
        let shares = split.shares();
        assert!((shares["a"] - 0.75).abs() < 1e-9 && (shares["b"] - 0.25).abs() < 1e-9, "{shares:?}");
    }

    #[test]
    fn weighted_choice_follows_the_weights() {
        let split =
            TrafficSplit { rules: vec![vec![("base".into(), 80), ("canary".into(), 20)]], ..Default::default() };
        let mut rng = StdRng::seed_from_u64(7);
        let canary = (0..10_000).filter(|_| split.choose(&mut rng, &[]) == Some("canary")).count();
        assert!((1_800..2_200).contains(&canary), "{canary} of 10000 to the canary at weight 20%");
    }

    #[test]
    fn a_header_match_takes_the_requests_that_carry_the_header_and_only_those() {
        // What Rampart writes for a cohort: a copy of the baseline rule requiring the header, to the canary only.
        let split = http_route_split(&route(serde_json::json!([
            { "name": "rampart-cohort-0",
              "matches": [ { "path": { "type": "PathPrefix", "value": "/" },
                             "headers": [ { "type": "Exact", "name": "x-tenant", "value": "internal" } ] } ],
              "backendRefs": [ { "name": "canary", "weight": 1 } ] },
            { "matches": [ { "path": { "type": "PathPrefix", "value": "/" } } ],
              "backendRefs": [ { "name": "base", "weight": 100 }, { "name": "canary", "weight": 0 } ] }
        ])))
        .unwrap();
        assert_eq!(split.shares()["base"], 1.0);
        assert_eq!(split.shares().get("canary").copied().unwrap_or(0.0), 0.0);
        let cohort = [("X-Tenant".to_string(), "internal".to_string())];
        assert_eq!(split.shares_for(&cohort)["canary"], 1.0);
        let other_tenant = [("x-tenant".to_string(), "acme".to_string())];
        assert_eq!(split.shares_for(&other_tenant)["base"], 1.0);
        let mut rng = StdRng::seed_from_u64(3);
        assert!((0..200).all(|_| split.choose(&mut rng, &cohort) == Some("canary")));
        assert!((0..200).all(|_| split.choose(&mut rng, &[]) == Some("base")));
    }

    #[test]
    fn a_regular_expression_header_match_is_not_played_and_never_matches() {
        let split = http_route_split(&route(serde_json::json!([
            { "matches": [ { "headers": [ { "type": "RegularExpression", "name": "x-a", "value": ".*" } ] } ],
              "backendRefs": [ { "name": "canary" } ] },
            { "backendRefs": [ { "name": "base" } ] }
        ])))
        .unwrap();
        assert_eq!(split.shares_for(&[("x-a".into(), "1".into())])["base"], 1.0);
    }

    #[test]
    fn inference_service_percent_goes_to_the_canary_and_missing_means_zero() {
        let service = serde_json::json!({ "spec": { "predictor": { "canaryTrafficPercent": 30 } } });
        let shares = inference_service_split(&service, "b", "c").unwrap().shares();
        assert!((shares["c"] - 0.3).abs() < 1e-9 && (shares["b"] - 0.7).abs() < 1e-9, "{shares:?}");
        let unset = serde_json::json!({ "spec": { "predictor": {} } });
        assert_eq!(inference_service_split(&unset, "b", "c").unwrap().shares()["c"], 0.0);
        let wrong = serde_json::json!({ "spec": { "predictor": { "canaryTrafficPercent": 130 } } });
        assert!(inference_service_split(&wrong, "b", "c").is_err());
    }

    #[test]
    fn a_virtual_service_sends_everything_through_its_first_entry_without_match_conditions() {
        let service = serde_json::json!({"spec": {"http": [
            {"match": [{"headers": {"x-canary": {"exact": "1"}}}], "route": [{"destination": {"host": "c"}}]},
            {"name": "primary", "route": [
                {"destination": {"host": "s"}, "weight": 80},
                {"destination": {"host": "c"}, "weight": 20},
            ]},
        ]}});
        let shares = virtual_service_split(&service).unwrap().shares();
        assert_eq!((shares["s"], shares["c"]), (0.8, 0.2));
        let single = serde_json::json!({"spec": {"http": [{"route": [{"destination": {"host": "s"}}]}]}});
        assert_eq!(virtual_service_split(&single).unwrap().shares()["s"], 1.0);
        let wrong = serde_json::json!({"spec": {"http": [{"route": [{"destination": {"host": "s"}, "weight": -1}]}]}});
        assert!(virtual_service_split(&wrong).is_err());
    }
}
