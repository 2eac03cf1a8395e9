//! Durations written as people write them (`30s`, `5m`, `1h30m`), for
//! command-line flags.

use std::time::Duration;

/// Parses a duration such as `30m`, `70s`, `1h30m`, `2h 15min`, `500ms`:
/// numbers each followed by a unit (ms, s, m, h, d and their long forms).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("invalid duration {text:?}: {why} (examples: 30m, 70s, 1h30m)");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad("number too large"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let secs: u64 = match unit {
            "ms" | "msec" | "millis" => {
                total += Duration::from_millis(n);
                rest = rest[unit_len..].trim_start();
                continue;
            }
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "" => return Err(bad("a number needs a unit")),
            other => return Err(bad(&format!("unknown unit {other:?}"))),
        };
        total += Duration::from_secs(n.checked_mul(secs).ok_or_else(|| bad("too long"))?);
        rest = rest[unit_len..].trim_start();
    }
    if total.is_zero() {
        return Err(bad("must be longer than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_humantime_and_bad_ones_are_named() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("70s"), Ok(Duration::from_secs(70)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2h 15min"), Ok(Duration::from_secs(8100)));
        assert_eq!(parse_duration("1 hour"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for (bad, why) in [
            ("", "empty"),
            ("30", "needs a unit"),
            ("30x", "unknown unit \"x\""),
            ("m30", "expected a number"),
            ("0s", "longer than zero"),
            ("-5m", "expected a number"),
            ("99999999999999999999s", "too large"),
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(why) && e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }
}
