//! The one YAML reader of every configuration file (`winchester.yaml`,
//! trigger definitions, pipelines, event definitions), reading YAML as the
//! original does: PyYAML's `yaml.safe_load`.
//!
//! That is YAML 1.1 as PyYAML resolves it, not the YAML 1.2 of `serde_yaml`:
//!
//! * A key written twice in one mapping is not an error: the last one wins,
//!   and a warning names the file, the line of each and the key.
//! * Plain scalars resolve by PyYAML's rules: `yes`/`no`/`on`/`off` (in their
//!   three cases) are booleans; `0x1f`, `017` (octal), `0b101`, `1_000` and
//!   `1:20` (base 60) are integers; a float needs a dot (`1e3` is a string,
//!   `1.0e+3` a float; an exponent needs its sign), `.inf`, `-.inf`, `.nan`;
//!   `~`, `null` and the empty value are null. Timestamps (`2015-01-01`,
//!   `2015-01-01 10:00:00Z`) stay strings (PyYAML makes them datetimes).
//! * Merge keys (`<<: *anchor`, `<<: [*a, *b]`) are resolved as PyYAML does:
//!   the mapping's own keys win, then the earlier merged mapping.
//! * Explicit tags `!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq`,
//!   `!!map` and the non-specific `!` are read; any other tag is an error.
//!
//! Hostile input is refused with an error, never a panic: nesting deeper than
//! [`MAX_DEPTH`] levels, and documents whose aliases expand to more than
//! [`MAX_NODES`] nodes ("billion laughs").
//!
//! Errors and warnings are [`ConfigError`]s with the file and the 1-based line.

use crate::config_error::{show, ConfigError};
use serde_yaml::{Mapping, Number, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, Scanner, TScalarStyle, Token, TokenType};

/// Deepest nesting of sequences and mappings read.
pub const MAX_DEPTH: usize = 128;

/// Most nodes (scalars, sequences, mappings) one document may hold once its
/// aliases are expanded.
pub const MAX_NODES: usize = 1_000_000;

/// Reads and parses a YAML file: its value (null when empty) and warnings.
pub fn load_file(file: &Path) -> Result<(Value, Vec<ConfigError>), ConfigError> {
    let text =
        std::fs::read_to_string(file).map_err(|e| ConfigError::new(format!("cannot read: {e}")).in_file(file))?;
    load(&text, file)
}

/// Parses the text of a YAML file as PyYAML's `safe_load` reads it (see the
/// module's documentation); `file` names it in errors and warnings. Returns
/// the value (null for an empty document) and warnings (duplicate keys).
pub fn load(text: &str, file: &Path) -> Result<(Value, Vec<ConfigError>), ConfigError> {
    let mut text = Cow::Borrowed(text.strip_prefix('\u{feff}').unwrap_or(text));
    let mut b = Builder::default();
    while let Err(e) = b.run(&text) {
        // PyYAML (like libyaml) reads a lone `-` before a flow indicator
        // (`{mode: -, x: y}`, `[-]`) as the plain scalar "-"; YAML 1.2, and so
        // the parser here, refuses it. Quoting it gives the same string (a
        // plain `-` resolves to no other type) and keeps every line number.
        match b.lone_dash.take().and_then(|at| quote_dash(&text, at)) {
            Some(fixed) => {
                text = Cow::Owned(fixed);
                b = Builder::default();
            }
            None => return Err(e.in_file(file)),
        }
    }
    let text = &*text;
    if text.contains('&') {
        b.warnings.extend(redefined_anchors(text));
    }
    b.warnings.sort_by_key(|w| w.line);
    let warnings = b.warnings.into_iter().map(|w| w.in_file(file)).collect();
    Ok((b.doc.unwrap_or(Value::Null), warnings))
}

/// Warnings for anchors defined twice: PyYAML refuses the file; here later
/// aliases name the newest definition (YAML 1.2).
fn redefined_anchors(text: &str) -> Vec<ConfigError> {
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut warnings = Vec::new();
    for Token(mark, token) in Scanner::new(text.chars()) {
        let TokenType::Anchor(name) = token else { continue };
        match first.get(&name) {
            Some(line) => {
                let mut w = ConfigError::new(format!(
                    "anchor &{name} defined again (later aliases name this one; PyYAML refuses the file); first at line {line}"
                ));
                w.line = Some(mark.line());
                warnings.push(w);
            }
            None => {
                first.insert(name, mark.line());
            }
        }
    }
    warnings
}

/// A node being built: a sequence or mapping whose end has not been read.
enum Frame {
    Seq { items: Vec<Value>, anchor: usize, nodes: usize },
    Map { pairs: Vec<Pair>, key: Option<Key>, anchor: usize, nodes: usize },
}

/// A mapping key read, waiting for its value.
struct Key {
    value: Value,
    line: usize,
    merge: bool,
}

/// One `key: value` of a mapping, as written.
struct Pair {
    key: Value,
    value: Value,
    line: usize,
    merge: bool,
}

#[derive(Default)]
struct Builder {
    frames: Vec<Frame>,
    /// Anchored nodes by the parser's anchor id, with their node counts.
    anchors: HashMap<usize, (Value, usize)>,
    /// Nodes built so far, aliases expanded.
    nodes: usize,
    doc: Option<Value>,
    documents: usize,
    warnings: Vec<ConfigError>,
    /// Where the parser refused a lone `-` before a flow indicator.
    lone_dash: Option<usize>,
}

/// `text` with the lone `-` the parser refused at `at` (a character or byte
/// index) written `'-'`; `None` when there is no `-` there.
fn quote_dash(text: &str, at: usize) -> Option<String> {
    let byte = match text.char_indices().nth(at) {
        Some((b, '-')) => b,
        _ if text.as_bytes().get(at) == Some(&b'-') => at,
        _ => return None,
    };
    Some(format!("{}'-'{}", &text[..byte], &text[byte + 1..]))
}

fn error_at(mark: &Marker, message: impl Into<String>) -> ConfigError {
    let mut e =
        ConfigError::new(format!("invalid YAML: {} at line {} column {}", message.into(), mark.line(), mark.col() + 1));
    e.line = Some(mark.line());
    e
}

/// A tag as written, its handle resolved: `tag:yaml.org,2002:str`, `!foo`, `!`.
fn tag_name(tag: &Tag) -> String {
    format!("{}{}", tag.handle, tag.suffix)
}

const CORE: &str = "tag:yaml.org,2002:";

impl Builder {
    fn run(&mut self, text: &str) -> Result<(), ConfigError> {
        let mut parser = Parser::new_from_str(text);
        loop {
            let (event, mark) = parser.next_token().map_err(|e| {
                if e.info().starts_with("plain scalar cannot start with '-' followed by") {
                    self.lone_dash = Some(e.marker().index());
                }
                error_at(e.marker(), e.info())
            })?;
            match event {
                Event::StreamEnd => return Ok(()),
                Event::DocumentStart => {
                    self.documents += 1;
                    if self.documents > 1 {
                        return Err(error_at(
                            &mark,
                            "expected a single document in the stream, but found another document",
                        ));
                    }
                }
                Event::Alias(id) => {
                    let Some((value, n)) = self.anchors.get(&id) else {
                        return Err(error_at(&mark, "found an alias of a node not yet complete (a recursive alias)"));
                    };
                    let (value, n) = (value.clone(), *n);
                    self.count(n, &mark)?;
                    self.add(value, n, false, &mark)?;
                }
                Event::Scalar(text, style, anchor, tag) => {
                    let in_key = matches!(self.frames.last(), Some(Frame::Map { key: None, .. }));
                    let (value, merge) = scalar(text, style, tag.as_ref(), in_key, &mark)?;
                    self.count(1, &mark)?;
                    if anchor > 0 {
                        self.anchors.insert(anchor, (value.clone(), 1));
                    }
                    self.add(value, 1, merge, &mark)?;
                }
                Event::SequenceStart(anchor, tag) => {
                    collection_tag(tag.as_ref(), "seq", &mark)?;
                    self.open(Frame::Seq { items: Vec::new(), anchor, nodes: 1 }, &mark)?;
                }
                Event::MappingStart(anchor, tag) => {
                    collection_tag(tag.as_ref(), "map", &mark)?;
                    self.open(Frame::Map { pairs: Vec::new(), key: None, anchor, nodes: 1 }, &mark)?;
                }
                Event::SequenceEnd => {
                    let Some(Frame::Seq { items, anchor, nodes }) = self.frames.pop() else {
                        return Err(error_at(&mark, "unbalanced sequence end"));
                    };
                    self.close(Value::Sequence(items), anchor, nodes, &mark)?;
                }
                Event::MappingEnd => {
                    let Some(Frame::Map { pairs, anchor, nodes, .. }) = self.frames.pop() else {
                        return Err(error_at(&mark, "unbalanced mapping end"));
                    };
                    let map = self.mapping(pairs)?;
                    self.close(Value::Mapping(map), anchor, nodes, &mark)?;
                }
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            }
        }
    }

    fn count(&mut self, n: usize, mark: &Marker) -> Result<(), ConfigError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(error_at(
                mark,
                format!("more than {MAX_NODES} nodes once aliases are expanded (an alias bomb?); refused"),
            ));
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, mark: &Marker) -> Result<(), ConfigError> {
        if self.frames.len() >= MAX_DEPTH {
            return Err(error_at(mark, format!("nested deeper than {MAX_DEPTH} levels; refused")));
        }
        self.count(1, mark)?;
        self.frames.push(frame);
        Ok(())
    }

    fn close(&mut self, value: Value, anchor: usize, nodes: usize, mark: &Marker) -> Result<(), ConfigError> {
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), nodes));
        }
        self.add(value, nodes, false, mark)
    }

    /// Puts a complete node where it belongs: in the open sequence or
    /// mapping, or as the document.
    fn add(&mut self, value: Value, n: usize, merge: bool, mark: &Marker) -> Result<(), ConfigError> {
        match self.frames.last_mut() {
            None => self.doc = Some(value),
            Some(Frame::Seq { items, nodes, .. }) => {
                items.push(value);
                *nodes = nodes.saturating_add(n);
            }
            Some(Frame::Map { pairs, key, nodes, .. }) => {
                *nodes = nodes.saturating_add(n);
                match key.take() {
                    None => {
                        if matches!(value, Value::Sequence(_) | Value::Mapping(_)) {
                            return Err(error_at(
                                mark,
                                "found a sequence or mapping as a mapping key (PyYAML refuses unhashable keys)",
                            ));
                        }
                        *key = Some(Key { value, line: mark.line(), merge });
                    }
                    Some(k) => pairs.push(Pair { key: k.value, value, line: k.line, merge: k.merge }),
                }
            }
        }
        Ok(())
    }

    /// A mapping from its pairs, as PyYAML builds it: merged mappings first
    /// (of a list, the first one wins), then the mapping's own keys, each
    /// replacing an equal key before it but keeping its place. A key written
    /// twice is a warning.
    fn mapping(&mut self, pairs: Vec<Pair>) -> Result<Mapping, ConfigError> {
        let mut merged: Vec<(Value, Value)> = Vec::new();
        let mut own = Vec::with_capacity(pairs.len());
        for p in pairs {
            if !p.merge {
                own.push(p);
                continue;
            }
            let bad = || {
                let mut e = ConfigError::new(format!(
                    "invalid YAML: a merge key (<<) takes a mapping or a list of mappings, found {} at line {}",
                    show(&p.value),
                    p.line
                ));
                e.line = Some(p.line);
                e
            };
            match &p.value {
                Value::Mapping(m) => merged.extend(m.iter().map(|(k, v)| (k.clone(), v.clone()))),
                Value::Sequence(items) => {
                    for item in items.iter().rev() {
                        let Value::Mapping(m) = item else { return Err(bad()) };
                        merged.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                }
                _ => return Err(bad()),
            }
        }
        let mut map = Mapping::with_capacity(merged.len() + own.len());
        // Python's dict: equal keys (1, 1.0 and true are equal) are one key,
        // the first one written keeps its place and the last value.
        let mut seen: HashMap<Value, Value> = HashMap::new();
        for (k, v) in merged {
            let first = seen.entry(python_key(&k)).or_insert_with(|| k.clone()).clone();
            map.insert(first, v);
        }
        let mut lines: HashMap<Value, usize> = HashMap::new();
        for p in own {
            let norm = python_key(&p.key);
            if let Some(first) = lines.get(&norm) {
                let mut w = ConfigError::new(format!(
                    "duplicate key {} in a mapping (the last one wins, as PyYAML reads it); first at line {first}",
                    show(&p.key)
                ));
                w.line = Some(p.line);
                self.warnings.push(w);
            } else {
                lines.insert(norm.clone(), p.line);
            }
            let first = seen.entry(norm).or_insert_with(|| p.key.clone()).clone();
            map.insert(first, p.value);
        }
        Ok(map)
    }
}

/// The key a Python dict would compare: `true` is `1`, `1.0` is `1`.
fn python_key(k: &Value) -> Value {
    match k {
        Value::Bool(b) => Value::Number(Number::from(u64::from(*b))),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::Number(Number::from(f as i64)),
            _ => k.clone(),
        },
        other => other.clone(),
    }
}

/// Checks the tag of a sequence (`kind` "seq") or mapping ("map").
fn collection_tag(tag: Option<&Tag>, kind: &str, mark: &Marker) -> Result<(), ConfigError> {
    match tag.map(tag_name) {
        None => Ok(()),
        Some(t) if t == "!" || t == format!("{CORE}{kind}") => Ok(()),
        Some(t) => Err(unsupported(&t, mark)),
    }
}

fn unsupported(tag: &str, mark: &Marker) -> ConfigError {
    let shown = tag.strip_prefix(CORE).map(|s| format!("!!{s}")).unwrap_or_else(|| tag.to_string());
    error_at(mark, format!("tag {shown} is not supported (only !!str, !!int, !!float, !!bool, !!null, !!seq, !!map)"))
}

/// A scalar's value and whether it is the merge key `<<`. `in_key`: it is
/// read as a mapping key.
fn scalar(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    in_key: bool,
    mark: &Marker,
) -> Result<(Value, bool), ConfigError> {
    let tag = tag.map(tag_name);
    let implicit = match tag.as_deref() {
        None => style == TScalarStyle::Plain,
        Some("!") => true,
        Some(_) => false,
    };
    if implicit {
        if text == "<<" || text == "=" {
            if !in_key {
                return Err(error_at(
                    mark,
                    format!("a plain {text} is only read as a mapping key (quote it for the string)"),
                ));
            }
            return Ok((Value::String(text.clone()), text == "<<"));
        }
        return Ok((resolve_plain(text, mark)?, false));
    }
    let Some(tag) = tag else { return Ok((Value::String(text), false)) };
    let bad = |what: &str| error_at(mark, format!("{text:?} is not {what}"));
    let value = match tag.strip_prefix(CORE) {
        Some("str") => Value::String(text),
        Some("null") => Value::Null,
        Some("bool") => match text.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" => Value::Bool(true),
            "no" | "false" | "off" => Value::Bool(false),
            _ => return Err(bad("a boolean")),
        },
        Some("int") => int_value(&text).ok_or_else(|| bad("an integer"))?,
        Some("float") => float_value(&text).ok_or_else(|| bad("a float"))?,
        Some("merge") if in_key => return Ok((Value::String(text), true)),
        Some("timestamp") => match timestamp(&text) {
            Some(true) => Value::String(text),
            _ => return Err(bad("a timestamp")),
        },
        _ => return Err(unsupported(&tag, mark)),
    };
    Ok((value, false))
}

/// A plain scalar's value by PyYAML's implicit resolvers (YAML 1.1).
fn resolve_plain(text: String, mark: &Marker) -> Result<Value, ConfigError> {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => return Ok(Value::Bool(true)),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if is_float(&text) {
        return float_value(&text).ok_or_else(|| error_at(mark, format!("{text:?} is not a float")));
    }
    if is_int(&text) {
        return int_value(&text).ok_or_else(|| error_at(mark, format!("{text:?} is not an integer")));
    }
    if timestamp(&text) == Some(false) {
        return Err(error_at(mark, format!("{text:?} is not a valid date or time (PyYAML reads it as a timestamp)")));
    }
    Ok(Value::String(text))
}

/// PyYAML's timestamp resolver: `None` when `s` is not a timestamp, else
/// whether it is a valid date and time (PyYAML makes a datetime of it; it
/// stays a string here).
fn timestamp(s: &str) -> Option<bool> {
    let b = s.as_bytes();
    let mut i = 0;
    // `n` to `m` ASCII digits at `i`, as a number.
    let digits = |n: usize, m: usize, i: &mut usize| -> Option<(u32, usize)> {
        let start = *i;
        while *i < b.len() && *i - start < m && b[*i].is_ascii_digit() {
            *i += 1;
        }
        let len = *i - start;
        (len >= n).then(|| (s[start..*i].parse().unwrap_or(u32::MAX), len))
    };
    let expect = |c: u8, i: &mut usize| -> Option<()> { (b.get(*i) == Some(&c)).then(|| *i += 1) };
    let (year, _) = digits(4, 4, &mut i)?;
    expect(b'-', &mut i)?;
    let (month, ml) = digits(1, 2, &mut i)?;
    expect(b'-', &mut i)?;
    let (day, dl) = digits(1, 2, &mut i)?;
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month, day).is_some();
    if i == b.len() {
        return (ml == 2 && dl == 2).then_some(date);
    }
    match b[i] {
        b'T' | b't' => i += 1,
        b' ' | b'\t' => {
            while i < b.len() && matches!(b[i], b' ' | b'\t') {
                i += 1;
            }
        }
        _ => return None,
    }
    let (hour, _) = digits(1, 2, &mut i)?;
    expect(b':', &mut i)?;
    let (minute, _) = digits(2, 2, &mut i)?;
    expect(b':', &mut i)?;
    let (second, _) = digits(2, 2, &mut i)?;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    while i < b.len() && matches!(b[i], b' ' | b'\t') {
        i += 1;
    }
    match b.get(i) {
        None if b[i - 1].is_ascii_digit() || b[i - 1] == b'.' => {}
        Some(b'Z') if i + 1 == b.len() => {}
        Some(b'-' | b'+') => {
            i += 1;
            digits(1, 2, &mut i)?;
            if i < b.len() {
                expect(b':', &mut i)?;
                digits(2, 2, &mut i)?;
            }
            if i != b.len() {
                return None;
            }
        }
        _ => return None,
    }
    Some(date && hour < 24 && minute < 60 && second < 60)
}

/// `[-+]?`: whether negative, and the rest.
fn sign(s: &str) -> (bool, &str) {
    match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    }
}

fn all(s: &str, ok: impl Fn(u8) -> bool) -> bool {
    s.bytes().all(ok)
}

/// `:[0-5]?[0-9]` repeated at least once (the base-60 parts after the first).
fn sexagesimal_tail(s: &str) -> bool {
    let Some(rest) = s.strip_prefix(':') else { return false };
    rest.split(':').all(|p| {
        let b = p.as_bytes();
        match b.len() {
            1 => b[0].is_ascii_digit(),
            2 => (b'0'..=b'5').contains(&b[0]) && b[1].is_ascii_digit(),
            _ => false,
        }
    })
}

/// `[0-9][0-9_]*`.
fn digits_(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_digit) && all(s, |c| c.is_ascii_digit() || c == b'_')
}

/// PyYAML's int resolver.
fn is_int(s: &str) -> bool {
    let (_, r) = sign(s);
    if let Some(b) = r.strip_prefix("0b") {
        return !b.is_empty() && all(b, |c| matches!(c, b'0' | b'1' | b'_'));
    }
    if let Some(x) = r.strip_prefix("0x") {
        return !x.is_empty() && all(x, |c| c.is_ascii_hexdigit() || c == b'_');
    }
    if r == "0" {
        return true;
    }
    if let Some(o) = r.strip_prefix('0') {
        return all(o, |c| matches!(c, b'0'..=b'7' | b'_'));
    }
    if !r.as_bytes().first().is_some_and(|c| (b'1'..=b'9').contains(c)) {
        return false;
    }
    match r.find(':') {
        None => digits_(r),
        Some(i) => digits_(&r[..i]) && sexagesimal_tail(&r[i..]),
    }
}

/// `(?:[eE][-+][0-9]+)?`.
fn exponent(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let b = s.as_bytes();
    b.len() >= 3 && matches!(b[0], b'e' | b'E') && matches!(b[1], b'-' | b'+') && all(&s[2..], |c| c.is_ascii_digit())
}

/// PyYAML's float resolver.
fn is_float(s: &str) -> bool {
    let (_, r) = sign(s);
    let signed = r.len() < s.len();
    if matches!(r, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    if matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let Some(dot) = r.find('.') else { return false };
    let (int, frac) = (&r[..dot], &r[dot + 1..]);
    let exp_at = frac.find(['e', 'E']).unwrap_or(frac.len());
    let (frac_digits, exp) = frac.split_at(exp_at);
    if int.is_empty() {
        // `\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?`, no sign
        return !signed && digits_(frac_digits) && exponent(exp);
    }
    if let Some(i) = int.find(':') {
        // `[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*`
        return digits_(&int[..i]) && sexagesimal_tail(&int[i..]) && all(frac, |c| c.is_ascii_digit() || c == b'_');
    }
    digits_(int) && all(frac_digits, |c| c.is_ascii_digit() || c == b'_') && exponent(exp)
}

/// PyYAML's int constructor: `_` dropped, `0b`, `0x`, leading-`0` octal,
/// base 60. Integers past 64 bits become floats.
fn int_value(s: &str) -> Option<Value> {
    let v = s.replace('_', "");
    let (neg, r) = sign(&v);
    let magnitude: Option<u128> = if r == "0" {
        Some(0)
    } else if let Some(b) = r.strip_prefix("0b") {
        big(b, 2)
    } else if let Some(x) = r.strip_prefix("0x") {
        big(x, 16)
    } else if r.starts_with('0') {
        // Python's int(value, 8), which also takes a `0o` prefix.
        big(r.strip_prefix("0o").or_else(|| r.strip_prefix("0O")).unwrap_or(r), 8)
    } else if r.contains(':') {
        let mut total: u128 = 0;
        for part in r.split(':') {
            total = total.checked_mul(60)?.checked_add(big(part, 10)?)?;
        }
        Some(total)
    } else {
        big(r, 10)
    };
    let Some(m) = magnitude else {
        // Past 128 bits (or not digits at all).
        if r.is_empty() || !all(r, |c| c.is_ascii_alphanumeric() || c == b':') {
            return None;
        }
        let f: f64 = r.parse().ok()?;
        return Some(Value::Number(Number::from(if neg { -f } else { f })));
    };
    Some(Value::Number(if neg {
        match i64::try_from(m) {
            Ok(i) => Number::from(-i),
            Err(_) if m == 1u128 << 63 => Number::from(i64::MIN),
            Err(_) => Number::from(-(m as f64)),
        }
    } else {
        match u64::try_from(m) {
            Ok(u) => Number::from(u),
            Err(_) => Number::from(m as f64),
        }
    }))
}

/// Digits in `radix`, at least one, as u128 (`None` when not digits or too big).
fn big(s: &str, radix: u32) -> Option<u128> {
    if s.is_empty() {
        return None;
    }
    u128::from_str_radix(s, radix).ok()
}

/// PyYAML's float constructor: `_` dropped, `.inf`, `.nan`, base 60, else
/// what Python's `float()` reads (`1e3` too, under an explicit `!!float`).
fn float_value(s: &str) -> Option<Value> {
    let v = s.replace('_', "").to_ascii_lowercase();
    let (neg, r) = sign(&v);
    let f = if r == ".inf" {
        f64::INFINITY
    } else if r == ".nan" {
        f64::NAN
    } else if r.contains(':') {
        let mut total = 0.0;
        for part in r.split(':') {
            total = total * 60.0 + part.parse::<f64>().ok()?;
        }
        total
    } else {
        r.parse().ok()?
    };
    Some(Value::Number(Number::from(if neg { -f } else { f })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Value {
        load(text, Path::new("t.yaml")).unwrap().0
    }

    #[test]
    fn duplicate_keys_warn_and_the_last_wins() {
        let (v, w) = load("a: 1\nb:\n  state: x\n  other: y\n  state: z\n", Path::new("d.yaml")).unwrap();
        assert_eq!(v["b"]["state"], Value::from("z"));
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].to_string(),
            "d.yaml:5: duplicate key \"state\" in a mapping (the last one wins, as PyYAML reads it); first at line 3"
        );
    }

    #[test]
    fn scalars_resolve_as_pyyaml() {
        let v = read("[yes, No, on, OFF, y, 1e3, 1.0e+3, 1.5, .5, -.5, 0x1f, 017, 09, 0b11, 1_000, 1:20, 1:20.5, ~, null, '', .inf, -.Inf, 2015-01-01]");
        let want = read("[true, false, true, false, 'y', '1e3', 1000.0, 1.5, 0.5, '-.5', 31, 15, '09', 3, 1000, 80, 80.5, null, null, '', .inf, -.inf, '2015-01-01']");
        assert_eq!(format!("{v:?}"), format!("{want:?}"));
    }

    #[test]
    fn a_lone_dash_before_a_flow_indicator_is_a_string() {
        let (v, _) = load("env: {MODE: -, LOG: x}\nlist: [-, a, -]\nnested:\n  - [-]\n", Path::new("f.yaml")).unwrap();
        assert_eq!(v["env"]["MODE"], Value::from("-"));
        assert_eq!(v["env"]["LOG"], Value::from("x"));
        assert_eq!(v["list"], read("['-', a, '-']"));
        assert_eq!(v["nested"][0], read("['-']"));
        // Other errors on the same line still name it.
        let e = load("a: [-, {]\n", Path::new("f.yaml")).unwrap_err().to_string();
        assert!(e.starts_with("f.yaml:1: invalid YAML"), "{e}");
    }

    #[test]
    fn merge_keys_resolve() {
        let v = read("base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\nm:\n  <<: [*b, *o]\n  x: 0\n");
        assert_eq!(v["m"]["x"], Value::from(0));
        assert_eq!(v["m"]["y"], Value::from(2));
        assert_eq!(v["m"]["z"], Value::from(4));
        assert!(v["m"].get("<<").is_none());
        assert_eq!(read("'<<': 1")["<<"], Value::from(1));
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = load("a: 1\nb: [\n", Path::new("x.yaml")).unwrap_err();
        assert!(e.line.is_some() && e.to_string().starts_with("x.yaml:"), "{e}");
        assert!(e.to_string().contains("column"), "{e}");
        let e = load("a: !foo 1\n", Path::new("x.yaml")).unwrap_err();
        assert!(e.to_string().contains("tag !foo is not supported"), "{e}");
    }

    #[test]
    fn redefined_anchors_warn() {
        let (v, w) = load("a: &x 1\nb: &x 2\nc: *x\n", Path::new("r.yaml")).unwrap();
        assert_eq!(v["c"], Value::from(2));
        assert_eq!(w.len(), 1);
        assert!(w[0].to_string().starts_with("r.yaml:2: anchor &x defined again"), "{}", w[0]);
        assert!(w[0].to_string().ends_with("first at line 1"), "{}", w[0]);
    }

    #[test]
    fn hostile_input_is_refused() {
        let deep = format!("{}x{}", "[".repeat(5_000), "]".repeat(5_000));
        let e = load(&deep, Path::new("x")).unwrap_err().to_string();
        assert!(e.contains("recursion limit") || e.contains("nested deeper"), "{e}");
        let block: String = (0..200).map(|i| format!("{}- \n", "  ".repeat(i))).collect();
        let e = load(&block, Path::new("x")).unwrap_err().to_string();
        assert!(e.contains("nested deeper than 128 levels"), "{e}");
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        assert!(load(&doc, Path::new("x")).unwrap_err().to_string().contains("alias"));
    }
}
