//! Rampart's statistics engine: canary-versus-baseline verdicts that stay valid under continuous monitoring.
//! Pure functions over counts and histograms; no I/O, no async.
