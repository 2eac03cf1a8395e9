//! Field paths of `event_definitions.yaml` (`fields:`), parsed and evaluated
//! as ceilometer does it: jsonpath-rw 1.4.0 extended by jsonpath-rw-ext 1.2.2
//! (`ExtentedJsonPathParser`). Same syntax, same matches in the same order,
//! same full paths (`str(match.full_path)`), and a path the Python parser
//! refuses is refused here, with the character position.
//!
//! Syntax (how operators bind is described in `path/parse.rs`):
//!
//! * `$` the document, `@` or `` `this` `` the current value, `` `parent` ``
//!   the value a match was found in;
//! * field names: bare (`payload`, `_context_user`, `a-b`, `@id`: a letter or
//!   `_` first) or quoted (`'org.openstack__1__os_distro'`, `"a b"`, `\`
//!   escapes the next character); several at once: `a,b` or `['a','b']`;
//!   `*` every field of an object;
//! * `a.b` child, `a..b` descendants (`b` anywhere below `a`), `a|b` union
//!   (matches of both, left first), `a where b` (matches of `a` that have a
//!   `b`), `(...)` grouping, `a & b` parses but fails when evaluated (as in
//!   jsonpath-rw);
//! * brackets: `[0]`, `[-1]` index; `[*]`, `[1:]`, `[:2]`, `[1:3]` slices
//!   (a single value that is not a list counts as a list of one); `[a]`,
//!   `['a.b']` fields; `[?filter]`; `[/key]`, `[\key]`, `[/a,\b]` sorting
//!   (ascending `/`, descending `\`);
//! * filters: `[?key]` (has a `key`), `[?key = value]` with `=`/`==`, `!=`,
//!   `<`, `<=`, `>`, `>=`, or `~` (Python regex matched at the start),
//!   several joined by `&`; the value is a word or quoted string (text), an
//!   integer or `true`/`false` (the field is then converted with Python's
//!   `int()`), or a decimal: `[?key=image_id]` compares with the text
//!   "image_id";
//! * back-quoted operators: `` `len` ``, `` `sorted` ``,
//!   `` `split(c, segment, max_split)` `` (`max_split` -1: no limit; a space
//!   after each comma), `` `sub(/regex/, replacement)` `` (Python `re.sub`;
//!   gives nothing when nothing changes); `` `str()` `` and others do not
//!   exist in jsonpath-rw-ext 1.2.2 and are refused;
//! * arithmetic `+ - *` on matches and numbers: `$.foo * 12`,
//!   `$.a[*].x + $.a[*].y` (pairwise, same count), `$.foo + "_" + $.bar`; a
//!   lone word or quoted string operand is text (`foo * 2` is "foofoo"); `/`
//!   always reads as a sort direction, so there is no division.
//!
//! Quirks kept from the original: `true`/`false` are read as booleans even
//! at the start of a longer word (`$.trueish` does not parse; quote it);
//! only space, tab and newline separate tokens. Values computed by
//! operators have the full path `` `this` `` (`` `len` `` for `len`).
//!
//! Not reproduced (refused with a "not supported" error rather than matched
//! differently): Python regex features the `regex` crate lacks
//! (backreferences, look-around, atomic groups, possessive quantifiers,
//! `(?x)`/`(?a)`/`(?L)` flags, `\N{...}`), a `$` (outside multi-line mode)
//! applied to text with a newline before its end, a `sub` pattern that
//! prefers an empty match where a non-empty one starts too (`x*|b`: Python's
//! choice then follows its backtracking order) when that happens, integers
//! beyond 64 bits, non-ASCII digits, paths nesting deeper than 100 levels or
//! longer than 1000 tokens, sorting 64 or more items some of which lack a
//! sort key (CPython's merging is not reproduced; shorter lists are sorted
//! exactly as CPython does), evaluations of more than a million steps. Known
//! remaining differences: Unicode details of `\w`, `\b` and `(?i)`; JSON
//! objects are visited in key order (serde_json's map), Python in document
//! order.

mod ast;
mod dialect;
mod eval;
mod lex;
mod parse;
mod pyre;

pub use eval::EvalError;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// One step of a simple path (see [`FieldPath::steps`]).
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
#[derive(Debug, Clone)]
pub struct FieldPath {
    source: String,
    node: ast::Node,
    steps: Vec<Step>,
    simple: bool,
    /// The full path of a match, for paths of single fields and indexes.
    concrete: Option<String>,
}

impl PartialEq for FieldPath {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for FieldPath {}

/// One value found by a [`FieldPath`]: where it is and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMatch<'a> {
    /// The full path of the match as jsonpath-rw prints it
    /// (`str(match.full_path)`): `payload.list.[1]`, `` `this` `` for a
    /// computed value.
    pub path: String,
    /// The value: borrowed from the document, or computed by an operator.
    pub value: Cow<'a, Value>,
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

/// Longest path accepted, in tokens.
const MAX_TOKENS: usize = 1000;

impl FieldPath {
    /// Parses a path.
    pub fn parse(src: &str) -> Result<FieldPath, PathError> {
        let chars: Vec<char> = src.chars().collect();
        let err = |(position, reason): (usize, String)| PathError { path: src.to_string(), position, reason };
        let toks = lex::tokenize(&chars).map_err(err)?;
        if toks.len() > MAX_TOKENS {
            return Err(err((toks[MAX_TOKENS].pos, format!("path longer than {MAX_TOKENS} tokens"))));
        }
        let node = parse::Parser::new(&toks, chars.len()).parse().map_err(err)?;
        if node.depth() > parse::MAX_DEPTH {
            return Err(err((0, format!("path nests deeper than {} levels", parse::MAX_DEPTH))));
        }
        let mut steps = Vec::new();
        let simple = simple_steps(&node, &mut steps);
        let mut fp = FieldPath { source: src.to_string(), node, steps, simple, concrete: None };
        if simple && !fp.steps.is_empty() && !fp.steps.contains(&Step::Wildcard) {
            fp.concrete = Some(fp.canonical());
        }
        Ok(fp)
    }

    /// The text the path was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The steps of a simple path (fields, indexes and `*` joined by `.`
    /// or brackets, optionally after `$`); empty for other paths.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Whether the path can match more than one place (anything but single
    /// fields and non-negative indexes after one another).
    pub fn has_wildcard(&self) -> bool {
        !self.simple || self.steps.iter().any(|s| matches!(s, Step::Wildcard))
    }

    /// For a path of single fields and indexes, the full path of what it
    /// matches (`$.payload['a.b']` -> `payload.a.b`, `a[0]` -> `a.[0]`);
    /// otherwise the source text.
    pub fn canonical(&self) -> String {
        if !self.simple || self.steps.is_empty() {
            return self.source.clone();
        }
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Key(k) => k.clone(),
                Step::Index(i) => format!("[{i}]"),
                Step::Wildcard => "*".into(),
            })
            .collect();
        parts.join(".")
    }

    /// Every match in `root`, in jsonpath-rw's order, nulls included; empty
    /// where Python would raise (see [`try_find`](Self::try_find)).
    pub fn find<'a>(&self, root: &'a Value) -> Vec<FieldMatch<'a>> {
        match self.try_find(root) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(path = %self.source, error = %e.0, "field path evaluation failed");
                Vec::new()
            }
        }
    }

    /// Every match in `root`, or the error where jsonpath-rw raises an
    /// exception (e.g. `[0]` on a number, `<` between text and a number).
    pub fn try_find<'a>(&self, root: &'a Value) -> Result<Vec<FieldMatch<'a>>, EvalError> {
        if let Some(found) = self.find_concrete(root) {
            return Ok(found);
        }
        Ok(eval::find_top(&self.node, root)?
            .into_iter()
            .map(|(path, v)| FieldMatch { path, value: v.into_cow() })
            .collect())
    }
}

impl FieldPath {
    /// The common case without the general evaluator: fields and indexes
    /// into objects and lists. `None` where the general one must decide
    /// (an index into text, an object or a scalar).
    fn find_concrete<'a>(&self, root: &'a Value) -> Option<Vec<FieldMatch<'a>>> {
        let path = self.concrete.as_ref()?;
        let mut v = root;
        for s in &self.steps {
            let next = match (s, v) {
                (Step::Key(k), Value::Object(m)) => m.get(k),
                (Step::Key(_), _) => None,
                (Step::Index(i), Value::Array(a)) => a.get(*i),
                _ => return None,
            };
            match next {
                Some(n) => v = n,
                None => return Some(Vec::new()),
            }
        }
        Some(vec![FieldMatch { path: path.clone(), value: Cow::Borrowed(v) }])
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvalError {}

/// Collects the steps of a simple path; false when the path is not simple.
fn simple_steps(n: &ast::Node, out: &mut Vec<Step>) -> bool {
    use ast::Node;
    match n {
        Node::Root if out.is_empty() => true,
        Node::Fields(f) if f.len() == 1 => {
            out.push(if f[0] == "*" { Step::Wildcard } else { Step::Key(f[0].clone()) });
            true
        }
        Node::Index(i) if *i >= 0 => {
            out.push(Step::Index(*i as usize));
            true
        }
        Node::Slice(None, None) => {
            out.push(Step::Wildcard);
            true
        }
        Node::Child(a, b) => simple_steps(a, out) && simple_steps(b, out),
        _ => false,
    }
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
        // jsonpath-rw-ext accepts these (the old subset refused them).
        for ok in [
            "$",
            "a[1:2]",
            "payload.glance_metadata[?key=image_id].value",
            "a..b",
            "a|b",
            "publisher_id.`split(., 1, 1)`",
        ] {
            assert!(FieldPath::parse(ok).is_ok(), "{ok:?} should parse");
        }
        for bad in [
            "",
            "payload.",
            "payload..",
            "payload[",
            "payload[x",
            "payload['x]",
            "a b",
            "a]",
            "$x",
            ".a",
            "a[1:2:3]",
            "x.`str()`",
            "$.trueish",
            "$.a / 2",
            "1 + 2.5",
            "a\rb",
        ] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?} should fail");
        }
        let e = FieldPath::parse("payload.'oops").unwrap_err();
        assert!(e.to_string().contains("unterminated"), "{e}");
        assert_eq!(e.position, 8);
        let e = FieldPath::parse("a.b c").unwrap_err();
        assert_eq!(e.position, 4, "{e}");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}a{}", "(".repeat(300), ")".repeat(300));
        assert!(FieldPath::parse(&deep).unwrap_err().reason.contains("deeper"));
        let long = vec!["a"; 2000].join(".");
        assert!(FieldPath::parse(&long).is_err());
        let chain = vec!["a"; 60].join(".");
        assert!(FieldPath::parse(&chain).is_ok());
    }

    #[test]
    fn finding() {
        let doc = json!({"payload": {"a.b": 1, "x": {"y": 2, "z": null}, "list": [10, 20],
            "meta": [{"key": "image_id", "value": "i-1"}, {"key": "other", "value": "o"}]},
            "publisher_id": "compute.host-1"});
        let found = |p: &str| -> Vec<(String, Value)> {
            FieldPath::parse(p).unwrap().find(&doc).into_iter().map(|m| (m.path, m.value.into_owned())).collect()
        };
        assert_eq!(found("payload.'a.b'"), vec![("payload.a.b".into(), json!(1))]);
        assert_eq!(found("payload.x.*"), vec![("payload.x.y".into(), json!(2)), ("payload.x.z".into(), json!(null))]);
        assert_eq!(found("payload.list[1]"), vec![("payload.list.[1]".into(), json!(20))]);
        assert_eq!(found("payload.list.*").len(), 0, "`*` selects object fields only");
        assert_eq!(found("payload.list[*]").len(), 2);
        assert!(found("payload.list[5]").is_empty());
        assert!(found("payload.missing.x").is_empty());
        assert!(found("payload.list.x").is_empty());
        assert_eq!(found("payload.meta[?key=image_id].value"), vec![("payload.meta.[0].value".into(), json!("i-1"))]);
        assert_eq!(found("publisher_id.`split(., 1, 1)`"), vec![("`this`".into(), json!("host-1"))]);
        assert_eq!(found("publisher_id.`split(., 0, -1)`"), vec![("`this`".into(), json!("compute"))]);
        assert_eq!(found("payload.list.`len`"), vec![("`len`".into(), json!(2))]);
        assert_eq!(found("$"), vec![("$".into(), doc.clone())]);
        assert_eq!(FieldPath::parse("$.payload['a.b']").unwrap().canonical(), "payload.a.b");
        let e = FieldPath::parse("payload.x.y[0]").unwrap().try_find(&doc).unwrap_err();
        assert!(e.0.contains("len"), "{e}");
    }

    fn hostile_doc() -> Value {
        let recs: Vec<Value> = (0..70)
            .map(|i| match i % 5 {
                0 => json!({"a": i, "b": "x"}),
                1 => json!({"b": i}),
                2 => json!({"a": format!("s{i}"), "c": [i, "y"]}),
                3 => json!(i),
                _ => json!(null),
            })
            .collect();
        json!({"list": recs, "a": {"b": [1, 2.5, "t\nu", true, null, {"a": "a.b.c"}]}, "s": "x.y-z\n",
               "n": 9_223_372_036_854_775_807i64, "u": u64::MAX, "f": 1e308, "e": [], "o": {}})
    }

    const PIECES: &[&str] = &[
        "a",
        "b",
        "list",
        "s",
        "n",
        "u",
        "f",
        ".",
        "..",
        "[",
        "]",
        "(",
        ")",
        "*",
        "$",
        "@",
        ",",
        ":",
        "|",
        "&",
        "?",
        "+",
        "-",
        "/",
        "\\",
        "=",
        "~",
        ">",
        "<=",
        "!=",
        "'q.r'",
        "\"s\"",
        "`len`",
        "`this`",
        "`parent`",
        "`sorted`",
        "`split(., 1, -1)`",
        "`sub(/a|$/, \\g<0>\\0)`",
        "`sub(/(x*)/, [\\1])`",
        "true",
        "where",
        "1",
        "-1",
        "2.5",
        " ",
        "[0]",
        "[-3]",
        "[*]",
        "[?a]",
        "[?a~\"^s\"]",
        "[?a>1]",
        "[/a]",
        "[\\b,/a]",
        "[1:-1]",
        "* 3",
        "+ $.a",
        "9223372036854775807",
        "\n",
        "\u{e9}",
        "\u{1f600}",
        "\r",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        /// Any text parses or is refused, and evaluation never panics.
        #[test]
        fn never_panics(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..12),
            raw in "\\PC{0,20}",
        ) {
            let doc = hostile_doc();
            for text in [pieces.concat(), raw] {
                if let Ok(p) = FieldPath::parse(&text) {
                    let _ = p.try_find(&doc);
                    let _ = p.find(&json!([1, "a", {"a": []}]));
                    let _ = (p.canonical(), p.has_wildcard());
                } else if let Err(e) = FieldPath::parse(&text) {
                    proptest::prop_assert!(e.position <= text.chars().count());
                }
            }
        }
    }

    #[test]
    fn inconsistent_sorts_of_long_lists_do_not_panic() {
        let doc = hostile_doc();
        for p in ["list[/a]", "list[\\a,/b]", "list.`sorted`", "list[/c][0]", "list[/a].`len`"] {
            let _ = FieldPath::parse(p).unwrap().try_find(&doc);
        }
        let n = FieldPath::parse("list[/a].`len`").unwrap().try_find(&doc);
        assert!(n.is_err(), "ints and text compare like Python: an error");
    }

    #[test]
    fn runaway_evaluation_is_cut_short() {
        fn tree(depth: u32) -> Value {
            if depth == 0 {
                json!(1)
            } else {
                json!({"a": tree(depth - 1), "b": tree(depth - 1)})
            }
        }
        let doc = tree(12);
        let e = FieldPath::parse("$..*..*..*..*..*").unwrap().try_find(&doc).unwrap_err();
        assert!(e.0.contains("steps"), "{e}");
        assert_eq!(FieldPath::parse("$..a").unwrap().try_find(&doc).unwrap().len(), 4095);
        let p = FieldPath::parse("$.e * 1000000000000000000").unwrap();
        let empty = json!({"e": []});
        let found = p.try_find(&empty).unwrap();
        assert_eq!(found[0].value.as_ref(), &json!([]));
    }
}
