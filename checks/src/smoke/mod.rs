//! Smoke training: the JSON-lines protocol, its evaluation, and the reference trainer.
//!
//! A training container writes [`MetricLine`]s (see `docs/smoke-training.md`); [`parse_metrics`] reads
//! them from its output and [`evaluate`] turns them into a [`SmokeVerdict`] against [`SmokeThresholds`].
//! [`train`] is Rampart's own trainer in the same protocol. [`termination`] writes the verdict where
//! the controller can read it back from the Pod.

mod evaluate;
mod protocol;
pub mod termination;
#[cfg(feature = "trainer")]
mod trainer;

pub use evaluate::{CheckOutcome, SmokeStats, SmokeThresholds, SmokeVerdict, evaluate};
pub use protocol::{MalformedLine, MetricLine, ParsedMetrics, parse_metrics};
#[cfg(feature = "trainer")]
pub use trainer::{TrainConfig, TrainDevice, TrainError, TrainSummary, save_initial_weights, train};
