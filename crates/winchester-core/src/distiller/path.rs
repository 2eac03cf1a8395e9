//! The JSONPath subset used by `fields` in `event_definitions.yaml`.
//!
//! Accepted syntax (that of jsonpath-rw as StackDistiller definitions use it):
//! an optional leading `$.`; dotted keys `payload.instance_id`; bracketed keys
//! `payload[host]`, `payload['a.b']`, `payload["a.b"]`; quoted keys containing
//! dots `payload.image_meta.'org.openstack__1__architecture'` (single or double
//! quotes, `\` escapes the next character); the wildcard `*` (every child of an
//! object, every element of an array), as a step or in brackets `[*]`; and
//! numeric indexes `[0]` (also written `.[0]`).

use serde_json::Value;
use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
    /// Every child of an object or element of an array.
    Wildcard,
}

/// A parsed field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    source: String,
    steps: Vec<Step>,
}

/// One value found by a [`FieldPath`]: where it is and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMatch<'a> {
    /// The concrete path of the value in canonical form (see [`FieldPath::canonical`]).
    pub path: String,
    /// The value.
    pub value: &'a Value,
}

/// Why a path did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field path {path:?} at character {position}: {reason}")]
pub struct PathError {
    /// The path text.
    pub path: String,
    /// 0-based character position of the problem.
    pub position: usize,
    /// What is wrong.
    pub reason: String,
}

fn is_ident_char(c: char) -> bool {
    !(c.is_whitespace() || matches!(c, '.' | '[' | ']' | '\'' | '"' | '*' | ',' | '(' | ')' | '|' | '&' | '$' | '`'))
}

fn is_plain_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(is_ident_char)
}

struct Parser<'s> {
    src: &'s str,
    chars: Vec<char>,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, reason: impl Into<String>) -> PathError {
        PathError { path: self.src.to_string(), position: self.pos, reason: reason.into() }
    }
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn quoted(&mut self) -> Result<String, PathError> {
        let quote = self.chars[self.pos];
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    self.pos = start;
                    return Err(self.err(format!("unterminated {quote} quote")));
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        None => return Err(self.err("path ends after an escape character")),
                    }
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
    fn ident(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_ident_char) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }
    /// A step after a `.` or at the start.
    fn dotted_step(&mut self) -> Result<Step, PathError> {
        match self.peek() {
            None => Err(self.err("expected a key, found the end of the path")),
            Some('*') => {
                self.pos += 1;
                Ok(Step::Wildcard)
            }
            Some('\'') | Some('"') => Ok(Step::Key(self.quoted()?)),
            Some(c) if is_ident_char(c) => Ok(Step::Key(self.ident())),
            Some(c) => Err(self.err(format!("expected a key, found {c:?}"))),
        }
    }
    /// A bracketed step; `pos` is at `[`.
    fn bracket_step(&mut self) -> Result<Step, PathError> {
        self.pos += 1;
        let step = match self.peek() {
            None => return Err(self.err("unterminated '['")),
            Some('*') => {
                self.pos += 1;
                Step::Wildcard
            }
            Some('\'') | Some('"') => Step::Key(self.quoted()?),
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                let text = self.ident();
                match text.parse::<usize>() {
                    Ok(i) => Step::Index(i),
                    Err(_) => {
                        self.pos = start;
                        return Err(self.err(format!("bad index {text:?} (slices and lists are not supported)")));
                    }
                }
            }
            Some(c) if is_ident_char(c) => Step::Key(self.ident()),
            Some(c) => return Err(self.err(format!("unexpected {c:?} in brackets"))),
        };
        match self.peek() {
            Some(']') => {
                self.pos += 1;
                Ok(step)
            }
            None => Err(self.err("unterminated '['")),
            Some(c) => Err(self.err(format!("expected ']', found {c:?}"))),
        }
    }
}

impl FieldPath {
    /// Parses a path.
    pub fn parse(src: &str) -> Result<FieldPath, PathError> {
        let mut p = Parser { src, chars: src.trim().chars().collect(), pos: 0 };
        if p.chars.is_empty() {
            return Err(p.err("empty path"));
        }
        let mut steps = Vec::new();
        if p.peek() == Some('$') {
            p.pos += 1;
            match p.peek() {
                Some('.') => p.pos += 1,
                Some('[') => {}
                None => return Err(p.err("a path of only '$' selects the whole notification; name a field")),
                Some(c) => return Err(p.err(format!("expected '.' or '[' after '$', found {c:?}"))),
            }
        }
        if p.peek() == Some('[') {
            steps.push(p.bracket_step()?);
        } else {
            steps.push(p.dotted_step()?);
        }
        while let Some(c) = p.peek() {
            match c {
                '.' => {
                    p.pos += 1;
                    if p.peek() == Some('[') {
                        steps.push(p.bracket_step()?);
                    } else {
                        steps.push(p.dotted_step()?);
                    }
                }
                '[' => steps.push(p.bracket_step()?),
                other => return Err(p.err(format!("expected '.' or '[', found {other:?}"))),
            }
        }
        Ok(FieldPath { source: src.to_string(), steps })
    }

    /// The text the path was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Whether the path contains a wildcard.
    pub fn has_wildcard(&self) -> bool {
        self.steps.contains(&Step::Wildcard)
    }

    /// Canonical text of the path: keys joined by `.`, keys that are not plain
    /// identifiers in single quotes, indexes as `[n]`, wildcards as `*`, no `$.`.
    /// [`FieldMatch::path`] uses this form, so a path without wildcards equals
    /// the path of what it matches.
    pub fn canonical(&self) -> String {
        render(&self.steps)
    }

    /// Every value the path selects in `root`, in document order, nulls included.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<FieldMatch<'a>> {
        let mut cur: Vec<(Vec<Step>, &'a Value)> = vec![(Vec::new(), root)];
        for step in &self.steps {
            let mut next = Vec::new();
            for (path, v) in cur {
                let mut push = |s: Step, child: &'a Value| {
                    let mut p = path.clone();
                    p.push(s);
                    next.push((p, child));
                };
                match (step, v) {
                    (Step::Key(k), Value::Object(m)) => {
                        if let Some(child) = m.get(k) {
                            push(Step::Key(k.clone()), child);
                        }
                    }
                    (Step::Index(i), Value::Array(a)) => {
                        if let Some(child) = a.get(*i) {
                            push(Step::Index(*i), child);
                        }
                    }
                    (Step::Wildcard, Value::Object(m)) => {
                        for (k, child) in m {
                            push(Step::Key(k.clone()), child);
                        }
                    }
                    (Step::Wildcard, Value::Array(a)) => {
                        for (i, child) in a.iter().enumerate() {
                            push(Step::Index(i), child);
                        }
                    }
                    _ => {}
                }
            }
            cur = next;
        }
        cur.into_iter().map(|(p, value)| FieldMatch { path: render(&p), value }).collect()
    }
}

fn render(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Wildcard => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('*');
            }
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if is_plain_key(k) {
                    out.push_str(k);
                } else {
                    out.push('\'');
                    for c in k.chars() {
                        if c == '\'' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('\'');
                }
            }
        }
    }
    out
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(p: &str) -> Vec<Step> {
        FieldPath::parse(p).unwrap().steps
    }

    #[test]
    fn syntax() {
        let k = |s: &str| Step::Key(s.into());
        assert_eq!(keys("payload.instance_id"), vec![k("payload"), k("instance_id")]);
        assert_eq!(keys("$.payload.instance_id"), vec![k("payload"), k("instance_id")]);
        assert_eq!(keys("payload[host]"), vec![k("payload"), k("host")]);
        assert_eq!(keys("payload['a.b']"), vec![k("payload"), k("a.b")]);
        assert_eq!(keys("payload[\"a.b\"]"), vec![k("payload"), k("a.b")]);
        assert_eq!(
            keys("payload.image_meta.'org.openstack__1__architecture'"),
            vec![k("payload"), k("image_meta"), k("org.openstack__1__architecture")]
        );
        assert_eq!(keys("payload.\"x.y\""), vec![k("payload"), k("x.y")]);
        assert_eq!(keys("payload.*"), vec![k("payload"), Step::Wildcard]);
        assert_eq!(keys("a[0].b"), vec![k("a"), Step::Index(0), k("b")]);
        assert_eq!(keys("a.[1]"), vec![k("a"), Step::Index(1)]);
        assert_eq!(keys("a[*]"), vec![k("a"), Step::Wildcard]);
        assert_eq!(keys("_context_request_id"), vec![k("_context_request_id")]);
        assert_eq!(keys("publisher-id"), vec![k("publisher-id")]);
        for bad in [
            "",
            "payload.",
            "payload..x",
            "payload[",
            "payload[x",
            "payload['x]",
            "a b",
            "$",
            "a[1:2]",
            "a]",
            "$x",
            ".a",
        ] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?} should fail");
        }
        let e = FieldPath::parse("payload.'oops").unwrap_err();
        assert!(e.to_string().contains("unterminated"), "{e}");
    }

    #[test]
    fn finding() {
        let doc = json!({"payload": {"a.b": 1, "x": {"y": 2, "z": null}, "list": [10, 20]}});
        let found = |p: &str| -> Vec<(String, Value)> {
            FieldPath::parse(p).unwrap().find(&doc).into_iter().map(|m| (m.path, m.value.clone())).collect()
        };
        assert_eq!(found("payload.'a.b'"), vec![("payload.'a.b'".into(), json!(1))]);
        assert_eq!(found("payload.x.*"), vec![("payload.x.y".into(), json!(2)), ("payload.x.z".into(), json!(null))]);
        assert_eq!(found("payload.list[1]"), vec![("payload.list[1]".into(), json!(20))]);
        assert_eq!(found("payload.list.*").len(), 2);
        assert!(found("payload.list[5]").is_empty());
        assert!(found("payload.missing.x").is_empty());
        assert!(found("payload.list.x").is_empty());
        assert_eq!(FieldPath::parse("$.payload['a.b']").unwrap().canonical(), "payload.'a.b'");
    }
}
