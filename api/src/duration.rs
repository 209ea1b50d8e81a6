//! Durations as users write them in rollout YAML (`30s`, `10m`, `1h30m`, `250ms`), parsed into `std::time::Duration`.

use std::time::Duration;

/// A duration string that does not parse, with what was expected.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid duration {input:?}: expected a number followed by ms, s, m or h, e.g. 30s, 10m or 1h30m")]
pub struct DurationError {
    /// The text that did not parse.
    pub input: String,
}

/// Parses `30s`, `1.5m`, `1h30m`, `250ms`. Units: `ms`, `s`, `m`, `h`. No sign, no spaces.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let error = || DurationError { input: input.to_string() };
    if input.is_empty() {
        return Err(error());
    }
    let mut total = 0.0f64;
    let mut rest = input;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(error)?;
        if number_len == 0 {
            return Err(error());
        }
        let value: f64 = rest[..number_len].parse().map_err(|_| error())?;
        rest = &rest[number_len..];
        let (seconds_per_unit, unit_len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else {
            return Err(error());
        };
        total += value * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_users_write() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn rejects_text_without_a_unit_or_number() {
        for bad in ["", "30", "s", "10 m", "-5s", "1d", "1..2s", "m5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn error_message_shows_an_example() {
        let message = parse_duration("ten minutes").unwrap_err().to_string();
        assert!(message.contains("\"ten minutes\"") && message.contains("1h30m"), "{message}");
    }
}
