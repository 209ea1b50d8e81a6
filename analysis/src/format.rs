//! Number formatting for the one-line reasons people read in status and events.

/// `x` with four significant digits, without exponent notation for everyday magnitudes.
pub(crate) fn sig(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{x:.0}");
    }
    let magnitude = x.abs().log10().floor();
    if !(-4.0..6.0).contains(&magnitude) {
        return format!("{x:.3e}");
    }
    let decimals = (3.0 - magnitude).max(0.0) as usize;
    format!("{x:.decimals$}")
}

/// A p-value: two significant digits, exponent notation when tiny.
pub(crate) fn p(x: f64) -> String {
    if x.is_nan() || x < 1e-3 {
        return format!("{x:.1e}");
    }
    let decimals = (1.0 - x.log10().floor()).max(0.0) as usize;
    format!("{x:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_four_significant_digits() {
        assert_eq!(sig(0.123456), "0.1235");
        assert_eq!(sig(-0.0491), "-0.04910");
        assert_eq!(sig(1234.5), "1234");
        assert_eq!(sig(0.0), "0");
        assert_eq!(sig(4500.0), "4500");
    }

    #[test]
    fn shows_small_p_values_in_exponent_form() {
        assert_eq!(p(0.00001234), "1.2e-5");
        assert_eq!(p(0.5), "0.50");
        assert_eq!(p(0.0012), "0.0012");
        assert_eq!(p(1.0), "1.0");
    }
}
