//! Matches the baseline and candidate response of each request id and says whether their predictions agree.
//!
//! This is the whole pairing decision as plain data and a clock passed in (no I/O, no locks), so every rule is
//! tested directly. Memory is bounded twice: at most `max_pending` unpaired responses (the oldest is evicted) and at
//! most `max_models` distinct (namespace, model) series. Waiting responses are kept in arrival order, which is also
//! deadline order (one timeout for all), so expiry and eviction look only at the front: O(log n) per event.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{EventType, InvalidReason, ShadowEvent, Side};
use crate::prediction::{Compare, Prediction};

/// Limits and comparison rule of a [`Pairer`].
#[derive(Debug, Clone, PartialEq)]
pub struct PairerConfig {
    /// Most unpaired responses held; inserting one more evicts the oldest.
    pub max_pending: usize,
    /// How long a response waits for its partner before it is counted unpaired.
    pub pair_timeout: Duration,
    /// Most distinct (namespace, model) series; events of further models are refused.
    pub max_models: usize,
    /// How predictions are judged equal.
    pub compare: Compare,
}

impl Default for PairerConfig {
    fn default() -> Self {
        PairerConfig {
            max_pending: 100_000,
            pair_timeout: Duration::from_secs(30),
            max_models: 1000,
            compare: Compare::Top1,
        }
    }
}

/// Index of a (namespace, model) series, stable for the life of the [`Pairer`].
pub type ModelId = usize;

/// The labels of a model series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelKey {
    pub namespace: String,
    pub model: String,
}

/// What happened to one observed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The event's model series; `None` only when it was refused for `too_many_models`.
    pub model: Option<ModelId>,
    /// True the first time this model was seen (metrics create its series then).
    pub new_model: bool,
    pub result: Observed,
    /// Responses that stopped waiting during this call (expired, or evicted to make room).
    pub dropped: Vec<Unpaired>,
}

/// The effect of an event on pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// A logged request: counted only.
    Request,
    /// A response now waiting for its partner.
    Waiting,
    /// A response that completed a pair.
    Paired { agreed: bool },
    /// Refused.
    Invalid(InvalidReason),
}

/// A response that was never paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpaired {
    pub model: ModelId,
    /// The side whose response waited in vain (the other side never answered in time).
    pub side: Side,
    pub cause: DropCause,
}

/// Why a response stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// `pair_timeout` passed.
    Timeout,
    /// `max_pending` was reached and it was the oldest.
    Evicted,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PairKey {
    model: ModelId,
    id: Arc<str>,
}

#[derive(Debug)]
struct Waiting {
    side: Side,
    prediction: Prediction,
    /// `None` when `now + pair_timeout` is beyond what the clock can represent: it then waits until evicted.
    deadline: Option<Instant>,
    seq: u64,
}

/// Pairs responses by (namespace, model, request id).
#[derive(Debug)]
pub struct Pairer {
    config: PairerConfig,
    models: Vec<ModelKey>,
    model_ids: HashMap<String, HashMap<String, ModelId>>,
    waiting: HashMap<PairKey, Waiting>,
    /// Arrival order of waiting responses (sequence number → key); the first entry is the oldest.
    arrivals: BTreeMap<u64, PairKey>,
    next_seq: u64,
}

impl Pairer {
    pub fn new(config: PairerConfig) -> Self {
        Pairer {
            config,
            models: Vec::new(),
            model_ids: HashMap::new(),
            waiting: HashMap::new(),
            arrivals: BTreeMap::new(),
            next_seq: 0,
        }
    }

    pub fn config(&self) -> &PairerConfig {
        &self.config
    }

    /// Responses currently waiting for their partner.
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }

    /// The labels of a model series returned in an [`Outcome`].
    pub fn model(&self, id: ModelId) -> Option<&ModelKey> {
        self.models.get(id)
    }

    /// Takes one event at time `now` (a monotonic clock; pass non-decreasing values). Expired responses are swept
    /// first and reported in [`Outcome::dropped`].
    pub fn observe(&mut self, event: ShadowEvent, now: Instant) -> Outcome {
        let mut dropped = self.expire(now);
        let (model, new_model) = match self.model_id(&event.namespace, &event.model) {
            Some(found) => found,
            None => {
                return Outcome {
                    model: None,
                    new_model: false,
                    result: Observed::Invalid(InvalidReason::TooManyModels),
                    dropped,
                };
            }
        };
        let result = match (event.kind, event.prediction) {
            (EventType::Request, _) => Observed::Request,
            (EventType::Response, None) => Observed::Invalid(InvalidReason::NoPrediction),
            (EventType::Response, Some(prediction)) => {
                let key = PairKey { model, id: Arc::from(event.id) };
                self.pair(key, event.side, prediction, now, &mut dropped)
            }
        };
        Outcome { model: Some(model), new_model, result, dropped }
    }

    fn pair(
        &mut self,
        key: PairKey,
        side: Side,
        prediction: Prediction,
        now: Instant,
        dropped: &mut Vec<Unpaired>,
    ) -> Observed {
        match self.waiting.get(&key) {
            Some(partner) if partner.side == side => Observed::Invalid(InvalidReason::Duplicate),
            Some(_) => {
                let Some(partner) = self.waiting.remove(&key) else {
                    return Observed::Invalid(InvalidReason::Duplicate);
                };
                self.arrivals.remove(&partner.seq);
                Observed::Paired { agreed: partner.prediction.agrees_with(&prediction, self.config.compare) }
            }
            None => {
                let seq = self.next_seq;
                self.next_seq += 1;
                let deadline = now.checked_add(self.config.pair_timeout);
                self.arrivals.insert(seq, key.clone());
                self.waiting.insert(key, Waiting { side, prediction, deadline, seq });
                while self.waiting.len() > self.config.max_pending.max(1) {
                    match self.drop_oldest(DropCause::Evicted) {
                        Some(unpaired) => dropped.push(unpaired),
                        None => break,
                    }
                }
                Observed::Waiting
            }
        }
    }

    /// Drops every response whose partner did not arrive before `now`, each counted for its own side.
    pub fn expire(&mut self, now: Instant) -> Vec<Unpaired> {
        let mut dropped = Vec::new();
        while let Some((_, key)) = self.arrivals.first_key_value() {
            match self.waiting.get(key) {
                Some(Waiting { deadline: None, .. }) => break,
                Some(Waiting { deadline: Some(deadline), .. }) if *deadline > now => break,
                _ => {}
            }
            match self.drop_oldest(DropCause::Timeout) {
                Some(unpaired) => dropped.push(unpaired),
                None => continue,
            }
        }
        dropped
    }

    /// Removes the oldest waiting response; `None` if the arrival entry was stale (then it is removed too).
    fn drop_oldest(&mut self, cause: DropCause) -> Option<Unpaired> {
        let (_, key) = self.arrivals.pop_first()?;
        let waiting = self.waiting.remove(&key)?;
        Some(Unpaired { model: key.model, side: waiting.side, cause })
    }

    /// The series of (namespace, model), registering it if there is room; `None` when `max_models` is reached.
    fn model_id(&mut self, namespace: &str, model: &str) -> Option<(ModelId, bool)> {
        if let Some(id) = self.model_ids.get(namespace).and_then(|models| models.get(model)) {
            return Some((*id, false));
        }
        if self.models.len() >= self.config.max_models {
            return None;
        }
        let id = self.models.len();
        self.models.push(ModelKey { namespace: namespace.to_string(), model: model.to_string() });
        self.model_ids.entry(namespace.to_string()).or_default().insert(model.to_string(), id);
        Some((id, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(id: &str, side: Side, prediction: Prediction) -> ShadowEvent {
        ShadowEvent {
            id: id.to_string(),
            namespace: "ml".into(),
            model: "fraud".into(),
            side,
            kind: EventType::Response,
            prediction: Some(prediction),
        }
    }

    #[derive(Debug, Default, PartialEq)]
    struct Tally {
        pairs: u64,
        agreements: u64,
        unpaired_baseline: u64,
        unpaired_candidate: u64,
        evicted: u64,
        invalid: Vec<InvalidReason>,
    }

    impl Tally {
        fn add(&mut self, outcome: Outcome) {
            self.add_dropped(&outcome.dropped);
            match outcome.result {
                Observed::Paired { agreed } => {
                    self.pairs += 1;
                    self.agreements += u64::from(agreed);
                }
                Observed::Invalid(reason) => self.invalid.push(reason),
                Observed::Request | Observed::Waiting => {}
            }
        }

        fn add_dropped(&mut self, dropped: &[Unpaired]) {
            for unpaired in dropped {
                match unpaired.side {
                    Side::Baseline => self.unpaired_baseline += 1,
                    Side::Candidate => self.unpaired_candidate += 1,
                }
                self.evicted += u64::from(unpaired.cause == DropCause::Evicted);
            }
        }
    }

    #[test]
    fn identical_predictions_make_an_agreeing_pair() {
        let mut pairer = Pairer::new(PairerConfig::default());
        let now = Instant::now();
        let first = pairer.observe(response("a", Side::Baseline, Prediction::Class(2)), now);
        assert_eq!(first.result, Observed::Waiting);
        assert!(first.new_model);
        assert_eq!(pairer.pending(), 1);
        let second = pairer.observe(response("a", Side::Candidate, Prediction::Class(2)), now);
        assert_eq!(second.result, Observed::Paired { agreed: true });
        assert!(!second.new_model);
        assert_eq!(pairer.pending(), 0);
        assert_eq!(pairer.model(0), Some(&ModelKey { namespace: "ml".into(), model: "fraud".into() }));
    }

    #[test]
    fn three_differing_of_a_hundred_give_ninety_seven_agreements() {
        let mut pairer = Pairer::new(PairerConfig::default());
        let now = Instant::now();
        let mut tally = Tally::default();
        for i in 0..100 {
            let id = format!("req-{i}");
            let candidate = if i % 33 == 1 { Prediction::Class(0) } else { Prediction::Class(1) };
            // Candidate first for half of them: arrival order must not matter.
            if i % 2 == 0 {
                tally.add(pairer.observe(response(&id, Side::Baseline, Prediction::Class(1)), now));
                tally.add(pairer.observe(response(&id, Side::Candidate, candidate), now));
            } else {
                tally.add(pairer.observe(response(&id, Side::Candidate, candidate), now));
                tally.add(pairer.observe(response(&id, Side::Baseline, Prediction::Class(1)), now));
            }
        }
        assert_eq!((tally.pairs, tally.agreements), (100, 97));
        assert_eq!(pairer.pending(), 0);
    }

    #[test]
    fn responses_without_partner_time_out_and_count_for_their_own_side() {
        let config = PairerConfig { pair_timeout: Duration::from_secs(30), ..PairerConfig::default() };
        let mut pairer = Pairer::new(config);
        let start = Instant::now();
        let mut tally = Tally::default();
        // 10 requests; the candidate dropped 2 mirrored copies, and one candidate answered a request the baseline
        // log lost.
        for i in 0..10 {
            let id = format!("r{i}");
            tally.add(pairer.observe(response(&id, Side::Baseline, Prediction::Class(1)), start));
            if i >= 2 {
                tally.add(pairer.observe(response(&id, Side::Candidate, Prediction::Class(1)), start));
            }
        }
        tally.add(pairer.observe(response("lonely", Side::Candidate, Prediction::Class(1)), start));
        assert_eq!(pairer.pending(), 3);
        tally.add_dropped(&pairer.expire(start + Duration::from_secs(29)));
        assert_eq!(pairer.pending(), 3, "nothing expires before the timeout");
        tally.add_dropped(&pairer.expire(start + Duration::from_secs(30)));
        assert_eq!(pairer.pending(), 0);
        assert_eq!((tally.pairs, tally.unpaired_baseline, tally.unpaired_candidate), (8, 2, 1));
        assert_eq!(tally.evicted, 0);
    }

    #[test]
    fn a_partner_after_the_timeout_starts_a_new_wait_instead_of_pairing() {
        let mut pairer = Pairer::new(PairerConfig { pair_timeout: Duration::from_secs(5), ..PairerConfig::default() });
        let start = Instant::now();
        pairer.observe(response("late", Side::Baseline, Prediction::Class(1)), start);
        let outcome =
            pairer.observe(response("late", Side::Candidate, Prediction::Class(1)), start + Duration::from_secs(6));
        assert_eq!(outcome.result, Observed::Waiting);
        assert_eq!(outcome.dropped, vec![Unpaired { model: 0, side: Side::Baseline, cause: DropCause::Timeout }]);
    }

    #[test]
    fn the_oldest_response_is_evicted_at_max_pending() {
        let mut pairer = Pairer::new(PairerConfig { max_pending: 3, ..PairerConfig::default() });
        let now = Instant::now();
        let mut tally = Tally::default();
        for i in 0..5 {
            tally.add(pairer.observe(response(&format!("b{i}"), Side::Baseline, Prediction::Class(0)), now));
        }
        assert_eq!(pairer.pending(), 3);
        assert_eq!((tally.evicted, tally.unpaired_baseline), (2, 2));
        // b0 and b1 were evicted, so their candidates now wait; b4 still pairs.
        let outcome = pairer.observe(response("b4", Side::Candidate, Prediction::Class(0)), now);
        assert_eq!(outcome.result, Observed::Paired { agreed: true });
        let outcome = pairer.observe(response("b0", Side::Candidate, Prediction::Class(0)), now);
        assert_eq!(outcome.result, Observed::Waiting);
    }

    #[test]
    fn a_second_response_from_the_same_side_is_a_duplicate_and_the_first_is_kept() {
        let mut pairer = Pairer::new(PairerConfig::default());
        let now = Instant::now();
        pairer.observe(response("d", Side::Baseline, Prediction::Class(1)), now);
        let dup = pairer.observe(response("d", Side::Baseline, Prediction::Class(0)), now);
        assert_eq!(dup.result, Observed::Invalid(InvalidReason::Duplicate));
        assert_eq!(pairer.pending(), 1);
        let pair = pairer.observe(response("d", Side::Candidate, Prediction::Class(1)), now);
        assert_eq!(pair.result, Observed::Paired { agreed: true });
    }

    #[test]
    fn same_id_in_different_models_does_not_pair() {
        let mut pairer = Pairer::new(PairerConfig::default());
        let now = Instant::now();
        pairer.observe(response("x", Side::Baseline, Prediction::Class(1)), now);
        let mut other = response("x", Side::Candidate, Prediction::Class(1));
        other.model = "other".into();
        let outcome = pairer.observe(other, now);
        assert_eq!((outcome.result, outcome.model, outcome.new_model), (Observed::Waiting, Some(1), true));
    }

    #[test]
    fn requests_are_counted_and_responses_without_prediction_refused() {
        let mut pairer = Pairer::new(PairerConfig::default());
        let now = Instant::now();
        let mut request = response("q", Side::Baseline, Prediction::Class(1));
        request.kind = EventType::Request;
        request.prediction = None;
        assert_eq!(pairer.observe(request, now).result, Observed::Request);
        let mut empty = response("q", Side::Baseline, Prediction::Class(1));
        empty.prediction = None;
        assert_eq!(pairer.observe(empty, now).result, Observed::Invalid(InvalidReason::NoPrediction));
        assert_eq!(pairer.pending(), 0);
    }

    #[test]
    fn models_beyond_max_models_are_refused() {
        let mut pairer = Pairer::new(PairerConfig { max_models: 2, ..PairerConfig::default() });
        let now = Instant::now();
        for (i, expected) in [(0, Some(0)), (1, Some(1)), (2, None)] {
            let mut event = response("x", Side::Baseline, Prediction::Class(1));
            event.model = format!("m{i}");
            let outcome = pairer.observe(event, now);
            assert_eq!(outcome.model, expected);
            if expected.is_none() {
                assert_eq!(outcome.result, Observed::Invalid(InvalidReason::TooManyModels));
            }
        }
        let mut known = response("y", Side::Baseline, Prediction::Class(1));
        known.model = "m1".into();
        assert_eq!(pairer.observe(known, now).model, Some(1), "known models keep working");
    }

    #[test]
    fn numeric_comparison_is_used_when_configured() {
        let compare = Compare::Numeric { tolerance: 0.1, relative: false };
        let mut pairer = Pairer::new(PairerConfig { compare, ..PairerConfig::default() });
        let now = Instant::now();
        pairer.observe(response("n", Side::Baseline, Prediction::Number(1.0)), now);
        let outcome = pairer.observe(response("n", Side::Candidate, Prediction::Number(1.05)), now);
        assert_eq!(outcome.result, Observed::Paired { agreed: true });
    }

    #[test]
    fn a_timeout_beyond_the_clock_range_never_expires_instead_of_panicking() {
        let mut pairer = Pairer::new(PairerConfig { pair_timeout: Duration::MAX, ..PairerConfig::default() });
        let now = Instant::now();
        assert_eq!(
            pairer.observe(response("far", Side::Baseline, Prediction::Class(1)), now).result,
            Observed::Waiting
        );
        assert!(pairer.expire(now + Duration::from_secs(86_400 * 365)).is_empty());
        assert_eq!(pairer.pending(), 1);
    }

    #[test]
    fn expiry_after_pairing_leaves_nothing_behind() {
        let mut pairer = Pairer::new(PairerConfig { pair_timeout: Duration::from_secs(1), ..PairerConfig::default() });
        let now = Instant::now();
        for i in 0..1000 {
            let id = i.to_string();
            pairer.observe(response(&id, Side::Baseline, Prediction::Class(1)), now);
            pairer.observe(response(&id, Side::Candidate, Prediction::Class(1)), now);
        }
        assert!(pairer.expire(now + Duration::from_secs(2)).is_empty());
        assert_eq!((pairer.pending(), pairer.arrivals.len()), (0, 0));
    }
}
