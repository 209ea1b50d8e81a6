//! `docs/modelrollout.md` must be exactly what `docgen` prints from the CRD schema, as `crd_drift.rs` pins the CRD,
//! and it must carry every admission rule's message.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

fn generated() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_docgen")).output().unwrap();
    assert!(output.status.success(), "docgen failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn committed_field_reference_matches_the_crd_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("docs/modelrollout.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated(),
        "docs/modelrollout.md is stale: run `cargo run -q -p rampart-api --bin docgen > docs/modelrollout.md`"
    );
}

fn rule_messages(schema: &JSONSchemaProps, into: &mut Vec<String>) {
    for rule in schema.x_kubernetes_validations.iter().flatten() {
        into.push(rule.message.clone().unwrap_or_else(|| rule.rule.clone()));
    }
    for child in schema.properties.iter().flat_map(|p| p.values()) {
        rule_messages(child, into);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(item)) = &schema.items {
        rule_messages(item, into);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(value)) = &schema.additional_properties {
        rule_messages(value, into);
    }
}

#[test]
fn field_reference_shows_every_admission_rule_and_the_main_fields() {
    let text = generated();
    let crd = rampart_api::crd();
    let root = crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
    let mut messages = Vec::new();
    rule_messages(root, &mut messages);
    assert!(messages.len() >= 20, "expected the CEL rules of the CRD, found {}", messages.len());
    for message in messages {
        assert!(text.contains(message.trim()), "the reference lacks the rule message {message:?}");
    }
    for path in ["### `spec.candidate.artifact.digest`", "### `spec.steps[].setWeight`", "### `status.phase`"] {
        assert!(text.contains(path), "the reference lacks {path}");
    }
}
