//! Time expressions ("timex"), as used by `expiration`, `distinguished_by`
//! ranges and `timestamp`/`datetime` criteria.
//!
//! # Grammar
//!
//! ```text
//! expr      := chain [ "to" chain ]                  (both sides must be timestamps)
//! chain     := primary { ("+" | "-" | "@") duration } (left-associative)
//! primary   := "$" NAME
//!            | "(" expr ")"
//!            | FUNC [ "(" [ expr ] ")" ]               (FUNC = hour | day | month | year)
//! duration  := NUMBER [ UNIT ] { NUMBER UNIT }          (juxtaposed parts form one duration)
//! ```
//!
//! Whitespace is optional between a number and its unit (`1h`, `1 h`, `6h30m`).
//! A number without a unit is an *ambiguous* duration; it is only legal when applied
//! to a range, and its unit is chosen from the range's length.
//!
//! # Semantics and choices made on ambiguous points
//!
//! * `+`/`-` with months/years do calendar arithmetic first (clamping the day to the
//!   target month's length), then add the fixed-length part (days and smaller).
//! * `@` replaces the given fields. A day beyond the month's length is clamped to the
//!   last day of the month. Statically out-of-range values (`@ 25h`, `@ 13mo`) are
//!   parse errors; an ambiguous replacement that turns out invalid at evaluation time
//!   yields [`TimexEvalError::OutOfRange`].
//! * A unit may only appear once per duration (`1h 2h` is a parse error).
//! * `to` requires timestamp operands (`day to $last` is a parse error), as does the
//!   argument of a range function; `to` cannot be chained.
//! * Range functions produce a *pinned* range (unit + anchor instant):
//!   - `+`/`-` of a duration strictly smaller than the pin unit shifts both ends, then
//!     slides the range by whole pin units so that it contains the anchor; the result
//!     stays pinned. "Smaller" means: no month/year part and a fixed length below
//!     1 hour / 1 day / 28 days for hour / day / month pins; for year pins, no year part
//!     and (months × 30 days + fixed part) below 365 days.
//!   - Any other duration just shifts both ends and the result is no longer pinned.
//!   - `@` setting only fields finer than the pin unit (e.g. `day @ 6h`) replaces on
//!     both ends and slides like `+`, staying pinned. `@` setting a field at or above
//!     the pin unit's granularity (e.g. `day @ 2d`, `month @ 3mo`) replaces on the
//!     beginning and rebuilds the end as beginning + one pin unit; the result is
//!     no longer pinned (replacing both ends would give an empty range).
//! * On unpinned ranges (`a to b`, or after an unpinning operation) every operation is
//!   simply applied to both ends.
//! * Ambiguous unit selection uses the absolute length of the range: ≥ 365 days →
//!   months, ≥ 28 days → days, ≥ 1 day → hours, ≥ 1 hour → minutes, ≥ 1 minute →
//!   seconds, otherwise microseconds.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc};
use std::collections::HashMap;
use std::fmt;

/// Variables available to an expression (`$first`, `$last`, `$timestamp`, ...),
/// keyed by name without the `$`.
pub type Vars = HashMap<String, DateTime<Utc>>;

/// Where an expression's variables come from: a [`Vars`] map, or any
/// `Fn(&str) -> Option<DateTime<Utc>>` (which spares building a map per
/// evaluation).
pub trait VarSource {
    /// The variable's value (`name` without `$`), if defined.
    fn var(&self, name: &str) -> Option<DateTime<Utc>>;
}

impl VarSource for Vars {
    fn var(&self, name: &str) -> Option<DateTime<Utc>> {
        self.get(name).copied()
    }
}

impl<F: Fn(&str) -> Option<DateTime<Utc>>> VarSource for F {
    fn var(&self, name: &str) -> Option<DateTime<Utc>> {
        self(name)
    }
}

/// Error parsing a time expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid time expression {expr:?}: {reason}")]
pub struct TimexParseError {
    /// The expression text.
    pub expr: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Error evaluating a parsed time expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TimexEvalError {
    /// The expression names a variable that was not supplied.
    #[error("undefined variable ${0}")]
    UndefinedVariable(String),
    /// Arithmetic left the representable range of dates.
    #[error("date out of range")]
    OutOfRange,
}

/// Result of evaluating an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimexValue {
    /// A single instant.
    Timestamp(DateTime<Utc>),
    /// A half-open range `[begin, end)`.
    Range {
        /// Inclusive start.
        begin: DateTime<Utc>,
        /// Exclusive end.
        end: DateTime<Utc>,
    },
}

impl TimexValue {
    /// The instant of a timestamp, or the beginning of a range.
    pub fn timestamp(&self) -> DateTime<Utc> {
        match *self {
            TimexValue::Timestamp(t) => t,
            TimexValue::Range { begin, .. } => begin,
        }
    }
    /// A timestamp contains only an equal instant; a range contains `begin <= t < end`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        match *self {
            TimexValue::Timestamp(ts) => ts == t,
            TimexValue::Range { begin, end } => begin <= t && t < end,
        }
    }
    /// Whether this value is a range.
    pub fn is_range(&self) -> bool {
        matches!(self, TimexValue::Range { .. })
    }
}

/// Most tokens in one expression (real ones have a dozen or so).
const MAX_TOKENS: usize = 256;

/// A parsed time expression.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeExpr {
    source: String,
    ast: Node,
}

impl TimeExpr {
    /// Parse an expression such as `$last + 1h`, `day`, `day($launched_at)`, `$first to $last + 2d`.
    pub fn parse(text: &str) -> Result<TimeExpr, TimexParseError> {
        let err = |reason: String| TimexParseError { expr: text.to_string(), reason };
        let tokens = lex(text).map_err(err)?;
        if tokens.is_empty() {
            return Err(err("empty expression".to_string()));
        }
        // The parser, the checks and evaluation recurse once per nesting
        // level and per operator: a bound keeps hostile input off the stack.
        if tokens.len() > MAX_TOKENS {
            return Err(err(format!("expression too long: {} tokens, at most {MAX_TOKENS}", tokens.len())));
        }
        let mut parser = Parser { tokens, pos: 0 };
        let ast = parser.parse_expr().map_err(err)?;
        if let Some((tok, pos)) = parser.tokens.get(parser.pos) {
            let reason = match tok {
                Tok::RParen => format!("unbalanced parentheses: unexpected ')' at offset {pos}"),
                other => format!("unexpected trailing {other} at offset {pos}"),
            };
            return Err(err(reason));
        }
        Ok(TimeExpr { source: text.to_string(), ast })
    }
    /// The original expression text.
    pub fn source(&self) -> &str {
        &self.source
    }
    /// Names (without `$`) of the variables the expression references, including the implicit
    /// `timestamp` of a range function written without an argument.
    pub fn variables(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_vars(&self.ast, &mut out);
        out
    }
    /// Whether the expression evaluates to a range (as opposed to a single timestamp).
    pub fn is_range(&self) -> bool {
        kind(&self.ast) == Kind::Range
    }
    /// Evaluate with the given variables. `$timestamp` is NOT defaulted to the wall clock: the caller
    /// supplies it (the engine passes its clock's "now" where the original would use utcnow).
    pub fn eval(&self, vars: &impl VarSource) -> Result<TimexValue, TimexEvalError> {
        Ok(match eval_node(&self.ast, vars)? {
            Val::Ts(t) => TimexValue::Timestamp(t),
            Val::Range { begin, end, .. } => TimexValue::Range { begin, end },
        })
    }
}

// ---------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Var(String),
    Num(i64),
    Word(String),
    To,
    Plus,
    Minus,
    At,
    LParen,
    RParen,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Var(n) => write!(f, "variable '${n}'"),
            Tok::Num(n) => write!(f, "number '{n}'"),
            Tok::Word(w) => write!(f, "'{w}'"),
            Tok::To => f.write_str("'to'"),
            Tok::Plus => f.write_str("'+'"),
            Tok::Minus => f.write_str("'-'"),
            Tok::At => f.write_str("'@'"),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
        }
    }
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Collects chars from `i` while `pred` holds, returning the text and the new index.
    let take = |mut j: usize, pred: &dyn Fn(char) -> bool| {
        let mut s = String::new();
        while let Some(&(_, c)) = chars.get(j) {
            if !pred(c) {
                break;
            }
            s.push(c);
            j += 1;
        }
        (s, j)
    };
    while let Some(&(pos, c)) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let simple = match c {
            '+' => Some(Tok::Plus),
            '-' => Some(Tok::Minus),
            '@' => Some(Tok::At),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            _ => None,
        };
        if let Some(tok) = simple {
            out.push((tok, pos));
            i += 1;
            continue;
        }
        if c == '$' {
            match chars.get(i + 1) {
                Some(&(_, c2)) if c2.is_ascii_alphabetic() || c2 == '_' => {}
                _ => return Err(format!("expected a variable name after '$' at offset {pos}")),
            }
            let (name, j) = take(i + 1, &|c| c.is_ascii_alphanumeric() || c == '_');
            out.push((Tok::Var(name), pos));
            i = j;
        } else if c.is_ascii_digit() {
            let (digits, j) = take(i, &|c| c.is_ascii_digit());
            let n: i64 = digits.parse().map_err(|_| format!("number '{digits}' at offset {pos} is too large"))?;
            out.push((Tok::Num(n), pos));
            i = j;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let (word, j) = take(i, &|c| c.is_ascii_alphabetic() || c == '_');
            let tok = if word == "to" { Tok::To } else { Tok::Word(word) };
            out.push((tok, pos));
            i = j;
        } else {
            return Err(format!("unexpected character {c:?} at offset {pos}"));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// AST

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Years,
    Months,
    Days,
    Hours,
    Minutes,
    Seconds,
    Micros,
}

impl Unit {
    fn from_word(w: &str) -> Option<Unit> {
        Some(match w {
            "us" | "usec" | "usecs" | "microsecond" | "microseconds" => Unit::Micros,
            "s" | "sec" | "secs" | "second" | "seconds" => Unit::Seconds,
            "m" | "min" | "mins" | "minute" | "minutes" => Unit::Minutes,
            "h" | "hr" | "hrs" | "hour" | "hours" => Unit::Hours,
            "d" | "day" | "days" => Unit::Days,
            "mo" | "month" | "months" => Unit::Months,
            "y" | "yr" | "yrs" | "year" | "years" => Unit::Years,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Unit::Years => "year",
            Unit::Months => "month",
            Unit::Days => "day",
            Unit::Hours => "hour",
            Unit::Minutes => "minute",
            Unit::Seconds => "second",
            Unit::Micros => "microsecond",
        }
    }
}

/// Duration (or replacement) fields; `None` = not given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Fields {
    years: Option<i64>,
    months: Option<i64>,
    days: Option<i64>,
    hours: Option<i64>,
    minutes: Option<i64>,
    seconds: Option<i64>,
    micros: Option<i64>,
}

impl Fields {
    fn slot(&mut self, unit: Unit) -> &mut Option<i64> {
        match unit {
            Unit::Years => &mut self.years,
            Unit::Months => &mut self.months,
            Unit::Days => &mut self.days,
            Unit::Hours => &mut self.hours,
            Unit::Minutes => &mut self.minutes,
            Unit::Seconds => &mut self.seconds,
            Unit::Micros => &mut self.micros,
        }
    }
    fn single(unit: Unit, n: i64) -> Fields {
        let mut f = Fields::default();
        *f.slot(unit) = Some(n);
        f
    }
    /// Fixed-length part (days and smaller) in microseconds, widened to avoid overflow.
    fn fixed_micros_wide(&self) -> i128 {
        let g = |v: Option<i64>| i128::from(v.unwrap_or(0));
        g(self.days) * 86_400_000_000
            + g(self.hours) * 3_600_000_000
            + g(self.minutes) * 60_000_000
            + g(self.seconds) * 1_000_000
            + g(self.micros)
    }
    /// Checks replacement values that are statically known to be invalid.
    fn validate_replace(&self) -> Result<(), String> {
        let check = |v: Option<i64>, lo: i64, hi: i64, what: &str| match v {
            Some(n) if n < lo || n > hi => {
                Err(format!("cannot replace {what} with {n} (must be between {lo} and {hi})"))
            }
            _ => Ok(()),
        };
        check(self.years, 1, 9999, "year")?;
        check(self.months, 1, 12, "month")?;
        check(self.days, 1, 31, "day")?;
        check(self.hours, 0, 23, "hour")?;
        check(self.minutes, 0, 59, "minute")?;
        check(self.seconds, 0, 59, "second")?;
        check(self.micros, 0, 999_999, "microsecond")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dur {
    Fixed(Fields),
    /// A number without a unit; unit chosen from the range it is applied to.
    Ambiguous(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PinUnit {
    Hour,
    Day,
    Month,
    Year,
}

impl PinUnit {
    fn from_word(w: &str) -> Option<PinUnit> {
        Some(match w {
            "hour" => PinUnit::Hour,
            "day" => PinUnit::Day,
            "month" => PinUnit::Month,
            "year" => PinUnit::Year,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Var(String),
    /// Range function; `None` argument means `$timestamp`.
    Func(PinUnit, Option<Box<Node>>),
    Op(Box<Node>, Op, Dur),
    To(Box<Node>, Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ts,
    Range,
}

fn kind(node: &Node) -> Kind {
    match node {
        Node::Var(_) => Kind::Ts,
        Node::Func(..) | Node::To(..) => Kind::Range,
        Node::Op(lhs, _, _) => kind(lhs),
    }
}

fn collect_vars(node: &Node, out: &mut Vec<String>) {
    let push = |name: &str, out: &mut Vec<String>| {
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    };
    match node {
        Node::Var(n) => push(n, out),
        Node::Func(_, None) => push("timestamp", out),
        Node::Func(_, Some(arg)) => collect_vars(arg, out),
        Node::Op(lhs, _, _) => collect_vars(lhs, out),
        Node::To(a, b) => {
            collect_vars(a, out);
            collect_vars(b, out);
        }
    }
}

// ---------------------------------------------------------------------------
// Parser

struct Parser {
    tokens: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }
    fn next(&mut self) -> Option<(Tok, usize)> {
        let t = self.tokens.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }
    fn describe_next(&self) -> String {
        match self.tokens.get(self.pos) {
            Some((t, p)) => format!("{t} at offset {p}"),
            None => "end of expression".to_string(),
        }
    }

    fn parse_expr(&mut self) -> Result<Node, String> {
        let lhs = self.parse_chain()?;
        if self.peek() != Some(&Tok::To) {
            return Ok(lhs);
        }
        let to_pos = self.tokens.get(self.pos).map_or(0, |(_, p)| *p);
        self.pos += 1;
        let rhs = self.parse_chain()?;
        if kind(&lhs) != Kind::Ts || kind(&rhs) != Kind::Ts {
            return Err(format!("'to' at offset {to_pos} needs a timestamp expression on both sides, not a range"));
        }
        if let Some((Tok::To, p)) = self.tokens.get(self.pos) {
            return Err(format!("'to' cannot be chained (second 'to' at offset {p})"));
        }
        Ok(Node::To(Box::new(lhs), Box::new(rhs)))
    }

    fn parse_chain(&mut self) -> Result<Node, String> {
        let mut node = self.parse_primary()?;
        loop {
            let (op, sym) = match self.peek() {
                Some(Tok::Plus) => (Op::Add, '+'),
                Some(Tok::Minus) => (Op::Sub, '-'),
                Some(Tok::At) => (Op::Replace, '@'),
                _ => break,
            };
            self.pos += 1;
            let dur = self.parse_duration(sym)?;
            match dur {
                Dur::Ambiguous(n) if kind(&node) == Kind::Ts => {
                    return Err(format!(
                        "ambiguous duration '{n}' (a number without a unit) can only be applied \
                         to a range, not to a timestamp; add a unit, e.g. '{n}h'"
                    ));
                }
                Dur::Fixed(f) if op == Op::Replace => f.validate_replace()?,
                _ => {}
            }
            node = Node::Op(Box::new(node), op, dur);
        }
        Ok(node)
    }

    fn parse_duration(&mut self, after: char) -> Result<Dur, String> {
        let mut fields = Fields::default();
        let mut ambiguous = None;
        let mut parts = 0usize;
        while let Some(&Tok::Num(n)) = self.peek() {
            self.pos += 1;
            parts += 1;
            match self.tokens.get(self.pos) {
                Some((Tok::Word(w), p)) => {
                    let unit = Unit::from_word(w).ok_or_else(|| format!("unknown unit '{w}' at offset {p}"))?;
                    self.pos += 1;
                    let slot = fields.slot(unit);
                    if slot.is_some() {
                        return Err(format!(
                            "unit '{}' given more than once in one duration (offset {p})",
                            unit.name()
                        ));
                    }
                    *slot = Some(n);
                }
                _ => ambiguous = Some(n),
            }
        }
        if parts == 0 {
            return Err(format!("expected a duration (e.g. '1h') after '{after}', found {}", self.describe_next()));
        }
        match ambiguous {
            Some(n) if parts > 1 => Err(format!("number '{n}' without a unit inside a compound duration")),
            Some(n) => Ok(Dur::Ambiguous(n)),
            None => Ok(Dur::Fixed(fields)),
        }
    }

    fn parse_primary(&mut self) -> Result<Node, String> {
        let Some((tok, pos)) = self.next() else {
            return Err("expected a timestamp or range expression, found end of expression".to_string());
        };
        match tok {
            Tok::Var(name) => Ok(Node::Var(name)),
            Tok::LParen => {
                let inner = self.parse_expr()?;
                match self.next() {
                    Some((Tok::RParen, _)) => Ok(inner),
                    None => Err(format!("unbalanced parentheses: missing ')' for '(' at offset {pos}")),
                    Some((t, p)) => Err(format!("expected ')' to close '(' at offset {pos}, found {t} at offset {p}")),
                }
            }
            Tok::Word(w) => {
                let Some(unit) = PinUnit::from_word(&w) else {
                    return Err(if Unit::from_word(&w).is_some() {
                        format!("unit '{w}' at offset {pos} without a number or a timestamp")
                    } else {
                        format!(
                            "unknown identifier '{w}' at offset {pos} (expected a $variable or \
                             one of the range functions hour, day, month, year)"
                        )
                    });
                };
                if self.peek() != Some(&Tok::LParen) {
                    return Ok(Node::Func(unit, None));
                }
                let open = self.tokens.get(self.pos).map_or(pos, |(_, p)| *p);
                self.pos += 1;
                if self.peek() == Some(&Tok::RParen) {
                    self.pos += 1;
                    return Ok(Node::Func(unit, None));
                }
                let arg = self.parse_expr()?;
                if kind(&arg) != Kind::Ts {
                    return Err(format!("the argument of '{w}' at offset {pos} must be a timestamp, not a range"));
                }
                match self.next() {
                    Some((Tok::RParen, _)) => Ok(Node::Func(unit, Some(Box::new(arg)))),
                    None => Err(format!("unbalanced parentheses: missing ')' for '(' at offset {open}")),
                    Some((t, p)) => Err(format!("expected ')' to close '(' at offset {open}, found {t} at offset {p}")),
                }
            }
            Tok::Num(n) => Err(format!(
                "duration '{n}' at offset {pos} without a timestamp or range to apply it to \
                 (e.g. '$timestamp + {n}h')"
            )),
            Tok::RParen => Err(format!("unbalanced parentheses: unexpected ')' at offset {pos}")),
            t => Err(format!("expected a timestamp or range expression, found {t} at offset {pos}")),
        }
    }
}

// ---------------------------------------------------------------------------
// Evaluation

type Dt = DateTime<Utc>;

#[derive(Debug, Clone, Copy)]
struct Pin {
    unit: PinUnit,
    anchor: Dt,
}

#[derive(Debug, Clone, Copy)]
enum Val {
    Ts(Dt),
    Range { begin: Dt, end: Dt, pin: Option<Pin> },
}

const OOR: TimexEvalError = TimexEvalError::OutOfRange;
const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 86_400_000_000;

fn eval_node(node: &Node, vars: &dyn VarSource) -> Result<Val, TimexEvalError> {
    match node {
        Node::Var(name) => lookup(name, vars).map(Val::Ts),
        Node::Func(unit, arg) => {
            let anchor = match arg {
                None => lookup("timestamp", vars)?,
                Some(a) => eval_node(a, vars)?.instant(),
            };
            let (begin, end) = pin_range(*unit, anchor)?;
            Ok(Val::Range { begin, end, pin: Some(Pin { unit: *unit, anchor }) })
        }
        Node::To(a, b) => {
            Ok(Val::Range { begin: eval_node(a, vars)?.instant(), end: eval_node(b, vars)?.instant(), pin: None })
        }
        Node::Op(lhs, op, dur) => apply(eval_node(lhs, vars)?, *op, *dur),
    }
}

impl Val {
    fn instant(self) -> Dt {
        match self {
            Val::Ts(t) => t,
            Val::Range { begin, .. } => begin,
        }
    }
}

fn lookup(name: &str, vars: &dyn VarSource) -> Result<Dt, TimexEvalError> {
    vars.var(name).ok_or_else(|| TimexEvalError::UndefinedVariable(name.to_string()))
}

fn apply(val: Val, op: Op, dur: Dur) -> Result<Val, TimexEvalError> {
    let (begin, end, pin) = match val {
        Val::Ts(t) => {
            let f = match dur {
                Dur::Fixed(f) => f,
                // Rejected at parse time; kept as an error rather than a panic.
                Dur::Ambiguous(_) => return Err(OOR),
            };
            return Ok(Val::Ts(apply_ts(t, op, &f)?));
        }
        Val::Range { begin, end, pin } => (begin, end, pin),
    };
    let f = match dur {
        Dur::Fixed(f) => f,
        Dur::Ambiguous(n) => Fields::single(ambiguous_unit(begin, end), n),
    };
    let Some(pin) = pin else {
        return Ok(Val::Range { begin: apply_ts(begin, op, &f)?, end: apply_ts(end, op, &f)?, pin: None });
    };
    let keeps_pin = match op {
        Op::Add | Op::Sub => smaller_than_pin(&f, pin.unit),
        Op::Replace => replaces_only_finer(&f, pin.unit),
    };
    if keeps_pin {
        let (b, e) = slide(apply_ts(begin, op, &f)?, apply_ts(end, op, &f)?, pin)?;
        return Ok(Val::Range { begin: b, end: e, pin: Some(pin) });
    }
    match op {
        Op::Add | Op::Sub => Ok(Val::Range { begin: apply_ts(begin, op, &f)?, end: apply_ts(end, op, &f)?, pin: None }),
        Op::Replace => {
            let b = apply_ts(begin, op, &f)?;
            Ok(Val::Range { begin: b, end: add_pin_units(b, pin.unit, 1)?, pin: None })
        }
    }
}

fn apply_ts(t: Dt, op: Op, f: &Fields) -> Result<Dt, TimexEvalError> {
    match op {
        Op::Add => add_fields(t, f, 1),
        Op::Sub => add_fields(t, f, -1),
        Op::Replace => replace(t, f),
    }
}

fn ambiguous_unit(begin: Dt, end: Dt) -> Unit {
    let len = (end - begin).abs();
    if len >= TimeDelta::days(365) {
        Unit::Months
    } else if len >= TimeDelta::days(28) {
        Unit::Days
    } else if len >= TimeDelta::days(1) {
        Unit::Hours
    } else if len >= TimeDelta::hours(1) {
        Unit::Minutes
    } else if len >= TimeDelta::minutes(1) {
        Unit::Seconds
    } else {
        Unit::Micros
    }
}

fn smaller_than_pin(f: &Fields, unit: PinUnit) -> bool {
    let years = f.years.unwrap_or(0);
    let months = i128::from(f.months.unwrap_or(0));
    let fixed = f.fixed_micros_wide().abs();
    let below = |limit: i64| years == 0 && months == 0 && fixed < i128::from(limit);
    match unit {
        PinUnit::Hour => below(HOUR_US),
        PinUnit::Day => below(DAY_US),
        PinUnit::Month => below(28 * DAY_US),
        PinUnit::Year => years == 0 && (months.abs() * 30 * i128::from(DAY_US) + fixed) < 365 * i128::from(DAY_US),
    }
}

fn replaces_only_finer(f: &Fields, unit: PinUnit) -> bool {
    let coarse = match unit {
        PinUnit::Hour => f.hours.is_some() || f.days.is_some() || f.months.is_some(),
        PinUnit::Day => f.days.is_some() || f.months.is_some(),
        PinUnit::Month => f.months.is_some(),
        PinUnit::Year => false,
    };
    !(coarse || f.years.is_some())
}

fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year.checked_add(1)?, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    u32::try_from((next - first).num_days()).ok()
}

/// Calendar month arithmetic, clamping the day to the target month's length.
fn add_months(t: Dt, n: i64) -> Result<Dt, TimexEvalError> {
    if n == 0 {
        return Ok(t);
    }
    let total = i64::from(t.year())
        .checked_mul(12)
        .and_then(|v| v.checked_add(i64::from(t.month0())))
        .and_then(|v| v.checked_add(n))
        .ok_or(OOR)?;
    let year = i32::try_from(total.div_euclid(12)).map_err(|_| OOR)?;
    let month = u32::try_from(total.rem_euclid(12) + 1).map_err(|_| OOR)?;
    let day = t.day().min(days_in_month(year, month).ok_or(OOR)?);
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or(OOR)?;
    Ok(date.and_time(t.time()).and_utc())
}

fn add_fields(t: Dt, f: &Fields, sign: i64) -> Result<Dt, TimexEvalError> {
    let months = f
        .years
        .unwrap_or(0)
        .checked_mul(12)
        .and_then(|y| y.checked_add(f.months.unwrap_or(0)))
        .and_then(|m| m.checked_mul(sign))
        .ok_or(OOR)?;
    let t = add_months(t, months)?;
    let micros = i64::try_from(f.fixed_micros_wide() * i128::from(sign)).map_err(|_| OOR)?;
    t.checked_add_signed(TimeDelta::microseconds(micros)).ok_or(OOR)
}

fn replace(t: Dt, f: &Fields) -> Result<Dt, TimexEvalError> {
    let to_i32 = |v: i64| i32::try_from(v).map_err(|_| OOR);
    let to_u32 = |v: i64| u32::try_from(v).map_err(|_| OOR);
    let year = f.years.map(to_i32).transpose()?.unwrap_or(t.year());
    let month = f.months.map(to_u32).transpose()?.unwrap_or(t.month());
    let day = f.days.map(to_u32).transpose()?.unwrap_or(t.day());
    let day = day.min(days_in_month(year, month).ok_or(OOR)?);
    let hour = f.hours.map(to_u32).transpose()?.unwrap_or(t.hour());
    let minute = f.minutes.map(to_u32).transpose()?.unwrap_or(t.minute());
    let second = f.seconds.map(to_u32).transpose()?.unwrap_or(t.second());
    let nano = match f.micros {
        Some(us) if (0..1_000_000).contains(&us) => to_u32(us * 1000)?,
        Some(_) => return Err(OOR),
        None => t.nanosecond(),
    };
    NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_nano_opt(hour, minute, second, nano))
        .map(|n| n.and_utc())
        .ok_or(OOR)
}

/// `[begin, end)` of the hour/day/month/year containing `t`.
fn pin_range(unit: PinUnit, t: Dt) -> Result<(Dt, Dt), TimexEvalError> {
    let date = t.date_naive();
    let begin = match unit {
        PinUnit::Hour => date.and_hms_opt(t.hour(), 0, 0),
        PinUnit::Day => date.and_hms_opt(0, 0, 0),
        PinUnit::Month => NaiveDate::from_ymd_opt(t.year(), t.month(), 1).and_then(|d| d.and_hms_opt(0, 0, 0)),
        PinUnit::Year => NaiveDate::from_ymd_opt(t.year(), 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)),
    }
    .ok_or(OOR)?
    .and_utc();
    Ok((begin, add_pin_units(begin, unit, 1)?))
}

fn add_pin_units(t: Dt, unit: PinUnit, k: i64) -> Result<Dt, TimexEvalError> {
    let fixed = |us: i64| {
        let d = k.checked_mul(us).ok_or(OOR)?;
        t.checked_add_signed(TimeDelta::microseconds(d)).ok_or(OOR)
    };
    match unit {
        PinUnit::Hour => fixed(HOUR_US),
        PinUnit::Day => fixed(DAY_US),
        PinUnit::Month => add_months(t, k),
        PinUnit::Year => add_months(t, k.checked_mul(12).ok_or(OOR)?),
    }
}

/// Slides `[begin, end)` by whole pin units so that it contains the pin's anchor.
fn slide(begin: Dt, end: Dt, pin: Pin) -> Result<(Dt, Dt), TimexEvalError> {
    let k = match pin.unit {
        PinUnit::Hour | PinUnit::Day => {
            let unit_us = if pin.unit == PinUnit::Hour { HOUR_US } else { DAY_US };
            let diff = (pin.anchor - begin).num_microseconds().ok_or(OOR)?;
            diff.div_euclid(unit_us)
        }
        PinUnit::Month | PinUnit::Year => {
            let idx = |t: Dt| i64::from(t.year()) * 12 + i64::from(t.month0());
            let step = if pin.unit == PinUnit::Month { 1 } else { 12 };
            (idx(pin.anchor) - idx(begin)).div_euclid(step)
        }
    };
    // Calendar units may be off by one step from the estimate; a few corrections suffice.
    let mut k = k;
    for _ in 0..4 {
        let b = add_pin_units(begin, pin.unit, k)?;
        let e = add_pin_units(end, pin.unit, k)?;
        if pin.anchor < b {
            k -= 1;
        } else if pin.anchor >= e {
            k += 1;
        } else {
            return Ok((b, e));
        }
    }
    Ok((begin, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn dt(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Dt {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().expect("valid test date")
    }

    fn vars(pairs: &[(&str, Dt)]) -> Vars {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn ev(expr: &str, v: &Vars) -> TimexValue {
        TimeExpr::parse(expr)
            .unwrap_or_else(|e| panic!("parse {expr}: {e}"))
            .eval(v)
            .unwrap_or_else(|e| panic!("eval {expr}: {e}"))
    }

    fn range(b: Dt, e: Dt) -> TimexValue {
        TimexValue::Range { begin: b, end: e }
    }

    fn parse_err(expr: &str) -> String {
        match TimeExpr::parse(expr) {
            Ok(p) => panic!("expected parse error for {expr:?}, got {p:?}"),
            Err(e) => {
                assert_eq!(e.expr, expr);
                e.reason
            }
        }
    }

    fn base() -> Vars {
        vars(&[
            ("first", dt(2014, 8, 1, 10, 0, 0)),
            ("last", dt(2014, 8, 1, 20, 4, 0)),
            ("timestamp", dt(2014, 8, 1, 20, 4, 0)),
            ("launched_at", dt(2014, 7, 15, 3, 2, 1)),
        ])
    }

    #[test]
    fn add_sub_timestamps() {
        let v = base();
        assert_eq!(ev("$last + 1h", &v), TimexValue::Timestamp(dt(2014, 8, 1, 21, 4, 0)));
        assert_eq!(ev("$first + 1d", &v), TimexValue::Timestamp(dt(2014, 8, 2, 10, 0, 0)));
        assert_eq!(ev("$last - 30m", &v), TimexValue::Timestamp(dt(2014, 8, 1, 19, 34, 0)));
        assert_eq!(ev("$last+1h", &v), ev("$last + 1 h", &v));
        assert_eq!(ev("$last + 2 hours", &v), TimexValue::Timestamp(dt(2014, 8, 1, 22, 4, 0)));
        assert_eq!(ev("$last + 1 hour - 4 minutes", &v).timestamp(), dt(2014, 8, 1, 21, 0, 0));
        assert_eq!(ev("$last + 5s", &v).timestamp(), dt(2014, 8, 1, 20, 4, 5));
        assert_eq!(ev("$last + 7us", &v).timestamp(), dt(2014, 8, 1, 20, 4, 0) + TimeDelta::microseconds(7));
        assert_eq!(ev("(($last))", &v).timestamp(), dt(2014, 8, 1, 20, 4, 0));
        assert_eq!(ev("$first + 1y", &v).timestamp(), dt(2015, 8, 1, 10, 0, 0));
    }

    #[test]
    fn juxtaposed_durations() {
        let v = base();
        assert_eq!(ev("$last + 6h 30m", &v).timestamp(), dt(2014, 8, 2, 2, 34, 0));
        assert_eq!(ev("$last + 6h30m", &v).timestamp(), dt(2014, 8, 2, 2, 34, 0));
        assert_eq!(ev("$first + 1d 2h", &v).timestamp(), dt(2014, 8, 2, 12, 0, 0));
        assert_eq!(ev("$first - 1d 2h", &v).timestamp(), dt(2014, 7, 31, 8, 0, 0));
    }

    #[test]
    fn left_associative() {
        let v = base();
        assert_eq!(ev("$first + 1h - 30m + 1d", &v).timestamp(), dt(2014, 8, 2, 10, 30, 0));
        assert_eq!(ev("$last @ 0h 0m 0s + 1d", &v).timestamp(), dt(2014, 8, 2, 0, 0, 0));
        assert_eq!(ev("$last + 1d @ 0h 0m 0s", &v).timestamp(), dt(2014, 8, 2, 0, 0, 0));
    }

    #[test]
    fn replace_fields() {
        let v = base();
        assert_eq!(ev("$last @ 0h 0m 0s", &v).timestamp(), dt(2014, 8, 1, 0, 0, 0));
        assert_eq!(ev("$last @ 2d", &v).timestamp(), dt(2014, 8, 2, 20, 4, 0));
        assert_eq!(ev("$last @ 3mo", &v).timestamp(), dt(2014, 3, 1, 20, 4, 0));
        assert_eq!(ev("$last @ 2012y", &v).timestamp(), dt(2012, 8, 1, 20, 4, 0));
        // day beyond month length is clamped
        let v2 = vars(&[("t", dt(2014, 1, 31, 0, 0, 0))]);
        assert_eq!(ev("$t @ 2mo", &v2).timestamp(), dt(2014, 2, 28, 0, 0, 0));
        assert!(parse_err("$last @ 25h").contains("hour"));
        assert!(parse_err("$last @ 13mo").contains("month"));
        assert!(parse_err("$last @ 0d").contains("day"));
    }

    #[test]
    fn month_arithmetic_clamps() {
        let v = vars(&[
            ("a", dt(2014, 1, 31, 12, 0, 0)),
            ("b", dt(2016, 1, 31, 12, 0, 0)),
            ("c", dt(2016, 2, 29, 0, 0, 0)),
            ("d", dt(2014, 3, 31, 0, 0, 0)),
        ]);
        assert_eq!(ev("$a + 1mo", &v).timestamp(), dt(2014, 2, 28, 12, 0, 0));
        assert_eq!(ev("$b + 1 month", &v).timestamp(), dt(2016, 2, 29, 12, 0, 0));
        assert_eq!(ev("$c + 1y", &v).timestamp(), dt(2017, 2, 28, 0, 0, 0));
        assert_eq!(ev("$d - 1mo", &v).timestamp(), dt(2014, 2, 28, 0, 0, 0));
        assert_eq!(ev("$a + 11mo", &v).timestamp(), dt(2014, 12, 31, 12, 0, 0));
        assert_eq!(ev("$a + 12mo", &v).timestamp(), dt(2015, 1, 31, 12, 0, 0));
        assert_eq!(ev("$a - 1mo", &v).timestamp(), dt(2013, 12, 31, 12, 0, 0));
        assert_eq!(ev("$a + 1mo 1d", &v).timestamp(), dt(2014, 3, 1, 12, 0, 0));
    }

    #[test]
    fn range_functions() {
        let v = base();
        assert_eq!(ev("day", &v), range(dt(2014, 8, 1, 0, 0, 0), dt(2014, 8, 2, 0, 0, 0)));
        assert_eq!(ev("day()", &v), ev("day", &v));
        assert_eq!(ev("day($timestamp)", &v), ev("day", &v));
        assert_eq!(ev("day($launched_at)", &v), range(dt(2014, 7, 15, 0, 0, 0), dt(2014, 7, 16, 0, 0, 0)));
        assert_eq!(ev("hour", &v), range(dt(2014, 8, 1, 20, 0, 0), dt(2014, 8, 1, 21, 0, 0)));
        assert_eq!(ev("month", &v), range(dt(2014, 8, 1, 0, 0, 0), dt(2014, 9, 1, 0, 0, 0)));
        assert_eq!(ev("year", &v), range(dt(2014, 1, 1, 0, 0, 0), dt(2015, 1, 1, 0, 0, 0)));
        let dec = vars(&[("timestamp", dt(2014, 12, 25, 8, 0, 0))]);
        assert_eq!(ev("month", &dec), range(dt(2014, 12, 1, 0, 0, 0), dt(2015, 1, 1, 0, 0, 0)));
        assert_eq!(ev("hour($launched_at + 1h)", &v), range(dt(2014, 7, 15, 4, 0, 0), dt(2014, 7, 15, 5, 0, 0)));
    }

    #[test]
    fn explicit_ranges() {
        let v = base();
        let r = ev("$first to $last", &v);
        assert_eq!(r, range(dt(2014, 8, 1, 10, 0, 0), dt(2014, 8, 1, 20, 4, 0)));
        assert!(r.contains(dt(2014, 8, 1, 10, 0, 0)));
        assert!(r.contains(dt(2014, 8, 1, 15, 0, 0)));
        assert!(!r.contains(dt(2014, 8, 1, 20, 4, 0)));
        assert!(!r.contains(dt(2014, 8, 1, 9, 59, 59)));
        assert_eq!(r.timestamp(), dt(2014, 8, 1, 10, 0, 0));
        // `to` binds looser than `+`
        assert_eq!(ev("$first to $last + 1d", &v), range(dt(2014, 8, 1, 10, 0, 0), dt(2014, 8, 2, 20, 4, 0)));
        assert_eq!(ev("($first to $last) + 1d", &v), range(dt(2014, 8, 2, 10, 0, 0), dt(2014, 8, 2, 20, 4, 0)));
        assert_eq!(ev("($first to $last) @ 0h", &v), range(dt(2014, 8, 1, 0, 0, 0), dt(2014, 8, 1, 0, 4, 0)));
    }

    #[test]
    fn timestamp_contains() {
        let v = base();
        let t = ev("$last", &v);
        assert!(t.contains(dt(2014, 8, 1, 20, 4, 0)));
        assert!(!t.contains(dt(2014, 8, 1, 20, 4, 1)));
        assert!(!t.is_range());
    }

    #[test]
    fn pinned_day_slides() {
        let early = vars(&[("timestamp", dt(2014, 8, 1, 3, 0, 0))]);
        assert_eq!(ev("day + 6h", &early), range(dt(2014, 7, 31, 6, 0, 0), dt(2014, 8, 1, 6, 0, 0)));
        let late = vars(&[("timestamp", dt(2014, 8, 1, 20, 0, 0))]);
        assert_eq!(ev("day + 6h", &late), range(dt(2014, 8, 1, 6, 0, 0), dt(2014, 8, 2, 6, 0, 0)));
        // subtracting slides the other way
        assert_eq!(ev("day - 6h", &late), range(dt(2014, 8, 1, 18, 0, 0), dt(2014, 8, 2, 18, 0, 0)));
        assert_eq!(ev("day - 6h", &early), range(dt(2014, 7, 31, 18, 0, 0), dt(2014, 8, 1, 18, 0, 0)));
        // stays pinned across several small shifts
        assert_eq!(ev("day + 6h + 1h", &early), range(dt(2014, 7, 31, 7, 0, 0), dt(2014, 8, 1, 7, 0, 0)));
        // replacement of finer fields also slides
        assert_eq!(ev("day @ 6h", &early), range(dt(2014, 7, 31, 6, 0, 0), dt(2014, 8, 1, 6, 0, 0)));
        assert_eq!(ev("day @ 6h", &late), range(dt(2014, 8, 1, 6, 0, 0), dt(2014, 8, 2, 6, 0, 0)));
    }

    #[test]
    fn pinned_large_shift_unpins() {
        let v = base();
        assert_eq!(ev("day - 1d", &v), range(dt(2014, 7, 31, 0, 0, 0), dt(2014, 8, 1, 0, 0, 0)));
        assert_eq!(ev("day + 1d", &v), range(dt(2014, 8, 2, 0, 0, 0), dt(2014, 8, 3, 0, 0, 0)));
        assert_eq!(ev("hour - 1h", &v), range(dt(2014, 8, 1, 19, 0, 0), dt(2014, 8, 1, 20, 0, 0)));
        assert_eq!(ev("month - 1mo", &v), range(dt(2014, 7, 1, 0, 0, 0), dt(2014, 8, 1, 0, 0, 0)));
        // after unpinning, small shifts no longer slide
        assert_eq!(ev("day - 1d + 6h", &v), range(dt(2014, 7, 31, 6, 0, 0), dt(2014, 8, 1, 6, 0, 0)));
        // coarse replacement rebuilds one pin unit from the new beginning
        assert_eq!(ev("day @ 2d", &v), range(dt(2014, 8, 2, 0, 0, 0), dt(2014, 8, 3, 0, 0, 0)));
        assert_eq!(ev("month @ 3mo", &v), range(dt(2014, 3, 1, 0, 0, 0), dt(2014, 4, 1, 0, 0, 0)));
    }

    #[test]
    fn pinned_month_and_hour_slide() {
        let v = vars(&[("timestamp", dt(2014, 8, 3, 0, 0, 0))]);
        assert_eq!(ev("month + 5d", &v), range(dt(2014, 7, 6, 0, 0, 0), dt(2014, 8, 6, 0, 0, 0)));
        let v = vars(&[("timestamp", dt(2014, 8, 10, 0, 0, 0))]);
        assert_eq!(ev("month + 5d", &v), range(dt(2014, 8, 6, 0, 0, 0), dt(2014, 9, 6, 0, 0, 0)));
        let v = vars(&[("timestamp", dt(2014, 8, 1, 20, 10, 0))]);
        assert_eq!(ev("hour + 30m", &v), range(dt(2014, 8, 1, 19, 30, 0), dt(2014, 8, 1, 20, 30, 0)));
        let v = vars(&[("timestamp", dt(2014, 2, 1, 0, 0, 0))]);
        assert_eq!(ev("year + 3mo", &v), range(dt(2013, 4, 1, 0, 0, 0), dt(2014, 4, 1, 0, 0, 0)));
    }

    #[test]
    fn ambiguous_durations_on_ranges() {
        let v = base();
        // day range → hours: [08-01 02:00, 08-02 02:00) contains 20:04
        assert_eq!(ev("day + 2", &v), range(dt(2014, 8, 1, 2, 0, 0), dt(2014, 8, 2, 2, 0, 0)));
        assert_eq!(ev("day + 2", &v), ev("day + 2h", &v));
        // hour range → minutes
        assert_eq!(ev("hour + 5", &v), ev("hour + 5m", &v));
        // month range (31 days) → days; year → months
        assert_eq!(ev("month - 1", &v), ev("month - 1d", &v));
        assert_eq!(ev("year + 1", &v), ev("year + 1mo", &v));
        // explicit range of 10h04m → minutes
        assert_eq!(ev("($first to $last) + 3", &v), range(dt(2014, 8, 1, 10, 3, 0), dt(2014, 8, 1, 20, 7, 0)));
        // invalid ambiguous replacement is an eval error
        let e = TimeExpr::parse("day @ 30").map(|p| p.eval(&v));
        assert_eq!(e, Ok(Err(TimexEvalError::OutOfRange)));
    }

    #[test]
    fn undefined_variable() {
        let p = TimeExpr::parse("$nope + 1h").expect("parses");
        assert_eq!(p.eval(&base()), Err(TimexEvalError::UndefinedVariable("nope".into())));
        let p = TimeExpr::parse("day").expect("parses");
        assert_eq!(p.eval(&Vars::new()), Err(TimexEvalError::UndefinedVariable("timestamp".into())));
    }

    #[test]
    fn variables_listed() {
        let p = TimeExpr::parse("$first to $last + 1d").expect("parses");
        assert_eq!(p.variables(), vec!["first".to_string(), "last".to_string()]);
        let p = TimeExpr::parse("day").expect("parses");
        assert_eq!(p.variables(), vec!["timestamp".to_string()]);
        let p = TimeExpr::parse("day($launched_at) + 6h").expect("parses");
        assert_eq!(p.variables(), vec!["launched_at".to_string()]);
        let p = TimeExpr::parse("$a to $a + 1h").expect("parses");
        assert_eq!(p.variables(), vec!["a".to_string()]);
        assert_eq!(p.source(), "$a to $a + 1h");
        assert!(p.is_range());
    }

    #[test]
    fn out_of_range() {
        let v = vars(&[("t", dt(2014, 1, 1, 0, 0, 0))]);
        let p = TimeExpr::parse("$t + 9223372036854775807y").expect("parses");
        assert_eq!(p.eval(&v), Err(TimexEvalError::OutOfRange));
        let p = TimeExpr::parse("$t + 9223372036854775807d").expect("parses");
        assert_eq!(p.eval(&v), Err(TimexEvalError::OutOfRange));
        assert!(parse_err("$t + 99999999999999999999h").contains("too large"));
    }

    #[test]
    fn parse_errors() {
        assert!(parse_err("$last +").contains("expected a duration"));
        assert!(parse_err("foo").contains("unknown identifier 'foo'"));
        assert!(parse_err("$last + 1 parsec").contains("unknown unit 'parsec'"));
        assert!(parse_err("(day").contains("unbalanced parentheses"));
        assert!(parse_err("day($last").contains("unbalanced parentheses"));
        assert!(parse_err("$last)").contains("unbalanced parentheses"));
        assert!(parse_err("").contains("empty expression"));
        assert!(parse_err("   ").contains("empty expression"));
        assert!(parse_err("$last + 3").contains("ambiguous duration"));
        assert!(parse_err("1h").contains("without a timestamp"));
        assert!(parse_err("h").contains("without a number"));
        assert!(parse_err("$last $first").contains("trailing"));
        assert!(parse_err("$last + 1h foo").contains("trailing"));
        assert!(parse_err("$last # 1h").contains("unexpected character"));
        assert!(parse_err("$ + 1h").contains("variable name"));
        assert!(parse_err("$last + 1h 1h").contains("more than once"));
        assert!(parse_err("$last + 1h 2").contains("without a unit"));
        assert!(parse_err("$a to $b to $c").contains("chained"));
        assert!(parse_err("day to $b").contains("'to'"));
        assert!(parse_err("day(day)").contains("must be a timestamp"));
        assert!(parse_err("to $b").contains("expected a timestamp"));
        assert!(parse_err("$a to").contains("end of expression"));
    }
}
