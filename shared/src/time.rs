//! Wire timestamps as people write them: RFC 3339 in UTC (`2026-11-22T04:02:03.123Z`).
//! On the wire every time is [`TimestampMs`]; this text form is for files meant to be read
//! elsewhere (the audit export) and for times typed on a command line. No date crate for two
//! functions: the proleptic Gregorian calendar is a few lines of arithmetic.

use crate::TimestampMs;

/// `2026-11-22T04:02:03.123Z` for a wire timestamp (always UTC, always milliseconds).
pub fn format_rfc3339(ms: TimestampMs) -> String {
    let seconds = ms.div_euclid(1000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        ms.rem_euclid(1000)
    )
}

/// A time in RFC 3339 (`2026-11-22T04:02:03Z`, `…03.5+01:00`, a space for the `T`), or a
/// bare date (`2026-11-22`, its midnight in UTC), as a wire timestamp. Fractions beyond
/// milliseconds are cut.
pub fn parse_rfc3339(text: &str) -> Result<TimestampMs, String> {
    let bad =
        || format!("'{text}' is not a time like 2026-11-22T04:02:03Z or a date like 2026-11-22");
    let text = text.trim();
    // ASCII only, so that every slice below falls on a character boundary.
    if !text.is_ascii() {
        return Err(bad());
    }
    let (date, rest) = text.split_at(text.len().min(10));
    let days = parse_date(date).ok_or_else(bad)?;
    if rest.is_empty() {
        return Ok(days * 86_400_000);
    }
    let rest = rest
        .strip_prefix(['T', 't', ' '])
        .filter(|rest| rest.len() >= 8)
        .ok_or_else(bad)?;
    let (clock, zone) = rest.split_at(8);
    let of_day_ms = parse_clock(clock).ok_or_else(bad)?;
    let (fraction_ms, zone) = parse_fraction(zone).ok_or_else(bad)?;
    let offset_ms = parse_zone(zone).ok_or_else(bad)?;
    Ok(days * 86_400_000 + of_day_ms + fraction_ms - offset_ms)
}

/// `YYYY-MM-DD` as days since the epoch, checked against the month's length.
fn parse_date(date: &str) -> Option<i64> {
    let bytes = date.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year: i64 = digits(&date[0..4])?;
    let month: u32 = digits(&date[5..7])?;
    let day: u32 = digits(&date[8..10])?;
    if !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // A day past the month's end lands in the next month: refuse it.
    (civil_from_days(days) == (year, month, day)).then_some(days)
}

/// `HH:MM:SS` as milliseconds into the day.
fn parse_clock(clock: &str) -> Option<i64> {
    let bytes = clock.as_bytes();
    if bytes[2] != b':' || bytes[5] != b':' {
        return None;
    }
    let hours: i64 = digits(&clock[0..2])?;
    let minutes: i64 = digits(&clock[3..5])?;
    let seconds: i64 = digits(&clock[6..8])?;
    (hours < 24 && minutes < 60 && seconds < 61)
        .then_some(((hours * 60 + minutes) * 60 + seconds) * 1000)
}

/// An optional `.fff…` as milliseconds, and what follows it.
fn parse_fraction(text: &str) -> Option<(i64, &str)> {
    let Some(rest) = text.strip_prefix('.') else {
        return Some((0, text));
    };
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let millis = format!("{:0<3}", &rest[..end.min(3)]);
    Some((digits(&millis)?, &rest[end..]))
}

/// `Z` or `±HH:MM` as the offset from UTC in milliseconds.
fn parse_zone(zone: &str) -> Option<i64> {
    if zone.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zone = &zone[1..];
    if zone.len() != 5 || zone.as_bytes()[2] != b':' {
        return None;
    }
    let hours: i64 = digits(&zone[0..2])?;
    let minutes: i64 = digits(&zone[3..5])?;
    Some(sign * (hours * 60 + minutes) * 60_000)
}

/// Only ASCII digits (no sign, no spaces), as a number.
fn digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Howard Hinnant's days-since-epoch to proleptic Gregorian date.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Howard Hinnant's proleptic Gregorian date to days since the epoch.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_utc_with_milliseconds() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_what_it_formats_and_the_usual_variants() {
        for ms in [0, 1_700_000_000_123, 951_782_400_000, 1_798_761_599_999] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Ok(ms));
        }
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse_rfc3339("2023-11-14 22:13:20z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.5Z"),
            Ok(1_700_000_000_500)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123456Z"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T17:43:20-04:30"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(parse_rfc3339("2023-11-14"), Ok(1_699_920_000_000));
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for text in [
            "",
            "yesterday",
            "2023-02-29",
            "2023-13-01",
            "2023-11-14T25:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "+023-11-14",
            "2023-11-14T22:13:20\u{e9}",
            "2023-11-1\u{e9}",
        ] {
            assert!(parse_rfc3339(text).is_err(), "{text}");
        }
    }
}
