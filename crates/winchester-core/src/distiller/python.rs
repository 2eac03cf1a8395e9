//! Python's semantics where the original distillers (both StackDistiller and
//! ceilometer run on Python) rely on them: `str()`, `int()`, `float()`, `==`,
//! `str.split`, list indexing, truth values, `str.casefold()`.

use serde_json::Value as Json;

/// Python's `int(x)` for a JSON value (within 64 bits): booleans are 0 and 1,
/// floats truncate toward zero, strings are optionally signed decimal integers
/// with surrounding whitespace and `_` between digits.
pub fn py_int(raw: &Json) -> Option<i64> {
    match raw {
        Json::Bool(b) => Some(i64::from(*b)),
        Json::Number(x) => match x.as_i64() {
            Some(i) => Some(i),
            None => {
                let f = x.as_f64()?.trunc();
                (f.is_finite() && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
            }
        },
        Json::String(s) => {
            let s = py_strip(s);
            let (neg, digits) = match s.as_bytes().first() {
                Some(b'-') => (true, &s[1..]),
                Some(b'+') => (false, &s[1..]),
                _ => (false, s),
            };
            let digits = without_underscores(digits)?;
            let n: i128 = digits.parse().ok()?;
            i64::try_from(if neg { -n } else { n }).ok()
        }
        _ => None,
    }
}

/// Python's `float(x)` for a JSON value: booleans are 0.0 and 1.0; strings may
/// be surrounded by whitespace, use `_` between digits, or spell `inf`/`nan`.
pub fn py_float(raw: &Json) -> Option<f64> {
    match raw {
        Json::Bool(b) => Some(f64::from(u8::from(*b))),
        Json::Number(x) => x.as_f64(),
        Json::String(s) => {
            let s = py_strip(s);
            let lower = s.to_ascii_lowercase();
            let body = lower.trim_start_matches(['+', '-']);
            if body.len() + 1 < lower.len() {
                return None;
            }
            if matches!(body, "inf" | "infinity" | "nan") {
                return s.parse().ok();
            }
            let plain = without_underscores(s)?;
            if !plain.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) {
                return None;
            }
            plain.parse().ok()
        }
        _ => None,
    }
}

/// `s` without the `_` Python allows between two digits; `None` when an `_`
/// is anywhere else.
pub(super) fn without_underscores(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        if c == '_' {
            let before = i > 0 && b[i - 1].is_ascii_digit();
            let after = b.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !(before && after) {
                return None;
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Python's `str.strip()`: whitespace as `str.isspace` (including U+001C..U+001F).
pub(super) fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Python's `str(x)` for a JSON value: strings as themselves, `None`,
/// `True`/`False`, integers in decimal, floats as Python's `repr`, lists and
/// dicts as Python writes them (`{'a': [1, None]}`; keys in sorted order, as
/// this engine holds JSON objects).
pub fn py_str(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => {
            let mut out = String::new();
            py_repr(other, &mut out);
            out
        }
    }
}

pub(super) fn py_repr(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("None"),
        Json::Bool(true) => out.push_str("True"),
        Json::Bool(false) => out.push_str("False"),
        Json::Number(x) => match (x.as_i64(), x.as_u64()) {
            (Some(i), _) => out.push_str(&i.to_string()),
            (None, Some(u)) => out.push_str(&u.to_string()),
            _ => out.push_str(&py_float_repr(x.as_f64().unwrap_or(f64::NAN))),
        },
        Json::String(s) => py_str_repr(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(it, out);
            }
            out.push(']');
        }
        Json::Object(m) => {
            out.push('{');
            for (i, (k, it)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_str_repr(k, out);
                out.push_str(": ");
                py_repr(it, out);
            }
            out.push('}');
        }
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, positional
/// when the decimal exponent is from -4 to 15, else `d.ddde+XX`.
pub fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let e = format!("{:e}", f.abs());
    let (mant, exp) = e.split_once('e').expect("LowerExp writes an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    let decpt = exp + 1;
    if -4 < decpt && decpt <= 16 {
        let n = digits.len() as i32;
        let s = if decpt <= 0 {
            format!("0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt >= n {
            format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
        } else {
            format!("{}.{}", &digits[..decpt as usize], &digits[decpt as usize..])
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits };
        format!("{sign}{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// Python's `repr(str)`: single quotes unless the text holds `'` and no `"`;
/// backslash escapes for the quote, `\\`, `\t`, `\n`, `\r` and characters
/// Python does not print (controls, non-space separators, common format
/// characters, private use).
pub(super) fn py_str_repr(s: &str, out: &mut String) {
    let q = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if !py_printable(c) => {
                let n = c as u32;
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(q);
}

/// An approximation of Python's `str.isprintable` for one character.
pub(super) fn py_printable(c: char) -> bool {
    let n = c as u32;
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(n, 0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
            | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xF0000..)
        || (0xD800..=0xDFFF).contains(&n))
}

/// Python's `str.split(sep, maxsplit)`; `sep` `None` splits on runs of
/// whitespace, ignoring it at both ends.
pub fn py_split<'a>(s: &'a str, sep: Option<&str>, max_split: Option<usize>) -> Vec<&'a str> {
    match sep {
        Some(sep) => match max_split {
            Some(n) => s.splitn(n.saturating_add(1), sep).collect(),
            None => s.split(sep).collect(),
        },
        None => {
            let is_ws = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
            let mut parts = Vec::new();
            let mut rest = s;
            loop {
                rest = rest.trim_start_matches(is_ws);
                if rest.is_empty() {
                    break;
                }
                if max_split.is_some_and(|n| parts.len() >= n) {
                    parts.push(rest);
                    break;
                }
                let end = rest.find(is_ws).unwrap_or(rest.len());
                parts.push(&rest[..end]);
                rest = &rest[end..];
            }
            parts
        }
    }
}

/// Python's `list[i]`: negative counts from the end.
pub(super) fn py_index<'a>(parts: &[&'a str], i: i64) -> Option<&'a str> {
    let idx = if i < 0 {
        parts.len().checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
    } else {
        usize::try_from(i).ok()?
    };
    parts.get(idx).copied()
}

/// Python's `==` between JSON values: numbers and booleans by numeric value
/// (`1 == 1.0 == True`), containers element by element.
pub fn py_eq(a: &Json, b: &Json) -> bool {
    fn num(v: &Json) -> Option<(Option<i128>, f64)> {
        match v {
            Json::Bool(b) => Some((Some(i128::from(*b)), f64::from(u8::from(*b)))),
            Json::Number(x) => match (x.as_i64(), x.as_u64()) {
                (Some(i), _) => Some((Some(i128::from(i)), i as f64)),
                (None, Some(u)) => Some((Some(i128::from(u)), u as f64)),
                _ => Some((None, x.as_f64()?)),
            },
            _ => None,
        }
    }
    match (a, b) {
        (Json::Array(x), Json::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q)),
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, p)| y.get(k).is_some_and(|q| py_eq(p, q)))
        }
        _ => match (num(a), num(b)) {
            (Some((Some(i), _)), Some((Some(j), _))) => i == j,
            (Some((None, f)), Some((None, g))) => f == g,
            (Some((Some(i), _)), Some((None, f))) | (Some((None, f)), Some((Some(i), _))) => {
                f.fract() == 0.0 && f.is_finite() && (f as i128) == i && (i as f64) == f
            }
            (None, None) => a == b,
            _ => false,
        },
    }
}

/// Python's truth value of a YAML value.
pub fn py_truthy(v: &serde_yaml::Value) -> bool {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => false,
        Y::Bool(b) => *b,
        Y::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Y::String(s) => !s.is_empty(),
        Y::Sequence(s) => !s.is_empty(),
        Y::Mapping(m) => !m.is_empty(),
        Y::Tagged(t) => py_truthy(&t.value),
    }
}

/// Python's `str.casefold()` (lower case, with the common full foldings such
/// as `ß` to `ss`) of a string value; other values unchanged.
pub fn casefold_json(v: &Json) -> Json {
    match v {
        Json::String(s) => Json::String(casefold(s)),
        other => other.clone(),
    }
}

pub(super) fn casefold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            'ß' | 'ẞ' => out.push_str("ss"),
            'ſ' => out.push('s'),
            'ς' => out.push('σ'),
            'ﬀ' => out.push_str("ff"),
            'ﬁ' => out.push_str("fi"),
            'ﬂ' => out.push_str("fl"),
            'ﬃ' => out.push_str("ffi"),
            'ﬄ' => out.push_str("ffl"),
            'ﬅ' | 'ﬆ' => out.push_str("st"),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}
