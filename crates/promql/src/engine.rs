//! The query entry points: [`Engine::instant`] and [`Engine::range`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use promql_parser::parser::{Expr, value::ValueType};

use crate::annotations::Annotations;
use crate::error::{Error, Result};
use crate::eval::{Evaluator, Steps, to_value};
use crate::storage::Storage;
use crate::value::Value;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (`--query.lookback-delta`),
    /// in milliseconds. Default 5m.
    pub lookback_delta_ms: i64,
    /// Step of subqueries that do not give one (`--query.default-evaluation-interval`),
    /// in milliseconds. Default 1m.
    pub subquery_step_ms: i64,
    /// Allow experimental functions and aggregations
    /// (`--enable-feature=promql-experimental-functions`).
    pub experimental_functions: bool,
    /// Drop `__name__` only when the query finishes (Prometheus'
    /// `promql-delayed-name-removal` feature; off by default, on in Prometheus' test suite).
    pub delayed_name_removal: bool,
    /// The most points a query may hold at once (series × steps of one intermediate
    /// result); Prometheus' `--query.max-samples`, default 50,000,000.
    pub max_samples: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            subquery_step_ms: 60 * 1000,
            experimental_functions: false,
            delayed_name_removal: false,
            max_samples: 50_000_000,
        }
    }
}

/// A query's deadline and cancellation flag, checked as evaluation proceeds.
#[derive(Debug, Clone, Default)]
pub struct QueryContext {
    deadline: Option<Instant>,
    canceled: Arc<AtomicBool>,
}

impl QueryContext {
    /// A context without deadline.
    pub fn new() -> Self {
        QueryContext::default()
    }

    /// A context that times out after `timeout`.
    pub fn with_timeout(timeout: std::time::Duration) -> Self {
        QueryContext {
            deadline: Instant::now().checked_add(timeout),
            canceled: Arc::default(),
        }
    }

    /// Cancels the query; evaluation stops at its next check.
    pub fn cancel(&self) {
        self.canceled.store(true, Ordering::Relaxed);
    }

    /// Whether the query was canceled.
    pub fn is_canceled(&self) -> bool {
        self.canceled.load(Ordering::Relaxed)
    }

    pub(crate) fn check(&self, env: &'static str) -> Result<()> {
        if self.canceled.load(Ordering::Relaxed) {
            return Err(Error::Canceled(env));
        }
        if let Some(d) = self.deadline
            && Instant::now() >= d
        {
            return Err(Error::Timeout(env));
        }
        Ok(())
    }
}

/// A query's result and its annotations.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    /// The value.
    pub value: Value,
    /// Warnings (including storage warnings) and infos.
    pub annotations: Annotations,
}

/// The PromQL engine. Cheap to share; holds only settings.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    /// An engine with these settings.
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    /// The settings.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Parses a query and checks that it only uses enabled features.
    pub fn parse(&self, query: &str) -> Result<Expr> {
        crate::escapes::check_byte_escapes(query)?;
        let expr = promql_parser::parser::parse(query)
            .map_err(|e| Error::Parse(format!("parse error: {e}")))?;
        if !self.opts.experimental_functions {
            check_experimental(&expr)?;
        }
        Ok(expr)
    }

    /// Parses a series selector (the API's `match[]`) into matchers.
    pub fn parse_selector(&self, selector: &str) -> Result<Vec<strata_model::Matcher>> {
        match self.parse(selector)? {
            Expr::VectorSelector(vs) => crate::eval::selector_matchers(&vs),
            _ => Err(Error::Parse(format!(
                "parse error: {selector:?} is not a series selector"
            ))),
        }
    }

    /// The matchers of every selector in `query`, in the order they appear (the exemplars
    /// API asks for the series a query's selectors select).
    pub fn query_selectors(&self, query: &str) -> Result<Vec<Vec<strata_model::Matcher>>> {
        fn walk(e: &Expr, out: &mut Vec<Vec<strata_model::Matcher>>) -> Result<()> {
            match e {
                Expr::Aggregate(a) => {
                    walk(&a.expr, out)?;
                    if let Some(p) = &a.param {
                        walk(p, out)?;
                    }
                }
                Expr::Unary(u) => walk(&u.expr, out)?,
                Expr::Binary(b) => {
                    walk(&b.lhs, out)?;
                    walk(&b.rhs, out)?;
                }
                Expr::Paren(p) => walk(&p.expr, out)?,
                Expr::Subquery(s) => walk(&s.expr, out)?,
                Expr::VectorSelector(vs) => out.push(crate::eval::selector_matchers(vs)?),
                Expr::MatrixSelector(ms) => out.push(crate::eval::selector_matchers(&ms.vs)?),
                Expr::Call(c) => {
                    for a in &c.args.args {
                        walk(a, out)?;
                    }
                }
                Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.parse(query)?, &mut out)?;
        Ok(out)
    }

    /// Evaluates `query` at `t` (milliseconds).
    pub fn instant(
        &self,
        storage: &dyn Storage,
        query: &str,
        t: i64,
        ctx: &QueryContext,
    ) -> Result<QueryOutput> {
        let expr = self.parse(query)?;
        self.instant_expr(storage, &expr, t, ctx)
    }

    /// Evaluates `query` from `start` to `end` every `step` (milliseconds).
    pub fn range(
        &self,
        storage: &dyn Storage,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        ctx: &QueryContext,
    ) -> Result<QueryOutput> {
        let expr = self.parse(query)?;
        self.range_expr(storage, &expr, start, end, step, ctx)
    }

    /// Evaluates a parsed expression at `t`.
    pub fn instant_expr(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        t: i64,
        ctx: &QueryContext,
    ) -> Result<QueryOutput> {
        let steps = Steps {
            start: t,
            end: t,
            step: 1,
        };
        self.run(storage, expr, steps, true, ctx)
    }

    /// Evaluates a parsed expression over a range. The expression must be a scalar or an
    /// instant vector.
    pub fn range_expr(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        ctx: &QueryContext,
    ) -> Result<QueryOutput> {
        match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            other => {
                let name = match other {
                    ValueType::Matrix => "range vector",
                    _ => "string",
                };
                return Err(Error::BadQuery(format!(
                    "invalid expression type \"{name}\" for range query, must be Scalar or \
                     instant Vector"
                )));
            }
        }
        if step <= 0 {
            return Err(Error::BadQuery(
                "zero or negative query resolution step widths are not accepted. Try a \
                 positive integer"
                    .into(),
            ));
        }
        if end < start {
            return Err(Error::BadQuery(
                "end timestamp must not be before start time".into(),
            ));
        }
        let steps = Steps { start, end, step };
        self.run(storage, expr, steps, false, ctx)
    }

    /// Evaluates `expr` at `steps`. `instant` says which API asked: an instant query answers
    /// a vector or a scalar, a range query a matrix even over a single step (`start ==
    /// end`), as Prometheus answers them.
    fn run(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        steps: Steps,
        instant: bool,
        ctx: &QueryContext,
    ) -> Result<QueryOutput> {
        ctx.check("query execution")?;
        let step = if steps.is_instant() { 0 } else { steps.step };
        let started;
        let storage: &dyn Storage = if storage.selects_early() {
            started = crate::early::start(storage, &self.opts, ctx, expr, steps);
            &started
        } else {
            storage
        };
        let mut ev = Evaluator::new(storage, &self.opts, ctx, steps.start, steps.end, step);
        let v = ev.eval(expr, steps)?;
        let v = ev.finish(v)?;
        let value = to_value(v, steps, instant);
        ctx.check("expression evaluation")?;
        Ok(QueryOutput {
            value,
            annotations: ev.annos,
        })
    }
}

/// Refuses experimental functions and aggregations, as Prometheus does unless
/// `promql-experimental-functions` is enabled.
fn check_experimental(expr: &Expr) -> Result<()> {
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if op == "limitk" || op == "limit_ratio" {
                return Err(Error::Parse(
                    "parse error: limitk() and limit_ratio() are experimental and must be \
                     enabled with --enable-feature=promql-experimental-functions"
                        .into(),
                ));
            }
            check_experimental(&a.expr)?;
            if let Some(p) = &a.param {
                check_experimental(p)?;
            }
            Ok(())
        }
        Expr::Call(c) => {
            if c.func.experimental {
                return Err(Error::Parse(format!(
                    "parse error: function {:?} is not enabled",
                    c.func.name
                )));
            }
            c.args.args.iter().try_for_each(|a| check_experimental(a))
        }
        Expr::Binary(b) => {
            check_experimental(&b.lhs)?;
            check_experimental(&b.rhs)
        }
        Expr::Unary(u) => check_experimental(&u.expr),
        Expr::Paren(p) => check_experimental(&p.expr),
        Expr::Subquery(s) => check_experimental(&s.expr),
        _ => Ok(()),
    }
}
