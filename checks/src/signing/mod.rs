//! Artifact digests and OpenSSF model-signing bundles (DSSE over an in-toto statement).
