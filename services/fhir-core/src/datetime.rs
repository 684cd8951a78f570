//! FHIR `date`, `dateTime` and `instant` values as inclusive ranges of microseconds since
//! the Unix epoch.
//!
//! A value covers every instant its precision allows: `2020` is 2020-01-01T00:00:00 through
//! 2020-12-31T23:59:59.999999, and `2020-03-01T10:00:00.5Z` is the tenth of a second from
//! 10:00:00.5 through 10:00:00.599999.
//! Date search values (`eq`, `gt`, `sa`, `eb`, `ap`, ...) compare these ranges, so resource
//! values and search values are parsed by the same rules.
//!
//! Values without a time zone (dates, and times that lack one against the FHIR rules) are
//! read as UTC.

use time::{Date, Month};

use crate::error::{Error, Result};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// An inclusive range of instants, in microseconds since 1970-01-01T00:00:00Z.
/// `i64::MIN` and `i64::MAX` mark an open start or end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateRange {
    pub low: i64,
    pub high: i64,
}

impl DateRange {
    /// Returns the smallest range covering both.
    pub fn cover(self, other: DateRange) -> DateRange {
        DateRange {
            low: self.low.min(other.low),
            high: self.high.max(other.high),
        }
    }
}

/// The precision a value is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    Year,
    Month,
    Day,
    Minute,
    Second,
    /// Seconds with this many fraction digits.
    Fraction(usize),
}

/// Parses a FHIR `date` (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`), `dateTime` or `instant`
/// (`YYYY-MM-DDThh:mm:ss[.fraction][Z|±hh:mm]`). A time needs seconds here; a missing time
/// zone is read as UTC.
pub fn parse(value: &str) -> Result<DateRange> {
    parse_with(value, false)
}

/// Parses a date search value by the rules of [`parse`], also accepting a time with minutes
/// only (`2020-03-01T10:30`), which covers that whole minute.
pub fn parse_search_value(value: &str) -> Result<DateRange> {
    parse_with(value, true)
}

/// Returns the range of a FHIR Period: from the start of `start` through the end of `end`,
/// open where either is missing.
pub fn period(start: Option<&str>, end: Option<&str>) -> Result<DateRange> {
    let low = start.map(parse).transpose()?.map_or(i64::MIN, |r| r.low);
    let high = end.map(parse).transpose()?.map_or(i64::MAX, |r| r.high);
    if low > high {
        let value = format!("{}..{}", start.unwrap_or(""), end.unwrap_or(""));
        return Err(invalid(&value, "the period ends before it starts"));
    }
    Ok(DateRange { low, high })
}

/// Returns the range covering every event of a FHIR Timing (`Timing.event`), or `None` when
/// it lists no events.
pub fn timing<'a>(events: impl IntoIterator<Item = &'a str>) -> Result<Option<DateRange>> {
    let mut covered: Option<DateRange> = None;
    for event in events {
        let range = parse(event)?;
        covered = Some(covered.map_or(range, |c| c.cover(range)));
    }
    Ok(covered)
}

fn parse_with(value: &str, allow_minutes: bool) -> Result<DateRange> {
    let bytes = value.as_bytes();
    let year = digits(value, 0, 4, "the year must have four digits")?;
    if year == 0 {
        return Err(invalid(value, "year 0000 does not exist in FHIR"));
    }
    let mut month = 1;
    let mut day = 1;
    let mut precision = Precision::Year;

    if bytes.len() > 4 {
        expect(value, 4, b'-')?;
        month = digits(value, 5, 2, "the month must have two digits")?;
        precision = Precision::Month;
    }
    if bytes.len() > 7 {
        expect(value, 7, b'-')?;
        day = digits(value, 8, 2, "the day must have two digits")?;
        precision = Precision::Day;
    }
    let date = calendar_date(value, year, month, day)?;
    let mut low = day_start(date);

    if bytes.len() > 10 {
        expect(value, 10, b'T')?;
        let (time, time_precision, offset) = parse_time(value, allow_minutes)?;
        low += time - offset;
        precision = time_precision;
    }

    let high = match precision {
        Precision::Year => day_start(calendar_date(value, year, 12, 31)?) + MICROS_PER_DAY - 1,
        Precision::Month => {
            let last_day = date.month().length(date.year());
            day_start(calendar_date(value, year, month, last_day)?) + MICROS_PER_DAY - 1
        }
        Precision::Day => low + MICROS_PER_DAY - 1,
        Precision::Minute => low + MICROS_PER_MINUTE - 1,
        Precision::Second => low + MICROS_PER_SECOND - 1,
        Precision::Fraction(digits) if digits < 6 => low + 10_i64.pow(6 - digits as u32) - 1,
        Precision::Fraction(_) => low,
    };
    Ok(DateRange { low, high })
}

/// Parses `hh:mm[:ss[.fraction]][zone]` after the `T` at offset 10. Returns the time of day
/// and the zone offset, both in microseconds.
fn parse_time(value: &str, allow_minutes: bool) -> Result<(i64, Precision, i64)> {
    let bytes = value.as_bytes();
    let hour: u8 = digits(value, 11, 2, "the hour must have two digits")?;
    expect(value, 13, b':')?;
    let minute: u8 = digits(value, 14, 2, "the minutes must have two digits")?;
    if hour > 23 || minute > 59 {
        return Err(invalid(value, "the time of day is out of range"));
    }
    let mut time = (i64::from(hour) * 60 + i64::from(minute)) * MICROS_PER_MINUTE;
    let mut precision = Precision::Minute;
    let mut position = 16;

    if bytes.get(position) == Some(&b':') {
        let second: u8 = digits(value, 17, 2, "the seconds must have two digits")?;
        // FHIR allows 60 for a leap second, which is counted as the last second of the minute.
        if second > 60 {
            return Err(invalid(value, "the seconds are out of range"));
        }
        time += i64::from(second.min(59)) * MICROS_PER_SECOND;
        precision = Precision::Second;
        position = 19;
    } else if !allow_minutes {
        return Err(invalid(value, "a time must include seconds (hh:mm:ss)"));
    }

    if precision == Precision::Second && bytes.get(position) == Some(&b'.') {
        let fraction = &bytes[position + 1..];
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 {
            return Err(invalid(value, "a decimal point must be followed by digits"));
        }
        let micros = fraction[..count.min(6)]
            .iter()
            .fold(0, |total, digit| total * 10 + i64::from(digit - b'0'));
        time += micros * 10_i64.pow(6 - count.min(6) as u32);
        precision = Precision::Fraction(count);
        position += 1 + count;
    }

    let offset = parse_zone(value, &value[position..])?;
    Ok((time, precision, offset))
}

/// Parses `Z`, `+hh:mm`, `-hh:mm` or nothing (read as UTC) into microseconds east of UTC.
fn parse_zone(value: &str, zone: &str) -> Result<i64> {
    if zone.is_empty() || zone == "Z" {
        return Ok(0);
    }
    let bytes = zone.as_bytes();
    let sign = match bytes[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(invalid(value, "expected a time zone (Z, +hh:mm or -hh:mm)")),
    };
    let is_well_formed = bytes.len() == 6
        && bytes[3] == b':'
        && [1, 2, 4, 5].iter().all(|&i| bytes[i].is_ascii_digit());
    if !is_well_formed {
        return Err(invalid(value, "the time zone must be Z, +hh:mm or -hh:mm"));
    }
    let hours = i64::from((bytes[1] - b'0') * 10 + (bytes[2] - b'0'));
    let minutes = i64::from((bytes[4] - b'0') * 10 + (bytes[5] - b'0'));
    if hours > 14 || minutes > 59 {
        return Err(invalid(value, "the time zone offset is out of range"));
    }
    Ok(sign * (hours * 60 + minutes) * MICROS_PER_MINUTE)
}

/// Returns the microseconds from the epoch to the start (UTC) of a calendar day.
fn day_start(date: Date) -> i64 {
    (i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY) * MICROS_PER_DAY
}

fn calendar_date(value: &str, year: u16, month: u8, day: u8) -> Result<Date> {
    let month = Month::try_from(month).map_err(|_| invalid(value, "the month must be 01-12"))?;
    Date::from_calendar_date(i32::from(year), month, day)
        .map_err(|_| invalid(value, "the day does not exist in that month"))
}

/// Reads exactly `count` ASCII digits at `start`.
fn digits<T: TryFrom<u32>>(
    value: &str,
    start: usize,
    count: usize,
    reason: &'static str,
) -> Result<T> {
    let Some(slice) = value.as_bytes().get(start..start + count) else {
        return Err(invalid(value, reason));
    };
    if !slice.iter().all(u8::is_ascii_digit) {
        return Err(invalid(value, reason));
    }
    let number = slice
        .iter()
        .fold(0_u32, |total, digit| total * 10 + u32::from(digit - b'0'));
    T::try_from(number).map_err(|_| invalid(value, reason))
}

fn expect(value: &str, position: usize, expected: u8) -> Result<()> {
    if value.as_bytes().get(position) == Some(&expected) {
        return Ok(());
    }
    let reason = match expected {
        b'-' => "expected `-` between year, month and day",
        b'T' => "expected `T` before the time",
        _ => "expected `:` between hours and minutes",
    };
    Err(invalid(value, reason))
}

fn invalid(value: &str, reason: &'static str) -> Error {
    Error::InvalidDate {
        value: value.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests;
