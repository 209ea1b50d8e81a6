//! Prints the ModelRollout field reference as Markdown, generated from the CRD's OpenAPI schema:
//! `cargo run -q -p rampart-api --bin docgen > docs/modelrollout.md` (`api/tests/docs_drift.rs` fails on drift).

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

/// How a field sits in its parent: this decides the words after its type.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Required,
    Optional,
    /// One element of an array.
    Item,
}

fn main() -> std::process::ExitCode {
    match reference(&rampart_api::crd()) {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("docgen: {message}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The whole reference page.
fn reference(crd: &CustomResourceDefinition) -> Result<String, String> {
    let version = crd.spec.versions.first().ok_or("the CRD has no version")?;
    let root = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or("the CRD version has no openAPIV3Schema")?;
    let names = &crd.spec.names;
    let mut out = String::new();
    out.push_str("# ModelRollout reference\n\n");
    out.push_str(
        "<!-- Generated from the CRD schema by `cargo run -q -p rampart-api --bin docgen > docs/modelrollout.md`; \
         do not edit by hand (api/tests/docs_drift.rs fails when this file is stale). -->\n\n",
    );
    let _ = writeln!(
        out,
        "`apiVersion: {}/{}`, `kind: {}`, {} (plural `{}`, short name{} {}).",
        crd.spec.group,
        version.name,
        names.kind,
        crd.spec.scope.to_lowercase(),
        names.plural,
        if names.short_names.as_ref().is_some_and(|s| s.len() > 1) { "s" } else { "" },
        names.short_names.as_deref().unwrap_or_default().iter().map(|s| code(s)).collect::<Vec<_>>().join(", "),
    );
    if let Some(description) = &root.description {
        let _ = writeln!(out, "\n{}", description.trim());
    }
    if let Some(columns) = &version.additional_printer_columns {
        out.push_str(
            "\n`kubectl get modelrollouts` shows these columns:\n\n| column | type | from |\n| --- | --- | --- |\n",
        );
        for column in columns {
            let _ = writeln!(out, "| {} | {} | {} |", column.name, column.type_, code(&column.json_path));
        }
    }
    out.push_str(
        "\nEach field below is listed with its path, its type, whether it is required, its limits and the rules the \
         API server checks when a rollout is applied (CEL rules, with the message a rejected rollout gets). Fields \
         are in alphabetical order within their parent; `[]` stands for every element of a list. Defaults that \
         Rampart applies when a field is left out are given in the field's description.\n",
    );
    let properties = root.properties.as_ref().ok_or("the root schema has no properties")?;
    for (name, schema) in properties {
        let place = if is_required(root, name) { Place::Required } else { Place::Optional };
        let _ = writeln!(out, "\n## `{name}`\n");
        if name == "status" {
            out.push_str(
                "Written by the controller only; shown here for reading it (`kubectl get mro NAME -o yaml`).\n\n",
            );
        }
        describe(&mut out, schema, place);
        walk_children(&mut out, name, schema);
    }
    Ok(out)
}

/// Writes one field's section, then those of the fields inside it.
fn walk(out: &mut String, path: &str, schema: &JSONSchemaProps, place: Place) {
    let _ = writeln!(out, "\n### `{path}`\n");
    describe(out, schema, place);
    walk_children(out, path, schema);
}

fn walk_children(out: &mut String, path: &str, schema: &JSONSchemaProps) {
    if let Some(properties) = &schema.properties {
        for (name, child) in properties {
            let place = if is_required(schema, name) { Place::Required } else { Place::Optional };
            walk(out, &format!("{path}.{name}"), child, place);
        }
    }
    if let Some(item) = item_schema(schema)
        && (item.properties.is_some() || item.x_kubernetes_validations.is_some())
    {
        walk(out, &format!("{path}[]"), item, Place::Item);
    }
    if let Some(value) = map_value_schema(schema)
        && value.properties.is_some()
    {
        walk(out, &format!("{path}.<key>"), value, Place::Item);
    }
}

/// Type line, description, limits and rules of one field.
fn describe(out: &mut String, schema: &JSONSchemaProps, place: Place) {
    let presence = match place {
        Place::Required => "required",
        Place::Optional => "optional",
        Place::Item => "each element",
    };
    let _ = writeln!(out, "*{}*, {presence}.", type_name(schema));
    if let Some(description) = &schema.description {
        let _ = writeln!(out, "\n{}", description.trim());
    }
    let mut facts = limits(schema);
    // Limits of scalar elements and map values belong to this field's section: they get none of their own.
    for (whose, inner) in [("Each element", item_schema(schema)), ("Each value", map_value_schema(schema))] {
        if let Some(inner) = inner
            && inner.properties.is_none()
            && inner.x_kubernetes_validations.is_none()
        {
            facts.extend(
                limits(inner)
                    .into_iter()
                    .map(|fact| format!("{whose}: {}", lowercase_first(&fact).replacen(": ", " ", 1))),
            );
        }
    }
    let rules = schema.x_kubernetes_validations.as_deref().unwrap_or_default();
    if facts.is_empty() && rules.is_empty() {
        return;
    }
    out.push('\n');
    for fact in facts {
        let _ = writeln!(out, "- {fact}");
    }
    for rule in rules {
        match &rule.message {
            Some(message) => {
                let _ = writeln!(out, "- Rule {}: rejected with \"{}\"", code(&rule.rule), message.trim());
            }
            None => {
                let _ = writeln!(out, "- Rule {}", code(&rule.rule));
            }
        }
    }
}

/// The schema's limits and defaults, one phrase each.
fn limits(schema: &JSONSchemaProps) -> Vec<String> {
    let mut facts = Vec::new();
    if let Some(default) = &schema.default {
        facts.push(format!("Default: {}", code(&default.0.to_string())));
    }
    if let Some(values) = &schema.enum_ {
        let values: Vec<String> =
            values.iter().map(|v| code(&v.0.as_str().map_or_else(|| v.0.to_string(), str::to_string))).collect();
        facts.push(format!("One of: {}", values.join(", ")));
    }
    if let Some(range) = range("Length", schema.min_length, schema.max_length, "characters") {
        facts.push(range);
    }
    if let Some(range) = range("Elements", schema.min_items, schema.max_items, "") {
        facts.push(range);
    }
    if let Some(range) = range("Entries", schema.min_properties, schema.max_properties, "") {
        facts.push(range);
    }
    let exclusive_min = schema.exclusive_minimum == Some(true);
    let exclusive_max = schema.exclusive_maximum == Some(true);
    match (schema.minimum, schema.maximum) {
        (Some(min), Some(max)) if !exclusive_min && !exclusive_max => facts.push(format!("Range: {min} to {max}")),
        (min, max) => {
            if let Some(min) = min {
                facts.push(if exclusive_min { format!("Above {min}") } else { format!("At least {min}") });
            }
            if let Some(max) = max {
                facts.push(if exclusive_max { format!("Below {max}") } else { format!("At most {max}") });
            }
        }
    }
    if let Some(step) = schema.multiple_of {
        facts.push(format!("A multiple of {step}"));
    }
    if let Some(pattern) = &schema.pattern {
        facts.push(format!("Pattern: {}", code(pattern)));
    }
    if schema.unique_items == Some(true) {
        facts.push("Elements must be unique".into());
    }
    if let Some(list_type) = &schema.x_kubernetes_list_type {
        let keys = schema.x_kubernetes_list_map_keys.as_deref().unwrap_or_default();
        if keys.is_empty() {
            facts.push(format!("List type: {list_type}"));
        } else {
            let keys: Vec<String> = keys.iter().map(|k| code(k)).collect();
            facts.push(format!("List type: {list_type}, one element per {}", keys.join(" and ")));
        }
    }
    if let Some(map_type) = &schema.x_kubernetes_map_type {
        facts.push(format!("Map type: {map_type}"));
    }
    facts
}

fn range(what: &str, min: Option<i64>, max: Option<i64>, unit: &str) -> Option<String> {
    let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
    match (min, max) {
        (Some(min), Some(max)) => Some(format!("{what}: {min} to {max}{unit}")),
        (Some(min), None) => Some(format!("{what}: at least {min}{unit}")),
        (None, Some(max)) => Some(format!("{what}: at most {max}{unit}")),
        (None, None) => None,
    }
}

/// The field's type in words: `string`, `integer (int32)`, `array of object`, `map of string to string`, ...
fn type_name(schema: &JSONSchemaProps) -> String {
    if schema.x_kubernetes_int_or_string == Some(true) {
        return "integer or string".into();
    }
    match schema.type_.as_deref() {
        Some("array") => match item_schema(schema) {
            Some(item) => format!("array of {}", type_name(item)),
            None => "array".into(),
        },
        Some("object") => match (&schema.additional_properties, map_value_schema(schema)) {
            (_, Some(value)) => format!("map of string to {}", type_name(value)),
            (Some(JSONSchemaPropsOrBool::Bool(true)), None) => "map of string to any".into(),
            _ => "object".into(),
        },
        Some(other) => match &schema.format {
            Some(format) => format!("{other} ({format})"),
            None => other.to_string(),
        },
        None if schema.x_kubernetes_preserve_unknown_fields == Some(true) => "any (not checked)".into(),
        None => "any".into(),
    }
}

fn item_schema(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.items.as_ref()? {
        JSONSchemaPropsOrArray::Schema(item) => Some(item),
        JSONSchemaPropsOrArray::Schemas(items) => items.first(),
    }
}

fn map_value_schema(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.additional_properties.as_ref()? {
        JSONSchemaPropsOrBool::Schema(value) => Some(value),
        JSONSchemaPropsOrBool::Bool(_) => None,
    }
}

fn is_required(parent: &JSONSchemaProps, name: &str) -> bool {
    parent.required.as_ref().is_some_and(|required| required.iter().any(|r| r == name))
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_lowercase().chain(chars).collect())
}

/// `text` as a Markdown code span, safe for text that itself holds backticks.
fn code(text: &str) -> String {
    if text.contains('`') { format!("`` {text} ``") } else { format!("`{text}`") }
}
