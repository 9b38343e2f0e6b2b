//! Splits template text into text runs and the tokens inside `{{ … }}` actions, with Go's
//! `{{- ` / ` -}}` whitespace trimming and `{{/* */}}` comments applied here so the parser never
//! sees them.

/// A token's kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Text(String),
    LeftDelim,
    RightDelim,
    Pipe,
    LeftParen,
    RightParen,
    Declare,
    Assign,
    Comma,
    /// `.name` (without the dot).
    Field(String),
    /// `.` alone.
    Dot,
    /// `$name` or `$` (with the `$`).
    Variable(String),
    Ident(String),
    Keyword(Keyword),
    Bool(bool),
    Nil,
    /// An interpreted or raw string literal, still quoted.
    Str(String),
    /// A rune literal, still quoted.
    Char(String),
    /// A number literal as written.
    Number(String),
    /// A lexical error: the last token.
    Error(String),
    /// Any other printable ASCII character (`@`, `;`, `/`, …): never valid, but Go reports it
    /// where the parser meets it.
    Punct(char),
    Eof,
}

/// The action keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    Block,
    Break,
    Continue,
    Define,
    Else,
    End,
    If,
    Range,
    Template,
    With,
}

/// A token with its byte offset in the template and whether white space preceded it inside
/// the action (Go separates arguments by spaces: `$x.a` is one operand, `$x .a` two).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: usize,
    pub(crate) space_before: bool,
}

/// A lexical error at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub(crate) pos: usize,
    pub(crate) msg: String,
}

const LEFT: &str = "{{";
const RIGHT: &str = "}}";

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Tokenizes a whole template.
/// Tokenizes a whole template. A lexical error ends the tokens with a [`Tok::Error`] where it
/// occurred: Go's parser consumes tokens as the lexer makes them, so a syntax error before the
/// lexical one is the error reported.
pub(crate) fn lex(input: &str) -> Vec<Token> {
    let mut lexer = Lexer {
        input,
        pos: 0,
        tokens: Vec::new(),
        trim_next_text: false,
    };
    if let Err(e) = lexer.run() {
        lexer.push(Tok::Error(e.msg), e.pos, false);
    }
    lexer.tokens
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    /// The previous action ended with ` -}}`: leading white space of the next text goes.
    trim_next_text: bool,
}

impl Lexer<'_> {
    fn err<T>(&self, pos: usize, msg: impl Into<String>) -> Result<T, LexError> {
        Err(LexError {
            pos,
            msg: msg.into(),
        })
    }

    fn push(&mut self, tok: Tok, pos: usize, space_before: bool) {
        self.tokens.push(Token {
            tok,
            pos,
            space_before,
        });
    }

    fn run(&mut self) -> Result<(), LexError> {
        loop {
            let rest = &self.input[self.pos..];
            let Some(i) = rest.find(LEFT) else {
                self.emit_text(self.pos, self.input.len(), false);
                self.push(Tok::Eof, self.input.len(), false);
                return Ok(());
            };
            let delim = self.pos + i;
            let after = &self.input[delim + LEFT.len()..];
            // `{{- ` trims the white space before the action.
            let left_trim = after.starts_with('-') && after[1..].starts_with(is_space);
            self.emit_text(self.pos, delim, left_trim);
            self.pos = delim + LEFT.len() + if left_trim { 2 } else { 0 };
            if self.input[self.pos..].starts_with("/*") {
                self.comment(delim)?;
            } else {
                self.push(Tok::LeftDelim, delim, false);
                self.inside_action()?;
            }
        }
    }

    fn emit_text(&mut self, start: usize, end: usize, trim_right: bool) {
        let mut text = &self.input[start..end];
        if std::mem::take(&mut self.trim_next_text) {
            text = text.trim_start_matches(is_space);
        }
        if trim_right {
            text = text.trim_end_matches(is_space);
        }
        if !text.is_empty() {
            self.push(Tok::Text(text.to_owned()), start, false);
        }
    }

    /// Ends an action at `}}` or ` -}}` (the latter trims the following text).
    fn right_delim_at(&self, pos: usize) -> Option<(usize, bool)> {
        let rest = &self.input[pos..];
        if rest.starts_with(is_space) && rest[1..].starts_with("-}}") {
            return Some((4, true));
        }
        rest.starts_with(RIGHT).then_some((2, false))
    }

    fn comment(&mut self, delim: usize) -> Result<(), LexError> {
        let Some(end) = self.input[self.pos..].find("*/") else {
            return self.err(delim, "unclosed comment");
        };
        self.pos += end + 2;
        match self.right_delim_at(self.pos) {
            Some((len, trim)) => {
                self.pos += len;
                self.trim_next_text = trim;
                Ok(())
            }
            None => self.err(delim, "comment ends before closing delimiter"),
        }
    }

    fn inside_action(&mut self) -> Result<(), LexError> {
        let mut space = false;
        let mut paren_depth = 0usize;
        loop {
            if let Some((len, trim)) = self.right_delim_at(self.pos) {
                if paren_depth > 0 {
                    return self.err(self.pos, "unclosed left paren");
                }
                let at = self.pos + len - 2;
                self.push(Tok::RightDelim, at, space);
                self.pos += len;
                self.trim_next_text = trim;
                return Ok(());
            }
            let start = self.pos;
            let Some(c) = self.input[start..].chars().next() else {
                return self.err(start, "unclosed action");
            };
            if is_space(c) {
                self.pos += 1;
                space = true;
                continue;
            }
            let tok = match c {
                '|' => {
                    self.pos += 1;
                    Tok::Pipe
                }
                '(' => {
                    self.pos += 1;
                    paren_depth += 1;
                    Tok::LeftParen
                }
                ')' => {
                    self.pos += 1;
                    // An unbalanced `)` is the parser's to report, in context.
                    paren_depth = paren_depth.saturating_sub(1);
                    Tok::RightParen
                }
                ',' => {
                    self.pos += 1;
                    Tok::Comma
                }
                '=' => {
                    self.pos += 1;
                    Tok::Assign
                }
                ':' => {
                    if !self.input[start..].starts_with(":=") {
                        return self.err(start, "expected :=");
                    }
                    self.pos += 2;
                    Tok::Declare
                }
                '"' => self
                    .quoted('"', "unterminated quoted string")
                    .map(Tok::Str)?,
                '\'' => self
                    .quoted('\'', "unterminated character constant")
                    .map(Tok::Char)?,
                '`' => {
                    let Some(end) = self.input[start + 1..].find('`') else {
                        return self.err(start, "unterminated raw quoted string");
                    };
                    self.pos = start + end + 2;
                    Tok::Str(self.input[start..self.pos].to_owned())
                }
                '$' => {
                    self.pos += 1;
                    self.take_while(is_alnum);
                    self.check_terminator()?;
                    Tok::Variable(self.input[start..self.pos].to_owned())
                }
                '.' => {
                    let next = self.input[start + 1..].chars().next();
                    // Go reads a `.` at the very end of the input as a number (an illegal one).
                    if next.is_none_or(|c| c.is_ascii_digit()) {
                        self.number()?
                    } else {
                        self.pos += 1;
                        self.take_while(is_alnum);
                        self.check_terminator()?;
                        if self.pos == start + 1 {
                            Tok::Dot
                        } else {
                            Tok::Field(self.input[start + 1..self.pos].to_owned())
                        }
                    }
                }
                '+' | '-' | '0'..='9' => self.number()?,
                c if is_alnum(c) => {
                    self.take_while(is_alnum);
                    self.check_terminator()?;
                    let word = &self.input[start..self.pos];
                    match word {
                        "block" => Tok::Keyword(Keyword::Block),
                        "break" => Tok::Keyword(Keyword::Break),
                        "continue" => Tok::Keyword(Keyword::Continue),
                        "define" => Tok::Keyword(Keyword::Define),
                        "else" => Tok::Keyword(Keyword::Else),
                        "end" => Tok::Keyword(Keyword::End),
                        "if" => Tok::Keyword(Keyword::If),
                        "range" => Tok::Keyword(Keyword::Range),
                        "template" => Tok::Keyword(Keyword::Template),
                        "with" => Tok::Keyword(Keyword::With),
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        _ => Tok::Ident(word.to_owned()),
                    }
                }
                // Other printable ASCII is a token of its own, for the parser to reject in context.
                c if c.is_ascii_graphic() => {
                    self.pos += 1;
                    Tok::Punct(c)
                }
                c => {
                    return self.err(
                        start,
                        format!("unrecognized character in action: {}", char_u(c)),
                    );
                }
            };
            self.push(tok, start, space);
            space = false;
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) {
        let rest = &self.input[self.pos..];
        let n = rest.find(|c: char| !f(c)).unwrap_or(rest.len());
        self.pos += n;
    }

    /// Go requires a word to be followed by space, punctuation or the closing delimiter.
    fn check_terminator(&self) -> Result<(), LexError> {
        let rest = &self.input[self.pos..];
        match rest.chars().next() {
            None => Ok(()),
            Some(c) if is_space(c) || matches!(c, '.' | ',' | '|' | ':' | ')' | '(') => Ok(()),
            Some(_) if rest.starts_with(RIGHT) => Ok(()),
            Some(c) => self.err(self.pos, format!("bad character {}", char_u(c))),
        }
    }

    fn quoted(&mut self, quote: char, unterminated: &str) -> Result<String, LexError> {
        let start = self.pos;
        let mut chars = self.input[start + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' if chars.next().is_none_or(|(_, c)| c == '\n') => {
                    return self.err(start, unterminated);
                }
                '\\' => {}
                '\n' => return self.err(start, unterminated),
                c if c == quote => {
                    self.pos = start + 1 + i + 1;
                    return Ok(self.input[start..self.pos].to_owned());
                }
                _ => {}
            }
        }
        self.err(start, unterminated)
    }

    /// Scans a number the way Go's template lexer does; the parser checks its syntax.
    fn number(&mut self) -> Result<Tok, LexError> {
        let start = self.pos;
        let bytes = self.input.as_bytes();
        let mut i = start;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let mut digits: &[u8] = b"0123456789_";
        let mut hex = false;
        if bytes.get(i) == Some(&b'0') {
            match bytes.get(i + 1).map(u8::to_ascii_lowercase) {
                Some(b'x') => {
                    i += 2;
                    digits = b"0123456789abcdefABCDEF_";
                    hex = true;
                }
                Some(b'o') => {
                    i += 2;
                    digits = b"01234567_";
                }
                Some(b'b') => {
                    i += 2;
                    digits = b"01_";
                }
                _ => {}
            }
        }
        let take = |i: &mut usize, set: &[u8]| {
            while bytes.get(*i).is_some_and(|b| set.contains(b)) {
                *i += 1;
            }
        };
        take(&mut i, digits);
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            take(&mut i, digits);
        }
        let exp: &[u8] = if hex { b"pP" } else { b"eE" };
        if bytes.get(i).is_some_and(|b| exp.contains(b)) {
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            take(&mut i, b"0123456789_");
        }
        if bytes.get(i) == Some(&b'i') {
            i += 1;
        }
        self.pos = i;
        if let Some(c) = self.input[i..].chars().next().filter(|&c| is_alnum(c)) {
            // Go quotes the number and the one character that spoilt it.
            let text = &self.input[start..i + c.len_utf8()];
            return self.err(
                start,
                format!("bad number syntax: {}", super::gofmt::quote(text, false)),
            );
        }
        Ok(Tok::Number(self.input[start..i].to_owned()))
    }
}

/// Go's `%#U`: `U+0023 '#'` (the character itself only when printable).
fn char_u(c: char) -> String {
    if super::gofmt::is_print(c) {
        format!("U+{:04X} '{c}'", c as u32)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Tok> {
        lex(s).into_iter().map(|t| t.tok).collect()
    }

    fn error(s: &str) -> String {
        match lex(s).pop().map(|t| t.tok) {
            Some(Tok::Error(msg)) => msg,
            other => panic!("no error at the end: {other:?}"),
        }
    }

    #[test]
    fn trims_and_comments() {
        assert_eq!(
            kinds("a  {{- 1 -}}  b {{/* c */}} d {{- /* e */ -}} f"),
            vec![
                Tok::Text("a".into()),
                Tok::LeftDelim,
                Tok::Number("1".into()),
                Tok::RightDelim,
                Tok::Text("b ".into()),
                Tok::Text(" d".into()),
                Tok::Text("f".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn negative_number_is_not_a_trim_marker() {
        assert_eq!(
            kinds("{{-3}}"),
            vec![
                Tok::LeftDelim,
                Tok::Number("-3".into()),
                Tok::RightDelim,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn fields_and_variables() {
        let toks = lex("{{ $x.a .b }}");
        assert_eq!(toks[1].tok, Tok::Variable("$x".into()));
        assert_eq!(toks[2].tok, Tok::Field("a".into()));
        assert!(!toks[2].space_before);
        assert!(toks[3].space_before);
    }

    #[test]
    fn errors() {
        assert_eq!(error("{{ \"abc }}"), "unterminated quoted string");
        assert_eq!(error("{{ 1 "), "unclosed action");
        assert_eq!(error("{{ (1 }}"), "unclosed left paren");
        assert_eq!(error("{{/* x"), "unclosed comment");
        assert_eq!(error("{{ 3x }}"), "bad number syntax: \"3x\"");
    }
}
