//! `crds/modelrollout.yaml` must be exactly what `crdgen` prints, and the examples must parse as typed rollouts.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use rampart_api::ModelRollout;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn committed_crd_matches_the_rust_types() {
    let committed = std::fs::read_to_string(repo().join("crds/modelrollout.yaml")).unwrap();
    let generated = rampart_api::crd_yaml().unwrap();
    assert!(
        committed == generated,
        "crds/modelrollout.yaml is stale: run `cargo run -q -p rampart-api --bin crdgen > crds/modelrollout.yaml`"
    );
}

#[test]
fn every_example_parses_as_a_typed_model_rollout() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let rollout: ModelRollout =
            serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("{} does not parse: {err}", path.display()));
        assert!(!rollout.spec.steps.is_empty(), "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 2, "expected at least two examples, found {seen}");
}
