//! Wall-clock time and the civil (proleptic Gregorian) calendar, both
//! directions: the one place that turns dates into unix seconds and back.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch, now.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Days since 1970-01-01 of a date (Howard Hinnant's algorithm); None for
/// an impossible date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day == 0 || day > month_days[month as usize - 1] {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The date `days` after 1970-01-01: (year, month, day).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix seconds → `YYYY-MM-DD` (UTC).
pub(crate) fn format_date(unix: f64) -> String {
    let (y, m, d) = civil_from_days((unix / 86_400.0).floor() as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Calendar days (UTC) from the date of `now` to the date of `then`: every
/// time of one day is the same number of days away, so an end date written
/// as `2027-12-31` and one written as `2027-12-31T23:59:59Z` agree.
pub(crate) fn days_until(now: f64, then: f64) -> i64 {
    (then / 86_400.0).floor() as i64 - (now / 86_400.0).floor() as i64
}

/// Unix seconds → `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn format_time(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let day_secs = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        format_date(unix),
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_the_civil_calendar() {
        for (y, m, d) in [
            (1970, 1, 1),
            (2000, 2, 29),
            (2027, 12, 31),
            (2100, 3, 1),
            (1969, 12, 31),
        ] {
            assert_eq!(
                civil_from_days(days_from_civil(y, m, d).unwrap()),
                (y, m, d)
            );
        }
        assert_eq!(
            format_time(1_735_689_600.0 + 3661.5),
            "2025-01-01 01:01:01 UTC"
        );
    }

    #[test]
    fn days_until_counts_calendar_days_whatever_the_time_of_day() {
        let day = |y, m, d| days_from_civil(y, m, d).unwrap() as f64 * 86_400.0;
        let end = day(2027, 12, 31);
        let now = day(2027, 12, 1) + 13.0 * 3600.0;
        assert_eq!(days_until(now, end), 30);
        assert_eq!(days_until(now, end + 86_399.0), 30, "23:59:59 of that day");
        assert_eq!(days_until(now, day(2027, 12, 1)), 0, "today");
        assert_eq!(
            days_until(now, day(2027, 11, 30) + 86_399.0),
            -1,
            "yesterday"
        );
    }

    #[test]
    fn impossible_dates_have_no_day_number() {
        assert_eq!(days_from_civil(2025, 2, 29), None);
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(2025, 13, 1), None);
        assert_eq!(days_from_civil(2025, 4, 0), None);
    }
}
