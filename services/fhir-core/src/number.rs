//! Decimal values with the implicit precision range FHIR search uses.
//!
//! A number matches with the precision it is written in: `100` is read as [99.5, 100.5)
//! and `100.00` as [99.995, 100.005). The index stores this range for resource values and the
//! search engine computes it for search values with the same function.

use crate::error::{Error, Result};

/// A decimal and the range its written precision implies: `low` = value - ½ unit of the
/// last digit, `high` = value + ½ unit. FHIR treats `high` as exclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecimalRange {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// Parses a decimal written as in JSON or FHIR search (`100`, `-0.25`, `1.5e3`).
///
/// The unit of the last digit is 10^(exponent - digits after the point), so `1.5e3` covers
/// 1450..1550 and `1e2`, with one significant digit, covers 50..150.
pub fn parse(text: &str) -> Result<DecimalRange> {
    let invalid = || Error::InvalidNumber {
        value: text.to_owned(),
    };
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => {
            let exponent: i32 = exponent.parse().map_err(|_| invalid())?;
            (mantissa, exponent)
        }
        None => (unsigned, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let is_well_formed = !integer.is_empty()
        && integer.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !(mantissa.contains('.') && fraction.is_empty());
    if !is_well_formed {
        return Err(invalid());
    }

    let value: f64 = text.parse().map_err(|_| invalid())?;
    let fraction_digits = i32::try_from(fraction.len()).map_err(|_| invalid())?;
    let half_unit = 0.5 * 10_f64.powi(exponent.saturating_sub(fraction_digits));
    if !value.is_finite() || !half_unit.is_finite() {
        return Err(invalid());
    }
    Ok(DecimalRange {
        value,
        low: value - half_unit,
        high: value + half_unit,
    })
}

/// Returns the range of a JSON number, taking the precision from its shortest text form.
///
/// NOTE: JSON numbers are parsed into binary floats before indexing, so trailing zeros in
/// the source (`1.50`) are lost and `1.50` is indexed with the precision of `1.5`.
pub fn from_json(number: &serde_json::Number) -> Option<DecimalRange> {
    parse(&number.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> (f64, f64, f64) {
        let range = parse(text).unwrap();
        (range.value, range.low, range.high)
    }

    #[test]
    fn precision_from_digits() {
        assert_eq!(range("100"), (100.0, 99.5, 100.5));
        assert_eq!(range("-3"), (-3.0, -3.5, -2.5));
        let (value, low, high) = range("100.00");
        assert_eq!(value, 100.0);
        assert!((low - 99.995).abs() < 1e-9, "{low}");
        assert!((high - 100.005).abs() < 1e-9, "{high}");
    }

    #[test]
    fn precision_with_exponent() {
        assert_eq!(range("1.5e3"), (1500.0, 1450.0, 1550.0));
        assert_eq!(range("1e2"), (100.0, 50.0, 150.0));
        let (_, low, high) = range("2.5E-3");
        assert!((low - 0.00245).abs() < 1e-12, "{low}");
        assert!((high - 0.00255).abs() < 1e-12, "{high}");
    }

    #[test]
    fn malformed_numbers_are_rejected() {
        for text in [
            "", "-", "1.", ".5", "1e", "abc", "1,5", "1e999", "NaN", "inf", "1 ",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn json_numbers() {
        let integer = serde_json::Number::from(100);
        assert_eq!(from_json(&integer).unwrap().low, 99.5);
        let float = serde_json::Number::from_f64(181.2).unwrap();
        let range = from_json(&float).unwrap();
        assert!((range.high - 181.25).abs() < 1e-9);
        let small = serde_json::Number::from_f64(1e-7).unwrap();
        assert_eq!(from_json(&small).unwrap().value, 1e-7);
    }
}
