//! Recursive-descent parser giving the trees jsonpath-rw-ext's LALR grammar
//! gives. Its precedence declarations become binding powers here:
//!
//! * binary path operators, loosest first: `..`, `.`, `|`, `&`, `where`, all
//!   left-associative (so `a|b.c` is `(a|b).c` and `a.b|c` is `a.(b|c)`);
//! * a bracket after a path (`[0]`, `[*]`, `[a,b]`, `[1:2]`, `[?...]`,
//!   `[/key]`) applies to everything before it back to the nearest arithmetic
//!   operator: `a.b[0]` is `(a.b)[0]`, `a|b[0]` is `(a|b)[0]`;
//! * arithmetic (`+ - *`) binds loosest on its left and takes everything on
//!   its right (`a * b + c` is `a * (b + c)`), except that a bare number on
//!   the right ends it (`$.a + 1.b` is `($.a + 1).b`); a number may only start
//!   a path when an operator follows it, and integers and decimals do not mix
//!   as the two bare operands of one operator (`1 + 2.5` does not parse);
//! * inside `[?...]`, `&` after a comparison joins filter expressions, and
//!   after a bare path it is the (unimplemented) intersection `a & b`.

use super::ast::{ArithOp, CmpOp, Expr, Lit, Node, Operand};
use super::lex::{Tok, Token};
use super::pyre::{PyRegex, Template};

/// How deep paths may nest (operators, brackets, parentheses).
pub(super) const MAX_DEPTH: usize = 100;

/// A parse error: character position and reason.
pub(super) type ParseError = (usize, String);

pub(super) struct Parser<'t> {
    toks: &'t [Token],
    i: usize,
    end: usize,
    depth: usize,
}

enum Mixed {
    Path(Node),
    Exprs(Vec<Expr>),
}

const BP_ARITH: u8 = 2;
const BP_BRACKET: u8 = 4;

fn infix_bp(t: &Tok) -> Option<u8> {
    Some(match t {
        Tok::DoubleDot => 8,
        Tok::Lit('.') => 10,
        Tok::Lit('|') => 12,
        Tok::Lit('&') => 14,
        Tok::Where => 16,
        _ => return None,
    })
}

fn arith(t: &Tok) -> Option<ArithOp> {
    match t {
        Tok::Lit('+') => Some(ArithOp::Add),
        Tok::Lit('-') => Some(ArithOp::Sub),
        Tok::Lit('*') => Some(ArithOp::Mul),
        _ => None,
    }
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "the end of the path".into(),
        Some(Tok::Bool(b)) => format!("{b:?} (true/false cannot be a field name unless quoted)"),
        Some(Tok::SortDir(c)) => format!("{c:?} (a sort direction)"),
        Some(Tok::Id(s)) => format!("field {s:?}"),
        Some(Tok::Float(f)) => format!("number {f}"),
        Some(Tok::Number(n)) => format!("number {n}"),
        Some(Tok::Named(s)) => format!("`{s}`"),
        Some(Tok::FilterOp(o)) => format!("{o:?}"),
        Some(Tok::DoubleDot) => "'..'".into(),
        Some(Tok::Where) => "'where'".into(),
        Some(Tok::Lit(c)) => format!("{c:?}"),
    }
}

/// A single-field `Fields` operand is a string literal (as in the original:
/// `foo * 2` repeats the text "foo").
fn operand(n: Node) -> Operand {
    match n {
        Node::Fields(mut f) if f.len() == 1 => Operand::Str(f.pop().unwrap_or_default()),
        other => Operand::Path(other),
    }
}

impl<'t> Parser<'t> {
    pub fn new(toks: &'t [Token], end: usize) -> Self {
        Parser { toks, i: 0, end, depth: 0 }
    }

    fn peek(&self) -> Option<&'t Tok> {
        self.toks.get(self.i).map(|t| &t.tok)
    }
    fn peek2(&self) -> Option<&'t Tok> {
        self.toks.get(self.i + 1).map(|t| &t.tok)
    }
    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.end, |t| t.pos)
    }
    fn err<T>(&self, reason: impl Into<String>) -> Result<T, ParseError> {
        Err((self.pos(), reason.into()))
    }
    fn unexpected<T>(&self, wanted: &str) -> Result<T, ParseError> {
        self.err(format!("expected {wanted}, found {}", describe(self.peek())))
    }
    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: char) -> Result<(), ParseError> {
        if self.eat(&Tok::Lit(c)) {
            Ok(())
        } else {
            self.unexpected(&format!("{c:?}"))
        }
    }
    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(format!("path nests deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    /// The whole path.
    pub fn parse(mut self) -> Result<Node, ParseError> {
        let n = self.expr(0)?;
        if self.peek().is_some() {
            return self.unexpected("an operator or the end of the path");
        }
        Ok(n)
    }

    fn expr(&mut self, min_bp: u8) -> Result<Node, ParseError> {
        self.enter()?;
        let lhs = self.primary()?;
        let n = self.infix(lhs, min_bp)?;
        self.depth -= 1;
        Ok(n)
    }

    fn infix(&mut self, mut lhs: Node, min_bp: u8) -> Result<Node, ParseError> {
        while let Some(t) = self.peek() {
            if let Some(bp) = infix_bp(t) {
                if bp < min_bp {
                    break;
                }
                self.i += 1;
                let rhs = Box::new(self.expr(bp + 1)?);
                let l = Box::new(lhs);
                lhs = match t {
                    Tok::DoubleDot => Node::Descendants(l, rhs),
                    Tok::Lit('.') => Node::Child(l, rhs),
                    Tok::Lit('|') => Node::Union(l, rhs),
                    Tok::Lit('&') => Node::Intersect(l, rhs),
                    _ => Node::Where(l, rhs),
                };
            } else if *t == Tok::Lit('[') {
                if BP_BRACKET < min_bp {
                    break;
                }
                self.i += 1;
                lhs = self.bracket_after(lhs)?;
            } else if let Some(op) = arith(t) {
                if BP_ARITH < min_bp {
                    break;
                }
                self.i += 1;
                let rhs = self.arith_rhs(None)?;
                lhs = Node::Op(Box::new(operand(lhs)), op, Box::new(rhs));
            } else {
                break;
            }
        }
        Ok(lhs)
    }

    /// The right operand of an arithmetic operator. `left_num`: the left
    /// operand is a bare integer (`Some(true)`) or decimal (`Some(false)`).
    fn arith_rhs(&mut self, left_num: Option<bool>) -> Result<Operand, ParseError> {
        let op_follows = self.peek2().and_then(arith).is_some();
        match self.peek() {
            Some(Tok::Number(n)) if !op_follows => {
                if left_num == Some(false) {
                    return self.err("an integer cannot follow a decimal and an operator");
                }
                self.i += 1;
                Ok(Operand::Int(*n))
            }
            Some(Tok::Float(f)) if !op_follows => {
                if left_num == Some(true) {
                    return self.err("a decimal cannot follow an integer and an operator");
                }
                self.i += 1;
                Ok(Operand::Float(*f))
            }
            _ => Ok(operand(self.expr(BP_ARITH)?)),
        }
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        let Some(t) = self.peek() else { return self.unexpected("a path") };
        match t {
            Tok::Number(_) | Tok::Float(_) => {
                let (left, is_int) = match t {
                    Tok::Number(n) => (Operand::Int(*n), true),
                    Tok::Float(f) => (Operand::Float(*f), false),
                    _ => unreachable!(),
                };
                self.i += 1;
                let Some(op) = self.peek().and_then(arith) else {
                    return self.unexpected("an arithmetic operator after a number (a number alone is not a path)");
                };
                self.i += 1;
                let rhs = self.arith_rhs(Some(is_int))?;
                Ok(Node::Op(Box::new(left), op, Box::new(rhs)))
            }
            Tok::Id(_) => Ok(Node::Fields(self.fields()?)),
            Tok::Lit('*') => {
                self.i += 1;
                Ok(Node::Fields(vec!["*".into()]))
            }
            Tok::Lit('$') => {
                self.i += 1;
                Ok(Node::Root)
            }
            Tok::Lit('@') => {
                self.i += 1;
                Ok(Node::This)
            }
            Tok::Named(name) => {
                let n = self.named(name)?;
                self.i += 1;
                Ok(n)
            }
            Tok::Lit('[') => {
                self.i += 1;
                let n = self.bracket_content()?;
                self.expect(']')?;
                Ok(n)
            }
            Tok::Lit('(') => {
                self.i += 1;
                let n = self.expr(0)?;
                self.expect(')')?;
                Ok(n)
            }
            _ => self.unexpected("a path"),
        }
    }

    /// `ID (, ID)*`
    fn fields(&mut self) -> Result<Vec<String>, ParseError> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::Id(s)) => {
                    out.push(s.clone());
                    self.i += 1;
                }
                _ => return self.unexpected("a field name"),
            }
            if !self.eat(&Tok::Lit(',')) {
                return Ok(out);
            }
        }
    }

    /// Inside `[...]`: an index, a slice, `*` or field names.
    fn bracket_content(&mut self) -> Result<Node, ParseError> {
        match self.peek() {
            Some(Tok::Number(n)) => {
                let n = *n;
                self.i += 1;
                if self.eat(&Tok::Lit(':')) {
                    self.slice_end(Some(n))
                } else if self.peek() == Some(&Tok::Lit(']')) {
                    Ok(Node::Index(n))
                } else {
                    self.unexpected("']' or ':'")
                }
            }
            Some(Tok::Lit(':')) => {
                self.i += 1;
                self.slice_end(None)
            }
            Some(Tok::Lit('*')) => {
                self.i += 1;
                Ok(Node::Slice(None, None))
            }
            Some(Tok::Id(_)) => Ok(Node::Fields(self.fields()?)),
            _ => self.unexpected("an index, a slice, '*' or field names in brackets"),
        }
    }

    fn slice_end(&mut self, start: Option<i64>) -> Result<Node, ParseError> {
        let end = match self.peek() {
            Some(Tok::Number(n)) => {
                self.i += 1;
                Some(*n)
            }
            _ => None,
        };
        Ok(Node::Slice(start, end))
    }

    /// After `path[`.
    fn bracket_after(&mut self, lhs: Node) -> Result<Node, ParseError> {
        self.enter()?;
        let right = match self.peek() {
            Some(Tok::Lit('?')) => {
                self.i += 1;
                Node::Filter(self.filter_exprs()?)
            }
            Some(Tok::SortDir(_)) => {
                let mut keys = Vec::new();
                while let Some(Tok::SortDir(d)) = self.peek() {
                    self.i += 1;
                    keys.push((self.expr(0)?, *d != '/'));
                }
                Node::Sorted(Some(keys))
            }
            _ => self.bracket_content()?,
        };
        self.expect(']')?;
        self.depth -= 1;
        Ok(Node::Child(Box::new(lhs), Box::new(right)))
    }

    /// `expressions` of a filter: terms joined by `&`.
    fn filter_exprs(&mut self) -> Result<Vec<Expr>, ParseError> {
        let mut out = self.filter_term()?;
        while self.eat(&Tok::Lit('&')) {
            out.extend(self.filter_term()?);
        }
        Ok(out)
    }

    fn filter_term(&mut self) -> Result<Vec<Expr>, ParseError> {
        match self.mixed()? {
            Mixed::Path(p) => Ok(vec![self.comparison(p)?]),
            Mixed::Exprs(e) => Ok(e),
        }
    }

    /// A path, optionally followed by a comparison.
    fn comparison(&mut self, target: Node) -> Result<Expr, ParseError> {
        let Some(Tok::FilterOp(op)) = self.peek() else { return Ok(Expr { target, cmp: None }) };
        self.i += 1;
        let op = match *op {
            "=" | "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            _ => CmpOp::Match,
        };
        let lit = match self.peek() {
            Some(Tok::Id(s)) => Lit::Str(s.clone()),
            Some(Tok::Float(f)) => Lit::Float(*f),
            Some(Tok::Number(n)) => Lit::Int(*n),
            Some(Tok::Bool(b)) => Lit::Bool(*b),
            _ => return self.unexpected("a value (a field-name-like word, a quoted string, a number, true or false)"),
        };
        self.i += 1;
        let re = match (&op, &lit) {
            (CmpOp::Match, Lit::Str(p)) => Some(PyRegex::new(p, true)),
            _ => None,
        };
        Ok(Expr { target, cmp: Some((op, lit, re)) })
    }

    /// At the start of a filter term: `(` may open a parenthesised path or
    /// parenthesised filter expressions; which one shows at its `)`.
    fn mixed(&mut self) -> Result<Mixed, ParseError> {
        if self.peek() != Some(&Tok::Lit('(')) {
            return Ok(Mixed::Path(self.expr(0)?));
        }
        self.enter()?;
        self.i += 1;
        let first = self.mixed()?;
        let inner = match first {
            Mixed::Path(p) if self.peek() == Some(&Tok::Lit(')')) => Mixed::Path(p),
            Mixed::Path(p) => {
                let mut list = vec![self.comparison(p)?];
                while self.eat(&Tok::Lit('&')) {
                    list.extend(self.filter_term()?);
                }
                Mixed::Exprs(list)
            }
            Mixed::Exprs(mut list) => {
                while self.eat(&Tok::Lit('&')) {
                    list.extend(self.filter_term()?);
                }
                Mixed::Exprs(list)
            }
        };
        self.expect(')')?;
        self.depth -= 1;
        Ok(match inner {
            Mixed::Path(p) => Mixed::Path(self.infix(p, 0)?),
            e => e,
        })
    }

    /// A back-quoted operator.
    fn named(&self, name: &str) -> Result<Node, ParseError> {
        let bad = |what: &str| self.err(format!("`{name}` is not a valid {what}"));
        Ok(match name {
            "len" => Node::Len,
            "sorted" => Node::Sorted(None),
            "this" => Node::This,
            "parent" => Node::Parent,
            _ if name.starts_with("split(") => {
                let Some((sep, segment, max_split)) = parse_split(name) else {
                    return bad("split (expected `split(c, segment, max_split)`: one character, then an integer, then an integer or -1, each after a comma and a space)");
                };
                Node::Split { sep, segment, max_split }
            }
            _ if name.starts_with("sub(") => {
                let Some((pat, repl)) = parse_sub(name) else {
                    return bad("sub (expected `sub(/regex/, replacement)`)");
                };
                let re = PyRegex::new(&pat, false).map_err(|e| (self.pos(), format!("in `{name}`: {e}")))?;
                let template = Template::parse(&repl, &re);
                Node::Sub { re, template }
            }
            _ => {
                return self.err(format!(
                    "unknown operator `{name}` (known: `this`, `parent`, `len`, `sorted`, `split(...)`, `sub(...)`)"
                ))
            }
        })
    }
}

fn ws() -> &'static str {
    r"[\s\x1c-\x1f]+"
}

fn parse_split(s: &str) -> Option<(char, Option<usize>, Option<i64>)> {
    let re = regex::Regex::new(&format!(r"^split\((.),{ws}(\d+),{ws}(\d+|-1)\)", ws = ws())).ok()?;
    let c = re.captures(s)?;
    let sep = c.get(1)?.as_str().chars().next()?;
    let ascii = |t: &str| t.bytes().all(|b| b.is_ascii_digit() || b == b'-');
    let (seg, max) = (c.get(2)?.as_str(), c.get(3)?.as_str());
    if !ascii(seg) || !ascii(max) {
        return None;
    }
    Some((sep, seg.parse().ok(), max.parse().ok()))
}

fn parse_sub(s: &str) -> Option<(String, String)> {
    let re = regex::Regex::new(&format!(r"^sub\(/(.*)/,{ws}(.*)\)", ws = ws())).ok()?;
    let c = re.captures(s)?;
    let strip = |t: &str| t.trim_matches(super::lex::py_isspace).to_string();
    Some((strip(c.get(1)?.as_str()), strip(c.get(2)?.as_str())))
}
