//! FHIR `instant` values as stored in `meta.lastUpdated`.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Formats microseconds since the Unix epoch as a FHIR instant in UTC with millisecond
/// precision, such as `2026-01-31T08:15:00.250Z`.
pub fn format_instant(micros: i64) -> String {
    let nanos = i128::from(micros) * 1000;
    let Ok(when) = OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
        return "1970-01-01T00:00:00.000Z".to_string();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        when.year(),
        u8::from(when.month()),
        when.day(),
        when.hour(),
        when.minute(),
        when.second(),
        when.millisecond()
    )
}

/// Parses an RFC 3339 instant into microseconds since the Unix epoch.
pub fn parse_instant(text: &str) -> Option<i64> {
    let when = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(when.unix_timestamp_nanos() / 1000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_round_trip_at_millisecond_precision() {
        let micros = 1_780_000_000_123_456;
        let text = format_instant(micros);
        assert_eq!(text, "2026-05-28T20:26:40.123Z");
        assert_eq!(parse_instant(&text), Some(1_780_000_000_123_000));
    }
}
