//! Prometheus' alert templates: the Go `text/template` dialect that Prometheus 2.42 expands
//! alerting-rule labels and annotations with, and its template functions.
//!
//! Alert texts written for Prometheus or Thanos must come out identical here, so this is a
//! faithful reimplementation rather than a look-alike: Go's lexical rules (trim markers,
//! comments, literals), its parse-time checks, its evaluation rules (`missingkey=zero`, Go
//! truthiness, variable scopes, `and`/`or` short-circuit, basic-kind comparisons), `fmt`'s
//! printing of values and `printf` verbs, and the exact output of Prometheus' `humanize*`,
//! `toTime`, `stripDomain`, … functions.
//!
//! Known differences from Go (none reachable from ordinary alert texts):
//! - values print as Go would except query results (`queryResult`), which Go prints as pointer
//!   addresses; we print the samples (`[&{map[…] 1}]`);
//! - of Go's methods only `time.Time`'s common ones are callable on `toTime` results (`Format`,
//!   `Unix`, `UnixMilli`, `Year`, … ; `Month`/`Weekday` give names, `Local` is UTC);
//! - regular expressions run on Rust's `regex` (RE2 syntax, like Go's; `\d`, `\w`, `\s`, `\b`
//!   are made ASCII-only as in Go), whose error messages are Go's only for unbalanced
//!   parentheses, and which accepts a few escapes Go rejects (`\u0041`);
//! - nesting is bounded, for our fixed-size thread stacks: 100 levels of parentheses and control
//!   structures when parsing, 100 `{{template}}` calls (Go: 100000) and 200 levels of all of
//!   them together when executing; an execution also stops at a million steps or 16 MiB of
//!   output, so a recursive template cannot stall the rule evaluation loop;
//! - complex number literals and `printf`'s `%[n]` argument indexes are not supported;
//! - `printf` of a `toTime` result with a verb other than `%v`/`%s` shows the time, where Go
//!   shows the `time.Time` struct's internals;
//! - string escapes of single bytes that are not UTF-8 (`"\xff"`) become U+FFFD, where Go keeps
//!   the byte.
//!
//! `tests/template_vs_prometheus.rs` checks all of this against a running Prometheus 2.42, and
//! `tests/template_random_vs_promtool.rs` against `promtool` with 1500 random templates and 600
//! random strings of template syntax (for the syntax errors).

mod exec;
mod funcs;
mod gofmt;
mod lexer;
mod parse;
mod value;

pub use funcs::query_escape;
use strata_model::Labels;

/// The data an alert's labels and annotations are expanded with (Prometheus'
/// `AlertTemplateData`), also bound to `$labels`, `$externalLabels`, `$externalURL` and `$value`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateData {
    /// The alert's series labels (`.Labels`, `$labels`).
    pub labels: Labels,
    /// The ruler's external labels (`.ExternalLabels`, `$externalLabels`).
    pub external_labels: Labels,
    /// The ruler's external URL (`.ExternalURL`, `$externalURL`, `externalURL`, `pathPrefix`).
    pub external_url: String,
    /// The alert's sample value (`.Value`, `$value`).
    pub value: f64,
}

/// The `query` template function's access to the queriers (sync; the caller bridges to async).
pub trait TemplateQuerier: Send + Sync {
    /// Runs an instant query at the rule's evaluation time; the error becomes the template's.
    fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String>;
}

/// One sample of a `query` result.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySample {
    /// The series labels, `__name__` included.
    pub labels: Labels,
    /// The sample value.
    pub value: f64,
}

/// A template that failed to parse or to execute. The messages are Prometheus' (Go's), so the
/// caller's `<error expanding template: {error}>` ([`TemplateError::alert_text`]) reads exactly
/// as Prometheus' does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Syntax errors, unknown functions, undefined variables.
    #[error("error parsing template {name}: template: {name}:{line}: {message}")]
    Parse {
        /// The template's name.
        name: String,
        /// The line (from 1) of the error.
        line: usize,
        /// Go's description of the error.
        message: String,
    },
    /// Errors while executing: failing functions, wrong argument types or counts, bad fields.
    #[error(
        "error executing template {name}: template: {name}:{line}:{column}: executing \"{template}\" at <{context}>: {message}"
    )]
    Execute {
        /// The template's name.
        name: String,
        /// The template that was executing: `name`, or a `define`d one it called.
        template: String,
        /// The line (from 1) of the failing node.
        line: usize,
        /// The failing node's byte offset in its line, counting from 0 as Go does.
        column: usize,
        /// The failing node, as Go prints it.
        context: String,
        /// Go's description of the error.
        message: String,
    },
}

impl TemplateError {
    /// What Prometheus puts in place of a label value or annotation whose expansion failed.
    pub fn alert_text(&self) -> String {
        format!("<error expanding template: {self}>")
    }
}

/// The variable definitions Prometheus puts in front of every alert label and annotation text.
pub const ALERT_TEMPLATE_PREFIX: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// A parsed template, to execute any number of times.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    name: String,
    text: String,
    tree: parse::Tree,
}

/// Line (from 1) and column (byte offset from 0) of a byte offset, as Go's `ErrorContext`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..pos.min(text.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let col = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(before.len(), |nl| before.len() - nl - 1);
    (line, col)
}

impl Template {
    /// Parses Go template `text` as is.
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let tree =
            parse::parse(text, name, &funcs::is_function).map_err(|e| TemplateError::Parse {
                name: name.to_owned(),
                line: line_col(text, e.pos).0,
                message: e.msg,
            })?;
        Ok(Template {
            name: name.to_owned(),
            text: text.to_owned(),
            tree,
        })
    }

    /// Parses an alert label value or annotation the way Prometheus does: behind
    /// [`ALERT_TEMPLATE_PREFIX`]. Prometheus names these templates `__alert_<rule name>`.
    pub fn parse_alert(name: &str, text: &str) -> Result<Template, TemplateError> {
        Template::parse(name, &format!("{ALERT_TEMPLATE_PREFIX}{text}"))
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Executes the template with `data` as dot; `querier` serves the `query` function (without
    /// one, `query` fails).
    pub fn execute(
        &self,
        data: &TemplateData,
        querier: Option<&dyn TemplateQuerier>,
    ) -> Result<String, TemplateError> {
        let env = funcs::Env {
            querier,
            external_url: &data.external_url,
        };
        exec::execute(&self.tree, &env, exec::data_value(data)).map_err(|e| {
            let (line, column) = line_col(&self.text, e.pos);
            TemplateError::Execute {
                name: self.name.clone(),
                template: e.template.unwrap_or_else(|| self.name.clone()),
                line,
                column,
                context: e.context,
                message: e.msg,
            }
        })
    }
}

/// Expands one alert label value or annotation as Prometheus does (see
/// [`Template::parse_alert`]); `name` is the template name errors mention
/// (Prometheus: `__alert_<rule name>`).
pub fn expand(
    name: &str,
    text: &str,
    data: &TemplateData,
    querier: Option<&dyn TemplateQuerier>,
) -> Result<String, TemplateError> {
    Template::parse_alert(name, text)?.execute(data, querier)
}

#[cfg(test)]
mod tests;
