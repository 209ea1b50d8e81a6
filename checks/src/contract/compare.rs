//! Comparing a candidate's contract with the baseline's, difference by difference, in plain words.

use serde::{Deserialize, Serialize};

use super::types::{Dim, ModelContract, TensorSpec, shape_text};

/// One way the candidate differs from the baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// True when callers of the baseline would break against the candidate.
    pub breaking: bool,
    /// The difference in plain words, e.g. `input "pixels": dtype float32 -> float16`.
    pub message: String,
}

impl Difference {
    fn breaking(message: String) -> Difference {
        Difference { breaking: true, message }
    }

    fn note(message: String) -> Difference {
        Difference { breaking: false, message }
    }
}

/// Which side of the contract a tensor is on; the rules differ a little.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Input,
    Output,
    Weight,
}

impl Role {
    fn word(self) -> &'static str {
        match self {
            Role::Input => "input",
            Role::Output => "output",
            Role::Weight => "tensor",
        }
    }
}

/// Lists every difference between `candidate` and `baseline`.
///
/// Inputs must match by name and dtype with compatible shapes (a new required input breaks callers).
/// Outputs (and safetensors weights) of the baseline must all still be there; extra ones are allowed
/// when `allow_new_outputs` is set, and are listed as notes.
pub fn compare_contracts(
    candidate: &ModelContract,
    baseline: &ModelContract,
    allow_new_outputs: bool,
) -> Vec<Difference> {
    if candidate.format != baseline.format {
        return vec![Difference::breaking(format!(
            "model format changed from {} to {}",
            baseline.format, candidate.format
        ))];
    }
    let mut differences = Vec::new();
    compare_side(Role::Input, &candidate.inputs, &baseline.inputs, false, &mut differences);
    compare_side(Role::Output, &candidate.outputs, &baseline.outputs, allow_new_outputs, &mut differences);
    compare_side(Role::Weight, &candidate.weights, &baseline.weights, allow_new_outputs, &mut differences);
    differences
}

fn compare_side(
    role: Role,
    candidate: &[TensorSpec],
    baseline: &[TensorSpec],
    allow_new: bool,
    differences: &mut Vec<Difference>,
) {
    let word = role.word();
    let new: Vec<&TensorSpec> = candidate.iter().filter(|c| !baseline.iter().any(|b| b.name == c.name)).collect();
    for old in baseline {
        let Some(now) = candidate.iter().find(|c| c.name == old.name) else {
            let hint = match new.as_slice() {
                [renamed] if renamed.dtype == old.dtype => format!(" (renamed to \"{}\"?)", renamed.name),
                _ => String::new(),
            };
            let what = match role {
                Role::Input => "is missing from the candidate",
                Role::Output | Role::Weight => "was removed",
            };
            differences.push(Difference::breaking(format!("{word} \"{}\" {what}{hint}", old.name)));
            continue;
        };
        if now.dtype != old.dtype {
            differences
                .push(Difference::breaking(format!("{word} \"{}\": dtype {} -> {}", old.name, old.dtype, now.dtype)));
        }
        let batch_axis = match role {
            Role::Input => {
                old.batch_axis.or(now.batch_axis).or_else(|| old.shape.as_ref().filter(|s| !s.is_empty()).map(|_| 0))
            }
            _ => None,
        };
        if let Some(difference) = compare_shape(role, &old.name, old.shape.as_deref(), now.shape.as_deref(), batch_axis)
        {
            differences.push(difference);
        }
    }
    for added in new {
        let message = format!("new {word} {added}");
        differences.push(match role {
            Role::Input => Difference::breaking(format!("{message}: callers of the baseline do not send it")),
            _ if allow_new => Difference::note(message),
            _ => Difference::breaking(format!("{message} (new {word}s are not allowed)")),
        });
    }
}

fn compare_shape(
    role: Role,
    name: &str,
    old: Option<&[Dim]>,
    now: Option<&[Dim]>,
    batch_axis: Option<usize>,
) -> Option<Difference> {
    let word = role.word();
    let (old_dims, now_dims) = match (old, now) {
        (None, None) => return None,
        (None, Some(_)) => {
            return Some(Difference::note(format!("{word} \"{name}\": shape {} is now declared", shape_text(now))));
        }
        (Some(_), None) => {
            return Some(Difference::note(format!(
                "{word} \"{name}\": shape {} is no longer declared",
                shape_text(old)
            )));
        }
        (Some(old), Some(now)) => (old, now),
    };
    let header = format!("{word} \"{name}\": shape {} -> {}", shape_text(old), shape_text(now));
    if old_dims.len() != now_dims.len() {
        return Some(Difference::breaking(format!("{header} (rank {} -> {})", old_dims.len(), now_dims.len())));
    }
    let mut breaking = false;
    let mut details = Vec::new();
    for (axis, (was, is)) in old_dims.iter().zip(now_dims).enumerate() {
        match (was, is) {
            (Dim::Fixed(a), Dim::Fixed(b)) if a != b => {
                breaking = true;
                details.push(format!("dim {axis}: {a} -> {b}"));
            }
            (Dim::Symbolic(a), Dim::Fixed(b)) => {
                breaking = true;
                details.push(format!("dim {axis} was symbolic \"{a}\", now fixed {b}"));
            }
            (Dim::Fixed(a), Dim::Symbolic(b)) => {
                // An input that now accepts any size is fine; an output whose size may now vary is not.
                breaking |= role != Role::Input;
                details.push(format!("dim {axis} was fixed {a}, now symbolic \"{b}\""));
            }
            (Dim::Symbolic(a), Dim::Symbolic(b)) if a != b => {
                details.push(format!("dim {axis}: symbolic \"{a}\" renamed \"{b}\""));
            }
            (Dim::Unknown, Dim::Fixed(b)) if Some(axis) == batch_axis => {
                // Older exporters write a dynamic batch as -1 (or leave it unnamed): pinning it is as breaking
                // as pinning a named one.
                breaking = true;
                details.push(format!("batch axis {axis} was dynamic (-1 or unnamed), now fixed {b}"));
            }
            (Dim::Unknown, Dim::Unknown) => {}
            (Dim::Unknown, _) | (_, Dim::Unknown) if was != is => {
                details.push(format!("dim {axis}: {was} -> {is} (not declared on one side)"));
            }
            _ => {}
        }
    }
    if details.is_empty() {
        return None;
    }
    let message = format!("{header} ({})", details.join("; "));
    Some(if breaking { Difference::breaking(message) } else { Difference::note(message) })
}
