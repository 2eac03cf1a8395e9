//! The parsed form of a path.

use super::pyre::{PyRegex, Template};

/// Arithmetic operators (`/` is in the grammar but the tokenizer always reads
/// `/` as a sort direction, so it never parses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArithOp {
    Add,
    Sub,
    Mul,
}

/// An operand of an arithmetic operation.
#[derive(Debug, Clone)]
pub(super) enum Operand {
    Path(Node),
    Str(String),
    Int(i64),
    Float(f64),
}

/// A filter comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Match,
}

/// The value a filter compares with.
#[derive(Debug, Clone)]
pub(super) enum Lit {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// The compiled pattern of `~` (its error shows when it is used, as in Python).
pub(super) type MatchRegex = Result<PyRegex, String>;

/// One filter expression: `target` alone (exists) or `target op value`.
#[derive(Debug, Clone)]
pub(super) struct Expr {
    pub target: Node,
    pub cmp: Option<(CmpOp, Lit, Option<MatchRegex>)>,
}

/// A path node (the jsonpath-rw / jsonpath-rw-ext node kinds).
#[derive(Debug, Clone)]
pub(super) enum Node {
    Root,
    This,
    Parent,
    Len,
    /// Field names; a `*` among them selects every field.
    Fields(Vec<String>),
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Child(Box<Node>, Box<Node>),
    Descendants(Box<Node>, Box<Node>),
    Where(Box<Node>, Box<Node>),
    Union(Box<Node>, Box<Node>),
    Intersect(Box<Node>, Box<Node>),
    /// `` `sorted` `` (None) or `[/a,\b]` (the keys; `true` = descending).
    Sorted(Option<Vec<(Node, bool)>>),
    /// `` `split(c, segment, max_split)` ``; `None` segment/max: out of range.
    Split {
        sep: char,
        segment: Option<usize>,
        max_split: Option<i64>,
    },
    /// The template's error shows when a text is substituted (as in Python).
    Sub {
        re: PyRegex,
        template: Result<Template, String>,
    },
    Op(Box<Operand>, ArithOp, Box<Operand>),
    Filter(Vec<Expr>),
}

impl Node {
    /// Nesting depth of the tree.
    pub fn depth(&self) -> usize {
        let two = |a: &Node, b: &Node| 1 + a.depth().max(b.depth());
        match self {
            Node::Child(a, b)
            | Node::Descendants(a, b)
            | Node::Where(a, b)
            | Node::Union(a, b)
            | Node::Intersect(a, b) => two(a, b),
            Node::Sorted(Some(keys)) => 1 + keys.iter().map(|(k, _)| k.depth()).max().unwrap_or(0),
            Node::Op(a, _, b) => {
                let d = |o: &Operand| if let Operand::Path(p) = o { p.depth() } else { 0 };
                1 + d(a).max(d(b))
            }
            Node::Filter(es) => 1 + es.iter().map(|e| e.target.depth()).max().unwrap_or(0),
            _ => 1,
        }
    }
}
