//! Logging to stderr in Thanos' formats, so log pipelines built for Thanos keep working.
//!
//! * `logfmt` (go-kit's logfmt logger as Thanos configures it):
//!   `level=info ts=2024-01-02T15:04:05.123Z caller=main.rs:42 msg="starting" key=value`
//! * `json` (go-kit's JSON logger): one object per line with the same keys, sorted:
//!   `{"caller":"main.rs:42","key":"value","level":"info","msg":"starting","ts":"…"}`
//!
//! * `journald` (Thanos' journald logger): each event sent to the systemd journal as one
//!   datagram of its native protocol, `MESSAGE` the message (else the `err` field, else
//!   `(no message)`), `PRIORITY` from the level, every other key as `THANOS_<KEY>`
//!   (upper-cased, anything but letters and digits as `_`). Where there is no journal
//!   socket, logfmt on stderr, with a warning, as Thanos falls back.
//!
//! `tracing`'s `TRACE` level is printed as `debug` (Thanos has no trace level). Span fields are
//! not printed.

use std::fmt::{self, Write as _};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::common::{LogFormat, LogLevel};

/// Installs the global subscriber for `--log.level` / `--log.format`, and, with
/// `--tracing.config`, the layer that exports spans (`otel`).
///
/// Log lines are written for events only and spans are exported only: each layer has its
/// own filter, so neither pays for the other's records.
pub(crate) fn init(
    level: LogLevel,
    format: LogFormat,
    debug_name: Option<&str>,
    otel: Option<&strata_runtime::otel::Tracing>,
) -> Result<()> {
    // `--debug.name`: a `name=` on every line, as Thanos' logger adds it. Set once per process.
    let name: Option<&'static str> = debug_name
        .filter(|n| !n.is_empty())
        .map(|n| &*Box::leak(n.to_owned().into_boxed_str()));
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{FilterExt as _, filter_fn};
    use tracing_subscriber::layer::SubscriberExt as _;

    let max_level = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    let events = move || max_level.and(filter_fn(|m| m.is_event()));
    let stderr = |format| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .event_format(ThanosFormat { format, name })
            .with_filter(events())
    };
    if format != LogFormat::Journald {
        let subscriber = tracing_subscriber::registry()
            .with(stderr(format))
            .with(span_layer(otel));
        return tracing::subscriber::set_global_default(subscriber)
            .context("installing the logger");
    }
    match journald::Journal::connect(Path::new(journald::SOCKET)) {
        Ok(journal) => {
            let subscriber = tracing_subscriber::registry()
                .with(journald::JournaldLayer::new(journal).with_filter(events()))
                .with(span_layer(otel));
            tracing::subscriber::set_global_default(subscriber).context("installing the logger")
        }
        Err(e) => {
            let subscriber = tracing_subscriber::registry()
                .with(stderr(LogFormat::Logfmt))
                .with(span_layer(otel));
            tracing::subscriber::set_global_default(subscriber).context("installing the logger")?;
            tracing::warn!(
                socket = journald::SOCKET,
                err = %e,
                "journald format requested but not available, falling back to logfmt"
            );
            Ok(())
        }
    }
}

/// The exporting layer, for spans only.
fn span_layer<S>(
    otel: Option<&strata_runtime::otel::Tracing>,
) -> Option<impl tracing_subscriber::Layer<S> + use<S>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    otel.map(|t| {
        t.layer()
            .with_filter(tracing_subscriber::filter::filter_fn(|m| m.is_span()))
    })
}

/// A `tracing` event formatter producing Thanos' log lines.
#[derive(Debug, Clone, Copy)]
struct ThanosFormat {
    format: LogFormat,
    /// `--debug.name`.
    name: Option<&'static str>,
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
        let mut record = Record::of(event);
        record.name = self.name;
        let line = match self.format {
            LogFormat::Logfmt | LogFormat::Journald => record.to_logfmt(),
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
    /// `--debug.name`.
    name: Option<&'static str>,
    msg: Option<String>,
    fields: Vec<(&'static str, String)>,
}

impl Record {
    fn of(event: &Event<'_>) -> Record {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        Record {
            level: level_name(*meta.level()),
            ts: strata_model::timestamp::format_rfc3339_millis(now_ms()),
            caller: meta.file().map(|file| {
                let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
                format!("{base}:{}", meta.line().unwrap_or(0))
            }),
            name: None,
            msg: fields.message,
            fields: fields.fields,
        }
    }

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
        if let Some(name) = self.name {
            pair("name", name);
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
        if let Some(name) = self.name {
            map.insert("name".into(), name.into());
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

/// The systemd journal's native protocol (`systemd.journal-fields(7)`, "Native Journal
/// Protocol").
mod journald {
    use std::io;
    use std::os::unix::net::UnixDatagram;
    use std::path::Path;

    use tracing::{Event, Subscriber};
    use tracing_subscriber::layer::{Context, Layer};

    use super::Record;

    /// Where journald listens.
    pub(super) const SOCKET: &str = "/run/systemd/journal/socket";

    /// A connected journal socket.
    #[derive(Debug)]
    pub(super) struct Journal(UnixDatagram);

    impl Journal {
        pub(super) fn connect(socket: &Path) -> io::Result<Journal> {
            let s = UnixDatagram::unbound()?;
            s.connect(socket)?;
            Ok(Journal(s))
        }

        /// Sends one entry. An entry too large for one datagram (journald takes those
        /// through a memfd, which the standard library cannot pass) is an error; the caller
        /// writes it to stderr instead.
        pub(super) fn send(&self, entry: &[u8]) -> io::Result<()> {
            self.0.send(entry).map(|_| ())
        }
    }

    /// `key` as a journal field name: `THANOS_` and the key upper-cased, anything but
    /// letters and digits as `_` (Thanos' `toJournalField`).
    pub(super) fn field_name(key: &str) -> String {
        let mut out = String::with_capacity(key.len() + 7);
        out.push_str("THANOS_");
        out.extend(key.chars().map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        }));
        out
    }

    /// Appends `NAME=value\n`, or, for a value with a newline, `NAME\n`, its length as 8
    /// little-endian bytes, the value and `\n`.
    fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
        out.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }

    /// A record as one journal entry.
    pub(super) fn entry(r: &Record) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let err = r.fields.iter().find(|(k, _)| *k == "err").map(|(_, v)| v);
        let message = r
            .msg
            .as_deref()
            .filter(|m| !m.is_empty())
            .or(err.map(String::as_str))
            .unwrap_or("(no message)");
        push_field(&mut out, "MESSAGE", message);
        let priority = match r.level {
            "error" => "3",
            "warn" => "4",
            "debug" => "7",
            _ => "6",
        };
        push_field(&mut out, "PRIORITY", priority);
        push_field(&mut out, "THANOS_TS", &r.ts);
        if let Some(caller) = &r.caller {
            push_field(&mut out, "THANOS_CALLER", caller);
        }
        for (key, value) in &r.fields {
            push_field(&mut out, &field_name(key), value);
        }
        out
    }

    /// Sends every event to the journal.
    #[derive(Debug)]
    pub(super) struct JournaldLayer {
        journal: Journal,
    }

    impl JournaldLayer {
        pub(super) fn new(journal: Journal) -> Self {
            JournaldLayer { journal }
        }
    }

    impl<S: Subscriber> Layer<S> for JournaldLayer {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let record = Record::of(event);
            if self.journal.send(&entry(&record)).is_err() {
                eprintln!("{}", record.to_logfmt());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            level: "info",
            ts: "2024-01-02T15:04:05.123Z".into(),
            caller: Some("main.rs:42".into()),
            name: None,
            msg: Some("starting store".into()),
            fields: vec![
                ("addr", "0.0.0.0:10901".into()),
                ("err", "a \"b\"\nc".into()),
            ],
        }
    }

    #[test]
    fn debug_name_follows_the_caller() {
        let named = Record {
            name: Some("store-eu1"),
            ..record()
        };
        assert!(
            named.to_logfmt().starts_with(
                "level=info ts=2024-01-02T15:04:05.123Z caller=main.rs:42 name=store-eu1 msg="
            ),
            "{}",
            named.to_logfmt()
        );
        let v: serde_json::Value = serde_json::from_str(&named.to_json()).unwrap();
        assert_eq!(v["name"], "store-eu1");
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

    /// Events reach a journal socket as native-protocol entries with Thanos' field names;
    /// a multi-line value goes in the binary form.
    #[test]
    fn journald_entries() {
        use std::os::unix::net::UnixDatagram;
        use tracing_subscriber::layer::SubscriberExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.socket");
        let server = UnixDatagram::bind(&path).unwrap();
        let journal = journald::Journal::connect(&path).unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(LevelFilter::INFO)
            .with(journald::JournaldLayer::new(journal));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(block = "01ABC", "compaction halted");
            tracing::error!(err = "line one\nline two", "");
            tracing::debug!("filtered out");
        });
        let mut buf = vec![0u8; 4096];
        let mut recv = || {
            let n = server.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        };
        let first = String::from_utf8(recv()).unwrap();
        let lines: Vec<&str> = first.lines().collect();
        assert_eq!(lines[0], "MESSAGE=compaction halted");
        assert_eq!(lines[1], "PRIORITY=4");
        assert!(lines[2].starts_with("THANOS_TS=20"), "{first}");
        assert!(lines[3].starts_with("THANOS_CALLER=logging.rs:"), "{first}");
        assert_eq!(lines[4], "THANOS_BLOCK=01ABC");
        // No message: the error stands in, in the binary form since it has a newline.
        let second = recv();
        let value = b"line one\nline two";
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&(value.len() as u64).to_le_bytes());
        want.extend_from_slice(value);
        want.extend_from_slice(b"\nPRIORITY=3\n");
        assert!(second.starts_with(&want), "{second:?}");
        server.set_nonblocking(true).unwrap();
        assert!(
            server.recv(&mut buf).is_err(),
            "the debug event was filtered"
        );
        assert_eq!(journald::field_name("tenant-id.x"), "THANOS_TENANT_ID_X");
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
