//! The Prometheus counters the controller's shadow analysis queries; their names and labels are an interface.
//!
//! Counter handles of each (namespace, model) series are created once, when the pairer first sees the model, and
//! kept by model index, so recording an event is a few atomic adds with no label hashing or allocation. All series
//! of a model (both sides, both types) exist from then on at 0, so `rate()` and ratios work from the first scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::event::{EventType, InvalidReason, Side};
use crate::pairer::{DropCause, ModelKey, Observed, Outcome, Pairer, Unpaired};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModelLabels {
    namespace: String,
    model: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SideLabels {
    namespace: String,
    model: String,
    side: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    namespace: String,
    model: String,
    side: &'static str,
    r#type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The registered metric families; cheap to clone (handles share their values).
#[derive(Debug, Clone, Default)]
pub struct MetricFamilies {
    pairs: Family<ModelLabels, Counter>,
    agreements: Family<ModelLabels, Counter>,
    unpaired: Family<SideLabels, Counter>,
    events: Family<EventLabels, Counter>,
    invalid: Family<ReasonLabels, Counter>,
    evicted: Counter,
    pending: Gauge,
}

impl MetricFamilies {
    /// Creates the families and registers them under their exported names.
    pub fn register(registry: &mut Registry) -> Self {
        let families = MetricFamilies::default();
        registry.register(
            "rampart_shadow_pairs",
            "Requests whose baseline and candidate responses were both received and compared",
            families.pairs.clone(),
        );
        registry.register(
            "rampart_shadow_agreements",
            "Compared pairs whose predictions were equal under the configured comparison",
            families.agreements.clone(),
        );
        registry.register(
            "rampart_shadow_unpaired",
            "Responses dropped without a partner (timeout or eviction), by the side that did answer",
            families.unpaired.clone(),
        );
        registry.register(
            "rampart_shadow_events",
            "Well-formed logged requests and responses received, by side and type",
            families.events.clone(),
        );
        registry.register("rampart_shadow_invalid_events", "Events refused, by reason", families.invalid.clone());
        registry.register(
            "rampart_shadow_evicted",
            "Unpaired responses evicted because --max-pending was reached (also counted in unpaired)",
            families.evicted.clone(),
        );
        registry.register(
            "rampart_shadow_pending",
            "Responses currently waiting for their partner",
            families.pending.clone(),
        );
        for reason in InvalidReason::ALL {
            let _ = families.invalid.get_or_create(&ReasonLabels { reason: reason.as_str() });
        }
        families
    }

    fn model_counters(&self, key: &ModelKey) -> ModelCounters {
        let labels = ModelLabels { namespace: key.namespace.clone(), model: key.model.clone() };
        let side_labels =
            |side: Side| SideLabels { namespace: key.namespace.clone(), model: key.model.clone(), side: side.as_str() };
        let event = |side: Side, kind: EventType| {
            self.events.get_or_create_owned(&EventLabels {
                namespace: key.namespace.clone(),
                model: key.model.clone(),
                side: side.as_str(),
                r#type: kind.as_str(),
            })
        };
        ModelCounters {
            pairs: self.pairs.get_or_create_owned(&labels),
            agreements: self.agreements.get_or_create_owned(&labels),
            unpaired: [
                self.unpaired.get_or_create_owned(&side_labels(Side::Baseline)),
                self.unpaired.get_or_create_owned(&side_labels(Side::Candidate)),
            ],
            events: [
                [event(Side::Baseline, EventType::Request), event(Side::Baseline, EventType::Response)],
                [event(Side::Candidate, EventType::Request), event(Side::Candidate, EventType::Response)],
            ],
        }
    }

    /// Counts an event refused before it reached the pairer (bad envelope, too large).
    pub fn invalid(&self, reason: InvalidReason) {
        self.invalid.get_or_create(&ReasonLabels { reason: reason.as_str() }).inc();
    }
}

/// Handles of one model's series, indexed by side and type.
#[derive(Debug, Clone)]
struct ModelCounters {
    pairs: Counter,
    agreements: Counter,
    unpaired: [Counter; 2],
    events: [[Counter; 2]; 2],
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Baseline => 0,
        Side::Candidate => 1,
    }
}

fn type_index(kind: EventType) -> usize {
    match kind {
        EventType::Request => 0,
        EventType::Response => 1,
    }
}

/// Turns pairer outcomes into counter increments; lives next to the [`Pairer`] under one lock.
#[derive(Debug, Clone)]
pub struct Recorder {
    families: MetricFamilies,
    models: Vec<ModelCounters>,
}

impl Recorder {
    pub fn new(families: MetricFamilies) -> Self {
        Recorder { families, models: Vec::new() }
    }

    pub fn families(&self) -> &MetricFamilies {
        &self.families
    }

    /// Records one observed event (of `side` and `kind`) and everything that was dropped meanwhile.
    pub fn record(&mut self, pairer: &Pairer, side: Side, kind: EventType, outcome: &Outcome) {
        self.ensure_models(pairer);
        if let Some(counters) = outcome.model.and_then(|id| self.models.get(id)) {
            counters.events[side_index(side)][type_index(kind)].inc();
            match outcome.result {
                Observed::Paired { agreed } => {
                    counters.pairs.inc();
                    if agreed {
                        counters.agreements.inc();
                    }
                }
                Observed::Invalid(reason) => self.families.invalid(reason),
                Observed::Request | Observed::Waiting => {}
            }
        } else if let Observed::Invalid(reason) = outcome.result {
            self.families.invalid(reason);
        }
        self.record_dropped(pairer, &outcome.dropped);
    }

    /// Records responses dropped by a periodic sweep.
    pub fn record_dropped(&mut self, pairer: &Pairer, dropped: &[Unpaired]) {
        self.ensure_models(pairer);
        for unpaired in dropped {
            if let Some(counters) = self.models.get(unpaired.model) {
                counters.unpaired[side_index(unpaired.side)].inc();
            }
            if unpaired.cause == DropCause::Evicted {
                self.families.evicted.inc();
            }
        }
        self.families.pending.set(i64::try_from(pairer.pending()).unwrap_or(i64::MAX));
    }

    fn ensure_models(&mut self, pairer: &Pairer) {
        while let Some(key) = pairer.model(self.models.len()) {
            let counters = self.families.model_counters(key);
            self.models.push(counters);
        }
    }
}
