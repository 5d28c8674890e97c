//! Small human-readable renderings shared by the command-line tools. Timestamps on the wire
//! are milliseconds since the epoch, always shown in UTC (the calendar is `shared::time`).

use shared::TimestampMs;
use shared::time::civil_from_days;

/// `2026-11-22 04:02:03` (UTC) for a wire timestamp; `-` for 0 (never).
pub fn format_utc(ms: TimestampMs) -> String {
    if ms == 0 {
        return "-".to_string();
    }
    let seconds = ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// How long ago `ms` was, relative to `now_ms`: `3s`, `5m`, `2h`, `4d`.
pub fn format_age(now_ms: TimestampMs, ms: TimestampMs) -> String {
    if ms == 0 {
        return "never".to_string();
    }
    let seconds = (now_ms - ms).max(0) / 1000;
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_timestamps() {
        assert_eq!(format_utc(0), "-");
        assert_eq!(format_utc(1), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_798_761_599_999), "2026-12-31 23:59:59");
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(10_000, 0), "never");
        assert_eq!(format_age(10_000, 7_000), "3s");
        assert_eq!(format_age(400_000, 100_000), "5m");
        assert_eq!(format_age(3 * 86_400_000, 1), "2d");
    }
}
