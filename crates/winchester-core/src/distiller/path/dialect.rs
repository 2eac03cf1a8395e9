//! Which grammar a path needs: StackDistiller parses paths with jsonpath-rw
//! 1.4.0, ceilometer with jsonpath-rw-ext 1.2.2, whose additions (`` `len` ``,
//! `` `sorted` ``, `[/a,\b]`, `` `split(...)` ``, `` `sub(...)` ``,
//! arithmetic, filters `[?...]`) jsonpath-rw rejects.

use super::ast::{Node, Operand};
use super::FieldPath;

impl FieldPath {
    /// The first jsonpath-rw-ext addition the path uses, by name; `None`
    /// when plain jsonpath-rw parses it.
    pub fn ext_feature(&self) -> Option<&'static str> {
        ext(&self.node)
    }
}

fn ext(n: &Node) -> Option<&'static str> {
    match n {
        Node::Len => Some("`len`"),
        Node::Sorted(_) => Some("sorting"),
        Node::Split { .. } => Some("`split(...)`"),
        Node::Sub { .. } => Some("`sub(...)`"),
        Node::Op(a, _, b) => {
            let path = |o: &Operand| if let Operand::Path(p) = o { ext(p) } else { None };
            path(a).or_else(|| path(b)).or(Some("arithmetic"))
        }
        Node::Filter(_) => Some("a filter `[?...]`"),
        Node::Child(a, b) | Node::Descendants(a, b) | Node::Where(a, b) | Node::Union(a, b) | Node::Intersect(a, b) => {
            ext(a).or_else(|| ext(b))
        }
        Node::Root | Node::This | Node::Parent | Node::Fields(_) | Node::Index(_) | Node::Slice(..) => None,
    }
}
