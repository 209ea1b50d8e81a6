//! Checks a candidate model must pass before it gets traffic. Knows nothing of Kubernetes.
#![forbid(unsafe_code)]

pub mod artifact;
pub mod contract;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod signing;
pub mod smoke;
