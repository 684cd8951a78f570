use proptest::prelude::*;
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

use super::*;

/// 2020-01-01T00:00:00Z in microseconds.
const START_OF_2020: i64 = 1_577_836_800_000_000;
/// 2021-01-01T00:00:00Z in microseconds.
const START_OF_2021: i64 = 1_609_459_200_000_000;

#[test]
fn year_covers_whole_year() {
    let range = parse("2020").unwrap();
    assert_eq!(range.low, START_OF_2020);
    assert_eq!(range.high, START_OF_2021 - 1);
}

#[test]
fn month_and_day_precision() {
    let february = parse("2020-02").unwrap();
    assert_eq!(february.low, START_OF_2020 + 31 * MICROS_PER_DAY);
    assert_eq!(february.high, START_OF_2020 + 60 * MICROS_PER_DAY - 1);

    let december = parse("2020-12").unwrap();
    assert_eq!(december.high, START_OF_2021 - 1);

    let leap_day = parse("2020-02-29").unwrap();
    assert_eq!(leap_day.high - leap_day.low, MICROS_PER_DAY - 1);
}

#[test]
fn time_zone_shifts_range() {
    let utc = parse("2020-01-01T00:00:00Z").unwrap();
    let east = parse("2020-01-01T05:30:00+05:30").unwrap();
    let west = parse("2019-12-31T19:00:00-05:00").unwrap();
    let no_zone = parse("2020-01-01T00:00:00").unwrap();
    assert_eq!(utc.low, START_OF_2020);
    assert_eq!(east, utc);
    assert_eq!(west, utc);
    assert_eq!(no_zone, utc);
    assert_eq!(utc.high, START_OF_2020 + MICROS_PER_SECOND - 1);
}

#[test]
fn fraction_sets_precision() {
    let tenth = parse("2020-01-01T00:00:00.5Z").unwrap();
    assert_eq!(tenth.low, START_OF_2020 + 500_000);
    assert_eq!(tenth.high, START_OF_2020 + 599_999);

    let micro = parse("2020-01-01T00:00:00.123456Z").unwrap();
    assert_eq!(micro.low, micro.high);

    let nano = parse("2020-01-01T00:00:00.123456789Z").unwrap();
    assert_eq!(nano.low, START_OF_2020 + 123_456);
    assert_eq!(nano.high, nano.low);
}

#[test]
fn leap_second_counts_as_last_second() {
    let range = parse("2016-12-31T23:59:60Z").unwrap();
    assert_eq!(range, parse("2016-12-31T23:59:59Z").unwrap());
}

#[test]
fn year_bounds() {
    assert!(parse("0001").is_ok());
    let last = parse("9999").unwrap();
    assert_eq!(
        last.high,
        parse("9999-12-31T23:59:59.999999Z").unwrap().high
    );
}

#[test]
fn search_value_accepts_minutes() {
    let minute = parse_search_value("2020-01-01T10:30Z").unwrap();
    assert_eq!(minute.low, START_OF_2020 + 630 * MICROS_PER_MINUTE);
    assert_eq!(minute.high, minute.low + MICROS_PER_MINUTE - 1);
    assert!(parse("2020-01-01T10:30Z").is_err());
    assert_eq!(parse_search_value("2020").unwrap(), parse("2020").unwrap());
}

#[test]
fn invalid_values_are_rejected() {
    for value in [
        "",
        "20",
        "0000",
        "2021-02-30",
        "2019-02-29",
        "2021-13",
        "2021-00-10",
        "2021-01-32",
        "2021-1-1",
        "2021/01/01",
        "2021-01-01Z",
        "2021-01-01T",
        "2021-01-01T24:00:00Z",
        "2021-01-01T10:60:00Z",
        "2021-01-01T10:00:61Z",
        "2021-01-01T10:00Z",
        "2021-01-01T10:00:00.Z",
        "2021-01-01T10:00:00+15:00",
        "2021-01-01T10:00:00+05",
        "2021-01-01T10:00:00 Z",
        "2021-01-01t10:00:00Z",
        "+2021",
        "２０２１",
    ] {
        let error = parse(value).expect_err(value);
        assert!(
            matches!(error, Error::InvalidDate { .. }),
            "{value}: {error}"
        );
    }
}

#[test]
fn invalid_date_names_value_and_reason() {
    let message = parse("2021-02-30").unwrap_err().to_string();
    assert_eq!(
        message,
        "invalid date `2021-02-30`: the day does not exist in that month"
    );
}

#[test]
fn period_ends() {
    let closed = period(Some("2020"), Some("2020-06-15")).unwrap();
    assert_eq!(closed.low, START_OF_2020);
    assert_eq!(closed.high, parse("2020-06-15").unwrap().high);

    let open_end = period(Some("2020"), None).unwrap();
    assert_eq!(open_end.high, i64::MAX);
    let open_start = period(None, Some("2020")).unwrap();
    assert_eq!(open_start.low, i64::MIN);

    assert!(period(Some("2021"), Some("2020")).is_err());
    assert!(period(Some("2021-02-30"), None).is_err());
}

#[test]
fn timing_covers_events() {
    let events = ["2020-03-01T10:00:00Z", "2020-01-01", "2020-02-01T00:00:00Z"];
    let range = timing(events).unwrap().unwrap();
    assert_eq!(range.low, START_OF_2020);
    assert_eq!(range.high, parse("2020-03-01T10:00:00Z").unwrap().high);
    assert_eq!(timing([]).unwrap(), None);
}

/// The parts of a generated date string.
#[derive(Debug, Clone)]
struct Parts {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    /// 0 = year, 1 = month, 2 = day, 3 = seconds, 4 = fraction.
    precision: u8,
    fraction: String,
    /// Minutes east of UTC; `None` writes no zone, `Some(0)` alternates `Z` and `+00:00`.
    zone: Option<i16>,
}

impl Parts {
    fn text(&self) -> String {
        let mut text = format!("{:04}", self.year);
        if self.precision >= 1 {
            text += &format!("-{:02}", self.month);
        }
        if self.precision >= 2 {
            text += &format!("-{:02}", self.day);
        }
        if self.precision >= 3 {
            text += &format!("T{:02}:{:02}:{:02}", self.hour, self.minute, self.second);
            if self.precision == 4 {
                text += &format!(".{}", self.fraction);
            }
            match self.zone {
                None => {}
                Some(0) if self.second.is_multiple_of(2) => text += "Z",
                Some(offset) => {
                    let sign = if offset < 0 { '-' } else { '+' };
                    let offset = offset.unsigned_abs();
                    text += &format!("{sign}{:02}:{:02}", offset / 60, offset % 60);
                }
            }
        }
        text
    }

    /// Returns the first and last microsecond the text covers, computed with the `time`
    /// crate.
    fn expected(&self) -> (i64, i64) {
        let month = Month::try_from(self.month).unwrap();
        let (first_date, last_date) = match self.precision {
            0 => (
                Date::from_calendar_date(self.year.into(), Month::January, 1).unwrap(),
                Date::from_calendar_date(self.year.into(), Month::December, 31).unwrap(),
            ),
            1 => (
                Date::from_calendar_date(self.year.into(), month, 1).unwrap(),
                Date::from_calendar_date(self.year.into(), month, month.length(self.year.into()))
                    .unwrap(),
            ),
            _ => {
                let date = Date::from_calendar_date(self.year.into(), month, self.day).unwrap();
                (date, date)
            }
        };
        if self.precision <= 2 {
            let start = PrimitiveDateTime::new(first_date, Time::MIDNIGHT).assume_utc();
            let end = PrimitiveDateTime::new(last_date, Time::MIDNIGHT).assume_utc();
            let day = 86_400_000_000;
            return (micros(start), micros(end) + day - 1);
        }

        let fraction_micros = self.fraction_micros();
        let time =
            Time::from_hms_micro(self.hour, self.minute, self.second, fraction_micros).unwrap();
        let minutes = self.zone.unwrap_or(0);
        let offset = UtcOffset::from_hms((minutes / 60) as i8, (minutes % 60) as i8, 0).unwrap();
        let start = micros(PrimitiveDateTime::new(first_date, time).assume_offset(offset));
        let width = match (self.precision, self.fraction.len()) {
            (3, _) => 1_000_000,
            (_, digits) if digits < 6 => 10_i64.pow(6 - digits as u32),
            _ => 1,
        };
        (start, start + width - 1)
    }

    fn fraction_micros(&self) -> u32 {
        if self.precision != 4 {
            return 0;
        }
        let mut digits: String = self.fraction.chars().take(6).collect();
        while digits.len() < 6 {
            digits.push('0');
        }
        digits.parse().unwrap()
    }
}

fn micros(instant: time::OffsetDateTime) -> i64 {
    i64::try_from(instant.unix_timestamp_nanos() / 1000).unwrap()
}

fn parts() -> impl Strategy<Value = Parts> {
    (1_u16..=9999, 1_u8..=12)
        .prop_flat_map(|(year, month)| {
            let days = Month::try_from(month).unwrap().length(year.into());
            (
                Just(year),
                Just(month),
                1..=days,
                0_u8..24,
                0_u8..60,
                0_u8..60,
                0_u8..=4,
                "[0-9]{1,9}",
                proptest::option::of(-14 * 60_i16..=14 * 60),
            )
        })
        .prop_map(
            |(year, month, day, hour, minute, second, precision, fraction, zone)| Parts {
                year,
                month,
                day,
                hour,
                minute,
                second,
                precision,
                fraction,
                zone,
            },
        )
}

proptest! {
    #[test]
    fn valid_dates_cover_their_instant(parts in parts()) {
        let text = parts.text();
        let range = parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (first, last) = parts.expected();
        prop_assert!(range.low <= range.high, "{text}: {range:?}");
        prop_assert!(range.low <= first && first <= range.high, "{text}: {range:?}");
        prop_assert_eq!(range.low, first, "{}", text);
        prop_assert_eq!(range.high, last, "{}", text);
        prop_assert_eq!(parse_search_value(&text).unwrap(), range);
    }

    #[test]
    fn impossible_days_are_rejected(year in 1_u16..=9999, month in 1_u8..=12, extra in 1_u8..=5) {
        let days = Month::try_from(month).unwrap().length(year.into());
        let text = format!("{year:04}-{month:02}-{:02}", days + extra);
        prop_assert!(parse(&text).is_err(), "{}", text);
    }

    #[test]
    fn impossible_months_are_rejected(year in 1_u16..=9999, month in 13_u8..=99) {
        let text = format!("{year:04}-{month:02}");
        prop_assert!(parse(&text).is_err(), "{}", text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
        let _ = parse(&text);
        let _ = parse_search_value(&text);
    }

    #[test]
    fn date_like_text_never_panics(text in "[0-9]{4}(-[0-9]{1,2}(-[0-9]{1,2}(T[0-9:.]{0,16}[Z+-]?[0-9:]{0,6})?)?)?") {
        if let Ok(range) = parse_search_value(&text) {
            prop_assert!(range.low <= range.high);
        }
    }
}
