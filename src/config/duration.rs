//! Go's duration syntax (`1h2m3.5s`, `500ms`): parsing for settings, formatting for `--help` and logs.
//!
//! Both follow Go's `time.ParseDuration` and `time.Duration.String` so existing
//! values and documentation keep their meaning. Unlike Go, a negative duration is an
//! error, since [`Duration`] cannot be negative; the upper bound is Go's (`i64::MAX`
//! nanoseconds, about 292 years).

use std::time::Duration;

const NANOS_PER_SECOND: u128 = 1_000_000_000;
/// Go's largest duration, in nanoseconds.
const MAX_NANOS: u64 = i64::MAX as u64;

const EXAMPLES: &str = "expected a duration such as 20s, 1m30s or 500ms";

/// Parses Go's duration grammar: `[-+]?([0-9]*(\.[0-9]*)?unit)+` or a bare `0`,
/// with units `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`.
///
/// The error is a lowercase reason without the input, for the caller to wrap.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(EXAMPLES.to_string());
    }
    let too_large = || {
        format!(
            "too large: at most {}",
            format_go_duration(Duration::from_nanos(MAX_NANOS))
        )
    };
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (whole, after_whole) = leading_int(rest).ok_or_else(too_large)?;
        let has_whole = after_whole.len() != rest.len();
        rest = after_whole;

        let (mut fraction, mut scale, mut has_fraction) = (0, 1.0, false);
        if let Some(after_dot) = rest.strip_prefix('.') {
            (fraction, scale, rest) = leading_fraction(after_dot);
            has_fraction = rest.len() != after_dot.len();
        }
        if !has_whole && !has_fraction {
            return Err(EXAMPLES.to_string());
        }

        // The unit runs up to the next number; slicing there is safe because
        // digits and '.' are ASCII and so always on a char boundary.
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, after_unit) = rest.split_at(unit_len);
        rest = after_unit;
        let unit_nanos: u64 = match unit {
            "" => return Err(format!("missing unit; {EXAMPLES}")),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => {
                return Err(format!(
                    "unknown unit {other:?}; units are ns, us, ms, s, m, h"
                ))
            }
        };

        let mut value = whole.checked_mul(unit_nanos).ok_or_else(too_large)?;
        if fraction > 0 {
            // Float arithmetic as in Go, which keeps fractions of hours exact to the nanosecond.
            value = value
                .checked_add((fraction as f64 * (unit_nanos as f64 / scale)) as u64)
                .ok_or_else(too_large)?;
        }
        total = total.checked_add(value).ok_or_else(too_large)?;
        if total > MAX_NANOS {
            return Err(too_large());
        }
    }
    if negative && total != 0 {
        return Err("must be positive".to_string());
    }
    Ok(Duration::from_nanos(total))
}

/// Consumes leading digits; `None` when they overflow.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut value: u64 = 0;
    for digit in s[..end].bytes() {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    Some((value, &s[end..]))
}

/// Consumes leading digits of a fraction, returning `value / scale`; digits
/// beyond u64 precision are skipped rather than rejected, as in Go.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (mut value, mut scale) = (0u64, 1.0);
    for digit in s[..end].bytes() {
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit - b'0')))
        {
            Some(next) if next <= MAX_NANOS => {
                value = next;
                scale *= 10.0;
            }
            _ => break,
        }
    }
    (value, scale, &s[end..])
}

/// Formats like Go's `Duration.String`: `0s`, `1.5µs`, `500ms`, `20s`, `1m0s`, `1h2m3.5s`.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    match nanos {
        0 => "0s".to_string(),
        1..=999 => format!("{nanos}ns"),
        1_000..=999_999 => format!("{}µs", decimal(nanos, 3)),
        1_000_000..=999_999_999 => format!("{}ms", decimal(nanos, 6)),
        _ => {
            let seconds = decimal(nanos % (60 * NANOS_PER_SECOND), 9);
            let minutes = nanos / (60 * NANOS_PER_SECOND) % 60;
            let hours = nanos / (3600 * NANOS_PER_SECOND);
            if hours > 0 {
                format!("{hours}h{minutes}m{seconds}s")
            } else if minutes > 0 {
                format!("{minutes}m{seconds}s")
            } else {
                format!("{seconds}s")
            }
        }
    }
}

/// `value / 10^places` in decimal, without trailing zeros in the fraction.
fn decimal(value: u128, places: u32) -> String {
    let unit = 10u128.pow(places);
    let (whole, fraction) = (value / unit, value % unit);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:0width$}", width = places as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_go_duration(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> String {
        parse_go_duration(s).expect_err(s)
    }

    #[test]
    fn parses_compound_with_fraction() {
        assert_eq!(ok("1h2m3.5s"), Duration::from_millis(3_723_500));
    }

    #[test]
    fn parses_single_units() {
        assert_eq!(ok("1ns"), Duration::from_nanos(1));
        assert_eq!(ok("1us"), Duration::from_micros(1));
        assert_eq!(ok("1µs"), Duration::from_micros(1));
        assert_eq!(ok("1μs"), Duration::from_micros(1));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
    }

    #[test]
    fn bare_zero_needs_no_unit() {
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("+0"), Duration::ZERO);
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn fraction_may_omit_either_side_of_the_point() {
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(err(".s"), "expected a duration such as 20s, 1m30s or 500ms");
        assert_eq!(
            err("-.s"),
            "expected a duration such as 20s, 1m30s or 500ms"
        );
    }

    #[test]
    fn leading_plus_is_accepted() {
        assert_eq!(ok("+5s"), Duration::from_secs(5));
    }

    #[test]
    fn units_may_repeat_in_any_order() {
        assert_eq!(ok("1s1m"), Duration::from_secs(61));
    }

    #[test]
    fn negative_is_rejected() {
        assert_eq!(err("-1s"), "must be positive");
    }

    #[test]
    fn unknown_unit_is_named() {
        assert_eq!(
            err("1x"),
            "unknown unit \"x\"; units are ns, us, ms, s, m, h"
        );
        assert_eq!(
            err("1e3s"),
            "unknown unit \"e\"; units are ns, us, ms, s, m, h"
        );
    }

    #[test]
    fn number_without_unit_is_rejected() {
        assert_eq!(
            err("1"),
            "missing unit; expected a duration such as 20s, 1m30s or 500ms"
        );
        assert_eq!(
            err("1s2"),
            "missing unit; expected a duration such as 20s, 1m30s or 500ms"
        );
    }

    #[test]
    fn empty_and_garbage_are_rejected() {
        assert_eq!(err(""), "expected a duration such as 20s, 1m30s or 500ms");
        assert_eq!(err("-"), "expected a duration such as 20s, 1m30s or 500ms");
        assert_eq!(err("s"), "expected a duration such as 20s, 1m30s or 500ms");
        assert_eq!(
            err(" 1s"),
            "expected a duration such as 20s, 1m30s or 500ms"
        );
    }

    #[test]
    fn go_maximum_is_the_limit() {
        assert_eq!(
            ok("9223372036854775807ns"),
            Duration::from_nanos(i64::MAX as u64)
        );
        assert_eq!(
            ok("2562047h47m16.854775807s"),
            Duration::from_nanos(i64::MAX as u64)
        );
        let too_large = "too large: at most 2562047h47m16.854775807s";
        assert_eq!(err("9223372036854775808ns"), too_large);
        assert_eq!(err("2562048h"), too_large);
        assert_eq!(err("99999999999999999999s"), too_large);
    }

    #[test]
    fn formats_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(1_250), "1.25ms"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(20), "20s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(3_723_500), "1h2m3.5s"),
            (Duration::from_nanos(60_000_000_001), "1m0.000000001s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_go_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn formatted_values_parse_back() {
        for nanos in [
            1,
            1_500,
            2_000_000,
            1_500_000_000,
            90_000_000_000,
            3_723_500_000_000,
        ] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(ok(&format_go_duration(d)), d);
        }
    }
}
