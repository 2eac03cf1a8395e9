//! Tokenizer: the token rules of jsonpath-rw-ext's lexer, tried in the same
//! order (`true`/`false`, sort directions, identifiers, floats, integers,
//! quoted strings, back-quoted operators, newlines, filter operators, `..`,
//! then one-character literals).

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// `true` / `false` (even as the start of a longer word: `trueish` is
    /// `true` then `ish`, as in the original).
    Bool(bool),
    /// `/` or `\` (optionally after `,` and whitespace): a sort direction.
    SortDir(char),
    /// A field name: bare (`@?[A-Za-z_][A-Za-z0-9_@-]*`) or quoted.
    Id(String),
    /// A decimal with a fraction: `-?\d+\.\d+`.
    Float(f64),
    /// An integer: `-?\d+`.
    Number(i64),
    /// Back-quoted text: `` `len` ``, `` `split(., 1, 1)` ``...
    Named(String),
    /// `=`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `~`.
    FilterOp(&'static str),
    /// `..`
    DoubleDot,
    /// The reserved word `where`.
    Where,
    /// One of `* . [ ] ( ) $ , : | & ? @ + -`.
    Lit(char),
}

/// A token and the 0-based character position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

/// Python's `str.isspace`: Unicode White_Space plus the four ASCII
/// information separators.
pub(super) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

fn id_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '-')
}

/// A lexing error: position and reason.
pub(super) type LexError = (usize, String);

fn digits_at(s: &[char], mut i: usize) -> Result<usize, LexError> {
    let start = i;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
    }
    if i < s.len() && !s[i].is_ascii() && s[i].is_numeric() {
        return Err((i, format!("non-ASCII digit {:?} is not supported", s[i])));
    }
    Ok(i - start)
}

/// Splits `s` into tokens.
pub(super) fn tokenize(s: &[char]) -> Result<Vec<Token>, LexError> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = s.len();
    let at = |i: usize, lit: &str| lit.chars().enumerate().all(|(k, c)| s.get(i + k) == Some(&c));
    while i < n {
        let c = s[i];
        if c == ' ' || c == '\t' || c == '\n' {
            i += 1;
            continue;
        }
        let pos = i;
        let mut push = |tok: Tok| out.push(Token { tok, pos });
        if at(i, "true") {
            push(Tok::Bool(true));
            i += 4;
            continue;
        }
        if at(i, "false") {
            push(Tok::Bool(false));
            i += 5;
            continue;
        }
        {
            let mut j = i;
            if s[j] == ',' {
                j += 1;
            }
            while j < n && py_isspace(s[j]) {
                j += 1;
            }
            if j < n && (s[j] == '/' || s[j] == '\\') {
                push(Tok::SortDir(s[j]));
                i = j + 1;
                continue;
            }
        }
        if id_start(c) || (c == '@' && s.get(i + 1).is_some_and(|&d| id_start(d))) {
            let mut j = i + 1;
            while j < n && id_char(s[j]) {
                j += 1;
            }
            let word: String = s[i..j].iter().collect();
            push(if word == "where" { Tok::Where } else { Tok::Id(word) });
            i = j;
            continue;
        }
        // Numbers: `-?\d+\.\d+` then `-?\d+`.
        {
            let sign = usize::from(c == '-');
            let int_len = digits_at(s, i + sign)?;
            if int_len > 0 {
                let after = i + sign + int_len;
                if s.get(after) == Some(&'.') {
                    let frac_len = digits_at(s, after + 1)?;
                    if frac_len > 0 {
                        let end = after + 1 + frac_len;
                        let text: String = s[i..end].iter().collect();
                        let f: f64 = text.parse().map_err(|_| (i, format!("bad number {text:?}")))?;
                        push(Tok::Float(f));
                        i = end;
                        continue;
                    }
                }
                let text: String = s[i..after].iter().collect();
                let v: i64 = text.parse().map_err(|_| (i, format!("integer {text} is too large (not supported)")))?;
                push(Tok::Number(v));
                i = after;
                continue;
            }
        }
        if c == '\'' || c == '"' || c == '`' {
            let mut j = i + 1;
            let mut text = String::new();
            loop {
                match s.get(j) {
                    None => {
                        let what = match c {
                            '`' => "back-quoted operator",
                            _ => "quoted field name",
                        };
                        return Err((i, format!("unterminated {what} (no closing {c})")));
                    }
                    Some('\\') => match s.get(j + 1) {
                        Some(&e) if e != '\n' => {
                            text.push(e);
                            j += 2;
                        }
                        _ => return Err((j, "a backslash must be followed by a character (not a newline)".into())),
                    },
                    Some(&d) if d == c => {
                        j += 1;
                        break;
                    }
                    Some(&d) => {
                        text.push(d);
                        j += 1;
                    }
                }
            }
            push(if c == '`' { Tok::Named(text) } else { Tok::Id(text) });
            i = j;
            continue;
        }
        let two = s.get(i + 1).copied();
        let op: Option<(&'static str, usize)> = match (c, two) {
            ('=', Some('=')) => Some(("==", 2)),
            ('=', _) => Some(("=", 1)),
            ('<', Some('=')) => Some(("<=", 2)),
            ('>', Some('=')) => Some((">=", 2)),
            ('!', Some('=')) => Some(("!=", 2)),
            ('<', _) => Some(("<", 1)),
            ('>', _) => Some((">", 1)),
            ('~', _) => Some(("~", 1)),
            _ => None,
        };
        if let Some((op, len)) = op {
            push(Tok::FilterOp(op));
            i += len;
            continue;
        }
        if c == '.' && two == Some('.') {
            push(Tok::DoubleDot);
            i += 2;
            continue;
        }
        if "*.[]()$,:|&?@+-/".contains(c) {
            push(Tok::Lit(c));
            i += 1;
            continue;
        }
        return Err((i, format!("unexpected character {c:?}")));
    }
    Ok(out)
}
