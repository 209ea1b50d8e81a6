//! The Rampart operator: one idempotent state machine per ModelRollout.
