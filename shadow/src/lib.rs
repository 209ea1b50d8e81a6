//! rampart-shadow: pairs the baseline's and the candidate's response to each mirrored request and counts how often
//! their predictions agree, so the controller can judge a shadow step from Prometheus counters.
//!
//! The pairing rules live in [`Pairer`] (pure, clock passed in); [`EventParser`] reads KServe inference-logger
//! CloudEvents; [`ShadowServer`] puts both behind HTTP with `/metrics`. See `docs/shadow-pairing.md`.

#![forbid(unsafe_code)]

pub mod client;
mod error;
pub mod event;
pub mod metrics;
pub mod pairer;
pub mod prediction;
mod server;

pub use error::Error;
pub use event::{EventParser, EventType, InvalidEvent, InvalidReason, ShadowEvent, Side};
pub use pairer::{DropCause, ModelId, ModelKey, Observed, Outcome, Pairer, PairerConfig, Unpaired};
pub use prediction::{Compare, Prediction, PredictionPath};
pub use server::{ShadowConfig, ShadowServer};
