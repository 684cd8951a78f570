//! Rows of number, quantity and position (`near`) parameters.

use serde_json::{Map, Value};

use super::{NumberRow, PositionRow, QuantityRow};
use crate::fhirpath::Node;
use crate::number::{self, DecimalRange};

/// The system of ISO 4217 currency codes, which Money.currency uses.
const CURRENCY_SYSTEM: &str = "urn:iso:std:iso:4217";

/// Adds a row for a decimal or integer, or for a Range's bounds.
pub(super) fn add_number_rows(param: &'static str, node: &Node<'_>, out: &mut Vec<NumberRow>) {
    let range = match node.value {
        Value::Number(value) => number::from_json(value),
        Value::Object(map) => range_bounds(map),
        _ => None,
    };
    if let Some(DecimalRange { value, low, high }) = range {
        out.push(NumberRow {
            param,
            value: positive_zero(value),
            low: positive_zero(low),
            high: positive_zero(high),
        });
    }
}

/// Adds a row for a Quantity (or Age, Count, Distance, Duration, SimpleQuantity), Money or
/// Range. NOTE: SampledData, which R4 `value-quantity` also names, adds nothing.
pub(super) fn add_quantity_rows(param: &'static str, node: &Node<'_>, out: &mut Vec<QuantityRow>) {
    let Value::Object(map) = node.value else {
        return;
    };
    let kind = node.type_name.unwrap_or_else(|| {
        if map.contains_key("currency") {
            "Money"
        } else if map.contains_key("low") || map.contains_key("high") {
            "Range"
        } else if map.contains_key("origin") {
            "SampledData"
        } else {
            "Quantity"
        }
    });
    let row = match kind {
        "Money" => money_row(param, map),
        "Range" => range_row(param, map),
        "SampledData" => None,
        _ => quantity_row(param, map),
    };
    out.extend(row);
}

/// Adds a row for a Location.position with a latitude and a longitude.
pub(super) fn add_position_rows(param: &'static str, node: &Node<'_>, out: &mut Vec<PositionRow>) {
    let latitude = node.value.get("latitude").and_then(Value::as_f64);
    let longitude = node.value.get("longitude").and_then(Value::as_f64);
    if let (Some(latitude), Some(longitude)) = (latitude, longitude) {
        out.push(PositionRow {
            param,
            latitude: positive_zero(latitude),
            longitude: positive_zero(longitude),
        });
    }
}

fn quantity_row(param: &'static str, quantity: &Map<String, Value>) -> Option<QuantityRow> {
    let DecimalRange { value, low, high } = decimal(quantity.get("value"))?;
    // `<5` means any value below 5, so the side the comparator opens is unbounded.
    let (low, high) = match quantity.get("comparator").and_then(Value::as_str) {
        Some("<" | "<=") => (f64::NEG_INFINITY, high),
        Some(">" | ">=") => (low, f64::INFINITY),
        _ => (low, high),
    };
    Some(QuantityRow {
        param,
        value: positive_zero(value),
        low: positive_zero(low),
        high: positive_zero(high),
        system: string(quantity, "system"),
        code: string(quantity, "code"),
        unit: string(quantity, "unit"),
    })
}

fn money_row(param: &'static str, money: &Map<String, Value>) -> Option<QuantityRow> {
    let DecimalRange { value, low, high } = decimal(money.get("value"))?;
    let currency = string(money, "currency");
    Some(QuantityRow {
        param,
        value: positive_zero(value),
        low: positive_zero(low),
        high: positive_zero(high),
        system: currency.as_ref().map(|_| CURRENCY_SYSTEM.to_owned()),
        code: currency,
        unit: None,
    })
}

/// Builds the row of a Range: its bounds, with the units of its low end (or of its high end
/// when only that is given).
fn range_row(param: &'static str, range: &Map<String, Value>) -> Option<QuantityRow> {
    let DecimalRange { value, low, high } = range_bounds(range)?;
    let unit_source = ["low", "high"]
        .into_iter()
        .filter_map(|end| range.get(end)?.as_object())
        .find(|end| end.contains_key("value"))?;
    Some(QuantityRow {
        param,
        value: positive_zero(value),
        low: positive_zero(low),
        high: positive_zero(high),
        system: string(unit_source, "system"),
        code: string(unit_source, "code"),
        unit: string(unit_source, "unit"),
    })
}

/// Returns the bounds of a Range (`low.value`, `high.value`), infinite where an end is
/// missing. The value is the midpoint, or the given end when the other is open.
fn range_bounds(range: &Map<String, Value>) -> Option<DecimalRange> {
    let bound = |end: &str| range.get(end)?.get("value")?.as_f64();
    let (low, high) = match (bound("low"), bound("high")) {
        (None, None) => return None,
        (Some(low), Some(high)) if low > high => return None,
        (low, high) => (low, high),
    };
    let value = match (low, high) {
        (Some(low), Some(high)) => low + (high - low) / 2.0,
        (Some(end), None) | (None, Some(end)) => end,
        (None, None) => return None,
    };
    Some(DecimalRange {
        value,
        low: low.unwrap_or(f64::NEG_INFINITY),
        high: high.unwrap_or(f64::INFINITY),
    })
}

fn decimal(value: Option<&Value>) -> Option<DecimalRange> {
    match value? {
        Value::Number(number) => number::from_json(number),
        _ => None,
    }
}

fn string(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// Maps `-0.0` to `0.0`, so rows that compare by bit pattern treat them as one value.
fn positive_zero(value: f64) -> f64 {
    if value == 0.0 { 0.0 } else { value }
}
