//! Rows of date parameters.

use serde_json::{Map, Value};

use super::DateRow;
use crate::datetime::{self, DateRange};
use crate::fhirpath::Node;

/// Adds a row for a date, dateTime or instant string, a Period or a Timing. Values that do
/// not parse add nothing.
pub(super) fn add_rows(param: &'static str, node: &Node<'_>, out: &mut Vec<DateRow>) {
    let range = match node.value {
        Value::String(value) => datetime::parse(value).ok(),
        Value::Object(map) if is_timing(node, map) => timing_range(map),
        Value::Object(map) => period_range(map),
        _ => None,
    };
    if let Some(DateRange { low, high }) = range {
        out.push(DateRow { param, low, high });
    }
}

fn is_timing(node: &Node<'_>, map: &Map<String, Value>) -> bool {
    match node.type_name {
        Some(type_name) => type_name == "Timing",
        None => !map.contains_key("start") && !map.contains_key("end"),
    }
}

/// Returns the range of a Period. A Period with neither end would match every date, so it
/// yields none.
fn period_range(period: &Map<String, Value>) -> Option<DateRange> {
    let start = period.get("start").and_then(Value::as_str);
    let end = period.get("end").and_then(Value::as_str);
    if start.is_none() && end.is_none() {
        return None;
    }
    datetime::period(start, end).ok()
}

/// Returns the range of Timing.event, or of Timing.repeat.boundsPeriod when no events are
/// listed.
/// NOTE: a Timing given only by a repeat rule with `boundsDuration`, `boundsRange` or no
/// bounds adds nothing, because its dates depend on when it starts.
fn timing_range(timing: &Map<String, Value>) -> Option<DateRange> {
    let events = match timing.get("event") {
        Some(Value::Array(events)) => events.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(event)) => vec![event.as_str()],
        _ => Vec::new(),
    };
    if let Some(range) = datetime::timing(events).ok()? {
        return Some(range);
    }
    let bounds = timing.get("repeat")?.get("boundsPeriod")?.as_object()?;
    period_range(bounds)
}
