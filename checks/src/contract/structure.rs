//! Structural validity of an ONNX model, by the rules ONNX's own checker applies, before any comparison.
//!
//! A model that breaks them (no operator set imported, a node reading a value nothing produced before it,
//! two writers of one name, an IR version that cannot be) does not load in any runtime, so comparing its
//! contract would only hide that. [`validate_model`] lists every such problem in plain words; the
//! contract check refuses the file (exit 2) with them. Subgraphs (`If`, `Loop`, `Scan`) are checked too:
//! they may read names from the enclosing graphs, as ONNX allows.

use std::collections::HashSet;

use super::onnx_proto::{GraphProto, ModelProto};

/// At most this many problems are listed; a hostile file could have millions.
const MAX_PROBLEMS: usize = 20;
/// Subgraphs nested deeper than this are refused (prost already stops decoding at 100 nested messages).
const MAX_NESTING: usize = 32;

/// Every structural problem of `model`, in plain words; empty when ONNX's rules are met.
pub fn validate_model(model: &ModelProto) -> Vec<String> {
    let mut problems = Vec::new();
    if model.ir_version <= 0 {
        problems.push(format!("IR version {} is not valid (it must be 1 or more)", model.ir_version));
    }
    if model.opset_import.is_empty() && model.ir_version >= 3 {
        problems.push(
            "the model imports no operator set (opset_import is empty): the file may have been cut short after \
             the graph, or the exporter is broken; re-export the model"
                .to_string(),
        );
    }
    let mut domains: HashSet<&str> = HashSet::new();
    for opset in &model.opset_import {
        let domain = if opset.domain == "ai.onnx" { "" } else { opset.domain.as_str() };
        if !domains.insert(domain) {
            problems.push(format!("operator set domain \"{}\" is imported twice", opset.domain));
        }
        if opset.version <= 0 {
            problems.push(format!("operator set \"{}\" has version {}", opset.domain, opset.version));
        }
    }
    let Some(graph) = &model.graph else {
        problems.push("no graph in the file".to_string());
        return problems;
    };
    let context = Context { domains: (!model.opset_import.is_empty()).then_some(domains) };
    let mut scopes: Vec<HashSet<&str>> = Vec::new();
    validate_graph(graph, "the graph", &context, &mut scopes, &mut problems);
    problems.truncate(MAX_PROBLEMS);
    problems
}

struct Context<'a> {
    /// Imported operator domains (`""` for the default); `None` when nothing is imported (already reported).
    domains: Option<HashSet<&'a str>>,
}

fn validate_graph<'g>(
    graph: &'g GraphProto,
    place: &str,
    context: &Context<'_>,
    scopes: &mut Vec<HashSet<&'g str>>,
    problems: &mut Vec<String>,
) {
    if problems.len() >= MAX_PROBLEMS {
        return;
    }
    if scopes.len() > MAX_NESTING {
        problems.push(format!("{place}: subgraphs are nested more than {MAX_NESTING} deep"));
        return;
    }
    let mut defined: HashSet<&'g str> = HashSet::new();
    for tensor in &graph.initializer {
        if tensor.name.is_empty() {
            problems.push(format!("{place}: an initializer has no name"));
        } else if !defined.insert(tensor.name.as_str()) {
            problems.push(format!("{place}: initializer \"{}\" is defined twice", tensor.name));
        }
    }
    let initializers = defined.clone();
    let mut inputs_seen: HashSet<&str> = HashSet::new();
    for input in &graph.input {
        if input.name.is_empty() {
            problems.push(format!("{place}: an input has no name"));
        } else if !inputs_seen.insert(input.name.as_str()) {
            problems.push(format!("{place}: input \"{}\" is declared twice", input.name));
        }
        defined.insert(input.name.as_str());
    }
    let visible = |name: &str, defined: &HashSet<&str>, scopes: &[HashSet<&str>]| {
        defined.contains(name) || scopes.iter().any(|scope| scope.contains(name))
    };
    for (index, node) in graph.node.iter().enumerate() {
        if problems.len() >= MAX_PROBLEMS {
            return;
        }
        let label = if node.name.is_empty() { format!("node #{index}") } else { format!("node \"{}\"", node.name) };
        if node.op_type.is_empty() {
            problems.push(format!("{place}: {label} has no operator type"));
        }
        let domain = if node.domain == "ai.onnx" { "" } else { node.domain.as_str() };
        if let Some(domains) = &context.domains
            && !domains.contains(domain)
        {
            problems.push(format!(
                "{place}: {label} ({}) uses operator domain \"{}\", which the model does not import",
                node.op_type, node.domain
            ));
        }
        for input in node.input.iter().filter(|name| !name.is_empty()) {
            if !visible(input, &defined, scopes) {
                problems.push(format!(
                    "{place}: {label} ({}) reads \"{input}\", which is not a graph input, an initializer or the \
                     output of an earlier node (a dangling input, or nodes out of order)",
                    node.op_type
                ));
            }
        }
        for attribute in &node.attribute {
            let subgraphs = attribute.g.iter().map(|g| g.as_ref()).chain(attribute.graphs.iter());
            for subgraph in subgraphs {
                scopes.push(defined.clone());
                let inner = format!("{place} > {label} ({}) attribute {}", node.op_type, attribute.name);
                validate_graph(subgraph, &inner, context, scopes, problems);
                scopes.pop();
            }
        }
        for output in node.output.iter().filter(|name| !name.is_empty()) {
            let shadows_input = inputs_seen.contains(output.as_str()) || initializers.contains(output.as_str());
            if shadows_input || !defined.insert(output.as_str()) {
                problems.push(format!(
                    "{place}: \"{output}\" is written by more than one node (or is also a graph input): ONNX graphs \
                     are in single-assignment form"
                ));
            }
        }
    }
    for output in &graph.output {
        if !visible(&output.name, &defined, scopes) {
            problems.push(format!("{place}: output \"{}\" is not produced by any node", output.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::onnx_proto::{AttributeProto, NodeProto, OperatorSetIdProto, ValueInfoProto};
    use super::*;

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..NodeProto::default()
        }
    }

    fn value(name: &str) -> ValueInfoProto {
        ValueInfoProto { name: name.into(), r#type: None }
    }

    fn model(nodes: Vec<NodeProto>) -> ModelProto {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
            graph: Some(GraphProto {
                node: nodes,
                input: vec![value("x")],
                output: vec![value("y")],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    #[test]
    fn a_well_formed_model_has_no_problems() {
        let good = model(vec![node("Relu", &["x"], &["h"]), node("Neg", &["h"], &["y"])]);
        assert_eq!(validate_model(&good), Vec::<String>::new());
    }

    #[test]
    fn a_model_without_opset_import_is_refused() {
        let mut cut = model(vec![node("Relu", &["x"], &["y"])]);
        cut.opset_import.clear();
        let problems = validate_model(&cut);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("imports no operator set"));
    }

    #[test]
    fn dangling_inputs_duplicate_writers_and_unproduced_outputs_are_named() {
        let dangling = validate_model(&model(vec![node("Add", &["x", "nowhere"], &["y"])]));
        assert!(dangling[0].contains("reads \"nowhere\""), "{dangling:?}");
        let twice = validate_model(&model(vec![node("Relu", &["x"], &["y"]), node("Neg", &["x"], &["y"])]));
        assert!(twice[0].contains("\"y\" is written by more than one node"), "{twice:?}");
        let out_of_order = validate_model(&model(vec![node("Neg", &["h"], &["y"]), node("Relu", &["x"], &["h"])]));
        assert!(out_of_order[0].contains("reads \"h\""), "{out_of_order:?}");
        let missing = validate_model(&model(vec![node("Relu", &["x"], &["z"])]));
        assert!(missing[0].contains("output \"y\" is not produced"), "{missing:?}");
    }

    #[test]
    fn subgraphs_may_read_outer_names_but_not_undefined_ones() {
        let branch = |reads: &str| GraphProto {
            node: vec![node("Neg", &[reads], &["inner"])],
            output: vec![value("inner")],
            ..GraphProto::default()
        };
        let with_branches = |reads: &str| {
            let mut if_node = node("If", &["cond"], &["y"]);
            if_node.attribute = vec![
                AttributeProto {
                    name: "then_branch".into(),
                    g: Some(Box::new(branch(reads))),
                    ..AttributeProto::default()
                },
                AttributeProto {
                    name: "else_branch".into(),
                    g: Some(Box::new(branch("x"))),
                    ..AttributeProto::default()
                },
            ];
            model(vec![node("Cast", &["x"], &["cond"]), if_node])
        };
        assert_eq!(validate_model(&with_branches("x")), Vec::<String>::new());
        let problems = validate_model(&with_branches("ghost"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("attribute then_branch") && problems[0].contains("\"ghost\""), "{problems:?}");
    }

    #[test]
    fn bad_ir_versions_and_unimported_domains_are_refused() {
        let mut old = model(vec![node("Relu", &["x"], &["y"])]);
        old.ir_version = 0;
        assert!(validate_model(&old)[0].contains("IR version 0"));
        let mut custom = node("FusedThing", &["x"], &["y"]);
        custom.domain = "com.example".into();
        assert!(validate_model(&model(vec![custom]))[0].contains("does not import"));
    }
}
