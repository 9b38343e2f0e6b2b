//! The template syntax tree and its parser, with Go's parse-time checks: undefined variables,
//! unknown functions, misplaced `{{else}}`/`{{end}}`/`{{break}}`, non-executable pipeline stages.

use std::collections::HashMap;

use super::lexer::{Keyword, Tok, Token, lex};

/// A parse error at a byte offset of the template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) pos: usize,
    pub(crate) msg: String,
}

/// A list of nodes.
pub(crate) type List = Vec<Node>;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Text(String),
    /// `{{pipeline}}`: prints the value unless the pipeline declares or assigns variables.
    Action(Pipe),
    If(Branch),
    With(Branch),
    Range(Branch),
    /// `{{template "name" pipeline}}`.
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    Break(usize),
    Continue(usize),
}

/// The shared shape of `if`, `with` and `range`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Branch {
    pub(crate) pipe: Pipe,
    pub(crate) list: List,
    pub(crate) else_list: Option<List>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pipe {
    pub(crate) pos: usize,
    /// Declared (`:=`) or assigned (`=`) variables, with their `$`.
    pub(crate) decl: Vec<String>,
    pub(crate) is_assign: bool,
    pub(crate) cmds: Vec<Command>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Command {
    pub(crate) pos: usize,
    pub(crate) args: Vec<Arg>,
    /// Each argument's position (for chains, that of the first chained field, as in Go).
    pub(crate) arg_pos: Vec<usize>,
}

/// A number literal with every interpretation Go's parser finds for it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Number {
    pub(crate) text: String,
    pub(crate) int: Option<i64>,
    pub(crate) float: Option<f64>,
    /// A rune literal (`'a'`): always an int.
    pub(crate) is_char: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    /// `.a.b` (no names: `.`).
    Field {
        pos: usize,
        names: Vec<String>,
    },
    Variable {
        pos: usize,
        name: String,
        fields: Vec<String>,
    },
    Ident {
        pos: usize,
        name: String,
    },
    /// `(pipeline).a.b` or `ident.a`.
    Chain {
        pos: usize,
        node: Box<Arg>,
        fields: Vec<String>,
    },
    Pipe(Box<Pipe>),
    Str {
        quoted: String,
        value: String,
    },
    Number(Number),
    Bool(bool),
    Nil,
}

impl Arg {
    pub(crate) fn pos(&self, default: usize) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Variable { pos, .. }
            | Arg::Ident { pos, .. }
            | Arg::Chain { pos, .. } => *pos,
            Arg::Pipe(p) => p.pos,
            _ => default,
        }
    }
}

// Go's String() of the nodes, for error contexts (`at <…>`).
impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Field { names, .. } if names.is_empty() => f.write_str("."),
            Arg::Field { names, .. } => names.iter().try_for_each(|n| write!(f, ".{n}")),
            Arg::Variable { name, fields, .. } => {
                f.write_str(name)?;
                fields.iter().try_for_each(|n| write!(f, ".{n}"))
            }
            Arg::Ident { name, .. } => f.write_str(name),
            Arg::Chain { node, fields, .. } => {
                match node.as_ref() {
                    Arg::Pipe(p) => write!(f, "({p})")?,
                    other => write!(f, "{other}")?,
                }
                fields.iter().try_for_each(|n| write!(f, ".{n}"))
            }
            Arg::Pipe(p) => write!(f, "({p})"),
            Arg::Str { quoted, .. } => f.write_str(quoted),
            Arg::Number(n) => f.write_str(&n.text),
            Arg::Bool(b) => write!(f, "{b}"),
            Arg::Nil => f.write_str("nil"),
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.decl.is_empty() {
            f.write_str(&self.decl.join(", "))?;
            f.write_str(if self.is_assign { " = " } else { " := " })?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// A parsed template: the main list and the `define`d (and `block`) templates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tree {
    pub(crate) root: List,
    pub(crate) defines: HashMap<String, List>,
}

/// Parses `text`; `is_function` says which identifiers name functions.
pub(crate) fn parse(
    text: &str,
    name: &str,
    is_function: &dyn Fn(&str) -> bool,
) -> Result<Tree, ParseError> {
    let tokens = lex(text);
    let mut p = Parser {
        text,
        name,
        action_start: 0,
        tokens,
        i: 0,
        vars: vec!["$".into()],
        range_depth: 0,
        nesting: 0,
        is_function,
        defines: HashMap::new(),
    };
    let root = p.top_level()?;
    Ok(Tree {
        root,
        defines: p.defines,
    })
}

/// How deeply parentheses and control structures may nest (Go has no limit, but no alert text
/// comes close).
const MAX_NESTING: usize = 100;

/// What ended a list.
enum ListEnd {
    Eof,
    End(usize),
    /// `{{else}}` (false) or `{{else if …}}`/`{{else with …}}` (true: the keyword follows).
    Else(usize),
}

struct Parser<'a> {
    text: &'a str,
    /// The template's name, for Go's "in action started at NAME:LINE".
    name: &'a str,
    /// Where the current action's `{{` is.
    action_start: usize,
    tokens: Vec<Token>,
    i: usize,
    /// Variables in scope, innermost last.
    vars: Vec<String>,
    range_depth: usize,
    /// Parentheses and control structures currently open.
    nesting: usize,
    is_function: &'a dyn Fn(&str) -> bool,
    defines: HashMap<String, List>,
}

type PResult<T> = Result<T, ParseError>;

fn describe(t: &Tok) -> String {
    // Go's item String(): keywords (with `.` and `nil`) in angle brackets, everything else
    // `%q`-quoted, shortened to `%.10q...` when long.
    let quoted = |s: &str| {
        if s.chars().count() > 10 {
            format!(
                "{}...",
                super::gofmt::quote(&s.chars().take(10).collect::<String>(), false)
            )
        } else {
            super::gofmt::quote(s, false)
        }
    };
    match t {
        Tok::Text(s)
        | Tok::Str(s)
        | Tok::Char(s)
        | Tok::Number(s)
        | Tok::Variable(s)
        | Tok::Ident(s) => quoted(s),
        Tok::LeftDelim => quoted("{{"),
        Tok::RightDelim => quoted("}}"),
        Tok::Pipe => quoted("|"),
        Tok::LeftParen => quoted("("),
        Tok::RightParen => quoted(")"),
        Tok::Declare => quoted(":="),
        Tok::Assign => quoted("="),
        Tok::Comma => quoted(","),
        Tok::Field(f) => quoted(&format!(".{f}")),
        Tok::Bool(b) => quoted(&b.to_string()),
        Tok::Punct(c) => quoted(&c.to_string()),
        Tok::Dot => "<.>".into(),
        Tok::Nil => "<nil>".into(),
        Tok::Keyword(k) => format!("<{}>", format!("{k:?}").to_lowercase()),
        Tok::Eof => "EOF".into(),
        Tok::Error(msg) => msg.clone(),
    }
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The lexer always ends with Eof, and `next` never moves past it.
        &self.tokens[self.i.min(self.tokens.len() - 1)]
    }

    /// The next token; a lexical error surfaces here, when the parser reaches it.
    fn next(&mut self) -> PResult<Token> {
        let t = self.peek().clone();
        if self.i < self.tokens.len() - 1 {
            self.i += 1;
        }
        if t.tok == Tok::LeftDelim {
            self.action_start = t.pos;
        }
        if let Tok::Error(msg) = &t.tok {
            let line = |pos: usize| {
                1 + self.text.as_bytes()[..pos.min(self.text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
            };
            let start_line = line(self.action_start);
            let mut msg = msg.clone();
            if start_line != line(t.pos) {
                // Go: "… in action started at NAME:LINE" ("unclosed action started at …").
                let extra = format!(" in action started at {}:{start_line}", self.name);
                msg += if msg.ends_with(" action") {
                    &extra[" in action".len()..]
                } else {
                    &extra
                };
            }
            return self.err(t.pos, msg);
        }
        Ok(t)
    }

    fn err<T>(&self, pos: usize, msg: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            pos,
            msg: msg.into(),
        })
    }

    fn expect_right_delim(&mut self, context: &str) -> PResult<()> {
        let t = self.next()?;
        if t.tok != Tok::RightDelim {
            return self.err(
                t.pos,
                format!("unexpected {} in {context}", describe(&t.tok)),
            );
        }
        Ok(())
    }

    fn top_level(&mut self) -> PResult<List> {
        let mut root = Vec::new();
        loop {
            let t = self.peek().clone();
            match t.tok {
                Tok::Eof => return Ok(root),
                Tok::LeftDelim
                    if self
                        .tokens
                        .get(self.i + 1)
                        .is_some_and(|n| n.tok == Tok::Keyword(Keyword::Define)) =>
                {
                    self.i += 2;
                    self.define(t.pos)?;
                }
                _ => match self.node()? {
                    Ok(node) => root.push(node),
                    Err(ListEnd::End(pos)) => return self.err(pos, "unexpected {{end}}"),
                    Err(ListEnd::Else(pos)) => return self.err(pos, "unexpected {{else}}"),
                    Err(ListEnd::Eof) => return Ok(root),
                },
            }
        }
    }

    fn define(&mut self, pos: usize) -> PResult<()> {
        let name = self.template_name("define clause")?;
        self.expect_right_delim("define clause")?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let list = self.list_until_end(pos)?;
        self.vars = saved;
        self.add_define(name, list, pos)
    }

    fn add_define(&mut self, name: String, list: List, pos: usize) -> PResult<()> {
        // Go allows redefinition only when one of the two bodies is empty.
        match self.defines.get(&name) {
            Some(old) if !is_empty_list(old) && !is_empty_list(&list) => self.err(
                pos,
                format!("template: multiple definition of template {name:?}"),
            ),
            Some(_) if is_empty_list(&list) => Ok(()),
            _ => {
                self.defines.insert(name, list);
                Ok(())
            }
        }
    }

    fn template_name(&mut self, context: &str) -> PResult<String> {
        let t = self.next()?;
        match &t.tok {
            Tok::Str(q) => unquote(q).map_err(|msg| ParseError { pos: t.pos, msg }),
            other => self.err(
                t.pos,
                format!("unexpected {} in {context}", describe(other)),
            ),
        }
    }

    fn list_until_end(&mut self, pos: usize) -> PResult<List> {
        let mut list = Vec::new();
        loop {
            match self.node()? {
                Ok(n) => list.push(n),
                Err(ListEnd::End(_)) => return Ok(list),
                Err(ListEnd::Else(p)) => {
                    return self.err(p, "expected end; found {{else}}");
                }
                Err(ListEnd::Eof) => return self.err(pos, "unexpected EOF"),
            }
        }
    }

    /// One text or action node, or what ended the enclosing list.
    fn node(&mut self) -> PResult<Result<Node, ListEnd>> {
        let t = self.next()?;
        match t.tok {
            Tok::Text(s) => Ok(Ok(Node::Text(s))),
            Tok::Eof => Ok(Err(ListEnd::Eof)),
            Tok::LeftDelim => self.action(),
            other => self.err(t.pos, format!("unexpected {}", describe(&other))),
        }
    }

    fn action(&mut self) -> PResult<Result<Node, ListEnd>> {
        let t = self.peek().clone();
        let Tok::Keyword(kw) = t.tok else {
            let pipe = self.pipeline("command", false)?;
            return Ok(Ok(Node::Action(pipe)));
        };
        self.next()?;
        let node = match kw {
            Keyword::End => {
                self.expect_right_delim("end")?;
                return Ok(Err(ListEnd::End(t.pos)));
            }
            Keyword::Else => {
                // `{{else if …}}` continues a chain: the `if` stays for the enclosing control.
                // (`{{else with}}` came with Go 1.23, after Prometheus 2.42.)
                if self.peek().tok != Tok::Keyword(Keyword::If) {
                    self.expect_right_delim("else")?;
                }
                return Ok(Err(ListEnd::Else(t.pos)));
            }
            Keyword::If => Node::If(self.control("if", t.pos)?),
            Keyword::With => Node::With(self.control("with", t.pos)?),
            Keyword::Range => {
                self.range_depth += 1;
                let r = self.control("range", t.pos);
                self.range_depth -= 1;
                Node::Range(r?)
            }
            Keyword::Break | Keyword::Continue => {
                let name = if kw == Keyword::Break {
                    "break"
                } else {
                    "continue"
                };
                self.expect_right_delim(&format!("{{{{{name}}}}}"))?;
                if self.range_depth == 0 {
                    return self.err(t.pos, format!("{{{{{name}}}}} outside {{{{range}}}}"));
                }
                if kw == Keyword::Break {
                    Node::Break(t.pos)
                } else {
                    Node::Continue(t.pos)
                }
            }
            Keyword::Template => {
                // Go positions a {{template}} node at its name.
                let name_pos = self.peek().pos;
                let name = self.template_name("template clause")?;
                let pipe = if self.peek().tok == Tok::RightDelim {
                    self.next()?;
                    None
                } else {
                    Some(self.pipeline("template clause", false)?)
                };
                Node::Template {
                    pos: name_pos,
                    name,
                    pipe,
                }
            }
            Keyword::Block => {
                let name_pos = self.peek().pos;
                let name = self.template_name("block clause")?;
                let pipe = self.pipeline("block clause", false)?;
                let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
                let depth = std::mem::take(&mut self.range_depth);
                let list = self.list_until_end(t.pos);
                self.vars = saved;
                self.range_depth = depth;
                self.add_define(name.clone(), list?, t.pos)?;
                Node::Template {
                    pos: name_pos,
                    name,
                    pipe: Some(pipe),
                }
            }
            Keyword::Define => return self.err(t.pos, "unexpected <define> in command"),
        };
        Ok(Ok(node))
    }

    /// `if`/`with`/`range`: pipeline, list, optional else (or else-if chain), end.
    fn control(&mut self, context: &str, pos: usize) -> PResult<Branch> {
        self.enter()?;
        let vars_mark = self.vars.len();
        let result = self.control_inner(context, pos);
        self.vars.truncate(vars_mark);
        self.nesting -= 1;
        result
    }

    fn control_inner(&mut self, context: &str, pos: usize) -> PResult<Branch> {
        let pipe = self.pipeline(context, context == "range")?;
        let mut list = Vec::new();
        loop {
            match self.node()? {
                Ok(n) => list.push(n),
                Err(ListEnd::End(_)) => {
                    return Ok(Branch {
                        pipe,
                        list,
                        else_list: None,
                    });
                }
                Err(ListEnd::Eof) => return self.err(pos, "unexpected EOF"),
                Err(ListEnd::Else(else_pos)) => {
                    let next = self.peek().tok.clone();
                    let chained = match next {
                        Tok::Keyword(Keyword::If) if context == "if" => Some("if"),
                        Tok::Keyword(_) => {
                            return self
                                .err(else_pos, format!("unexpected {} in input", describe(&next)));
                        }
                        _ => None,
                    };
                    let else_list = if let Some(kw) = chained {
                        // `{{else if x}}…{{end}}` is `{{else}}{{if x}}…{{end}}{{end}}`: the
                        // nested branch consumes the shared `{{end}}`.
                        self.next()?;
                        let inner = self.control(kw, else_pos)?;
                        vec![if kw == "if" {
                            Node::If(inner)
                        } else {
                            Node::With(inner)
                        }]
                    } else {
                        self.list_until_end(pos)?
                    };
                    return Ok(Branch {
                        pipe,
                        list,
                        else_list: Some(else_list),
                    });
                }
            }
        }
    }

    /// A pipeline up to `}}` (consumed), with optional variable declarations.
    fn pipeline(&mut self, context: &str, allow_two_vars: bool) -> PResult<Pipe> {
        self.enter()?;
        let result = self.pipeline_inner(context, allow_two_vars);
        self.nesting -= 1;
        result
    }

    /// Counts one level of nesting (parentheses, control structures), refusing more than
    /// [`MAX_NESTING`]: parsing and executing recurse per level on a fixed-size stack.
    fn enter(&mut self) -> PResult<()> {
        if self.nesting >= MAX_NESTING {
            let pos = self.peek().pos;
            return self.err(
                pos,
                format!("template nested more than {MAX_NESTING} levels deep"),
            );
        }
        self.nesting += 1;
        Ok(())
    }

    fn pipeline_inner(&mut self, context: &str, allow_two_vars: bool) -> PResult<Pipe> {
        let start = self.peek().pos;
        let mut decl = Vec::new();
        let mut is_assign = false;
        // `$x :=`, `$x =`, `$i, $e :=`: look ahead without consuming a plain `$x` operand.
        if let Tok::Variable(v) = &self.peek().tok {
            let v = v.clone();
            match self.tokens.get(self.i + 1).map(|t| &t.tok) {
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    is_assign = self.tokens[self.i + 1].tok == Tok::Assign;
                    self.i += 2;
                    decl.push(v);
                }
                Some(Tok::Comma) if allow_two_vars => {
                    let second = self.tokens.get(self.i + 2).map(|t| t.tok.clone());
                    let op = self.tokens.get(self.i + 3).map(|t| t.tok.clone());
                    match (second, op) {
                        (Some(Tok::Variable(w)), Some(Tok::Declare | Tok::Assign)) => {
                            is_assign = self.tokens[self.i + 3].tok == Tok::Assign;
                            self.i += 4;
                            decl.push(v);
                            decl.push(w);
                        }
                        (Some(Tok::Variable(_)), Some(Tok::Comma)) => {
                            return self.err(start, "too many declarations in range");
                        }
                        _ => return self.err(start, "range can only initialize variables"),
                    }
                }
                Some(Tok::Comma) => {
                    return self.err(start, format!("too many declarations in {context}"));
                }
                _ => {}
            }
        }
        // Go declares the variables (and takes assigned ones for declared) before parsing the
        // commands; whether an assigned one exists is checked when executing.
        self.vars.extend(decl.iter().cloned());
        let mut cmds = Vec::new();
        loop {
            let t = self.peek().clone();
            match t.tok {
                Tok::RightDelim | Tok::RightParen => {
                    let closing_paren = t.tok == Tok::RightParen;
                    if closing_paren && context != "parenthesized pipeline" {
                        return self.err(t.pos, format!("unexpected \")\" in {context}"));
                    }
                    if !closing_paren && context == "parenthesized pipeline" {
                        return self.err(t.pos, "unclosed left paren");
                    }
                    self.next()?;
                    if cmds.is_empty() {
                        return self.err(t.pos, format!("missing value for {context}"));
                    }
                    check_pipeline(&cmds, t.pos)?;
                    return Ok(Pipe {
                        pos: start,
                        decl,
                        is_assign,
                        cmds,
                    });
                }
                _ => {
                    cmds.push(self.command(context)?);
                    if self.peek().tok == Tok::Pipe {
                        // A trailing `|` before the closing delimiter is accepted, as in Go.
                        self.next()?;
                    }
                }
            }
        }
    }

    fn command(&mut self, context: &str) -> PResult<Command> {
        let first = self.peek().clone();
        let starts_operand = matches!(
            first.tok,
            Tok::Ident(_)
                | Tok::Dot
                | Tok::Field(_)
                | Tok::Nil
                | Tok::Bool(_)
                | Tok::Variable(_)
                | Tok::Str(_)
                | Tok::Char(_)
                | Tok::Number(_)
                | Tok::LeftParen
        );
        if let Tok::Error(_) = first.tok {
            self.next()?;
        }
        if !starts_operand {
            return self.err(
                first.pos,
                format!("unexpected {} in {context}", describe(&first.tok)),
            );
        }
        let pos = self.peek().pos;
        let mut args = Vec::new();
        let mut arg_pos = Vec::new();
        loop {
            let t = self.peek().clone();
            match t.tok {
                Tok::RightDelim | Tok::RightParen | Tok::Pipe => break,
                Tok::Error(_) => {
                    self.next()?;
                }
                _ if !args.is_empty() && !t.space_before => {
                    return self.err(t.pos, format!("unexpected {} in operand", describe(&t.tok)));
                }
                _ => {
                    let (arg_at, arg) = self.operand()?;
                    arg_pos.push(arg_at);
                    args.push(arg);
                }
            }
        }
        if args.is_empty() {
            let t = self.peek();
            return self.err(t.pos, format!("unexpected {} in command", describe(&t.tok)));
        }
        Ok(Command { pos, args, arg_pos })
    }

    /// A term and the fields chained onto it without spaces.
    fn operand(&mut self) -> PResult<(usize, Arg)> {
        let term_pos = self.peek().pos;
        let term = self.term()?;
        // Go positions a chain at its first chained field.
        let pos = self.peek().pos;
        let mut fields = Vec::new();
        while let Tok::Field(f) = &self.peek().tok {
            if self.peek().space_before {
                break;
            }
            fields.push(f.clone());
            self.next()?;
        }
        if fields.is_empty() {
            return Ok((term.pos(term_pos), term));
        }
        Ok((
            pos,
            match term {
                Arg::Field { mut names, .. } => {
                    names.extend(fields);
                    Arg::Field { pos, names }
                }
                Arg::Variable {
                    name,
                    fields: mut own,
                    ..
                } => {
                    own.extend(fields);
                    Arg::Variable {
                        pos,
                        name,
                        fields: own,
                    }
                }
                Arg::Bool(_) | Arg::Str { .. } | Arg::Number(_) | Arg::Nil => {
                    return self.err(
                        pos,
                        format!("unexpected . after term {:?}", term.to_string()),
                    );
                }
                node => Arg::Chain {
                    pos,
                    node: Box::new(node),
                    fields,
                },
            },
        ))
    }

    fn term(&mut self) -> PResult<Arg> {
        let t = self.next()?;
        Ok(match t.tok {
            Tok::Ident(name) => {
                if !(self.is_function)(&name) {
                    return self.err(t.pos, format!("function {name:?} not defined"));
                }
                Arg::Ident { pos: t.pos, name }
            }
            Tok::Dot => Arg::Field {
                pos: t.pos,
                names: Vec::new(),
            },
            Tok::Field(f) => Arg::Field {
                pos: t.pos,
                names: vec![f],
            },
            Tok::Nil => Arg::Nil,
            Tok::Bool(b) => Arg::Bool(b),
            Tok::Variable(name) => {
                if !self.vars.contains(&name) {
                    return self.err(t.pos, format!("undefined variable {name:?}"));
                }
                Arg::Variable {
                    pos: t.pos,
                    name,
                    fields: Vec::new(),
                }
            }
            Tok::Str(q) => {
                let value = unquote(&q).map_err(|msg| ParseError { pos: t.pos, msg })?;
                Arg::Str { quoted: q, value }
            }
            Tok::Char(q) => {
                Arg::Number(parse_char(&q).map_err(|msg| ParseError { pos: t.pos, msg })?)
            }
            Tok::Number(text) => {
                Arg::Number(parse_number(&text).map_err(|msg| ParseError { pos: t.pos, msg })?)
            }
            Tok::LeftParen => {
                // Go positions the pipeline at its first token, inside the parenthesis.
                Arg::Pipe(Box::new(self.pipeline("parenthesized pipeline", false)?))
            }
            other => return self.err(t.pos, format!("unexpected {} in operand", describe(&other))),
        })
    }
}

fn is_empty_list(list: &List) -> bool {
    list.iter()
        .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()))
}

/// Go rejects literals as later pipeline stages: they cannot take the piped value.
fn check_pipeline(cmds: &[Command], pos: usize) -> PResult<()> {
    for (i, c) in cmds.iter().enumerate().skip(1) {
        let non_executable = match c.args.first() {
            Some(Arg::Bool(_) | Arg::Nil | Arg::Number(_) | Arg::Str { .. }) => true,
            Some(Arg::Field { names, .. }) => names.is_empty(),
            _ => false,
        };
        if non_executable {
            return Err(ParseError {
                pos,
                msg: format!("non executable command in pipeline stage {}", i + 1),
            });
        }
    }
    Ok(())
}

/// Go's `strconv.Unquote` for interpreted (`"…"`) and raw (`` `…` ``) strings.
pub(crate) fn unquote(q: &str) -> Result<String, String> {
    if let Some(raw) = q.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        return Ok(raw.replace('\r', ""));
    }
    let inner = q
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(|| "invalid syntax".to_owned())?;
    let mut bytes = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        unescape(&mut chars, &mut bytes, '"')?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn hex_digits(chars: &mut std::str::Chars<'_>, n: usize) -> Result<u32, String> {
    let mut v = 0u32;
    for _ in 0..n {
        let d = chars
            .next()
            .and_then(|c| c.to_digit(16))
            .ok_or_else(|| "invalid syntax".to_owned())?;
        v = v * 16 + d;
    }
    Ok(v)
}

/// Decodes one escape after a backslash into `out` (`\x` and octal escapes are raw bytes).
fn unescape(chars: &mut std::str::Chars<'_>, out: &mut Vec<u8>, quote: char) -> Result<(), String> {
    let syntax = || "invalid syntax".to_owned();
    let c = chars.next().ok_or_else(syntax)?;
    let simple = match c {
        'a' => Some(7u8),
        'b' => Some(8),
        'f' => Some(12),
        'n' => Some(b'\n'),
        'r' => Some(b'\r'),
        't' => Some(b'\t'),
        'v' => Some(11),
        '\\' => Some(b'\\'),
        _ if c == quote => Some(c as u8),
        _ => None,
    };
    if let Some(b) = simple {
        out.push(b);
        return Ok(());
    }
    match c {
        'x' => out.push(hex_digits(chars, 2)? as u8),
        'u' | 'U' => {
            let v = hex_digits(chars, if c == 'u' { 4 } else { 8 })?;
            let ch = char::from_u32(v).ok_or_else(syntax)?;
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
        '0'..='7' => {
            let mut v = c.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                v = v * 8
                    + chars
                        .next()
                        .and_then(|c| c.to_digit(8))
                        .ok_or_else(syntax)?;
            }
            if v > 255 {
                return Err(syntax());
            }
            out.push(v as u8);
        }
        _ => return Err(syntax()),
    }
    Ok(())
}

fn parse_char(q: &str) -> Result<Number, String> {
    let bad = || format!("malformed character constant: {q}");
    let inner = q
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .ok_or_else(bad)?;
    let mut chars = inner.chars();
    let c = chars.next().ok_or_else(bad)?;
    let value = if c == '\\' {
        let mut bytes = Vec::new();
        let rest = chars.as_str();
        let mut esc = rest.chars();
        unescape(&mut esc, &mut bytes, '\'').map_err(|_| bad())?;
        if !esc.as_str().is_empty() {
            return Err(bad());
        }
        // `\x`/octal escapes give a byte value; `\u` gives UTF-8 to decode back.
        match std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.chars().next())
        {
            Some(ch) if bytes.len() > 1 => ch as i64,
            _ => i64::from(bytes.first().copied().ok_or_else(bad)?),
        }
    } else {
        if !chars.as_str().is_empty() {
            return Err(bad());
        }
        c as i64
    };
    Ok(Number {
        text: q.to_owned(),
        int: Some(value),
        float: Some(value as f64),
        is_char: true,
    })
}

/// Go's number literal rules: an int if `strconv.ParseInt(text, 0, 64)` accepts it, a float if
/// `ParseFloat` does (and an int too when that float is integral).
pub(crate) fn parse_number(text: &str) -> Result<Number, String> {
    let illegal = || format!("illegal number syntax: {text:?}");
    if text.ends_with('i') {
        return Err(format!("complex numbers are not supported: {text:?}"));
    }
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let int = parse_go_int(body).and_then(|v| {
        let v = i128::from(v);
        i64::try_from(if neg { -v } else { v }).ok()
    });
    let lower = body.to_ascii_lowercase();
    let is_hex = lower.starts_with("0x");
    let float = if is_hex {
        // A hexadecimal float needs its `p` exponent.
        lower
            .contains('p')
            .then(|| parse_hex_float(&lower[2..]))
            .flatten()
    } else if lower.contains(['e', '.']) || int.is_none() {
        if !underscores_ok(body, false)
            || body.is_empty()
            || !body
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'))
        {
            None
        } else {
            body.replace('_', "")
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
        }
    } else {
        None
    }
    .map(|f| if neg { -f } else { f });
    match (int, float) {
        (None, None) => Err(illegal()),
        (Some(i), _) => Ok(Number {
            text: text.to_owned(),
            int: Some(i),
            float: Some(i as f64),
            is_char: false,
        }),
        (None, Some(f)) => {
            if !text.contains(['.', 'e', 'E', 'p', 'P']) {
                return Err(format!("integer overflow: {text:?}"));
            }
            let int = (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64);
            Ok(Number {
                text: text.to_owned(),
                int,
                float: Some(f),
                is_char: false,
            })
        }
    }
}

/// `strconv.ParseUint(s, 0, 64)` restricted to what fits an i64 magnitude (+1 for -2^63).
fn parse_go_int(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r, true)
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r, true)
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    if !underscores_ok(digits, prefixed) {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    u64::from_str_radix(&clean, radix)
        .ok()
        .filter(|&v| v <= 1 << 63)
}

/// Go's `underscoreOK`: each `_` sits between digits (or right after a base prefix).
pub(crate) fn underscores_ok(digits: &str, prefixed: bool) -> bool {
    let mut prev_digit = prefixed;
    let mut prev_underscore = false;
    for c in digits.chars() {
        if c == '_' {
            if !prev_digit {
                return false;
            }
            prev_digit = false;
            prev_underscore = true;
        } else {
            prev_digit = c.is_ascii_hexdigit();
            prev_underscore = false;
        }
    }
    !prev_underscore
}

/// A hexadecimal float mantissa and `p` exponent (after `0x`).
pub(crate) fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = match s.split_once('p') {
        Some((m, e)) => (m, e.replace('_', "").parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int_part, frac_part) = mant.split_once('.').unwrap_or((mant, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int_part.chars().filter(|&c| c != '_') {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac_part.chars().filter(|&c| c != '_') {
        v += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    Some(v * 2f64.powi(exp)).filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PResult<Tree> {
        parse(s, "t", &|n| n == "printf" || n == "len")
    }

    #[test]
    fn numbers_follow_go() {
        assert_eq!(parse_number("0x1F").unwrap().int, Some(31));
        assert_eq!(parse_number("1_000").unwrap().int, Some(1000));
        assert_eq!(parse_number("0o17").unwrap().int, Some(15));
        assert_eq!(parse_number("017").unwrap().int, Some(15));
        assert_eq!(parse_number("0b101").unwrap().int, Some(5));
        assert_eq!(parse_number("1e3").unwrap().int, Some(1000));
        assert_eq!(parse_number("1.5").unwrap().int, None);
        assert_eq!(parse_number("0x1p4").unwrap().float, Some(16.0));
        assert_eq!(parse_number("-0").unwrap().int, Some(0));
        assert!(parse_number("1__0").is_err());
        assert!(parse_number("99999999999999999999").is_err());
    }

    #[test]
    fn strings_unquote_like_go() {
        assert_eq!(
            unquote(r#""\x41\u00e9\t|\101|\a""#).unwrap(),
            "Aé\t|A|\u{7}"
        );
        assert_eq!(unquote(r"`raw\n`").unwrap(), "raw\\n");
        assert!(unquote(r#""\'""#).is_err());
        assert_eq!(parse_char(r"'\n'").unwrap().int, Some(10));
        assert_eq!(parse_char(r"'\''").unwrap().int, Some(39));
        assert_eq!(parse_char("'é'").unwrap().int, Some(233));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            p("{{ nosuch }}").unwrap_err().msg,
            "function \"nosuch\" not defined"
        );
        assert_eq!(p("{{ $x }}").unwrap_err().msg, "undefined variable \"$x\"");
        assert_eq!(p("{{ if 1 }}").unwrap_err().msg, "unexpected EOF");
        assert_eq!(p("{{ end }}").unwrap_err().msg, "unexpected {{end}}");
        assert_eq!(
            p("{{ break }}").unwrap_err().msg,
            "{{break}} outside {{range}}"
        );
        assert_eq!(
            p("{{ 1 | 2 }}").unwrap_err().msg,
            "non executable command in pipeline stage 2"
        );
        assert_eq!(p("{{ }}").unwrap_err().msg, "missing value for command");
        // The rest verified with `promtool check rules` (Prometheus 2.42).
        assert_eq!(
            p("{{ 1) }}").unwrap_err().msg,
            "unexpected \")\" in command"
        );
        assert_eq!(
            p("{{ | 1 }}").unwrap_err().msg,
            "unexpected \"|\" in command"
        );
        assert_eq!(
            p("{{ 1.2.3 }}").unwrap_err().msg,
            "unexpected \".3\" in operand"
        );
        assert_eq!(
            p("{{ \"a\"\"b\" }}").unwrap_err().msg,
            "unexpected \"\\\"b\\\"\" in operand"
        );
        assert_eq!(
            p("{{ true.x }}").unwrap_err().msg,
            "unexpected . after term \"true\""
        );
        assert_eq!(
            p("{{ nil.x }}").unwrap_err().msg,
            "unexpected . after term \"nil\""
        );
        assert_eq!(
            p("{{ 'ab' }}").unwrap_err().msg,
            "malformed character constant: 'ab'"
        );
        assert_eq!(p("{{ \"\\q\" }}").unwrap_err().msg, "invalid syntax");
        assert_eq!(
            p("{{ 99999999999999999999 }}").unwrap_err().msg,
            "integer overflow: \"99999999999999999999\""
        );
        assert_eq!(
            p("{{ $x, $y := 1 }}").unwrap_err().msg,
            "too many declarations in command"
        );
        assert_eq!(
            p("{{ range $i, $e, $f := . }}{{ end }}").unwrap_err().msg,
            "too many declarations in range"
        );
        assert_eq!(
            p("{{ template . }}").unwrap_err().msg,
            "unexpected <.> in template clause"
        );
        assert_eq!(
            p("{{ if 1 }}{{ else }}{{ else }}{{ end }}")
                .unwrap_err()
                .msg,
            "expected end; found {{else}}"
        );
        assert_eq!(
            p("{{ range 1 }}{{ else if 2 }}{{ end }}").unwrap_err().msg,
            "unexpected <if> in input"
        );
        assert_eq!(
            p("{{ with 1 }}{{ else with 2 }}{{ end }}").unwrap_err().msg,
            "unexpected <with> in else"
        );
        assert_eq!(
            p("{{ range . }}{{ break 1 }}{{ end }}").unwrap_err().msg,
            "unexpected \"1\" in {{break}}"
        );
        assert_eq!(
            p("{{ if 1 }}{{ define \"x\" }}{{ end }}{{ end }}")
                .unwrap_err()
                .msg,
            "unexpected <define> in command"
        );
        assert_eq!(
            p("{{ define \"a\" }}{{ end }}{{ define \"a\" }}x{{ end }}{{ define \"a\" }}y{{ end }}").unwrap_err().msg,
            "template: multiple definition of template \"a\""
        );
        // Accepted by Go: a trailing pipe, `$` redeclared, assignment in range.
        assert_eq!(p("{{ @ }}").unwrap_err().msg, "unexpected \"@\" in command");
        assert_eq!(
            p("{{ 1 ; }}").unwrap_err().msg,
            "unexpected \";\" in operand"
        );
        assert_eq!(
            p("{{ /* x */ }}").unwrap_err().msg,
            "unexpected \"/\" in command"
        );
        assert_eq!(p("{{ .a# }}").unwrap_err().msg, "bad character U+0023 '#'");
        assert_eq!(
            p("{{ block \"b\" .) }}").unwrap_err().msg,
            "unexpected \")\" in block clause"
        );
        assert!(p("{{ len .x | len | }}").is_ok());
        let deep = format!("{{{{ {}1{} }}}}", "(".repeat(101), ")".repeat(101));
        assert!(
            p(&deep)
                .unwrap_err()
                .msg
                .contains("nested more than 100 levels")
        );
        assert!(p("{{ $ := 1 }}").is_ok());
        assert!(p("{{ range $i, $e = . }}{{ end }}").is_ok());
        assert_eq!(
            p("{{ if 1 }}{{ $x := 1 }}{{ end }}{{ $x }}")
                .unwrap_err()
                .msg,
            "undefined variable \"$x\""
        );
    }

    #[test]
    fn else_if_chain() {
        let t = p("{{ if 1 }}a{{ else if 2 }}b{{ else }}c{{ end }}").unwrap();
        let Node::If(b) = &t.root[0] else {
            panic!("not an if")
        };
        let else_list = b.else_list.as_ref().unwrap();
        assert!(matches!(&else_list[0], Node::If(inner) if inner.else_list.is_some()));
    }

    #[test]
    fn node_strings_for_errors() {
        let t = p("{{ printf \"%d\" (len .a.b) $ | len }}").unwrap();
        let Node::Action(pipe) = &t.root[0] else {
            panic!("not an action")
        };
        assert_eq!(pipe.to_string(), "printf \"%d\" (len .a.b) $ | len");
    }
}
