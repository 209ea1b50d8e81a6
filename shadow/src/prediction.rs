//! Turns a model server's response body into the one value that is compared across baseline and candidate.
//!
//! Only this extracted value is kept while a response waits for its partner, so memory per pending request stays
//! small whatever the response size. Extraction and comparison are pure functions so the rules are unit-tested here.

use serde_json::Value;

/// How two extracted predictions are judged equal.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Compare {
    /// Classification: an array of scores becomes its argmax index; a scalar (number, string, bool) is taken as is.
    /// Equal when identical.
    #[default]
    Top1,
    /// Regression or raw scores: numbers (or arrays of numbers, compared element by element) are equal when they
    /// differ by at most `tolerance` (absolute) or `tolerance * max(|a|, |b|)` (relative).
    Numeric { tolerance: f64, relative: bool },
}

/// Where the prediction sits in a response body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PredictionPath {
    /// Try, in order, `predictions.0` (KServe v1), `prediction`, `outputs.0.data` (Open Inference Protocol v2),
    /// then the whole body.
    #[default]
    Auto,
    /// One explicit dotted path; no fallback.
    Exact(Vec<Segment>),
}

/// One step of a dotted path: an object key, or an array index (a key made only of digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A `--prediction-path` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid prediction path {path:?}: {reason} (use dotted keys and indices, e.g. predictions.0 or outputs.0.data)"
)]
pub struct InvalidPath {
    pub path: String,
    pub reason: &'static str,
}

impl PredictionPath {
    /// Parses `predictions.0`, `outputs.0.data`, ...; `.` or an empty string means the whole body.
    pub fn parse(path: &str) -> Result<Self, InvalidPath> {
        let trimmed = path.trim();
        if trimmed.is_empty() || trimmed == "." {
            return Ok(PredictionPath::Exact(Vec::new()));
        }
        if trimmed.eq_ignore_ascii_case("auto") {
            return Ok(PredictionPath::Auto);
        }
        let mut segments = Vec::new();
        for part in trimmed.split('.') {
            if part.is_empty() {
                return Err(InvalidPath { path: path.to_string(), reason: "empty segment" });
            }
            segments.push(segment(part));
        }
        Ok(PredictionPath::Exact(segments))
    }

    /// The value at this path, or `None` when nothing usable is there.
    pub fn locate<'a>(&self, body: &'a Value) -> Option<&'a Value> {
        match self {
            PredictionPath::Exact(segments) => walk(body, segments).filter(|value| !value.is_null()),
            PredictionPath::Auto => [
                body.get("predictions").and_then(|p| p.get(0)),
                body.get("prediction"),
                body.get("outputs").and_then(|o| o.get(0)).and_then(|o| o.get("data")),
                Some(body),
            ]
            .into_iter()
            .flatten()
            .find(|value| !value.is_null()),
        }
    }
}

fn segment(part: &str) -> Segment {
    if part.bytes().all(|b| b.is_ascii_digit())
        && let Ok(index) = part.parse::<usize>()
    {
        return Segment::Index(index);
    }
    Segment::Key(part.to_string())
}

fn walk<'a>(mut value: &'a Value, segments: &[Segment]) -> Option<&'a Value> {
    for segment in segments {
        value = match (value, segment) {
            (Value::Array(items), Segment::Index(index)) => items.get(*index)?,
            (Value::Object(fields), Segment::Index(index)) => fields.get(&index.to_string())?,
            (Value::Object(fields), Segment::Key(key)) => fields.get(key)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The compared part of one response: small, owned, and independent of the body it came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// Argmax index of an array of scores (top1).
    Class(usize),
    /// A scalar number.
    Number(f64),
    /// A string label.
    Label(String),
    /// A boolean.
    Flag(bool),
    /// Numbers compared element by element (numeric mode); nested arrays are flattened.
    Numbers(Vec<f64>),
    /// Anything else (objects, mixed arrays) in top1 mode, compared for exact equality.
    Other(Value),
}

impl Prediction {
    /// Extracts the prediction from a response body, or `None` if there is none to compare.
    pub fn extract(body: &Value, path: &PredictionPath, compare: Compare) -> Option<Prediction> {
        let value = path.locate(body)?;
        match compare {
            Compare::Top1 => top1(value),
            Compare::Numeric { .. } => numeric(value),
        }
    }

    /// Whether two predictions agree under `compare`.
    pub fn agrees_with(&self, other: &Prediction, compare: Compare) -> bool {
        match compare {
            Compare::Top1 => match (self, other) {
                (Prediction::Number(a), Prediction::Number(b)) => a == b,
                _ => self == other,
            },
            Compare::Numeric { tolerance, relative } => {
                let (a, b) = (self.as_numbers(), other.as_numbers());
                match (a, b) {
                    (Some(a), Some(b)) if a.len() == b.len() => {
                        a.iter().zip(b).all(|(x, y)| within(*x, *y, tolerance, relative))
                    }
                    _ => false,
                }
            }
        }
    }

    fn as_numbers(&self) -> Option<&[f64]> {
        match self {
            Prediction::Number(n) => Some(std::slice::from_ref(n)),
            Prediction::Numbers(values) => Some(values),
            _ => None,
        }
    }
}

fn within(a: f64, b: f64, tolerance: f64, relative: bool) -> bool {
    let gap = (a - b).abs();
    if relative { gap <= tolerance * a.abs().max(b.abs()) } else { gap <= tolerance }
}

fn top1(value: &Value) -> Option<Prediction> {
    match value {
        Value::Null => None,
        Value::Bool(flag) => Some(Prediction::Flag(*flag)),
        Value::Number(n) => n.as_f64().map(Prediction::Number),
        Value::String(label) => Some(Prediction::Label(label.clone())),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => match argmax(items) {
            Some(index) => Some(Prediction::Class(index)),
            None => Some(Prediction::Other(value.clone())),
        },
        Value::Object(_) => Some(Prediction::Other(value.clone())),
    }
}

/// Index of the largest score (the first one on ties), or `None` if some item is not a number.
fn argmax(items: &[Value]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (index, item) in items.iter().enumerate() {
        let score = item.as_f64()?;
        if best.is_none_or(|(_, top)| score > top) {
            best = Some((index, score));
        }
    }
    best.map(|(index, _)| index)
}

fn numeric(value: &Value) -> Option<Prediction> {
    match value {
        Value::Number(n) => n.as_f64().map(Prediction::Number),
        Value::Array(_) => {
            let mut numbers = Vec::new();
            flatten(value, &mut numbers, 0)?;
            if numbers.is_empty() { None } else { Some(Prediction::Numbers(numbers)) }
        }
        _ => None,
    }
}

/// Nesting deeper than this is not a tensor anyone serves; refusing it keeps recursion bounded.
const MAX_DEPTH: usize = 32;

fn flatten(value: &Value, out: &mut Vec<f64>, depth: usize) -> Option<()> {
    match value {
        Value::Number(n) => out.push(n.as_f64()?),
        Value::Array(items) if depth < MAX_DEPTH => {
            for item in items {
                flatten(item, out, depth + 1)?;
            }
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auto(body: Value, compare: Compare) -> Option<Prediction> {
        Prediction::extract(&body, &PredictionPath::Auto, compare)
    }

    #[test]
    fn top1_takes_the_argmax_of_a_score_array() {
        let prediction = auto(json!({"predictions": [[0.1, 0.7, 0.2]]}), Compare::Top1);
        assert_eq!(prediction, Some(Prediction::Class(1)));
    }

    #[test]
    fn top1_argmax_picks_the_first_on_ties() {
        assert_eq!(auto(json!({"predictions": [[0.5, 0.5, 0.1]]}), Compare::Top1), Some(Prediction::Class(0)));
    }

    #[test]
    fn top1_scores_that_differ_but_share_the_argmax_agree() {
        let a = auto(json!({"predictions": [[0.1, 0.7, 0.2]]}), Compare::Top1).unwrap();
        let b = auto(json!({"predictions": [[0.3, 0.4, 0.3]]}), Compare::Top1).unwrap();
        assert!(a.agrees_with(&b, Compare::Top1));
        let c = auto(json!({"predictions": [[0.5, 0.2, 0.3]]}), Compare::Top1).unwrap();
        assert!(!a.agrees_with(&c, Compare::Top1));
    }

    #[test]
    fn top1_scalars_are_compared_as_values() {
        let label = auto(json!({"predictions": ["cat"]}), Compare::Top1).unwrap();
        assert_eq!(label, Prediction::Label("cat".into()));
        let one = auto(json!({"prediction": 1}), Compare::Top1).unwrap();
        let one_float = auto(json!({"prediction": 1.0}), Compare::Top1).unwrap();
        assert!(one.agrees_with(&one_float, Compare::Top1));
        let flag = auto(json!({"prediction": true}), Compare::Top1).unwrap();
        assert!(!flag.agrees_with(&one, Compare::Top1));
    }

    #[test]
    fn auto_path_tries_predictions_then_prediction_then_v2_outputs_then_body() {
        assert_eq!(auto(json!({"predictions": [3]}), Compare::Top1), Some(Prediction::Number(3.0)));
        assert_eq!(auto(json!({"prediction": "dog"}), Compare::Top1), Some(Prediction::Label("dog".into())));
        let v2 = json!({"model_name": "m", "outputs": [{"name": "out", "shape": [3], "data": [0.1, 0.2, 0.7]}]});
        assert_eq!(auto(v2, Compare::Top1), Some(Prediction::Class(2)));
        assert_eq!(auto(json!([0.9, 0.1]), Compare::Top1), Some(Prediction::Class(0)));
        assert_eq!(auto(json!(null), Compare::Top1), None);
    }

    #[test]
    fn explicit_path_walks_keys_and_indices_without_fallback() {
        let path = PredictionPath::parse("result.scores.1").unwrap();
        let body = json!({"result": {"scores": [[1, 0], [0, 1]]}, "predictions": [7]});
        assert_eq!(Prediction::extract(&body, &path, Compare::Top1), Some(Prediction::Class(1)));
        let missing = PredictionPath::parse("result.labels").unwrap();
        assert_eq!(Prediction::extract(&body, &missing, Compare::Top1), None);
        let out_of_range = PredictionPath::parse("predictions.5").unwrap();
        assert_eq!(Prediction::extract(&body, &out_of_range, Compare::Top1), None);
    }

    #[test]
    fn path_parsing_refuses_empty_segments_and_accepts_whole_body() {
        assert!(PredictionPath::parse("predictions..0").is_err());
        assert!(PredictionPath::parse("predictions.").is_err());
        assert_eq!(PredictionPath::parse("."), Ok(PredictionPath::Exact(Vec::new())));
        assert_eq!(PredictionPath::parse("auto"), Ok(PredictionPath::Auto));
        assert_eq!(
            PredictionPath::parse("outputs.0.data"),
            Ok(PredictionPath::Exact(vec![
                Segment::Key("outputs".into()),
                Segment::Index(0),
                Segment::Key("data".into())
            ]))
        );
    }

    #[test]
    fn numeric_absolute_tolerance_compares_elementwise() {
        let compare = Compare::Numeric { tolerance: 0.01, relative: false };
        let a = auto(json!({"outputs": [{"data": [1.0, 2.0, 3.0]}]}), compare).unwrap();
        let close = auto(json!({"outputs": [{"data": [1.005, 1.995, 3.0]}]}), compare).unwrap();
        let far = auto(json!({"outputs": [{"data": [1.0, 2.02, 3.0]}]}), compare).unwrap();
        let shorter = auto(json!({"outputs": [{"data": [1.0, 2.0]}]}), compare).unwrap();
        assert!(a.agrees_with(&close, compare));
        assert!(!a.agrees_with(&far, compare));
        assert!(!a.agrees_with(&shorter, compare));
    }

    #[test]
    fn numeric_relative_tolerance_scales_with_magnitude() {
        let compare = Compare::Numeric { tolerance: 0.01, relative: true };
        let big = Prediction::Number(1000.0);
        assert!(big.agrees_with(&Prediction::Number(1009.0), compare));
        assert!(!big.agrees_with(&Prediction::Number(1011.0), compare));
        let small = Prediction::Number(0.001);
        assert!(!small.agrees_with(&Prediction::Number(0.002), compare));
        assert!(Prediction::Number(0.0).agrees_with(&Prediction::Number(0.0), compare));
    }

    #[test]
    fn numeric_flattens_nested_arrays_and_refuses_non_numbers() {
        let compare = Compare::Numeric { tolerance: 0.0, relative: false };
        assert_eq!(
            auto(json!({"predictions": [[1, 2], [3, 4]]}), compare),
            Some(Prediction::Numbers(vec![1.0, 2.0])),
            "predictions.0 is the first row"
        );
        let path = PredictionPath::parse("predictions").unwrap();
        let body = json!({"predictions": [[1, 2], [3, 4]]});
        assert_eq!(Prediction::extract(&body, &path, compare), Some(Prediction::Numbers(vec![1.0, 2.0, 3.0, 4.0])));
        assert_eq!(auto(json!({"predictions": ["cat"]}), compare), None);
        assert_eq!(auto(json!({"predictions": [[]]}), compare), None);
    }

    #[test]
    fn top1_objects_compare_by_exact_equality() {
        let a = auto(json!({"predictions": [{"label": "cat", "score": 0.9}]}), Compare::Top1).unwrap();
        let b = auto(json!({"predictions": [{"label": "cat", "score": 0.9}]}), Compare::Top1).unwrap();
        let c = auto(json!({"predictions": [{"label": "cat", "score": 0.8}]}), Compare::Top1).unwrap();
        assert!(a.agrees_with(&b, Compare::Top1));
        assert!(!a.agrees_with(&c, Compare::Top1));
    }
}
