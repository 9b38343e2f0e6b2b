//! Logging to stderr in Thanos' formats, so log pipelines built for Thanos keep working.
//!
//! * `logfmt` (go-kit's logfmt logger as Thanos configures it):
//!   `level=info ts=2024-01-02T15:04:05.123Z caller=main.rs:42 msg="starting" key=value`
//! * `json` (go-kit's JSON logger): one object per line with the same keys, sorted:
//!   `{"caller":"main.rs:42","key":"value","level":"info","msg":"starting","ts":"…"}`
//!
//! `tracing`'s `TRACE` level is printed as `debug` (Thanos has no trace level). Span fields are
//! not printed.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::common::{LogFormat, LogLevel};

/// Installs the global subscriber for `--log.level` / `--log.format`.
pub(crate) fn init(level: LogLevel, format: LogFormat) -> Result<()> {
    let max_level = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(max_level)
        .with_ansi(false)
        .event_format(ThanosFormat { format })
        .finish();
    tracing::subscriber::set_global_default(subscriber).context("installing the logger")
}

/// A `tracing` event formatter producing Thanos' log lines.
#[derive(Debug, Clone, Copy)]
struct ThanosFormat {
    format: LogFormat,
}

impl<S, N> FormatEvent<S, N> for ThanosFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let record = Record {
            level: level_name(*meta.level()),
            ts: strata_model::timestamp::format_rfc3339_millis(now_ms()),
            caller: meta.file().map(|file| {
                let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
                format!("{base}:{}", meta.line().unwrap_or(0))
            }),
            msg: fields.message,
            fields: fields.fields,
        };
        let line = match self.format {
            LogFormat::Logfmt => record.to_logfmt(),
            LogFormat::Json => record.to_json(),
        };
        writer.write_str(&line)?;
        writer.write_char('\n')
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG | Level::TRACE => "debug",
    }
}

/// An event's fields, in the order they were recorded.
#[derive(Debug, Default)]
struct Fields {
    message: Option<String>,
    fields: Vec<(&'static str, String)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else {
            self.fields.push((field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_owned());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole chain, like anyhow's `{:#}`.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(err) = source {
            let _ = write!(text, ": {err}");
            source = err.source();
        }
        self.push(field, text);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

/// One log line before encoding.
#[derive(Debug)]
struct Record {
    level: &'static str,
    ts: String,
    caller: Option<String>,
    msg: Option<String>,
    fields: Vec<(&'static str, String)>,
}

impl Record {
    fn to_logfmt(&self) -> String {
        let mut out = String::with_capacity(128);
        let mut pair = |key: &str, value: &str| {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(key);
            out.push('=');
            write_logfmt_value(&mut out, value);
        };
        pair("level", self.level);
        pair("ts", &self.ts);
        if let Some(caller) = &self.caller {
            pair("caller", caller);
        }
        if let Some(msg) = &self.msg {
            pair("msg", msg);
        }
        for (key, value) in &self.fields {
            pair(key, value);
        }
        out
    }

    fn to_json(&self) -> String {
        let mut map = serde_json::Map::new();
        map.insert("level".into(), self.level.into());
        map.insert("ts".into(), self.ts.clone().into());
        if let Some(caller) = &self.caller {
            map.insert("caller".into(), caller.clone().into());
        }
        if let Some(msg) = &self.msg {
            map.insert("msg".into(), msg.clone().into());
        }
        for (key, value) in &self.fields {
            map.insert((*key).to_owned(), value.clone().into());
        }
        serde_json::Value::Object(map).to_string()
    }
}

/// Writes a logfmt value, quoted and escaped when it contains spaces, `=`, `"`, control
/// characters or is empty (go-logfmt's rules, except that empty values are written as `""`
/// rather than nothing, which parsers read the same way).
fn write_logfmt_value(out: &mut String, value: &str) {
    let needs_quotes = value.is_empty()
        || value
            .chars()
            .any(|c| c <= ' ' || c == '=' || c == '"' || c == '\u{7f}');
    if !needs_quotes {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            level: "info",
            ts: "2024-01-02T15:04:05.123Z".into(),
            caller: Some("main.rs:42".into()),
            msg: Some("starting store".into()),
            fields: vec![
                ("addr", "0.0.0.0:10901".into()),
                ("err", "a \"b\"\nc".into()),
            ],
        }
    }

    #[test]
    fn logfmt_line() {
        assert_eq!(
            record().to_logfmt(),
            r#"level=info ts=2024-01-02T15:04:05.123Z caller=main.rs:42 msg="starting store" addr=0.0.0.0:10901 err="a \"b\"\nc""#
        );
        let bare = Record {
            caller: None,
            msg: None,
            fields: vec![("k", String::new())],
            ..record()
        };
        assert_eq!(
            bare.to_logfmt(),
            r#"level=info ts=2024-01-02T15:04:05.123Z k="""#
        );
    }

    #[test]
    fn logfmt_quoting() {
        let q = |v: &str| {
            let mut s = String::new();
            write_logfmt_value(&mut s, v);
            s
        };
        assert_eq!(q("plain"), "plain");
        assert_eq!(q("a=b"), r#""a=b""#);
        assert_eq!(q("tab\there"), r#""tab\there""#);
        assert_eq!(q("back\\slash"), "back\\slash");
        assert_eq!(q("bell\u{7}"), r#""bell\u0007""#);
        assert_eq!(q("é"), "é");
    }

    #[test]
    fn json_line() {
        let v: serde_json::Value = serde_json::from_str(&record().to_json()).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["ts"], "2024-01-02T15:04:05.123Z");
        assert_eq!(v["caller"], "main.rs:42");
        assert_eq!(v["msg"], "starting store");
        assert_eq!(v["err"], "a \"b\"\nc");
    }
}
