//! Label-safe values. Kubernetes label values are at most 63 characters of `[A-Za-z0-9._-]`, starting and ending
//! with a letter or digit; a model version admission allows (`1.0.0+build.5`, up to 128 characters) or a rollout
//! name (up to 253) may be neither. Such a text is written as a readable, escaped prefix plus a hash of the whole
//! text, so two different texts never share a label value; the exact text travels in an annotation.

/// Annotation carrying the exact model version a Deployment serves (its label may be an escaped form).
pub const VERSION_ANNOTATION: &str = "rampart.dev/model-version";

/// Longest label value Kubernetes accepts.
const MAX: usize = 63;

/// True when `text` is a valid label value as it is.
pub fn is_label_value(text: &str) -> bool {
    let bytes = text.as_bytes();
    let edge = |b: &u8| b.is_ascii_alphanumeric();
    bytes.len() <= MAX
        && (bytes.is_empty()
            || (bytes.first().is_some_and(edge)
                && bytes.last().is_some_and(edge)
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))))
}

/// `text` itself when it is a valid label value; otherwise its characters outside `[A-Za-z0-9._-]` replaced by `_`,
/// cut so that `-h<16 hex digits>` (a hash of the whole text) fits, e.g. `1.0.0+build.5` becomes
/// `1.0.0_build.5-h…`.
pub fn label_value(text: &str) -> String {
    if is_label_value(text) {
        return text.to_string();
    }
    let hash = format!("h{:016x}", fnv1a(text.as_bytes()));
    let keep = MAX - hash.len() - 1;
    let escaped: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .take(keep)
        .collect();
    let escaped = escaped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if escaped.is_empty() { hash } else { format!("{escaped}-{hash}") }
}

/// 64-bit FNV-1a: a stable hash (the same in every process and release), enough to tell texts apart in a label.
/// Not a security boundary: the exact text is in [`VERSION_ANNOTATION`] and compared there.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_values_are_kept_as_they_are() {
        for text in ["v2", "1.0.0", "2026-11-20.1", "a_b", ""] {
            assert_eq!(label_value(text), text);
        }
    }

    #[test]
    fn versions_admission_allows_become_valid_distinct_label_values() {
        let plus = label_value("1.0.0+build.5");
        assert!(is_label_value(&plus) && plus.starts_with("1.0.0_build.5-h"), "{plus}");
        assert_ne!(plus, label_value("1.0.0_build.5"), "an escaped text does not collide with its look-alike");
        assert_ne!(plus, label_value("1.0.0+build.6"));
        let long = format!("1.{}", "9".repeat(126));
        let value = label_value(&long);
        assert!(is_label_value(&value) && value.len() <= 63, "{value}");
        assert_ne!(value, label_value(&format!("1.{}8", "9".repeat(125))), "texts cut to the same prefix differ");
        assert!(is_label_value(&label_value("+++")));
        assert_eq!(label_value(&long), value, "stable");
    }
}
