//! The lexical rules of R4's primitive types (the "Regex" column of the data types page):
//! dates and times with their precisions and time zones, codes, ids, URIs and integer
//! ranges. A string of any type is never empty in FHIR JSON.

/// Returns why `text` is not a valid value of primitive type `type_name`, or `None` when
/// it is (or the type has no rule here).
pub fn string_error(type_name: &str, text: &str) -> Option<&'static str> {
    if text.is_empty() {
        return Some("a FHIR string value is never empty");
    }
    let valid = match type_name {
        "date" => is_date(text),
        "dateTime" => is_date_time(text),
        "instant" => is_instant(text),
        "time" => is_time(text),
        "code" => is_code(text),
        "id" => crate::id::is_valid_id(text),
        "uri" | "url" | "canonical" | "oid" | "uuid" => !text.chars().any(is_space),
        _ => true,
    };
    if valid {
        None
    } else {
        Some(match type_name {
            "date" => "a date is YYYY, YYYY-MM or YYYY-MM-DD",
            "dateTime" => {
                "a dateTime is YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with an optional fraction and a time zone (Z or +hh:mm)"
            }
            "instant" => {
                "an instant is YYYY-MM-DDThh:mm:ss with an optional fraction and a time zone (Z or +hh:mm)"
            }
            "time" => "a time is hh:mm:ss with an optional fraction",
            "code" => "a code has no leading, trailing or repeated whitespace",
            "id" => "an id has 1 to 64 characters from A-Z a-z 0-9 - .",
            _ => "a URI has no whitespace",
        })
    }
}

/// Returns why `value` is not a valid value of integer type `type_name`, or `None`.
pub fn integer_error(type_name: &str, value: i64) -> Option<&'static str> {
    let (min, message) = match type_name {
        "positiveInt" => (1, "a positiveInt is at least 1"),
        "unsignedInt" => (0, "an unsignedInt is at least 0"),
        _ => (i64::from(i32::MIN), "an integer fits in 32 bits"),
    };
    (value < min || value > i64::from(i32::MAX)).then_some(message)
}

fn digits(text: &str, count: usize) -> Option<u32> {
    (text.len() == count && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn is_date(text: &str) -> bool {
    let mut parts = text.split('-');
    let year = parts.next().and_then(|y| digits(y, 4));
    let month = parts.next().map(|m| digits(m, 2));
    let day = parts.next().map(|d| digits(d, 2));
    if parts.next().is_some() || year.is_none() {
        return false;
    }
    match (month, day) {
        (None, None) => true,
        (Some(Some(month)), None) => (1..=12).contains(&month),
        (Some(Some(month)), Some(Some(day))) => {
            (1..=12).contains(&month)
                && (1..=days_in_month(year.unwrap_or(0), month)).contains(&day)
        }
        _ => false,
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn is_time(text: &str) -> bool {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    if fraction.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    let mut parts = whole.split(':');
    let hour = parts.next().and_then(|h| digits(h, 2));
    let minute = parts.next().and_then(|m| digits(m, 2));
    let second = parts.next().and_then(|s| digits(s, 2));
    parts.next().is_none()
        && hour.is_some_and(|h| h <= 23)
        && minute.is_some_and(|m| m <= 59)
        && second.is_some_and(|s| s <= 60)
}

fn is_zone(text: &str) -> bool {
    if text == "Z" {
        return true;
    }
    let Some(offset) = text.strip_prefix(['+', '-']) else {
        return false;
    };
    let Some((hours, minutes)) = offset.split_once(':') else {
        return false;
    };
    digits(hours, 2).is_some_and(|h| h <= 14) && digits(minutes, 2).is_some_and(|m| m <= 59)
}

/// `YYYY-MM-DDThh:mm:ss[.f]` followed by a time zone.
fn is_instant(text: &str) -> bool {
    let Some((date, rest)) = text.split_once('T') else {
        return false;
    };
    let zone_start = rest.find(['Z', '+', '-']);
    let Some(zone_start) = zone_start else {
        return false;
    };
    date.len() == 10
        && is_date(date)
        && is_time(&rest[..zone_start])
        && is_zone(&rest[zone_start..])
}

fn is_date_time(text: &str) -> bool {
    if text.contains('T') {
        is_instant(text)
    } else {
        is_date(text)
    }
}

/// Whitespace as XML Schema's `\s` means it in FHIR's patterns: space, tab, CR and LF
/// only, so a no-break space inside a code is allowed.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_code(text: &str) -> bool {
    !text.starts_with(is_space)
        && !text.ends_with(is_space)
        && !text
            .split(|c: char| !is_space(c))
            .any(|gap| gap.chars().count() > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_follow_their_patterns() {
        for good in ["2020", "2020-02", "2020-02-29", "1900-12-31"] {
            assert!(is_date(good), "{good}");
        }
        for bad in [
            "notadate",
            "2020-13",
            "2021-02-29",
            "2020-1-01",
            "20200101",
            "2020-02-30T",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
        for good in [
            "2020",
            "2020-02-03",
            "2020-02-03T10:11:12Z",
            "2020-02-03T10:11:12.123+05:30",
            "2020-02-03T10:11:12-04:00",
        ] {
            assert!(is_date_time(good), "{good}");
        }
        for bad in [
            "2020-02-03T10:11",
            "2020-02-03T10:11:12",
            "2020-02-03T25:00:00Z",
            "yesterday",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
        assert!(is_instant("2020-02-03T10:11:12.5Z"));
        assert!(!is_instant("2020-02-03"));
        assert!(is_time("10:11:12"));
        assert!(!is_time("10:11"));
    }

    #[test]
    fn codes_strings_and_integers() {
        assert_eq!(string_error("code", "female"), None);
        assert_eq!(string_error("code", "a b"), None);
        assert!(string_error("code", " female").is_some());
        assert!(string_error("code", "a  b").is_some());
        assert!(string_error("string", "").is_some());
        assert!(string_error("uri", "http://x y").is_some());
        assert_eq!(string_error("markdown", "any text"), None);
        assert_eq!(integer_error("positiveInt", 1), None);
        assert!(integer_error("positiveInt", 0).is_some());
        assert!(integer_error("unsignedInt", -1).is_some());
        assert!(integer_error("integer", i64::from(i32::MAX) + 1).is_some());
    }
}
