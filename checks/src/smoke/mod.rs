//! Smoke training: the JSON-lines protocol, its evaluation, and the reference trainer.
