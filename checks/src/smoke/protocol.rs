//! The smoke-training protocol: one JSON object per line with `step`, `loss`, `grad_norm`,
//! `step_time_s` and `gpu_mem_bytes`, read leniently from a training container's output.
//!
//! Lines that are not JSON objects with a `loss` key (ordinary log output) are skipped. Non-finite
//! numbers may be written as Python's bare `NaN`/`Infinity`/`-Infinity`, as strings (`"nan"`,
//! `"inf"`, ...), or as `null` for `loss`; all of them read as non-finite so the evaluator can fail
//! the run on them.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::{Deserialize, Deserializer, Serialize};

/// One training step as the protocol describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricLine {
    /// Step number (0- or 1-based, increasing).
    pub step: u64,
    /// Training loss at this step.
    #[serde(deserialize_with = "loss_value")]
    pub loss: f64,
    /// Global L2 norm of the gradients before the update.
    #[serde(default, deserialize_with = "optional_float")]
    pub grad_norm: Option<f64>,
    /// Wall-clock seconds the step took.
    #[serde(default, deserialize_with = "optional_float")]
    pub step_time_s: Option<f64>,
    /// Peak GPU memory in bytes so far (absent or `null` on CPU).
    #[serde(default)]
    pub gpu_mem_bytes: Option<u64>,
}

fn float_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        // Rust prints the shortest text that reads back to the same f64.
        let text = format!("{value:?}");
        text
    }
}

impl MetricLine {
    /// The line as the protocol writes it (non-finite values as bare `NaN`/`Infinity`, like Python's `json`).
    pub fn to_json_line(&self) -> String {
        let mut line = format!("{{\"step\":{},\"loss\":{}", self.step, float_text(self.loss));
        let optional = |value: Option<f64>| value.map_or("null".to_string(), float_text);
        let _ = write!(line, ",\"grad_norm\":{}", optional(self.grad_norm));
        let _ = write!(line, ",\"step_time_s\":{}", optional(self.step_time_s));
        let memory = self.gpu_mem_bytes.map_or("null".to_string(), |bytes| bytes.to_string());
        let _ = write!(line, ",\"gpu_mem_bytes\":{memory}}}");
        line
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LooseFloat {
    Number(f64),
    Text(String),
}

fn loose_to_f64(value: LooseFloat) -> Result<f64, String> {
    match value {
        LooseFloat::Number(number) => Ok(number),
        LooseFloat::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
            "nan" | "-nan" => Ok(f64::NAN),
            "inf" | "+inf" | "infinity" | "+infinity" => Ok(f64::INFINITY),
            "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse::<f64>().map_err(|_| format!("\"{text}\" is not a number")),
        },
    }
}

fn loss_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value: Option<LooseFloat> = Option::deserialize(deserializer)?;
    value.map_or(Ok(f64::NAN), |v| loose_to_f64(v).map_err(serde::de::Error::custom))
}

fn optional_float<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let value: Option<LooseFloat> = Option::deserialize(deserializer)?;
    value.map(|v| loose_to_f64(v).map_err(serde::de::Error::custom)).transpose()
}

/// Rewrites bare `NaN`, `Infinity` and `-Infinity` tokens outside strings as quoted strings.
fn quote_non_finite(line: &str) -> Cow<'_, str> {
    if !(line.contains("NaN") || line.contains("Infinity")) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = line;
    while let Some(ch) = rest.chars().next() {
        if in_string {
            out.push(ch);
            match ch {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            rest = &rest[ch.len_utf8()..];
            continue;
        }
        if let Some(token) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
            out.push('"');
            out.push_str(token);
            out.push('"');
            rest = &rest[token.len()..];
            continue;
        }
        if ch == '"' {
            in_string = true;
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    Cow::Owned(out)
}

/// A line that looked like a metric line but could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalformedLine {
    /// 1-based line number in the input.
    pub line: usize,
    /// What is wrong.
    pub error: String,
}

/// The metric lines found in a training run's output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParsedMetrics {
    /// Metric lines in the order they were written.
    pub lines: Vec<MetricLine>,
    /// Lines that were not metric lines (ordinary logs), skipped.
    pub skipped_lines: usize,
    /// Lines that started like a metric line but could not be read (e.g. cut off when the Pod died).
    pub malformed: Vec<MalformedLine>,
}

/// Reads every metric line from a training run's output.
pub fn parse_metrics(text: &str) -> ParsedMetrics {
    let mut parsed = ParsedMetrics::default();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if !line.starts_with('{') {
            parsed.skipped_lines += 1;
            continue;
        }
        let quoted = quote_non_finite(line);
        let value: serde_json::Value = match serde_json::from_str(&quoted) {
            Ok(value) => value,
            Err(err) => {
                parsed.malformed.push(MalformedLine { line: index + 1, error: format!("not valid JSON: {err}") });
                continue;
            }
        };
        if value.get("loss").is_none() {
            parsed.skipped_lines += 1;
            continue;
        }
        match serde_json::from_value::<MetricLine>(value) {
            Ok(metric) => parsed.lines.push(metric),
            Err(err) => parsed.malformed.push(MalformedLine { line: index + 1, error: err.to_string() }),
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_python_style_non_finite_numbers_and_skips_log_lines() {
        let text = "epoch 0 starting\n\
            {\"step\": 1, \"loss\": NaN, \"grad_norm\": Infinity, \"step_time_s\": 0.1, \"gpu_mem_bytes\": 10}\n\
            {\"event\": \"checkpoint\", \"note\": \"NaN in a string stays\"}\n\
            {\"step\": 2, \"loss\": \"-inf\", \"grad_norm\": null}\n\
            {\"step\": 3, \"loss\": 0.5\n";
        let parsed = parse_metrics(text);
        assert_eq!(parsed.lines.len(), 2);
        assert!(parsed.lines[0].loss.is_nan());
        assert_eq!(parsed.lines[0].grad_norm, Some(f64::INFINITY));
        assert_eq!(parsed.lines[1].loss, f64::NEG_INFINITY);
        assert_eq!(parsed.lines[1].grad_norm, None);
        assert_eq!(parsed.skipped_lines, 2);
        assert_eq!(parsed.malformed.len(), 1);
        assert_eq!(parsed.malformed[0].line, 5);
    }

    #[test]
    fn written_lines_read_back_exactly() {
        let line = MetricLine {
            step: 7,
            loss: 0.125,
            grad_norm: Some(f64::NAN),
            step_time_s: Some(1e-3),
            gpu_mem_bytes: None,
        };
        let parsed = parse_metrics(&line.to_json_line());
        assert_eq!(parsed.lines.len(), 1);
        assert_eq!(parsed.lines[0].loss, 0.125);
        assert!(parsed.lines[0].grad_norm.unwrap().is_nan());
        assert_eq!(parsed.lines[0].step_time_s, Some(1e-3));
    }
}
