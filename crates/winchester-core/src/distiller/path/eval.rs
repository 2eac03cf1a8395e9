//! Evaluation with jsonpath-rw's data model: every match is a datum with its
//! own path step and the datum it was found in (its context); the full path
//! of a match joins those steps, skipping `` `this` `` and restarting at `$`.
//! Values computed by operators (`` `len` ``, `` `split` ``, arithmetic,
//! sorting...) have no context: their full path is `` `this` `` or `` `len` ``.
//!
//! Python's runtime failures (indexing a number, an unsupported comparison,
//! `&`, `` `parent` `` of the root...) are [`EvalError`]s.

use super::ast::{ArithOp, CmpOp, Expr, Lit, Node, Operand};
use super::pyre::MAX_TEXT;
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::rc::Rc;

/// Why evaluating a path failed (where Python raises an exception).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

type R<T> = Result<T, EvalError>;

fn fail<T>(m: impl Into<String>) -> R<T> {
    Err(EvalError(m.into()))
}

#[derive(Clone, Debug)]
pub(super) enum Val<'a> {
    Ref(&'a Value),
    Own(Rc<Value>),
}

impl Val<'_> {
    fn get(&self) -> &Value {
        match self {
            Val::Ref(v) => v,
            Val::Own(v) => v,
        }
    }
}

impl<'a> Val<'a> {
    fn child(&self, f: impl Fn(&Value) -> &Value) -> Val<'a> {
        match self {
            Val::Ref(v) => Val::Ref(f(v)),
            Val::Own(v) => Val::Own(Rc::new(f(v).clone())),
        }
    }
    pub fn into_cow(self) -> Cow<'a, Value> {
        match self {
            Val::Ref(v) => Cow::Borrowed(v),
            Val::Own(v) => Cow::Owned(Rc::try_unwrap(v).unwrap_or_else(|rc| (*rc).clone())),
        }
    }
}

#[derive(Clone, Debug)]
enum Seg {
    Root,
    This,
    Field(Rc<str>),
    Index(i64),
    Len,
}

#[derive(Debug)]
pub(super) struct Datum<'a> {
    pub value: Val<'a>,
    seg: Seg,
    ctx: Option<Rc<Datum<'a>>>,
}

/// A match; `None` is Python's `None` (what `` `parent` `` of a datum
/// without context gives).
type D<'a> = Option<Rc<Datum<'a>>>;

/// What a node's `find` returns: a list, or (only `` `sorted` `` on a
/// non-list) the datum itself.
enum Found<'a> {
    List(Vec<D<'a>>),
    Bare(Rc<Datum<'a>>),
}

impl<'a> Found<'a> {
    fn list(self, what: &str) -> R<Vec<D<'a>>> {
        match self {
            Found::List(v) => Ok(v),
            Found::Bare(_) => fail(format!("{what}: `sorted` gave a single value, not a list of matches")),
        }
    }
    fn truthy(&self) -> bool {
        match self {
            Found::List(v) => !v.is_empty(),
            Found::Bare(_) => true,
        }
    }
}

fn datum<'a>(value: Val<'a>, seg: Seg, ctx: Option<Rc<Datum<'a>>>) -> Rc<Datum<'a>> {
    Rc::new(Datum { value, seg, ctx })
}

fn own<'a>(v: Value) -> Val<'a> {
    Val::Own(Rc::new(v))
}

fn wrap<'a>(d: &D<'a>) -> Rc<Datum<'a>> {
    match d {
        Some(d) => d.clone(),
        None => datum(own(Value::Null), Seg::This, None),
    }
}

enum Fp {
    Root,
    This,
    Other(String),
}

fn seg_fp(s: &Seg) -> Fp {
    match s {
        Seg::Root => Fp::Root,
        Seg::This => Fp::This,
        Seg::Field(f) => Fp::Other(f.to_string()),
        Seg::Index(i) => Fp::Other(format!("[{i}]")),
        Seg::Len => Fp::Other("`len`".into()),
    }
}

fn full_path(d: &Datum<'_>) -> Fp {
    let own = seg_fp(&d.seg);
    let Some(ctx) = &d.ctx else { return own };
    match full_path(ctx) {
        Fp::Root | Fp::This => own,
        Fp::Other(s) => match own {
            Fp::This => Fp::Other(s),
            Fp::Root => Fp::Root,
            Fp::Other(t) => Fp::Other(format!("{s}.{t}")),
        },
    }
}

/// The string form of a match's full path (Python's `str(match.full_path)`).
pub(super) fn full_path_string(d: &Datum<'_>) -> String {
    match full_path(d) {
        Fp::Root => "$".into(),
        Fp::This => "`this`".into(),
        Fp::Other(s) => s,
    }
}

/// Most steps (values visited) one evaluation may take: `$..*..*..*` on a
/// large document would otherwise run for hours (as it does in Python).
const MAX_STEPS: usize = 1_000_000;

thread_local! {
    static STEPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn tick() -> R<()> {
    STEPS.with(|s| {
        let n = s.get() + 1;
        s.set(n);
        if n > MAX_STEPS {
            fail(format!("evaluation takes more than {MAX_STEPS} steps (not supported)"))
        } else {
            Ok(())
        }
    })
}

/// Evaluates `node` on a document.
pub(super) fn find_top<'a>(node: &Node, doc: &'a Value) -> R<Vec<(String, Val<'a>)>> {
    STEPS.with(|s| s.set(0));
    let input = Some(datum(Val::Ref(doc), Seg::This, None));
    let found = find(node, &input, true)?.list("the path")?;
    found
        .into_iter()
        .map(|d| match d {
            Some(d) => Ok((full_path_string(&d), d.value.clone())),
            None => fail("a match is None (`parent` of a value without one)"),
        })
        .collect()
}

fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn int_of(v: &Value) -> Option<i128> {
    match v {
        Value::Bool(b) => Some(i128::from(*b)),
        Value::Number(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    }
}

fn find<'a>(node: &Node, input: &D<'a>, raw: bool) -> R<Found<'a>> {
    tick()?;
    let one = |d: Rc<Datum<'a>>| Ok(Found::List(vec![Some(d)]));
    match node {
        Node::Root => {
            let mut d = wrap(input);
            while let Some(c) = d.ctx.clone() {
                d = c;
            }
            one(datum(d.value.clone(), Seg::Root, None))
        }
        Node::This => one(wrap(input)),
        Node::Parent => Ok(Found::List(vec![wrap(input).ctx.clone()])),
        Node::Fields(fields) => {
            let d = wrap(input);
            let Value::Object(m) = d.value.get() else { return Ok(Found::List(vec![])) };
            let mut out = Vec::new();
            let mut field = |k: &str| {
                if m.contains_key(k) {
                    let key = k.to_string();
                    let v = d.value.child(|v| &v[key.as_str()]);
                    out.push(Some(datum(v, Seg::Field(k.into()), Some(d.clone()))));
                }
            };
            if fields.iter().any(|f| f == "*") {
                for k in m.keys() {
                    tick()?;
                    field(k);
                }
            } else {
                for f in fields {
                    field(f);
                }
            }
            Ok(Found::List(out))
        }
        Node::Index(i) => {
            let d = wrap(input);
            let i = *i;
            let len = match d.value.get() {
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.chars().count(),
                other => return fail(format!("object of type '{}' has no len()", py_type(other))),
            };
            if (len as i128) <= i128::from(i) {
                return Ok(Found::List(vec![]));
            }
            let at = if i < 0 { len as i128 + i128::from(i) } else { i128::from(i) };
            if at < 0 {
                return fail("index out of range");
            }
            let at = at as usize;
            let v = match d.value.get() {
                Value::Array(_) => d.value.child(|v| &v[at]),
                Value::String(s) => own(Value::String(s.chars().nth(at).map(String::from).unwrap_or_default())),
                _ => return fail(format!("KeyError: {i}")),
            };
            one(datum(v, Seg::Index(i), Some(d)))
        }
        Node::Slice(start, end) => {
            let d = wrap(input);
            let d = match d.value.get() {
                Value::Array(_) => d,
                Value::Object(_) | Value::String(_) | Value::Bool(_) => {
                    datum(own(Value::Array(vec![d.value.get().clone()])), d.seg.clone(), d.ctx.clone())
                }
                Value::Number(n) if !n.is_f64() => {
                    datum(own(Value::Array(vec![d.value.get().clone()])), d.seg.clone(), d.ctx.clone())
                }
                other => return fail(format!("object of type '{}' has no len()", py_type(other))),
            };
            let len = d.value.get().as_array().map_or(0, Vec::len);
            let (lo, hi) = slice_bounds(len, *start, *end);
            let out = (lo..hi)
                .map(|k| Some(datum(d.value.child(|v| &v[k]), Seg::Index(k as i64), Some(d.clone()))))
                .collect();
            Ok(Found::List(out))
        }
        Node::Child(l, r) => {
            let mut out = Vec::new();
            for sub in find(l, input, raw)?.list("a path's left side")? {
                out.extend(find(r, &sub, false)?.list("a path's right side")?);
            }
            Ok(Found::List(out))
        }
        Node::Where(l, r) => {
            let mut out = Vec::new();
            for sub in find(l, input, raw)?.list("where's left side")? {
                if find(r, &sub, false)?.truthy() {
                    out.push(sub);
                }
            }
            Ok(Found::List(out))
        }
        Node::Descendants(l, r) => {
            let left = match find(l, input, raw)? {
                Found::List(v) => v,
                Found::Bare(d) => vec![Some(d)],
            };
            let mut out = Vec::new();
            for m in left {
                descend(r, m, &mut out)?;
            }
            Ok(Found::List(out))
        }
        Node::Union(l, r) => {
            let a = find(l, input, raw)?;
            let b = find(r, input, raw)?;
            let mut a = a.list("'|'")?;
            a.extend(b.list("'|'")?);
            Ok(Found::List(a))
        }
        Node::Intersect(..) => fail("'&' (intersection) is not implemented by jsonpath-rw"),
        Node::Len => {
            let d = wrap(input);
            let n = match d.value.get() {
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.chars().count(),
                _ => return Ok(Found::List(vec![])),
            };
            one(datum(own(Value::from(n)), Seg::Len, None))
        }
        Node::Sorted(keys) => {
            let Some(d) = input.clone().filter(|_| !raw) else {
                return fail("`sorted` needs a match to sort, not the document itself");
            };
            match d.value.get() {
                Value::Object(_) if keys.as_ref().is_some_and(|k| !k.is_empty()) => Ok(Found::Bare(d)),
                Value::Object(m) => {
                    let keys: Vec<Value> = m.keys().map(|k| Value::String(k.clone())).collect();
                    one(datum(own(Value::Array(keys)), Seg::This, None))
                }
                Value::Array(a) => {
                    if let Some(keys) = keys.as_ref().filter(|_| a.len() >= 64) {
                        // Items without exactly one value for a key compare
                        // equal to all others: when only some lack it, the
                        // order depends on CPython's merge steps, which
                        // merge_sort does not copy.
                        for (key, _) in keys {
                            let mut with = 0;
                            for x in a {
                                let got = find(key, &Some(datum(Val::Ref(x), Seg::This, None)), false)?;
                                with += usize::from(matches!(&got, Found::List(v) if v.len() == 1));
                            }
                            if with != 0 && with != a.len() {
                                return fail("sorting 64 or more items some of which lack a sort key is not supported");
                            }
                        }
                    }
                    let sorted = py_sort(a.clone(), &|x, y| match keys {
                        None => Ok(py_order(x, y)? == Ordering::Less),
                        Some(keys) => Ok(sort_cmp(keys, x, y)? < 0),
                    })?;
                    one(datum(own(Value::Array(sorted)), Seg::This, None))
                }
                _ => Ok(Found::Bare(d)),
            }
        }
        Node::Split { sep, segment, max_split } => {
            let d = wrap(input);
            let Value::String(s) = d.value.get() else { return Ok(Found::List(vec![])) };
            let (Some(seg), Some(max)) = (segment, max_split) else { return Ok(Found::List(vec![])) };
            let part = if *max < 0 {
                s.split(*sep).nth(*seg)
            } else {
                let n = usize::try_from(*max).unwrap_or(usize::MAX).saturating_add(1);
                s.splitn(n, *sep).nth(*seg)
            };
            match part {
                Some(p) => one(datum(own(Value::String(p.to_string())), Seg::This, None)),
                None => Ok(Found::List(vec![])),
            }
        }
        Node::Sub { re, template } => {
            let d = wrap(input);
            let Value::String(s) = d.value.get() else {
                return fail(format!("sub: expected string, got '{}'", py_type(d.value.get())));
            };
            let template = template.as_ref().map_err(|e| EvalError(e.clone()))?;
            let new = template.sub(re, s).map_err(EvalError)?;
            if &new == s {
                Ok(Found::List(vec![]))
            } else {
                one(datum(own(Value::String(new)), Seg::This, None))
            }
        }
        Node::Op(l, op, r) => arith_node(l, *op, r, input, raw),
        Node::Filter(exprs) => {
            let d = wrap(input);
            let Value::Array(a) = d.value.get() else { return Ok(Found::List(vec![])) };
            let mut out = Vec::new();
            for k in 0..a.len() {
                let v = d.value.child(|v| &v[k]);
                let mut all = true;
                for e in exprs {
                    if !filter_expr(e, v.clone())? {
                        all = false;
                    }
                }
                if all {
                    out.push(Some(datum(v, Seg::Index(k as i64), Some(d.clone()))));
                }
            }
            Ok(Found::List(out))
        }
    }
}

fn slice_bounds(len: usize, start: Option<i64>, end: Option<i64>) -> (usize, usize) {
    let len_i = len as i128;
    let fix = |v: Option<i64>, default: i128| -> i128 {
        match v {
            None => default,
            Some(v) => {
                let v = i128::from(v);
                if v < 0 {
                    (v + len_i).max(0)
                } else {
                    v.min(len_i)
                }
            }
        }
    };
    let lo = fix(start, 0);
    let hi = fix(end, len_i);
    if hi <= lo {
        (0, 0)
    } else {
        (lo as usize, hi as usize)
    }
}

fn descend<'a>(r: &Node, m: D<'a>, out: &mut Vec<D<'a>>) -> R<()> {
    tick()?;
    let Some(m) = m else { return fail("'..' on None") };
    let here = find(r, &Some(m.clone()), false)?.list("'..'")?;
    out.extend(here);
    match m.value.get() {
        Value::Array(a) => {
            for k in 0..a.len() {
                let c = datum(m.value.child(|v| &v[k]), Seg::Index(k as i64), Some(m.clone()));
                descend(r, Some(c), out)?;
            }
        }
        Value::Object(o) => {
            for key in o.keys() {
                let c = datum(m.value.child(|v| &v[key.as_str()]), Seg::Field(key.as_str().into()), Some(m.clone()));
                descend(r, Some(c), out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn value_of(d: &D<'_>) -> R<Value> {
    match d {
        Some(d) => Ok(d.value.get().clone()),
        None => fail("'NoneType' object has no attribute 'value'"),
    }
}

fn lit_value(o: &Operand) -> Option<Value> {
    match o {
        Operand::Path(_) => None,
        Operand::Str(s) => Some(Value::String(s.clone())),
        Operand::Int(i) => Some(Value::from(*i)),
        Operand::Float(f) => Some(Number::from_f64(*f).map_or(Value::Null, Value::Number)),
    }
}

fn arith_node<'a>(l: &Operand, op: ArithOp, r: &Operand, input: &D<'a>, raw: bool) -> R<Found<'a>> {
    let mut results = Vec::new();
    let push = |results: &mut Vec<D<'a>>, v: Option<Value>| -> bool {
        match v {
            Some(v) => {
                results.push(Some(datum(own(v), Seg::This, None)));
                true
            }
            None => false,
        }
    };
    match (l, r) {
        (Operand::Path(lp), Operand::Path(rp)) => {
            let left = find(lp, input, raw)?;
            let right = find(rp, input, raw)?;
            if !left.truthy() || !right.truthy() {
                return Ok(Found::List(vec![]));
            }
            let left = left.list("an operand")?;
            let right = right.list("an operand")?;
            if left.len() != right.len() {
                return Ok(Found::List(vec![]));
            }
            for (a, b) in left.iter().zip(&right) {
                let (a, b) = (value_of(a)?, value_of(b)?);
                if !push(&mut results, py_arith(op, &a, &b)?) {
                    return Ok(Found::List(vec![]));
                }
            }
        }
        (Operand::Path(lp), lit) => {
            let b = lit_value(lit).unwrap_or(Value::Null);
            for a in find(lp, input, raw)?.list("an operand")? {
                let a = value_of(&a)?;
                if !push(&mut results, py_arith(op, &a, &b)?) {
                    return Ok(Found::List(vec![]));
                }
            }
        }
        (lit, Operand::Path(rp)) => {
            let a = lit_value(lit).unwrap_or(Value::Null);
            for b in find(rp, input, raw)?.list("an operand")? {
                let b = value_of(&b)?;
                if !push(&mut results, py_arith(op, &a, &b)?) {
                    return Ok(Found::List(vec![]));
                }
            }
        }
        (a, b) => {
            let (a, b) = (lit_value(a).unwrap_or(Value::Null), lit_value(b).unwrap_or(Value::Null));
            if !push(&mut results, py_arith(op, &a, &b)?) {
                return Ok(Found::List(vec![]));
            }
        }
    }
    Ok(Found::List(results))
}

#[derive(Clone, Copy)]
enum Num {
    I(i128),
    F(f64),
}

fn num(v: &Value) -> Option<Num> {
    match v {
        Value::Bool(b) => Some(Num::I(i128::from(*b))),
        Value::Number(n) => match int_of(v) {
            Some(i) => Some(Num::I(i)),
            None => n.as_f64().map(Num::F),
        },
        _ => None,
    }
}

fn int_value(i: i128) -> R<Value> {
    if let Ok(v) = i64::try_from(i) {
        Ok(Value::from(v))
    } else if let Ok(v) = u64::try_from(i) {
        Ok(Value::from(v))
    } else {
        fail("integer result beyond 64 bits is not supported")
    }
}

fn float_value(f: f64) -> R<Value> {
    match Number::from_f64(f) {
        Some(n) => Ok(Value::Number(n)),
        None => fail("non-finite float result is not supported"),
    }
}

fn repeat(v: &Value, n: i128) -> R<Value> {
    let n = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
    match v {
        Value::String(s) => {
            if s.len().saturating_mul(n) > MAX_TEXT {
                return fail("repeated text too large");
            }
            Ok(Value::String(s.repeat(n)))
        }
        Value::Array(a) => {
            if a.len().saturating_mul(n) > MAX_TEXT {
                return fail("repeated list too large");
            }
            if a.is_empty() {
                return Ok(Value::Array(Vec::new()));
            }
            let mut out = Vec::new();
            for _ in 0..n {
                out.extend(a.iter().cloned());
            }
            Ok(Value::Array(out))
        }
        _ => fail("cannot repeat"),
    }
}

/// Python's `a op b`; `Ok(None)` is a TypeError.
fn py_arith(op: ArithOp, a: &Value, b: &Value) -> R<Option<Value>> {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return Ok(Some(match (x, y) {
            (Num::I(x), Num::I(y)) => {
                let r = match op {
                    ArithOp::Add => x.checked_add(y),
                    ArithOp::Sub => x.checked_sub(y),
                    ArithOp::Mul => x.checked_mul(y),
                };
                match r {
                    Some(r) => int_value(r)?,
                    None => return fail("integer result beyond 64 bits is not supported"),
                }
            }
            (x, y) => {
                let f = |n: Num| match n {
                    Num::I(i) => i as f64,
                    Num::F(f) => f,
                };
                let (x, y) = (f(x), f(y));
                float_value(match op {
                    ArithOp::Add => x + y,
                    ArithOp::Sub => x - y,
                    ArithOp::Mul => x * y,
                })?
            }
        }));
    }
    let intlike = |v: &Value| {
        if matches!(v, Value::Bool(_)) || matches!(v, Value::Number(n) if !n.is_f64()) {
            int_of(v)
        } else {
            None
        }
    };
    Ok(match (op, a, b) {
        (ArithOp::Add, Value::String(x), Value::String(y)) => {
            if x.len() + y.len() > MAX_TEXT {
                return fail("text too large");
            }
            Some(Value::String(format!("{x}{y}")))
        }
        (ArithOp::Add, Value::Array(x), Value::Array(y)) => {
            let mut v = x.clone();
            v.extend(y.iter().cloned());
            Some(Value::Array(v))
        }
        (ArithOp::Mul, Value::String(_) | Value::Array(_), n) if intlike(n).is_some() => {
            Some(repeat(a, intlike(n).unwrap_or(0))?)
        }
        (ArithOp::Mul, n, Value::String(_) | Value::Array(_)) if intlike(n).is_some() => {
            Some(repeat(b, intlike(n).unwrap_or(0))?)
        }
        _ => None,
    })
}

fn num_cmp(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::I(x), Num::I(y)) => x.cmp(&y),
        (Num::F(x), Num::F(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::I(x), Num::F(y)) => int_float_cmp(x, y),
        (Num::F(x), Num::I(y)) => int_float_cmp(y, x).reverse(),
    }
}

/// Exact comparison of an integer with a float, as Python does it.
fn int_float_cmp(i: i128, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Equal;
    }
    if f >= 1.7e38 {
        return Ordering::Less;
    }
    if f <= -1.7e38 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    match i.cmp(&(t as i128)) {
        Ordering::Equal => {
            let frac = f - t;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

/// Python's `a == b` on JSON values.
pub(super) fn py_eq(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return num_cmp(x, y) == Ordering::Equal;
    }
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => false,
    }
}

/// Python's ordering of `a` and `b`; an error where Python raises TypeError.
pub(super) fn py_order(a: &Value, b: &Value) -> R<Ordering> {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return Ok(num_cmp(x, y));
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                if !py_eq(p, q) {
                    return py_order(p, q);
                }
            }
            Ok(x.len().cmp(&y.len()))
        }
        _ => fail(format!("'<' not supported between instances of '{}' and '{}'", py_type(a), py_type(b))),
    }
}

/// `_compare` of `[/a,\b]` sorting: -1, 0 or 1.
fn sort_cmp(keys: &[(Node, bool)], x: &Value, y: &Value) -> R<i32> {
    for (key, reverse) in keys {
        let l = find(key, &Some(datum(Val::Ref(x), Seg::This, None)), false)?;
        let r = find(key, &Some(datum(Val::Ref(y), Seg::This, None)), false)?;
        if !l.truthy() || !r.truthy() {
            continue;
        }
        let l = l.list("a sort key")?;
        let r = r.list("a sort key")?;
        if l.len() > 1 || r.len() > 1 {
            continue;
        }
        let (a, b) = (value_of(&l[0])?, value_of(&r[0])?);
        if py_eq(&a, &b) {
            continue;
        }
        let less = py_order(&a, &b)? == Ordering::Less;
        return Ok(if less == *reverse { 1 } else { -1 });
    }
    Ok(0)
}

/// CPython's `list.sort` for lists under 64 items (a run, then binary
/// insertion), which fixes the order even for inconsistent comparisons;
/// longer lists use a stable merge sort (the same order when the comparisons
/// are consistent).
fn py_sort(mut v: Vec<Value>, lt: &dyn Fn(&Value, &Value) -> R<bool>) -> R<Vec<Value>> {
    let n = v.len();
    if n < 2 {
        return Ok(v);
    }
    if n >= 64 {
        return merge_sort(v, lt);
    }
    // count_run
    let mut run = 2;
    if lt(&v[1], &v[0])? {
        while run < n && lt(&v[run], &v[run - 1])? {
            run += 1;
        }
        v[..run].reverse();
    } else {
        while run < n && !lt(&v[run], &v[run - 1])? {
            run += 1;
        }
    }
    // binarysort
    for start in run..n {
        let pivot = v[start].clone();
        let (mut l, mut r) = (0, start);
        while l < r {
            let p = l + ((r - l) >> 1);
            if lt(&pivot, &v[p])? {
                r = p;
            } else {
                l = p + 1;
            }
        }
        v[l..=start].rotate_right(1);
    }
    Ok(v)
}

/// A stable merge sort that only asks `lt` and never panics, whatever `lt`
/// answers.
fn merge_sort(v: Vec<Value>, lt: &dyn Fn(&Value, &Value) -> R<bool>) -> R<Vec<Value>> {
    if v.len() < 2 {
        return Ok(v);
    }
    let mut left = v;
    let right = left.split_off(left.len() / 2);
    let left = merge_sort(left, lt)?;
    let right = merge_sort(right, lt)?;
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut l = left.into_iter().peekable();
    let mut r = right.into_iter().peekable();
    while let (Some(a), Some(b)) = (l.peek(), r.peek()) {
        if lt(b, a)? {
            out.extend(r.next());
        } else {
            out.extend(l.next());
        }
    }
    out.extend(l);
    out.extend(r);
    Ok(out)
}

/// Python's `int(v)`: `Ok(None)` for a ValueError (the filter skips the
/// value), an error for a TypeError.
fn py_int(v: &Value) -> R<Option<i128>> {
    match v {
        Value::Bool(_) => Ok(int_of(v)),
        Value::Number(n) => match int_of(v) {
            Some(i) => Ok(Some(i)),
            None => {
                let f = n.as_f64().unwrap_or(0.0);
                if f.abs() < 1e36 {
                    Ok(Some(f.trunc() as i128))
                } else {
                    fail("int() of a huge float is not supported")
                }
            }
        },
        Value::String(s) => {
            let t = s.trim_matches(super::lex::py_isspace);
            let (neg, digits) = match t.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, t.strip_prefix('+').unwrap_or(t)),
            };
            let ok = !digits.is_empty()
                && !digits.starts_with('_')
                && !digits.ends_with('_')
                && !digits.contains("__")
                && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
            if !ok {
                if digits.chars().any(|c| !c.is_ascii() && c.is_numeric()) {
                    return fail("int() of non-ASCII digits is not supported");
                }
                return Ok(None);
            }
            let clean: String = digits.chars().filter(|c| *c != '_').collect();
            match clean.parse::<i128>() {
                Ok(i) => Ok(Some(if neg { -i } else { i })),
                Err(_) => fail("int() of a huge number is not supported"),
            }
        }
        other => fail(format!("int() argument must be a string or a number, not '{}'", py_type(other))),
    }
}

/// Whether filter expression `e` holds for list element `v`.
fn filter_expr(e: &Expr, v: Val<'_>) -> R<bool> {
    let found = find(&e.target, &Some(datum(v, Seg::This, None)), false)?;
    let Some((op, lit, re)) = &e.cmp else { return Ok(found.truthy()) };
    if !found.truthy() {
        return Ok(false);
    }
    let mut any = false;
    for d in found.list("a filter")? {
        let value = value_of(&d)?;
        if value.is_null() {
            continue;
        }
        // An integer or boolean value converts the field with int() first.
        let int_want = match lit {
            Lit::Int(i) => Some(i128::from(*i)),
            Lit::Bool(b) => Some(i128::from(*b)),
            _ => None,
        };
        let order = |ord: R<Ordering>| -> R<bool> {
            let o = ord?;
            Ok(match op {
                CmpOp::Eq => o == Ordering::Equal,
                CmpOp::Ne => o != Ordering::Equal,
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Le => o != Ordering::Greater,
                CmpOp::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            })
        };
        let hit = if let Some(want) = int_want {
            let Some(have) = py_int(&value)? else { continue };
            if *op == CmpOp::Match {
                return fail("first argument must be string or compiled pattern");
            }
            order(Ok(have.cmp(&want)))?
        } else {
            let want = match lit {
                Lit::Float(f) => float_value(*f)?,
                Lit::Str(s) => Value::String(s.clone()),
                _ => Value::Null,
            };
            match op {
                CmpOp::Eq => py_eq(&value, &want),
                CmpOp::Ne => !py_eq(&value, &want),
                CmpOp::Match => {
                    let Some(re) = re else { return fail("first argument must be string or compiled pattern") };
                    let re = re.as_ref().map_err(|e| EvalError(e.clone()))?;
                    let Value::String(s) = &value else {
                        return fail(format!("expected string or bytes-like object, got '{}'", py_type(&value)));
                    };
                    re.check_text(s).map_err(EvalError)?;
                    re.re.is_match(s)
                }
                _ => order(py_order(&value, &want))?,
            }
        };
        any |= hit;
    }
    Ok(any)
}
