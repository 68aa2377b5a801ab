//! Entitlement dates as the API sends them (the format is not documented):
//! `YYYY-MM-DD` or RFC 3339, as unix seconds.

/// Dates at or past this (year 9000) mean "never expires".
pub(crate) const FAR_FUTURE: f64 = 221_845_392_000.0;

/// `YYYY-MM-DD` or RFC 3339 (`2025-01-01T00:00:00Z`, offsets and fractions
/// allowed) as unix seconds; anything else is unknown.
pub(crate) fn parse_date(text: &str) -> Option<f64> {
    let text = text.trim();
    let bytes = text.as_bytes();
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let days = crate::clock::days_from_civil(num(0..4)?, num(5..7)? as u32, num(8..10)? as u32)?;
    let mut seconds = (days * 86_400) as f64;
    if bytes.len() == 10 {
        return Some(seconds);
    }
    if !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes.len() < 19
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    seconds += (h * 3600 + m * 60 + s) as f64;
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        seconds += format!("0.{}", &fraction[..digits]).parse::<f64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let ob = rest.as_bytes();
            if ob.len() != 6 || ob[3] != b':' {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(seconds - offset as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_in_both_documented_forms() {
        assert_eq!(parse_date("1970-01-01"), Some(0.0));
        assert_eq!(parse_date("2027-12-31"), Some(1_830_211_200.0));
        assert_eq!(parse_date("2025-01-01T00:00:00Z"), Some(1_735_689_600.0));
        assert_eq!(
            parse_date("2025-01-01T01:00:00+01:00"),
            Some(1_735_689_600.0)
        );
        assert_eq!(parse_date("2025-01-01T00:00:00.5Z"), Some(1_735_689_600.5));
        assert_eq!(parse_date(""), None);
        assert_eq!(parse_date("2025-02-30"), None);
        assert_eq!(parse_date("31/12/2027"), None);
        assert_eq!(parse_date("2025-01-01T00:00:00"), None);
        assert_eq!(parse_date("2025-01-01Tab:00:00Z"), None);
    }
}
