//! Date-times in notifications, read exactly as Python's `iso8601` package
//! (version 2.1.0) reads them.
//!
//! The original StackDistiller, and ceilometer through oslo.utils, parse a
//! notification's `timestamp` / `_context_timestamp` and every `datetime`
//! trait with `iso8601.parse_date` and normalise the result to UTC. [`parse`]
//! accepts the same strings, refuses the same strings and yields the same
//! instant. It is checked against the Python package on thousands of strings
//! (`crates/winchester-core/tests/iso8601_oracle.rs`).
//!
//! # What is accepted
//!
//! The whole string must match, with no whitespace around it (one final `\n`
//! is the only exception: Python's `$` matches before it). Only the ASCII
//! digits `0`-`9` count as digits, and letters are upper case (`T`, `Z`).
//!
//! - Date: `YYYY`, then optionally a month, either `-M` / `-MM` or `MM` (but
//!   not `YYYYMM` alone), then optionally a day, `-D` / `-DD` or `DD`. Missing
//!   parts are 1.
//! - Time, only after a day: `T` or one space, `HH`, then optionally minutes
//!   (`:MM` or `MM`), then optionally seconds (`:S`, `:SS`, `S` or `SS`) with
//!   an optional fraction (`.` or `,` and any number of digits). Missing parts
//!   are 0. As the grammar is tried in order, `T154` is 15:00:04 and `T15:41.5`
//!   is 15:00:41.5; glance's `2015-09-25 1541:14.634363` is 15:41:14.634363.
//! - Zone, only after a time: `Z`, or a sign and `HH`, then an optional `:`
//!   and optional `MM` (`+05`, `+05:`, `+0530`, `+05:30`). Minutes above 59
//!   simply add (`+05:99` is 6:39), and the offset must be under 24 hours. No
//!   zone means UTC.
//! - The values must make a valid Python `datetime`: year 1-9999, a real
//!   day of the month, hour 0-23, minute and second 0-59 (no leap second).
//!   The fraction becomes microseconds as `Decimal("0.<digits>") * 1000000`,
//!   truncated: digits after the sixth are dropped, except that Python's
//!   28-digit decimal arithmetic rounds fractions of more than 21 significant
//!   digits first (`.999999` followed by sixteen more nines rounds up to the
//!   next second, which Python refuses).
//! - The instant in UTC must still lie in years 1-9999.
//!
//! Refused, for example: `2015-01-30T16: 38: 43.233621` (spaces),
//! `2015-09-25t15:41:14`, ` 2015-09-25`, `2015-09-25T24:00:00`,
//! `2015-09-25T23:59:60`, `0001-01-01T00:00:00+01:00` (before year 1 in UTC).

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};

/// Parses `s` as Python's `iso8601.parse_date` (2.1.0) does and converts it to
/// UTC; `None` wherever Python raises. See the [module docs](self).
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    let f = Fields::read(s.as_bytes())?;
    let year = number(f.year)?;
    let (hour, minute, second) =
        (f.hour.map_or(Some(0), number)?, f.minute.map_or(Some(0), number)?, f.second.map_or(Some(0), number)?);
    if year == 0 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year as i32, f.month.map_or(Some(1), number)?, f.day.map_or(Some(1), number)?)?;
    let micros = f.fraction.map_or(Some(0), microseconds)?;
    // Checked above: no leap second, microseconds under a second.
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, micros)?;
    let offset_minutes = match f.zone {
        Zone::Absent | Zone::Utc => 0,
        Zone::Offset { negative, hours, minutes } => {
            let total = i64::from(number(hours)? * 60 + minutes.map_or(Some(0), number)?);
            // Python's timezone wants strictly less than 24 hours.
            if total >= 24 * 60 {
                return None;
            }
            if negative {
                -total
            } else {
                total
            }
        }
    };
    let utc = NaiveDateTime::new(date, time).checked_sub_signed(TimeDelta::try_minutes(offset_minutes)?)?;
    // Python's datetime cannot hold the instant in UTC outside years 1-9999.
    (1..=9999).contains(&utc.year()).then(|| utc.and_utc())
}

/// The parts of a matched string, as slices of ASCII digits.
#[derive(Debug, Clone, Copy, Default)]
struct Fields<'a> {
    year: &'a [u8],
    month: Option<&'a [u8]>,
    day: Option<&'a [u8]>,
    hour: Option<&'a [u8]>,
    minute: Option<&'a [u8]>,
    second: Option<&'a [u8]>,
    fraction: Option<&'a [u8]>,
    zone: Zone<'a>,
}

#[derive(Debug, Clone, Copy, Default)]
enum Zone<'a> {
    #[default]
    Absent,
    Utc,
    Offset {
        negative: bool,
        hours: &'a [u8],
        minutes: Option<&'a [u8]>,
    },
}

/// `n` ASCII digits at `pos`.
fn digits_at(s: &[u8], pos: usize, n: usize) -> Option<&[u8]> {
    let d = s.get(pos..pos.checked_add(n)?)?;
    d.iter().all(u8::is_ascii_digit).then_some(d)
}

/// Python's `$` without MULTILINE: the end, or just before a final newline.
fn at_end(s: &[u8], pos: usize) -> bool {
    pos == s.len() || (pos + 1 == s.len() && s[pos] == b'\n')
}

/// The value of at most a few ASCII digits.
fn number(d: &[u8]) -> Option<u32> {
    d.iter().try_fold(0u32, |n, &b| n.checked_mul(10)?.checked_add(u32::from(b - b'0')))
}

/// Ways to read an item at `pos`, in the order a backtracking regex tries
/// them: (the digits read, the position after).
type Options<'a> = [Option<(&'a [u8], usize)>; 4];

/// `-D`/`-DD` (greedy) or, when there is no dash, exactly `DD`.
fn dashed_or_two(s: &[u8], pos: usize) -> Options<'_> {
    if s.get(pos) == Some(&b'-') {
        [digits_at(s, pos + 1, 2).map(|d| (d, pos + 3)), digits_at(s, pos + 1, 1).map(|d| (d, pos + 2)), None, None]
    } else {
        [digits_at(s, pos, 2).map(|d| (d, pos + 2)), None, None, None]
    }
}

impl<'a> Fields<'a> {
    /// Matches the whole grammar, trying the alternatives in the order Python's
    /// regex engine does and returning the first complete match.
    fn read(s: &'a [u8]) -> Option<Self> {
        let mut f = Fields { year: digits_at(s, 0, 4)?, ..Fields::default() };
        for (month, pos) in dashed_or_two(s, 4).into_iter().flatten() {
            // Four digits then two and nothing more (`YYYYMM`) is not a month.
            if s[4] != b'-' && at_end(s, pos) {
                continue;
            }
            f.month = Some(month);
            if let Some(done) = f.read_day(s, pos) {
                return Some(done);
            }
            if at_end(s, pos) {
                return Some(f);
            }
        }
        f.month = None;
        at_end(s, 4).then_some(f)
    }

    fn read_day(mut self, s: &'a [u8], pos: usize) -> Option<Self> {
        for (day, pos) in dashed_or_two(s, pos).into_iter().flatten() {
            self.day = Some(day);
            if let Some(done) = self.read_time(s, pos) {
                return Some(done);
            }
            if at_end(s, pos) {
                return Some(self);
            }
        }
        None
    }

    fn read_time(mut self, s: &'a [u8], pos: usize) -> Option<Self> {
        if !matches!(s.get(pos), Some(b'T' | b' ')) {
            return None;
        }
        self.hour = Some(digits_at(s, pos + 1, 2)?);
        let pos = pos + 3;
        let colon = s.get(pos) == Some(&b':');
        // Minutes: `:MM`, `MM`, or none (then the seconds may start here).
        let minutes = [
            if colon { digits_at(s, pos + 1, 2).map(|d| (d, pos + 3)) } else { None },
            digits_at(s, pos, 2).map(|d| (d, pos + 2)),
        ];
        for (minute, pos) in minutes.into_iter().flatten().map(|(d, p)| (Some(d), p)).chain([(None, pos)]) {
            self.minute = minute;
            if let Some(done) = self.read_seconds(s, pos) {
                return Some(done);
            }
        }
        None
    }

    fn read_seconds(mut self, s: &'a [u8], pos: usize) -> Option<Self> {
        let colon = s.get(pos) == Some(&b':');
        let after_colon = pos + usize::from(colon);
        let mut seconds: Options<'a> = [None; 4];
        if colon {
            seconds[0] = digits_at(s, after_colon, 2).map(|d| (d, after_colon + 2));
            seconds[1] = digits_at(s, after_colon, 1).map(|d| (d, after_colon + 1));
        }
        seconds[2] = digits_at(s, pos, 2).map(|d| (d, pos + 2));
        seconds[3] = digits_at(s, pos, 1).map(|d| (d, pos + 1));
        for (second, pos) in seconds.into_iter().flatten() {
            self.second = Some(second);
            // A fraction takes all the digits there are: stopping earlier
            // leaves a digit, which neither a zone nor the end can follow.
            if matches!(s.get(pos), Some(b'.' | b',')) {
                let n = s[pos + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                if n > 0 {
                    self.fraction = Some(&s[pos + 1..pos + 1 + n]);
                    if let Some(done) = self.read_zone(s, pos + 1 + n) {
                        return Some(done);
                    }
                }
            }
            self.fraction = None;
            if let Some(done) = self.read_zone(s, pos) {
                return Some(done);
            }
        }
        self.second = None;
        self.read_zone(s, pos)
    }

    fn read_zone(mut self, s: &'a [u8], pos: usize) -> Option<Self> {
        match s.get(pos) {
            Some(b'Z') if at_end(s, pos + 1) => {
                self.zone = Zone::Utc;
                return Some(self);
            }
            Some(&sign @ (b'+' | b'-')) => {
                if let Some(hours) = digits_at(s, pos + 1, 2) {
                    let pos = pos + 3;
                    let colon = usize::from(s.get(pos) == Some(&b':'));
                    // `:MM`, `:`, `MM`, nothing: the first that reaches the end.
                    let tries = [(colon, true), (colon, false), (0, true), (0, false)];
                    for (skip, with_minutes) in tries {
                        let at = pos + skip;
                        let minutes = if with_minutes {
                            match digits_at(s, at, 2) {
                                Some(m) => Some(m),
                                None => continue,
                            }
                        } else {
                            None
                        };
                        if at_end(s, at + if with_minutes { 2 } else { 0 }) {
                            self.zone = Zone::Offset { negative: sign == b'-', hours, minutes };
                            return Some(self);
                        }
                    }
                }
            }
            _ => {}
        }
        self.zone = Zone::Absent;
        at_end(s, pos).then_some(self)
    }
}

/// Microseconds of a fraction's digits as Python's iso8601 computes them:
/// `int(Decimal("0." + digits) * Decimal("1000000.0"))` in the default
/// 28-digit context. `None` when that reaches a whole second (which Python's
/// `datetime` refuses).
fn microseconds(frac: &[u8]) -> Option<u32> {
    // The first six digits, truncated.
    let mut micros =
        frac.iter().chain(std::iter::repeat(&b'0')).take(6).fold(0u32, |n, &b| n * 10 + u32::from(b - b'0'));
    // The product's coefficient is the significant digits followed by seven
    // zeros (from `1000000.0`); beyond 28 digits it is rounded half-even, so
    // 28 significant digits of the fraction are kept. Rounding changes the
    // microseconds only if it carries through every kept digit after the
    // sixth, which are then all nines: the last kept digit is odd, so an
    // exact half rounds up as well, and rounding up means a first dropped
    // digit of 5 or more.
    if let Some(first) = frac.iter().position(|&b| b != b'0') {
        let cut = first + 28;
        if cut < frac.len() && frac[cut] >= b'5' && frac[6..cut].iter().all(|&b| b == b'9') {
            micros += 1;
        }
    }
    (micros < 1_000_000).then_some(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<String> {
        parse(s).map(|d| d.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
    }

    #[test]
    fn notification_examples() {
        assert_eq!(p("2015-09-25 1541:14.634363").as_deref(), Some("2015-09-25T15:41:14.634363"));
        assert_eq!(p("2015-01-30T16: 38: 43.233621"), None);
        assert_eq!(p("2013-08-08 21:06:37.803826").as_deref(), Some("2013-08-08T21:06:37.803826"));
        assert_eq!(p("2014-08-01T20:04:00.123+02:00").as_deref(), Some("2014-08-01T18:04:00.123000"));
        assert_eq!(p("2015").as_deref(), Some("2015-01-01T00:00:00.000000"));
        assert_eq!(p("2015-09-25T15:41.5").as_deref(), Some("2015-09-25T15:00:41.500000"));
        assert_eq!(p("2015-09-25T15:41:14Z\n").as_deref(), Some("2015-09-25T15:41:14.000000"));
        assert_eq!(p("201509"), None);
    }

    #[test]
    fn fraction_rounding() {
        let m = |s: &str| microseconds(s.as_bytes());
        assert_eq!(m("5"), Some(500_000));
        assert_eq!(m("1234567"), Some(123_456));
        // Values from Python: int(Decimal("0." + digits) * Decimal("1000000.0")).
        assert_eq!(m(&"9".repeat(28)), Some(999_999));
        assert_eq!(m(&"9".repeat(29)), None);
        assert_eq!(m(&format!("000000{}", "9".repeat(28))), Some(0));
        assert_eq!(m(&format!("000000{}", "9".repeat(29))), Some(1));
        assert_eq!(m(&format!("0000{}5", "9".repeat(27))), Some(99));
        assert_eq!(m(&format!("0000{}5", "9".repeat(28))), Some(100));
        assert_eq!(m(&format!("0000{}50", "9".repeat(28))), Some(100));
        assert_eq!(m(&format!("{}85", "9".repeat(27))), Some(999_999));
        assert_eq!(m(&format!("{}4999", "9".repeat(28))), Some(999_999));
    }

    #[test]
    fn never_panics_on_odd_input() {
        let long_fraction = format!("2015-09-25T15:41:14.{}", "9".repeat(1 << 20));
        assert_eq!(p(&long_fraction), None);
        let long_zeros = format!("2015-09-25T15:41:14.{}1Z", "0".repeat(1 << 20));
        assert_eq!(p(&long_zeros).as_deref(), Some("2015-09-25T15:41:14.000000"));
        let long_nines = format!("2015-09-25T15:41:14.000000{}", "9".repeat(1 << 20));
        assert_eq!(p(&long_nines).as_deref(), Some("2015-09-25T15:41:14.000001"));
        assert_eq!(p(&"1".repeat(1 << 16)), None);
        let mut s = String::from("2015-09-25T15:41:14.634363+05:30");
        for (i, c) in ['\u{663}', '\0', '\u{1d7d9}', 'é', '\n'].into_iter().enumerate() {
            for cut in 0..=s.len() {
                if s.is_char_boundary(cut) {
                    let mut t = s.clone();
                    t.insert(cut, c);
                    let _ = parse(&t);
                    let _ = parse(&s[..cut]);
                }
            }
            s.push(c);
            assert_eq!(p(&s), None, "{i}");
        }
    }
}
