//! Python `re` patterns and `re.sub` replacement templates, translated to the
//! `regex` crate. Constructs `regex` cannot match the way Python does
//! (backreferences, look-around, conditionals, atomic groups, possessive
//! quantifiers, verbose/ASCII/locale flags, `\N{...}`) are refused with a
//! "not supported" error. `$` without multi-line mode matches like Python's
//! only in text without a newline before its last character; other text
//! gives a "not supported" evaluation error.

use regex::Regex;
use regex_automata::nfa::thompson::pikevm::PikeVM;
use regex_automata::{Anchored, Input, MatchKind};
use std::fmt::Write;

/// Longest text or list an operator may build (Python would try anything).
pub(crate) const MAX_TEXT: usize = 1 << 24;

/// A compiled Python pattern.
#[derive(Debug, Clone)]
pub(crate) struct PyRegex {
    pub re: Regex,
    /// The pattern has a `$` outside multi-line mode.
    pub plain_dollar: bool,
    /// For `sub`: the same pattern matching as much as it can, to tell
    /// whether a non-empty match starts where an empty one did.
    longest: Option<PikeVM>,
}

fn lit(out: &mut String, c: char) {
    let _ = write!(out, "\\x{{{:X}}}", c as u32);
}

const UNSUPPORTED: &str = "is not supported";

impl PyRegex {
    /// Translates and compiles `pat`; `anchored`: match only at the start
    /// (Python's `re.match`).
    pub fn new(pat: &str, anchored: bool) -> Result<PyRegex, String> {
        let (body, plain_dollar) = translate(pat)?;
        let full = if anchored { format!(r"\A(?:{body})") } else { body };
        let re = Regex::new(&full)
            .map_err(|e| format!("regex {pat:?} cannot be used (its syntax {UNSUPPORTED} here): {e}"))?;
        let longest = if anchored {
            None
        } else {
            let vm = PikeVM::builder()
                .configure(PikeVM::config().match_kind(MatchKind::All))
                .build(&full)
                .map_err(|e| format!("regex {pat:?} cannot be used (its syntax {UNSUPPORTED} here): {e}"))?;
            Some(vm)
        };
        Ok(PyRegex { re, plain_dollar, longest })
    }

    /// Whether matching `text` would differ from Python's (see the module docs).
    pub fn check_text(&self, text: &str) -> Result<(), String> {
        if self.plain_dollar {
            let body = text.strip_suffix('\n').unwrap_or(text);
            if body.contains('\n') {
                return Err(format!("a regex with '$' on text with inner newlines {UNSUPPORTED}"));
            }
        }
        Ok(())
    }
}

struct Src<'a> {
    c: Vec<char>,
    i: usize,
    pat: &'a str,
}

impl Src<'_> {
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.i += 1;
        c
    }
    fn err<T>(&self, what: impl std::fmt::Display) -> Result<T, String> {
        Err(format!("regex {:?} at {}: {what}", self.pat, self.i))
    }
}

fn hex(s: &mut Src<'_>, n: usize) -> Result<char, String> {
    let mut v = 0u32;
    for _ in 0..n {
        match s.next().and_then(|c| c.to_digit(16)) {
            Some(d) => v = v * 16 + d,
            None => return s.err("bad hexadecimal escape"),
        }
    }
    match char::from_u32(v) {
        Some(c) => Ok(c),
        None => s.err("escape is not a character"),
    }
}

fn octal(s: &mut Src<'_>, first: u32, more: usize) -> Result<char, String> {
    let mut v = first;
    for _ in 0..more {
        match s.peek().and_then(|c| c.to_digit(8)) {
            Some(d) => {
                v = v * 8 + d;
                s.i += 1;
            }
            None => break,
        }
    }
    if v > 0o377 {
        return s.err("octal escape out of range");
    }
    char::from_u32(v).map_or_else(|| s.err("bad octal escape"), Ok)
}

/// What an escape outside or inside a class stands for.
enum Esc {
    Char(char),
    /// Rust syntax for a class-like item (`\d`, `[\s\x1c-\x1f]`...), and the
    /// same for use inside a class.
    Class(&'static str, &'static str),
    /// A zero-width assertion (outside classes only).
    Assert(&'static str),
}

fn escape(s: &mut Src<'_>, in_class: bool) -> Result<Esc, String> {
    let Some(c) = s.next() else { return s.err("bad escape (end of pattern)") };
    Ok(match c {
        'd' => Esc::Class(r"\d", r"\d"),
        'D' => Esc::Class(r"\D", r"\D"),
        'w' => Esc::Class(r"\w", r"\w"),
        'W' => Esc::Class(r"\W", r"\W"),
        's' => Esc::Class(r"[\s\x1c-\x1f]", r"\s\x1c-\x1f"),
        'S' => Esc::Class(r"[^\s\x1c-\x1f]", r"[^\s\x1c-\x1f]"),
        'a' => Esc::Char('\x07'),
        'f' => Esc::Char('\x0c'),
        'n' => Esc::Char('\n'),
        'r' => Esc::Char('\r'),
        't' => Esc::Char('\t'),
        'v' => Esc::Char('\x0b'),
        '\\' => Esc::Char('\\'),
        'b' if in_class => Esc::Char('\x08'),
        'b' => Esc::Assert(r"\b"),
        'B' if !in_class => Esc::Assert(r"\B"),
        'A' if !in_class => Esc::Assert(r"\A"),
        'Z' if !in_class => Esc::Assert(r"\z"),
        'x' => Esc::Char(hex(s, 2)?),
        'u' => Esc::Char(hex(s, 4)?),
        'U' => Esc::Char(hex(s, 8)?),
        'N' => return s.err(format!("\\N{{...}} {UNSUPPORTED}")),
        '0' => Esc::Char(octal(s, 0, 2)?),
        '1'..='9' => {
            let d = c.to_digit(10).unwrap_or(0);
            let o1 = s.peek().and_then(|c| c.to_digit(8));
            let o2 = s.c.get(s.i + 1).and_then(|c| c.to_digit(8));
            if c <= '7' && o1.is_some() && o2.is_some() {
                Esc::Char(octal(s, d, 2)?)
            } else if in_class {
                return s.err("bad escape");
            } else {
                return s.err(format!("backreferences {UNSUPPORTED}"));
            }
        }
        c if c.is_ascii_alphabetic() => return s.err(format!("bad escape \\{c}")),
        c => Esc::Char(c),
    })
}

/// Python pattern -> `regex` pattern, and whether it has a plain `$`.
fn translate(pat: &str) -> Result<(String, bool), String> {
    let mut s = Src { c: pat.chars().collect(), i: 0, pat };
    let mut out = String::new();
    let mut multiline = false;
    let mut plain_dollar = false;
    // Global flags, only at the very start (Python 3.11).
    while s.c.get(s.i) == Some(&'(') && s.c.get(s.i + 1) == Some(&'?') {
        let mut j = s.i + 2;
        let mut flags = String::new();
        while let Some(&f) = s.c.get(j) {
            if f.is_ascii_alphabetic() {
                flags.push(f);
                j += 1;
            } else {
                break;
            }
        }
        if flags.is_empty() || s.c.get(j) != Some(&')') {
            break;
        }
        for f in flags.chars() {
            match f {
                'i' => out.push_str("(?i)"),
                's' => out.push_str("(?s)"),
                'm' => {
                    out.push_str("(?m)");
                    multiline = true;
                }
                'u' => {}
                _ => return s.err(format!("flag {f:?} {UNSUPPORTED}")),
            }
        }
        s.i = j + 1;
    }
    // What the last item was: None (nothing to repeat), Some(true) repeatable,
    // Some(false) an assertion.
    let mut last: Option<bool> = None;
    let mut depth = 0usize;
    while let Some(c) = s.next() {
        match c {
            '\\' => match escape(&mut s, false)? {
                Esc::Char(ch) => {
                    lit(&mut out, ch);
                    last = Some(true);
                }
                Esc::Class(r, _) => {
                    out.push_str(r);
                    last = Some(true);
                }
                Esc::Assert(a) => {
                    out.push_str(a);
                    last = Some(false);
                }
            },
            '[' => {
                class(&mut s, &mut out)?;
                last = Some(true);
            }
            '.' => {
                out.push('.');
                last = Some(true);
            }
            '^' => {
                out.push('^');
                last = Some(false);
            }
            '$' => {
                if multiline {
                    out.push('$');
                } else {
                    out.push_str("(?m:$)");
                    plain_dollar = true;
                }
                last = Some(false);
            }
            '|' => {
                out.push('|');
                last = None;
            }
            ')' => {
                if depth == 0 {
                    return s.err("unbalanced parenthesis");
                }
                depth -= 1;
                out.push(')');
                last = Some(true);
            }
            '(' => {
                if s.peek() == Some('?') {
                    s.i += 1;
                    match s.next() {
                        Some(':') => out.push_str("(?:"),
                        Some('P') => match s.next() {
                            Some('<') => {
                                let mut name = String::new();
                                loop {
                                    match s.next() {
                                        Some('>') => break,
                                        Some(ch) if ch.is_alphanumeric() || ch == '_' => name.push(ch),
                                        _ => return s.err("bad group name"),
                                    }
                                }
                                if name.is_empty() || name.starts_with(|ch: char| ch.is_ascii_digit()) {
                                    return s.err("bad group name");
                                }
                                let _ = write!(out, "(?P<{name}>");
                            }
                            _ => return s.err(format!("(?P=name) backreferences {UNSUPPORTED}")),
                        },
                        Some('#') => {
                            loop {
                                match s.next() {
                                    Some(')') => break,
                                    Some(_) => {}
                                    None => return s.err("missing ), unterminated comment"),
                                }
                            }
                            continue;
                        }
                        Some(f @ ('i' | 's' | '-')) => {
                            let mut flags = String::from(f);
                            loop {
                                match s.next() {
                                    Some(ch @ ('i' | 's' | '-')) => flags.push(ch),
                                    Some(':') => break,
                                    _ => return s.err(format!("this flag group {UNSUPPORTED}")),
                                }
                            }
                            let _ = write!(out, "(?{flags}:");
                        }
                        _ => {
                            return s
                                .err(format!("look-around, conditionals, atomic groups and these flags {UNSUPPORTED}"))
                        }
                    }
                } else {
                    out.push('(');
                }
                depth += 1;
                last = None;
            }
            '*' | '+' | '?' | '{' => {
                let mut quant = c.to_string();
                if c == '{' {
                    let here = s.i;
                    let mut lo = String::new();
                    let mut hi = String::new();
                    while let Some(d) = s.peek().filter(|d| d.is_ascii_digit()) {
                        lo.push(d);
                        s.i += 1;
                    }
                    let comma = s.peek() == Some(',');
                    if comma {
                        s.i += 1;
                        while let Some(d) = s.peek().filter(|d| d.is_ascii_digit()) {
                            hi.push(d);
                            s.i += 1;
                        }
                    }
                    if s.peek() != Some('}') || (lo.is_empty() && !comma) {
                        s.i = here;
                        lit(&mut out, '{');
                        last = Some(true);
                        continue;
                    }
                    s.i += 1;
                    let lo_n: u64 =
                        if lo.is_empty() { 0 } else { lo.parse().map_err(|_| "repeat count too large".to_string())? };
                    quant = if comma {
                        if hi.is_empty() {
                            format!("{{{lo_n},}}")
                        } else {
                            let hi_n: u64 = hi.parse().map_err(|_| "repeat count too large".to_string())?;
                            if hi_n < lo_n {
                                return s.err("min repeat greater than max repeat");
                            }
                            format!("{{{lo_n},{hi_n}}}")
                        }
                    } else {
                        format!("{{{lo_n}}}")
                    };
                }
                match last {
                    Some(true) => {}
                    _ => return s.err("nothing to repeat"),
                }
                out.push_str(&quant);
                if s.peek() == Some('?') {
                    s.i += 1;
                    out.push('?');
                }
                if s.peek() == Some('+') {
                    return s.err(format!("possessive quantifiers {UNSUPPORTED}"));
                }
                // Repeating a repeat is an error ("multiple repeat").
                last = None;
            }
            c => {
                lit(&mut out, c);
                last = Some(true);
            }
        }
    }
    if depth != 0 {
        return s.err("missing ), unterminated subpattern");
    }
    Ok((out, plain_dollar))
}

/// `[` has been read.
fn class(s: &mut Src<'_>, out: &mut String) -> Result<(), String> {
    out.push('[');
    if s.peek() == Some('^') {
        s.i += 1;
        out.push('^');
    }
    let start = s.i;
    loop {
        let Some(c) = s.next() else { return s.err("unterminated character set") };
        if c == ']' && s.i - 1 != start {
            break;
        }
        let first = if c == '\\' { escape(s, true)? } else { Esc::Char(c) };
        // A range?
        if s.peek() == Some('-') {
            s.i += 1;
            match s.next() {
                None => return s.err("unterminated character set"),
                Some(']') => {
                    push_item(out, &first);
                    lit(out, '-');
                    break;
                }
                Some(d) => {
                    let second = if d == '\\' { escape(s, true)? } else { Esc::Char(d) };
                    match (&first, &second) {
                        (Esc::Char(a), Esc::Char(b)) => {
                            if a > b {
                                return s.err("bad character range");
                            }
                            lit(out, *a);
                            out.push('-');
                            lit(out, *b);
                        }
                        _ => return s.err("bad character range"),
                    }
                }
            }
        } else {
            push_item(out, &first);
        }
    }
    out.push(']');
    Ok(())
}

fn push_item(out: &mut String, e: &Esc) {
    match e {
        Esc::Char(c) => lit(out, *c),
        Esc::Class(_, inside) => out.push_str(inside),
        Esc::Assert(a) => out.push_str(a),
    }
}

/// A `re.sub` replacement: literal text and group references.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Group(usize),
}

impl Template {
    /// Parses `repl` as Python does, checking group references against `re`.
    pub fn parse(repl: &str, re: &PyRegex) -> Result<Template, String> {
        let groups = re.re.captures_len() - 1;
        let chars: Vec<char> = repl.chars().collect();
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        let bad = |m: &str| Err(format!("replacement {repl:?}: {m}"));
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            if c != '\\' {
                text.push(c);
                continue;
            }
            let Some(&e) = chars.get(i) else { return bad("bad escape (end of replacement)") };
            i += 1;
            let mut group = None;
            match e {
                'g' => {
                    if chars.get(i) != Some(&'<') {
                        return bad("missing <");
                    }
                    let close = match chars[i + 1..].iter().position(|&c| c == '>') {
                        Some(p) => i + 1 + p,
                        None => return bad("missing >, unterminated name"),
                    };
                    let name: String = chars[i + 1..close].iter().collect();
                    i = close + 1;
                    if name.is_empty() {
                        return bad("missing group name");
                    }
                    if name.chars().all(|c| c.is_ascii_digit()) {
                        match name.parse::<usize>() {
                            Ok(n) if n <= groups => group = Some(n),
                            _ => return bad("invalid group reference"),
                        }
                    } else {
                        match re.re.capture_names().position(|n| n == Some(name.as_str())) {
                            Some(n) => group = Some(n),
                            None => return bad("unknown group name"),
                        }
                    }
                }
                '0' => {
                    let mut v = 0u32;
                    for _ in 0..2 {
                        match chars.get(i).and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                v = v * 8 + d;
                                i += 1;
                            }
                            None => break,
                        }
                    }
                    text.push(char::from_u32(v).unwrap_or('\0'));
                }
                '1'..='9' => {
                    let d1 = e.to_digit(10).unwrap_or(0);
                    let n1 = chars.get(i).and_then(|c| c.to_digit(10));
                    let n2 = chars.get(i + 1).and_then(|c| c.to_digit(8));
                    if let Some(n1) = n1 {
                        if e <= '7' && n1 < 8 && n2.is_some() {
                            let v = d1 * 64 + n1 * 8 + n2.unwrap_or(0);
                            if v > 0o377 {
                                return bad("octal escape out of range");
                            }
                            i += 2;
                            text.push(char::from_u32(v).unwrap_or('\0'));
                            continue;
                        }
                        i += 1;
                        group = Some((d1 * 10 + n1) as usize);
                    } else {
                        group = Some(d1 as usize);
                    }
                    if group.is_some_and(|g| g > groups) {
                        return bad("invalid group reference");
                    }
                }
                'a' => text.push('\x07'),
                'b' => text.push('\x08'),
                'f' => text.push('\x0c'),
                'n' => text.push('\n'),
                'r' => text.push('\r'),
                't' => text.push('\t'),
                'v' => text.push('\x0b'),
                '\\' => text.push('\\'),
                c if c.is_ascii_alphabetic() => return bad(&format!("bad escape \\{c}")),
                c => {
                    text.push('\\');
                    text.push(c);
                }
            }
            if let Some(g) = group {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Group(g));
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    /// Python's `pattern.sub(repl, text)`.
    pub fn sub(&self, re: &PyRegex, text: &str) -> Result<String, String> {
        re.check_text(text)?;
        let mut out = String::new();
        let mut last = 0;
        let mut pos = 0;
        let mut after_empty = false;
        while pos <= text.len() {
            let Some(caps) = re.re.captures_at(text, pos) else { break };
            let m = caps.get(0).map_or(0..0, |m| m.range());
            if m.is_empty() && after_empty && m.start == pos {
                // Python does not take an empty match where the previous one
                // ended empty; it takes a non-empty one there if the pattern
                // has one (which one depends on backtracking order).
                if let Some(vm) = &re.longest {
                    let mut cache = vm.create_cache();
                    let input = Input::new(text).range(pos..).anchored(Anchored::Yes);
                    if vm.find(&mut cache, input).is_some_and(|l| l.end() > pos) {
                        return Err(format!(
                            "a regex preferring an empty match where a non-empty one also starts {UNSUPPORTED} by sub"
                        ));
                    }
                }
                match text[pos..].chars().next() {
                    Some(ch) => {
                        pos += ch.len_utf8();
                        after_empty = false;
                        continue;
                    }
                    None => break,
                }
            }
            out.push_str(&text[last..m.start]);
            for p in &self.parts {
                match p {
                    Part::Text(t) => out.push_str(t),
                    Part::Group(g) => out.push_str(caps.get(*g).map_or("", |m| m.as_str())),
                }
            }
            last = m.end;
            after_empty = m.is_empty();
            pos = m.end;
            if out.len() > MAX_TEXT {
                return Err("replacement result too large".into());
            }
        }
        out.push_str(&text[last..]);
        Ok(out)
    }
}
