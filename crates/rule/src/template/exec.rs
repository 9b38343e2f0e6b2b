//! Executes a parsed template: Go's `text/template` evaluation rules (pipelines, fields on maps
//! and structs with `missingkey=zero`, variables and their scopes, control structures) and its
//! builtin functions.

use std::rc::Rc;

use super::funcs::{self, Env, Param};
use super::gofmt;
use super::parse::{Arg, Branch, Command, List, Node, Number, Pipe, Tree};
use super::value::{GoMap, Value};

/// An execution error: where (byte offset), at which node (Go's `at <…>` context) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecError {
    /// The `define`d template that failed (None: the main one).
    pub(crate) template: Option<String>,
    pub(crate) pos: usize,
    pub(crate) context: String,
    pub(crate) msg: String,
}

/// How deep `{{template}}` calls may nest. Go allows 100000 but runs on growable stacks; ours is
/// a thread's fixed stack, and no alert text needs more than a handful of levels (see also
/// [`MAX_EXEC_NESTING`]).
const MAX_DEPTH: usize = 100;
/// How many nodes one execution may evaluate: recursive templates could otherwise run for an
/// exponentially long time inside the rule evaluation loop.
const MAX_STEPS: u64 = 1_000_000;
/// How deeply pipelines, control structures and template calls may nest while executing, all
/// counted together: each level recurses on the thread's stack (2 MiB for a test or tokio
/// thread; an unoptimised build overflowed it at 800 levels, so this keeps a 4x margin). The
/// parser allows 100 levels of nesting, so only recursive templates reach this.
const MAX_EXEC_NESTING: usize = 200;
/// The largest output one execution may produce (recursion can blow it up, too).
const MAX_OUTPUT: usize = 16 << 20;

type EResult<T> = Result<T, ExecError>;

/// What a list's execution ended with (`{{break}}`/`{{continue}}` unwind to the `range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

/// The node execution is at, for error messages (Go's `state.at`): errors name the node
/// evaluated last, which for a type error in an argument is the argument's innermost node.
#[derive(Debug, Clone, Copy)]
enum At<'a> {
    Start,
    Arg(&'a Arg, usize),
    Pipe(&'a Pipe),
    Command(&'a Command),
    Ident(&'a str, usize),
    Template(&'a str, usize),
}

impl At<'_> {
    fn pos(&self) -> usize {
        match self {
            At::Start => 0,
            At::Arg(_, pos) | At::Ident(_, pos) | At::Template(_, pos) => *pos,
            At::Pipe(p) => p.pos,
            At::Command(c) => c.pos,
        }
    }

    /// Go's `node.String()`.
    fn context(&self) -> String {
        match self {
            At::Start => String::new(),
            // A parenthesized pipeline shows without its parentheses when it is the node.
            At::Arg(Arg::Pipe(p), _) => p.to_string(),
            At::Pipe(p) => p.to_string(),
            At::Arg(a, _) => a.to_string(),
            At::Command(c) => c.to_string(),
            At::Ident(name, _) => (*name).to_owned(),
            At::Template(name, _) => format!("{{{{template {}}}}}", gofmt::quote(name, false)),
        }
    }
}

struct Exec<'a> {
    tree: &'a Tree,
    env: &'a Env<'a>,
    vars: Vec<(String, Value)>,
    out: String,
    depth: usize,
    steps: u64,
    /// Pipelines, control structures and template calls currently being executed.
    nesting: usize,
    at: At<'a>,
}

impl std::fmt::Debug for Exec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec")
            .field("depth", &self.depth)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

/// Runs `tree` with `dot` as data.
pub(crate) fn execute(tree: &Tree, env: &Env<'_>, dot: Value) -> EResult<String> {
    let mut exec = Exec {
        tree,
        env,
        vars: vec![("$".into(), dot.clone())],
        out: String::new(),
        depth: 0,
        steps: 0,
        nesting: 0,
        at: At::Start,
    };
    exec.walk(&dot, &tree.root)?;
    Ok(exec.out)
}

/// A number literal as Go's `idealConstant` types it where any type is accepted: floats are
/// only those written with a fraction, exponent or hex `p` exponent.
fn ideal_constant(n: &Number) -> Value {
    let lower = n.text.trim_start_matches(['+', '-']).to_ascii_lowercase();
    let hex_int = lower.starts_with("0x") && !lower.contains('p');
    match (n.int, n.float) {
        (Some(i), _) if n.is_char || hex_int || !lower.contains(['.', 'e', 'p']) => Value::Int(i),
        (_, Some(f)) => Value::Float(f),
        (Some(i), None) => Value::Int(i),
        (None, None) => Value::Nil,
    }
}

impl<'a> Exec<'a> {
    /// An error at the current node.
    fn fail<T>(&self, msg: impl Into<String>) -> EResult<T> {
        Err(ExecError {
            template: None,
            pos: self.at.pos(),
            context: self.at.context(),
            msg: msg.into(),
        })
    }

    fn step(&mut self) -> EResult<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return self.fail(format!("template execution exceeded {MAX_STEPS} steps"));
        }
        if self.out.len() > MAX_OUTPUT {
            return self.fail(format!("template output exceeded {MAX_OUTPUT} bytes"));
        }
        Ok(())
    }

    /// Runs `f` one nesting level deeper, within [`MAX_EXEC_NESTING`].
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> EResult<T>) -> EResult<T> {
        if self.nesting >= MAX_EXEC_NESTING {
            return self.fail(format!(
                "template execution nested more than {MAX_EXEC_NESTING} levels deep"
            ));
        }
        self.nesting += 1;
        let result = f(self);
        self.nesting -= 1;
        result
    }

    fn walk(&mut self, dot: &Value, list: &'a List) -> EResult<Flow> {
        for node in list {
            let flow = self.walk_node(dot, node)?;
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn walk_node(&mut self, dot: &Value, node: &'a Node) -> EResult<Flow> {
        self.step()?;
        match node {
            Node::Text(t) => self.out.push_str(t),
            Node::Action(pipe) => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.print_value(&v);
                }
            }
            Node::If(b) => return self.nested(|s| s.walk_if_or_with(dot, b, false)),
            Node::With(b) => return self.nested(|s| s.walk_if_or_with(dot, b, true)),
            Node::Range(b) => return self.nested(|s| s.walk_range(dot, b)),
            Node::Template { pos, name, pipe } => {
                self.at = At::Template(name, *pos);
                let Some(list) = self.tree.defines.get(name) else {
                    return self.fail(format!(
                        "template {} not defined",
                        gofmt::quote(name, false)
                    ));
                };
                if self.depth >= MAX_DEPTH {
                    return self.fail(format!("exceeded maximum template depth ({MAX_DEPTH})"));
                }
                let new_dot = match pipe {
                    Some(p) => self.eval_pipeline(dot, p)?,
                    None => Value::Nil,
                };
                self.depth += 1;
                let saved = std::mem::replace(&mut self.vars, vec![("$".into(), new_dot.clone())]);
                let result = self.nested(|s| s.walk(&new_dot, list)).map_err(|mut e| {
                    e.template.get_or_insert_with(|| name.clone());
                    e
                });
                self.vars = saved;
                self.depth -= 1;
                result?;
            }
            Node::Break(_) => return Ok(Flow::Break),
            Node::Continue(_) => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn walk_if_or_with(&mut self, dot: &Value, b: &'a Branch, is_with: bool) -> EResult<Flow> {
        let mark = self.vars.len();
        let result = (|| {
            let v = self.eval_pipeline(dot, &b.pipe)?;
            if v.truth() {
                self.walk(if is_with { &v } else { dot }, &b.list)
            } else if let Some(else_list) = &b.else_list {
                self.walk(dot, else_list)
            } else {
                Ok(Flow::Normal)
            }
        })();
        self.vars.truncate(mark);
        result
    }

    fn walk_range(&mut self, dot: &Value, b: &'a Branch) -> EResult<Flow> {
        let mark = self.vars.len();
        let result = self.walk_range_inner(dot, b, mark);
        self.vars.truncate(mark);
        result
    }

    fn walk_range_inner(&mut self, dot: &Value, b: &'a Branch, mark: usize) -> EResult<Flow> {
        let v = self.eval_pipeline(dot, &b.pipe)?;
        let items: Vec<(Value, Value)> = match &v {
            Value::Map(m) => m
                .entries
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
                .collect(),
            Value::Samples(s) => s
                .iter()
                .enumerate()
                .map(|(i, s)| (Value::Int(i as i64), Value::Sample(s.clone())))
                .collect(),
            Value::Nil => Vec::new(),
            other => {
                let mut shown = String::new();
                gofmt::sprint_value(&mut shown, other);
                return self.fail(format!("range can't iterate over {shown}"));
            }
        };
        if items.is_empty() {
            return match &b.else_list {
                Some(list) => self.walk(dot, list),
                None => Ok(Flow::Normal),
            };
        }
        for (key, elem) in items {
            self.step()?;
            // One variable gets the element; two get the key (or index) and the element.
            let assigned = match b.pipe.decl.len() {
                1 => vec![elem.clone()],
                2 => vec![key, elem.clone()],
                _ => Vec::new(),
            };
            for (name, value) in b.pipe.decl.iter().zip(assigned) {
                if b.pipe.is_assign {
                    self.set_var(name, value)?;
                } else if let Some(slot) = self.vars[mark..].iter_mut().find(|(n, _)| n == name) {
                    slot.1 = value;
                }
            }
            let body_mark = self.vars.len();
            let flow = self.walk(&elem, &b.list);
            self.vars.truncate(body_mark);
            if flow? == Flow::Break {
                break;
            }
        }
        Ok(Flow::Normal)
    }

    /// Go's `printValue`: missing values print `<no value>`, pointers print what they point to.
    fn print_value(&mut self, v: &Value) {
        match v {
            Value::Nil => self.out.push_str("<no value>"),
            Value::Sample(s) => gofmt::sprint_sample(&mut self.out, s),
            other => gofmt::sprint_value(&mut self.out, other),
        }
    }

    fn lookup_var(&self, name: &str) -> EResult<Value> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => self.fail(format!("undefined variable: {name}")),
        }
    }

    fn set_var(&mut self, name: &str, value: Value) -> EResult<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = value;
                Ok(())
            }
            None => self.fail(format!("undefined variable: {name}")),
        }
    }

    fn eval_pipeline(&mut self, dot: &Value, pipe: &'a Pipe) -> EResult<Value> {
        self.nested(|s| s.eval_pipeline_inner(dot, pipe))
    }

    fn eval_pipeline_inner(&mut self, dot: &Value, pipe: &'a Pipe) -> EResult<Value> {
        self.at = At::Pipe(pipe);
        let mut value = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, value.clone())?;
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, args: &[Arg], final_value: &Option<Value>) -> EResult<()> {
        if args.len() > 1 || final_value.is_some() {
            return self.fail(format!("can't give argument to non-function {}", args[0]));
        }
        Ok(())
    }

    fn eval_command(
        &mut self,
        dot: &Value,
        cmd: &'a Command,
        final_value: Option<Value>,
    ) -> EResult<Value> {
        self.step()?;
        let first = &cmd.args[0];
        let first_pos = cmd.arg_pos.first().copied().unwrap_or(cmd.pos);
        match first {
            Arg::Field { names, .. } => {
                self.at = At::Arg(first, first_pos);
                self.eval_fields(dot, dot.clone(), names, cmd, final_value)
            }
            Arg::Variable { name, fields, .. } => {
                self.at = At::Arg(first, first_pos);
                let v = self.lookup_var(name)?;
                if fields.is_empty() {
                    self.not_a_function(&cmd.args, &final_value)?;
                    return Ok(v);
                }
                self.eval_fields(dot, v, fields, cmd, final_value)
            }
            Arg::Chain { node, fields, .. } => {
                self.at = At::Arg(first, first_pos);
                let v = self.eval_arg(dot, node, node.pos(first_pos))?;
                self.eval_fields(dot, v, fields, cmd, final_value)
            }
            Arg::Ident { pos, name } => {
                self.at = At::Ident(name, *pos);
                self.call(
                    dot,
                    name,
                    At::Command(cmd),
                    &cmd.args[1..],
                    &cmd.arg_pos[1..],
                    final_value,
                )
            }
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &final_value)?;
                self.eval_pipeline(dot, p)
            }
            literal => {
                self.at = At::Arg(literal, first_pos);
                self.not_a_function(&cmd.args, &final_value)?;
                match literal {
                    Arg::Str { value, .. } => Ok(Value::Str(value.clone())),
                    Arg::Number(n) => Ok(ideal_constant(n)),
                    Arg::Bool(b) => Ok(Value::Bool(*b)),
                    _ => self.fail("nil is not a command"),
                }
            }
        }
    }

    /// Walks `names` from `receiver`; arguments (the command's, and the piped value) can only go
    /// to the last one, and only `time.Time.Format` takes any.
    fn eval_fields(
        &mut self,
        dot: &Value,
        receiver: Value,
        names: &[String],
        cmd: &'a Command,
        final_value: Option<Value>,
    ) -> EResult<Value> {
        let has_args = cmd.args.len() > 1 || final_value.is_some();
        if names.is_empty() {
            if has_args {
                return self.fail("can't give argument to non-function .");
            }
            return Ok(receiver);
        }
        let mut v = receiver;
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            if let (Value::Time(t), true, "Format") = (&v, last, name.as_str()) {
                let t = *t;
                let mut args = Vec::new();
                for (arg, pos) in cmd.args[1..].iter().zip(&cmd.arg_pos[1..]) {
                    args.push(self.eval_arg(dot, arg, *pos)?);
                }
                args.extend(final_value.clone());
                return match args.as_slice() {
                    [Value::Str(layout)] => Ok(Value::Str(gofmt::format_time_layout(t, layout))),
                    [other] => self.fail(format!(
                        "wrong type for value; expected string; got {}",
                        other.type_name()
                    )),
                    _ => self.fail(format!(
                        "wrong number of args for Format: want 1 got {}",
                        args.len()
                    )),
                };
            }
            v = match field(v, name, last && has_args) {
                Ok(v) => v,
                Err(msg) => return self.fail(msg),
            };
        }
        Ok(v)
    }

    /// Evaluates an argument where any type is accepted (Go's `evalArg` with `interface{}`).
    fn eval_arg(&mut self, dot: &Value, arg: &'a Arg, pos: usize) -> EResult<Value> {
        self.step()?;
        self.at = At::Arg(arg, pos);
        match arg {
            Arg::Field { names, .. } => self.walk_fields(dot.clone(), names),
            Arg::Variable { name, fields, .. } => {
                let v = self.lookup_var(name)?;
                self.walk_fields(v, fields)
            }
            Arg::Chain { node, fields, .. } => {
                let v = self.eval_arg(dot, node, node.pos(pos))?;
                self.walk_fields(v, fields)
            }
            Arg::Ident { name, .. } => {
                self.at = At::Ident(name, pos);
                self.call(dot, name, At::Ident(name, pos), &[], &[], None)
            }
            Arg::Pipe(p) => self.eval_pipeline(dot, p),
            Arg::Str { value, .. } => Ok(Value::Str(value.clone())),
            Arg::Number(n) => Ok(ideal_constant(n)),
            Arg::Bool(b) => Ok(Value::Bool(*b)),
            Arg::Nil => Ok(Value::Nil),
        }
    }

    /// Fields (without arguments) of a value.
    fn walk_fields(&self, mut v: Value, names: &[String]) -> EResult<Value> {
        for name in names {
            v = match field(v, name, false) {
                Ok(v) => v,
                Err(msg) => return self.fail(msg),
            };
        }
        Ok(v)
    }

    /// Evaluates an argument for a parameter of type `param`, with Go's type checks; errors
    /// name the node evaluated last, as Go's do.
    fn eval_typed_arg(
        &mut self,
        dot: &Value,
        arg: &'a Arg,
        pos: usize,
        param: Param,
    ) -> EResult<Value> {
        self.at = At::Arg(arg, pos);
        match (param, arg) {
            (Param::Str, Arg::Nil) => self.fail("cannot assign nil to string"),
            (Param::Str, Arg::Number(_) | Arg::Bool(_)) => {
                self.fail(format!("expected string; found {arg}"))
            }
            (Param::Sample | Param::Samples, Arg::Number(_) | Arg::Bool(_) | Arg::Str { .. }) => {
                self.fail(format!(
                    "can't handle {arg} for arg of type {}",
                    param.go_type()
                ))
            }
            _ => {
                let v = self.eval_arg(dot, arg, pos)?;
                match validate(v, param, !is_nil_interface_source(arg)) {
                    Ok(v) => Ok(v),
                    Err(msg) => self.fail(msg),
                }
            }
        }
    }

    /// Calls function `name`; `node` is what a failing call is reported at (the command, or
    /// the identifier when the function is an argument).
    fn call(
        &mut self,
        dot: &Value,
        name: &str,
        node: At<'a>,
        args: &'a [Arg],
        arg_pos: &'a [usize],
        final_value: Option<Value>,
    ) -> EResult<Value> {
        let n_args = args.len() + usize::from(final_value.is_some());
        let pos_of = |i: usize| arg_pos.get(i).copied().unwrap_or(node.pos());
        if name == "and" || name == "or" {
            // Short-circuit: later arguments are not evaluated once the result is known.
            if n_args == 0 {
                return self.fail(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                ));
            }
            let mut v = Value::Nil;
            for (i, arg) in args.iter().enumerate() {
                v = self.eval_arg(dot, arg, pos_of(i))?;
                if v.truth() != (name == "and") {
                    return Ok(v);
                }
            }
            if let Some(f) = final_value {
                v = f;
            }
            return Ok(v);
        }
        let Some(sig) = funcs::signature(name) else {
            return self.fail(format!("{name:?} is not a defined function"));
        };
        match sig.variadic {
            Some(_) if n_args < sig.params.len() => {
                return self.fail(format!(
                    "wrong number of args for {name}: want at least {} got {}",
                    sig.params.len(),
                    args.len()
                ));
            }
            None if n_args != sig.params.len() => {
                return self.fail(format!(
                    "wrong number of args for {name}: want {} got {n_args}",
                    sig.params.len()
                ));
            }
            _ => {}
        }
        let param_of = |i: usize| {
            sig.params
                .get(i)
                .copied()
                .or(sig.variadic)
                .unwrap_or(Param::Any)
        };
        let mut values = Vec::with_capacity(n_args);
        // Which arguments are nil interfaces rather than Go's invalid (untyped) nil: a few
        // builtins word their errors differently for the two.
        let mut nil_interface = Vec::with_capacity(n_args);
        for (i, arg) in args.iter().enumerate() {
            let v = self.eval_typed_arg(dot, arg, pos_of(i), param_of(i))?;
            nil_interface.push(matches!(v, Value::Nil) && is_nil_interface_source(arg));
            values.push(v);
        }
        nil_interface.resize(n_args, false);
        if let Some(f) = final_value {
            match validate(f, param_of(n_args - 1), true) {
                Ok(v) => values.push(v),
                Err(msg) => return self.fail(msg),
            }
        }
        let result = match name {
            "eq" => eq(&values[0], &values[1..]).map(Value::Bool),
            "ne" => eq(&values[0], &values[1..2]).map(|b| Value::Bool(!b)),
            "lt" => less_than(&values[0], &values[1]).map(Value::Bool),
            "le" => less_or_equal(&values[0], &values[1]).map(Value::Bool),
            "gt" => less_or_equal(&values[0], &values[1]).map(|b| Value::Bool(!b)),
            "ge" => less_than(&values[0], &values[1]).map(|b| Value::Bool(!b)),
            "not" => Ok(Value::Bool(!values[0].truth())),
            "len" if nil_interface[0] => Err("len of nil pointer".into()),
            "len" => length(&values[0]),
            "index" => index(&values[0], &values[1..]),
            "slice" => slice(&values[0], &values[1..], &nil_interface[1..]),
            "print" => Ok(Value::Str(gofmt::sprint(&values))),
            "println" => Ok(Value::Str(gofmt::sprintln(&values))),
            "printf" => match &values[0] {
                Value::Str(f) => Ok(Value::Str(gofmt::sprintf(f, &values[1..]))),
                _ => Err("printf format is not a string".into()),
            },
            "html" => Ok(Value::Str(html_escape(&eval_args(&values)))),
            "js" => Ok(Value::Str(js_escape(&eval_args(&values)))),
            "urlquery" => Ok(Value::Str(funcs::query_escape(&eval_args(&values)))),
            _ => funcs::call(self.env, name, values),
        };
        result.or_else(|msg| {
            self.at = node;
            self.fail(format!("error calling {name}: {msg}"))
        })
    }
}

/// Whether a nil from this argument is a nil interface: a field or key looked up directly (in a
/// `map[string]interface{}`). Go turns a nil interface coming out of a pipeline (a previous
/// command, parentheses, a variable) into an invalid value, like the `nil` literal; the two are
/// reported differently.
fn is_nil_interface_source(arg: &Arg) -> bool {
    match arg {
        Arg::Field { .. } | Arg::Chain { .. } => true,
        Arg::Variable { fields, .. } => !fields.is_empty(),
        _ => false,
    }
}

/// Go's `validateType` for the parameter types our functions have. `piped`: the value came out
/// of a pipeline (a previous command, parentheses, a variable), where Go turns a nil interface
/// into an invalid value, which it reports differently.
fn validate(v: Value, param: Param, piped: bool) -> Result<Value, String> {
    match (param, v) {
        (Param::Any, v) => Ok(v),
        (Param::Str, Value::Str(s)) => Ok(Value::Str(s)),
        (Param::Str, Value::Nil) if piped => Err("invalid value; expected string".into()),
        // A nil interface straight from a map (a missing `args` entry).
        (Param::Str, Value::Nil) => {
            Err("wrong type for value; expected string; got interface {}".into())
        }
        (Param::Sample, v @ Value::Sample(_)) => Ok(v),
        // A nil pointer is a valid argument (the function then fails on it); a nil interface
        // from a map is not.
        (Param::Sample, Value::Nil) if piped => Ok(Value::Nil),
        (Param::Samples, v @ Value::Samples(_)) => Ok(v),
        (Param::Samples, Value::Nil) if piped => Ok(Value::Samples(Rc::new(Vec::new()))),
        (param, v) => Err(format!(
            "wrong type for value; expected {}; got {}",
            param.go_type(),
            // A nil that is not piped is a nil interface (from a map).
            if matches!(v, Value::Nil) {
                "interface {}"
            } else {
                v.type_name()
            }
        )),
    }
}

/// A field (struct member or map key) of a value, as Go's `evalField` finds it.
fn field(receiver: Value, name: &str, has_args: bool) -> Result<Value, String> {
    let not_method = || {
        Err(format!(
            "{name} has arguments but cannot be invoked as function"
        ))
    };
    match &receiver {
        Value::Map(m) => {
            if has_args {
                return Err(format!("{name} is not a method but has arguments"));
            }
            Ok(m.get(name))
        }
        Value::Data(d) => {
            let v = match name {
                "Labels" => Value::Map(d.labels.clone()),
                "ExternalLabels" => Value::Map(d.external_labels.clone()),
                "ExternalURL" => Value::Str(d.external_url.clone()),
                "Value" => Value::Float(d.value),
                _ => {
                    return Err(format!(
                        "can't evaluate field {name} in type {}",
                        receiver.type_name()
                    ));
                }
            };
            if has_args { not_method() } else { Ok(v) }
        }
        Value::Sample(s) => {
            let v = match name {
                "Labels" => Value::Map(s.labels.clone()),
                "Value" => Value::Float(s.value),
                _ => {
                    return Err(format!(
                        "can't evaluate field {name} in type {}",
                        receiver.type_name()
                    ));
                }
            };
            if has_args { not_method() } else { Ok(v) }
        }
        Value::Time(t) => {
            if has_args {
                return Err(format!("wrong number of args for {name}: want 0 got 1"));
            }
            time_method(*t, name).ok_or_else(|| {
                format!(
                    "can't evaluate field {name} in type {}",
                    receiver.type_name()
                )
            })
        }
        // missingkey=zero: a field of a missing value is missing too.
        Value::Nil => Ok(Value::Nil),
        other => Err(format!(
            "can't evaluate field {name} in type {}",
            other.type_name()
        )),
    }
}

/// The argument-less `time.Time` methods (what `toTime` results are for). `Month` and
/// `Weekday` give their names, which is how Go prints them.
fn time_method(t: super::value::GoTime, name: &str) -> Option<Value> {
    let secs = i128::from(t.secs);
    let nanos = i128::from(t.nanos);
    let c = gofmt::civil(t);
    Some(match name {
        "Unix" => Value::Int(t.secs),
        "UnixMilli" => Value::Int((secs * 1000 + nanos / 1_000_000) as i64),
        "UnixMicro" => Value::Int((secs * 1_000_000 + nanos / 1000) as i64),
        "UnixNano" => Value::Int((secs * 1_000_000_000 + nanos) as i64),
        "Year" => Value::Int(c.year),
        "YearDay" => Value::Int(c.year_day),
        "Month" => Value::Str(gofmt::month_name(c.month).to_owned()),
        "Weekday" => Value::Str(gofmt::weekday_name(c.weekday).to_owned()),
        "Day" => Value::Int(i64::from(c.day)),
        "Hour" => Value::Int(c.hour),
        "Minute" => Value::Int(c.minute),
        "Second" => Value::Int(c.second),
        "Nanosecond" => Value::Int(i64::from(t.nanos)),
        "UTC" | "Local" => Value::Time(t),
        "String" => Value::Str(gofmt::format_time(t)),
        "IsZero" => Value::Bool(false),
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Float,
    Str,
    /// Maps, pointers, slices, structs: no basic kind.
    Other,
}

fn basic_kind(v: &Value) -> Kind {
    match v {
        Value::Nil => Kind::Invalid,
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) | Value::Byte(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Str(_) | Value::Html(_) => Kind::Str,
        _ => Kind::Other,
    }
}

const BAD_COMPARISON: &str = "incompatible types for comparison";
const BAD_COMPARISON_TYPE: &str = "invalid type for comparison";

/// Go's `eq`: true if `a` equals any of `rest`.
fn eq(a: &Value, rest: &[Value]) -> Result<bool, String> {
    if rest.is_empty() {
        return Err("missing argument for comparison".into());
    }
    let k1 = basic_kind(a);
    for b in rest {
        let k2 = basic_kind(b);
        let normalized = |k| if k == Kind::Other { Kind::Invalid } else { k };
        let truth = if normalized(k1) != normalized(k2) {
            if k1 != Kind::Invalid && k2 != Kind::Invalid {
                return Err(BAD_COMPARISON.into());
            }
            false
        } else {
            match (a, b) {
                (Value::Bool(x), Value::Bool(y)) => x == y,
                (x, y) if x.integer().is_some() => x.integer() == y.integer(),
                (Value::Float(x), Value::Float(y)) => x == y,
                (Value::Str(x) | Value::Html(x), Value::Str(y) | Value::Html(y)) => x == y,
                (Value::Nil, other) | (other, Value::Nil) => matches!(other, Value::Nil),
                // Different reflect kinds (a map and a struct, say) cannot be compared at all.
                (x, y) if reflect_kind(x) != reflect_kind(y) => {
                    let mut y_shown = String::new();
                    gofmt::sprint_value(&mut y_shown, y);
                    return Err(format!(
                        "non-comparable types {}: {}, {}: {y_shown}",
                        gofmt::sprintf("%s", std::slice::from_ref(x)),
                        x.type_name(),
                        y.type_name()
                    ));
                }
                // Go checks the second operand's type for comparability, then compares
                // interfaces: values of different types are simply unequal.
                (_, y @ (Value::Map(_) | Value::Samples(_) | Value::Data(_))) => {
                    let mut shown = String::new();
                    gofmt::sprint_value(&mut shown, y);
                    return Err(format!("non-comparable type {shown}: {}", y.type_name()));
                }
                (Value::Sample(x), Value::Sample(y)) => Rc::ptr_eq(x, y),
                (Value::Time(x), Value::Time(y)) => x == y,
                _ => false,
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The reflect kind of a value without a basic kind, for `eq`'s comparability check.
fn reflect_kind(v: &Value) -> &'static str {
    match v {
        Value::Map(_) => "map",
        Value::Data(_) => "struct",
        Value::Samples(_) => "slice",
        _ => "ptr",
    }
}

/// Go's `lt`.
fn less_than(a: &Value, b: &Value) -> Result<bool, String> {
    let (k1, k2) = (basic_kind(a), basic_kind(b));
    if matches!(k1, Kind::Invalid | Kind::Other) || matches!(k2, Kind::Invalid | Kind::Other) {
        return Err(BAD_COMPARISON_TYPE.into());
    }
    if k1 != k2 {
        return Err(BAD_COMPARISON.into());
    }
    match (a, b) {
        (x, y) if x.integer().is_some() => Ok(x.integer() < y.integer()),
        (Value::Float(x), Value::Float(y)) => Ok(x < y),
        (Value::Str(x) | Value::Html(x), Value::Str(y) | Value::Html(y)) => Ok(x < y),
        _ => Err(BAD_COMPARISON_TYPE.into()),
    }
}

/// Go's `le` (`lt` or `eq`; `gt` is its negation, which makes `gt NaN 1` true as in Go).
fn less_or_equal(a: &Value, b: &Value) -> Result<bool, String> {
    if less_than(a, b)? {
        return Ok(true);
    }
    eq(a, std::slice::from_ref(b))
}

fn length(v: &Value) -> Result<Value, String> {
    match v {
        Value::Str(s) | Value::Html(s) => Ok(Value::Int(s.len() as i64)),
        Value::Map(m) => Ok(Value::Int(m.entries.len() as i64)),
        Value::Samples(s) => Ok(Value::Int(s.len() as i64)),
        Value::Nil => Err("reflect: call of reflect.Value.Type on zero Value".into()),
        // len follows pointers.
        Value::Sample(_) => Err("len of type template.sample".into()),
        Value::Time(_) => Err("len of type time.Time".into()),
        other => Err(format!("len of type {}", other.type_name())),
    }
}

/// Go's `indexArg`: an integer index no larger than `cap`.
fn index_arg(v: &Value, cap: usize) -> Result<usize, String> {
    match v.integer() {
        Some(x) if x < 0 || x as u64 > cap as u64 => Err(format!("index out of range: {x}")),
        Some(x) => Ok(x as usize),
        None => match v {
            Value::Nil => Err("cannot index slice/array with nil".into()),
            other => Err(format!(
                "cannot index slice/array with type {}",
                other.type_name()
            )),
        },
    }
}

fn index(item: &Value, indexes: &[Value]) -> Result<Value, String> {
    let mut item = item.clone();
    if matches!(item, Value::Nil) {
        return Err("index of untyped nil".into());
    }
    for idx in indexes {
        item = match &item {
            Value::Str(s) | Value::Html(s) => {
                let i = index_arg(idx, s.len())?;
                // A Go string index yields a byte (uint8), printed as a number.
                match s.as_bytes().get(i) {
                    Some(b) => Value::Byte(*b),
                    None => return Err("reflect: string index out of range".into()),
                }
            }
            Value::Samples(samples) => {
                let i = index_arg(idx, samples.len())?;
                match samples.get(i) {
                    Some(s) => Value::Sample(s.clone()),
                    None => return Err("reflect: slice index out of range".into()),
                }
            }
            Value::Map(m) => match idx {
                Value::Str(k) => m.get(k),
                Value::Nil => return Err("value is nil; should be of type string".into()),
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    ));
                }
            },
            Value::Nil => return Err("index of nil pointer".into()),
            // index follows pointers: a *time.Time is a time.Time here.
            Value::Time(_) => return Err("can't index item of type time.Time".into()),
            Value::Sample(_) => return Err("can't index item of type template.sample".into()),
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

/// Go's `slice`; `nil_interface` marks the indexes that are nil interfaces (unlike `index`,
/// `slice` does not unwrap them, so they are reported by their type).
fn slice(item: &Value, indexes: &[Value], nil_interface: &[bool]) -> Result<Value, String> {
    if matches!(item, Value::Nil) {
        return Err("slice of untyped nil".into());
    }
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    let len = match item {
        Value::Str(s) | Value::Html(s) => {
            if indexes.len() == 3 {
                return Err("cannot 3-index slice a string".into());
            }
            s.len()
        }
        Value::Samples(s) => s.len(),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let mut idx = [0, len, len];
    for (i, v) in indexes.iter().enumerate() {
        if nil_interface.get(i) == Some(&true) {
            return Err("cannot index slice/array with type interface {}".into());
        }
        idx[i] = index_arg(v, len)?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    Ok(match item {
        Value::Str(s) => {
            Value::Str(String::from_utf8_lossy(&s.as_bytes()[idx[0]..idx[1]]).into_owned())
        }
        Value::Html(s) => {
            Value::Html(String::from_utf8_lossy(&s.as_bytes()[idx[0]..idx[1]]).into_owned())
        }
        Value::Samples(s) => Value::Samples(Rc::new(s[idx[0]..idx[1]].to_vec())),
        _ => Value::Nil,
    })
}

/// Go's `evalArgs` for `html`, `js` and `urlquery`: one string as is, else `fmt.Sprint`.
fn eval_args(values: &[Value]) -> String {
    match values {
        [Value::Str(s)] => s.clone(),
        _ => {
            // printableValue: nil prints as <no value> here too; pointers are followed.
            let printable: Vec<Value> = values
                .iter()
                .map(|v| match v {
                    Value::Nil => Value::Str("<no value>".into()),
                    Value::Sample(s) => {
                        let mut out = String::new();
                        gofmt::sprint_sample(&mut out, s);
                        Value::Str(out)
                    }
                    other => other.clone(),
                })
                .collect();
            // Keep Sprint's spacing decision on the original kinds.
            let mut out = String::new();
            let mut prev_string = false;
            for (i, (orig, v)) in values.iter().zip(&printable).enumerate() {
                let is_string = orig.string_kind().is_some();
                if i > 0 && !is_string && !prev_string {
                    out.push(' ');
                }
                gofmt::sprint_value(&mut out, v);
                prev_string = is_string;
            }
            out
        }
    }
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn js_escape(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 || (!c.is_ascii() && !gofmt::is_print(c)) => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The alert data as a template value.
pub(crate) fn data_value(data: &super::TemplateData) -> Value {
    let labels = |l: &strata_model::Labels| {
        Rc::new(GoMap::strings(
            l.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        ))
    };
    Value::Data(Rc::new(super::value::DataValue {
        labels: labels(&data.labels),
        external_labels: labels(&data.external_labels),
        external_url: data.external_url.clone(),
        value: data.value,
    }))
}
