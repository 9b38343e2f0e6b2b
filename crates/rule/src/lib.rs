//! The ruler (`strata rule`): Prometheus recording and alerting rules evaluated against
//! queriers, as Thanos' ruler does.
//!
//! The pieces, each in its own module:
//! - [`rulefmt`]: the rule files, read as strictly as Prometheus reads them;
//! - [`query`]: the queriers the rules are evaluated against (Thanos' discovery flags);
//! - [`alerting`]: alert state across evaluations (pending, firing, resolved);
//! - [`group`]: a group's evaluation, its schedule and its staleness bookkeeping;
//! - [`manager`]: the groups' evaluation loops, reloads, and the Rules API snapshot;
//! - [`template`]: the Go `text/template` dialect that Prometheus expands alert labels and
//!   annotations with;
//! - [`notifier`]: the Alertmanager notifier (Thanos' queue and sender);
//! - [`remote_write`]: recorded series to remote-write receivers (Thanos' stateless mode);
//! - [`storage`]: recorded series in a local TSDB served over the Store API (Thanos' stateful
//!   mode).
//!
//! The manager talks to the rest through three narrow traits ([`Querier`], [`Appender`],
//! [`AlertSink`]), so the Alertmanager notifier, remote write or a local TSDB plug in without
//! the evaluation knowing which.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use strata_model::Labels;

pub mod alerting;
pub mod group;
pub mod manager;
pub mod metrics;
pub mod notifier;
pub mod query;
pub mod remote_write;
pub mod rulefmt;
pub mod storage;
pub mod template;

use alerting::AlertToSend;
use metrics::RuleMetrics;
use query::QueryAnswer;
use rulefmt::PartialResponseStrategy;

/// One sample a rule produced, as handed to storage.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSample {
    pub labels: Labels,
    pub timestamp_ms: i64,
    /// Bit-exact: a stale marker is [`group::STALE_NAN`].
    pub value: f64,
}

/// Where rules' expressions are evaluated.
#[async_trait::async_trait]
pub trait Querier: Send + Sync + fmt::Debug {
    /// The instant vector `expr` gives at `ts_ms`, under the group's partial response
    /// strategy.
    async fn instant(
        &self,
        expr: &str,
        ts_ms: i64,
        strategy: PartialResponseStrategy,
    ) -> Result<QueryAnswer, String>;
}

#[async_trait::async_trait]
impl Querier for query::QueryClient {
    async fn instant(
        &self,
        expr: &str,
        ts_ms: i64,
        strategy: PartialResponseStrategy,
    ) -> Result<QueryAnswer, String> {
        query::QueryClient::instant(self, expr, ts_ms, strategy)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Where alerts' `for` state is read back after a restart: the last `ALERTS_FOR_STATE` sample
/// of an alert before it (the ruler's own TSDB, or the queriers in stateless mode).
#[async_trait::async_trait]
pub trait ForStateSource: Send + Sync + fmt::Debug {
    /// The last sample `(ms, value)` of exactly `series` in `[mint_ms, maxt_ms]`, if any.
    async fn last_sample(
        &self,
        series: &Labels,
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Option<(i64, f64)>, String>;
}

/// How `for` state is restored when the ruler starts (Prometheus' `RestoreForState`).
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub source: Arc<dyn ForStateSource>,
    /// `--for-outage-tolerance`: how far back an alert's state is looked for.
    pub outage_tolerance: Duration,
    /// `--for-grace-period`: the least time an alert waits after a restart before it fires;
    /// alerts whose `for` is shorter are not restored at all.
    pub for_grace_period: Duration,
}

/// Where recorded series (and `ALERTS`) go. Never blocks: evaluation must keep its schedule.
pub trait Appender: Send + Sync + fmt::Debug {
    fn append(&self, samples: Vec<RecordedSample>);
}

impl Appender for remote_write::RemoteWriter {
    fn append(&self, samples: Vec<RecordedSample>) {
        remote_write::RemoteWriter::append(self, samples);
    }
}

/// Where due alerts go (the Alertmanager notifier). Never blocks.
pub trait AlertSink: Send + Sync + fmt::Debug {
    /// `generator_url`: the link back to the rule's expression.
    fn send(&self, alerts: Vec<AlertToSend>, generator_url: &str);
}

impl AlertSink for notifier::Notifier {
    fn send(&self, alerts: Vec<AlertToSend>, generator_url: &str) {
        notifier::Notifier::send(
            self,
            alerts
                .into_iter()
                .map(|a| notifier::Alert {
                    labels: a.labels,
                    annotations: a.annotations,
                    starts_at_ms: a.starts_at_ms,
                    ends_at_ms: Some(a.ends_at_ms),
                    generator_url: generator_url.to_owned(),
                })
                .collect(),
        );
    }
}

/// The ruler's settings that evaluation reads.
#[derive(Debug, Clone)]
pub struct RuleOptions {
    /// `--label`: the ruler's external labels (templates' `$externalLabels`).
    pub external_labels: Labels,
    /// `--alert.query-url`: templates' `$externalURL`.
    pub external_url: String,
    /// `--alert.query-url` and `--alert.query-template`: alerts' links back to their rule.
    pub generator: GeneratorUrl,
    /// `--eval-interval`: the interval of groups without one of their own.
    pub eval_interval: Duration,
    /// `--rule-query-offset`.
    pub query_offset: Duration,
    /// `--resend-delay`.
    pub resend_delay: Duration,
    /// Restoring `for` state at start-up; `None` starts every alert afresh.
    pub restore: Option<RestoreOptions>,
    /// `--enable-feature=promql-experimental-functions`: rule files may use them.
    pub experimental_functions: bool,
}

/// What evaluation depends on, shared by every group.
#[derive(Debug)]
pub struct Deps {
    pub querier: Arc<dyn Querier>,
    pub appender: Arc<dyn Appender>,
    pub alerts: Arc<dyn AlertSink>,
    pub options: RuleOptions,
    pub metrics: RuleMetrics,
    /// `--rule-concurrent-evaluation` above 1: the slots, shared by every group, for rules
    /// evaluated beside the others (see [`group::Group::eval`]); `None` evaluates every
    /// rule in order.
    pub rule_slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl Deps {
    /// The generator URL of alerts from `expr`.
    pub fn generator_url(&self, expr: &str) -> String {
        self.options.generator.url(expr)
    }
}

/// Alerts' generator URL: `--alert.query-url` followed by `--alert.query-template`, whose
/// `{{.Expr}}` is the rule's expression, query-escaped. The default template is Prometheus'
/// table link (`/graph?g0.expr={{.Expr}}&g0.tab=1`), so the link opens the expression in the
/// querier's UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorUrl {
    before: String,
    /// `None` when the template has no `{{.Expr}}`: it is then used as it is.
    after: Option<String>,
}

impl GeneratorUrl {
    /// Thanos' default template.
    pub const DEFAULT_TEMPLATE: &'static str = "/graph?g0.expr={{.Expr}}&g0.tab=1";

    /// `base` (`--alert.query-url`) and `template`; only `{{.Expr}}` may appear in it, once.
    pub fn new(base: &str, template: &str) -> Result<Self, String> {
        let at = ["{{.Expr}}", "{{ .Expr }}"]
            .iter()
            .find_map(|p| template.find(p).map(|i| (i, p.len())));
        let (before, after) = match at {
            Some((i, n)) => (&template[..i], Some(&template[i + n..])),
            None => (template, None),
        };
        if before.contains("{{") || after.is_some_and(|a| a.contains("{{")) {
            return Err(format!(
                "{template:?}: only {{{{.Expr}}}} may be used, once (the rule's expression, \
                 query-escaped)"
            ));
        }
        Ok(GeneratorUrl {
            before: format!("{base}{before}"),
            after: after.map(str::to_owned),
        })
    }

    /// The link for `expr`.
    pub fn url(&self, expr: &str) -> String {
        match &self.after {
            Some(after) => format!("{}{}{after}", self.before, template::query_escape(expr)),
            None => self.before.clone(),
        }
    }
}

/// The `query` template function, answered by the queriers at the evaluation's timestamp.
/// Templates are synchronous, so the query runs to completion on this worker thread (the
/// runtime moves its other tasks elsewhere meanwhile).
pub(crate) struct TemplateBridge {
    pub(crate) querier: Arc<dyn Querier>,
    pub(crate) ts: i64,
    pub(crate) strategy: PartialResponseStrategy,
}

impl template::TemplateQuerier for TemplateBridge {
    fn query(&self, expr: &str) -> Result<Vec<template::QuerySample>, String> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "the query function needs the ruler's runtime".to_string())?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err("the query function needs a multi-threaded runtime".into());
        }
        let answer = tokio::task::block_in_place(|| {
            handle.block_on(self.querier.instant(expr, self.ts, self.strategy))
        })?;
        Ok(answer
            .samples
            .into_iter()
            .map(|(labels, value)| template::QuerySample { labels, value })
            .collect())
    }
}

/// The wall clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An alert's value as Prometheus' API writes it: Go's `FormatFloat(v, 'e', 10, 64)`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:.10e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_are_escaped_as_go_escapes_them() {
        assert_eq!(
            template::query_escape("sum(rate(x{a=\"b c\"}[5m])) > 0.5*2 ~é"),
            "sum%28rate%28x%7Ba%3D%22b+c%22%7D%5B5m%5D%29%29+%3E+0.5%2A2+~%C3%A9"
        );
    }

    #[test]
    fn generator_urls_follow_the_template() {
        let g = GeneratorUrl::new("http://q:9090", GeneratorUrl::DEFAULT_TEMPLATE).unwrap();
        assert_eq!(
            g.url("up == 0"),
            "http://q:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
        );
        let g = GeneratorUrl::new("", "/explore?expr={{ .Expr }}").unwrap();
        assert_eq!(g.url("a b"), "/explore?expr=a+b");
        assert_eq!(
            GeneratorUrl::new("x", "/static").unwrap().url("up"),
            "x/static"
        );
        assert!(GeneratorUrl::new("", "/g?e={{.Expr}}&f={{.Other}}").is_err());
    }

    #[test]
    fn values_are_written_as_go_writes_them() {
        assert_eq!(format_value(1.0), "1.0000000000e+00");
        assert_eq!(format_value(1234.5678), "1.2345678000e+03");
        assert_eq!(format_value(-0.00012), "-1.2000000000e-04");
        assert_eq!(format_value(1e300), "1.0000000000e+300");
        assert_eq!(format_value(0.0), "0.0000000000e+00");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }
}
