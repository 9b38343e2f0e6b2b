//! The function map: Go's builtin signatures and Prometheus 2.42's template functions
//! (`template/template.go`), with their exact output formats.

use std::rc::Rc;

use super::gofmt::{self, format_float_g};
use super::value::{GoMap, GoTime, Sample, Value};
use super::{QuerySample, TemplateQuerier};

/// What the functions need from outside the template data.
pub(crate) struct Env<'a> {
    pub(crate) querier: Option<&'a dyn TemplateQuerier>,
    pub(crate) external_url: &'a str,
}

/// A parameter's Go type, as far as argument checking needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param {
    /// `interface{}`.
    Any,
    Str,
    /// `*sample`.
    Sample,
    /// `queryResult`.
    Samples,
}

impl Param {
    pub(crate) fn go_type(self) -> &'static str {
        match self {
            Param::Any => "interface {}",
            Param::Str => "string",
            Param::Sample => "*template.sample",
            Param::Samples => "template.queryResult",
        }
    }
}

/// A function's parameters; `variadic` repeats after `params`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signature {
    pub(crate) params: &'static [Param],
    pub(crate) variadic: Option<Param>,
}

const fn fixed(params: &'static [Param]) -> Signature {
    Signature {
        params,
        variadic: None,
    }
}

const fn variadic(params: &'static [Param], rest: Param) -> Signature {
    Signature {
        params,
        variadic: Some(rest),
    }
}

use Param::{Any, Samples, Str};

/// The signature of every function a template may call (Go builtins and Prometheus').
pub(crate) fn signature(name: &str) -> Option<Signature> {
    Some(match name {
        // Go builtins (`and`/`or` are evaluated lazily by the executor).
        "and" | "or" => variadic(&[Any], Any),
        "not" | "len" => fixed(&[Any]),
        "eq" => variadic(&[Any], Any),
        "ne" | "lt" | "le" | "gt" | "ge" => fixed(&[Any, Any]),
        "index" | "slice" => variadic(&[Any], Any),
        "print" | "println" | "html" | "js" | "urlquery" => variadic(&[], Any),
        "printf" => variadic(&[Str], Any),
        // Prometheus.
        "query" | "title" | "toUpper" | "toLower" | "graphLink" | "tableLink" | "safeHtml"
        | "stripPort" | "stripDomain" | "parseDuration" => fixed(&[Str]),
        "first" => fixed(&[Samples]),
        "label" => fixed(&[Str, Param::Sample]),
        "value" | "strvalue" => fixed(&[Param::Sample]),
        "args" => variadic(&[], Any),
        "reReplaceAll" => fixed(&[Str, Str, Str]),
        "match" => fixed(&[Str, Str]),
        "sortByLabel" => fixed(&[Str, Samples]),
        "humanize" | "humanize1024" | "humanizeDuration" | "humanizePercentage"
        | "humanizeTimestamp" | "toTime" => fixed(&[Any]),
        "pathPrefix" | "externalURL" => fixed(&[]),
        _ => return None,
    })
}

/// Whether `name` is a function (the parser rejects calls to anything else).
pub(crate) fn is_function(name: &str) -> bool {
    signature(name).is_some()
}

const NIL_POINTER: &str = "runtime error: invalid memory address or nil pointer dereference";

fn str_arg(v: &Value) -> &str {
    match v {
        Value::Str(s) => s,
        _ => "",
    }
}

fn sample_arg(v: &Value) -> Result<&Sample, String> {
    match v {
        Value::Sample(s) => Ok(s),
        _ => Err(NIL_POINTER.into()),
    }
}

fn samples_arg(v: &Value) -> &[Rc<Sample>] {
    match v {
        Value::Samples(s) => s,
        _ => &[],
    }
}

/// Calls Prometheus function `name` with arguments already checked against its signature.
pub(crate) fn call(env: &Env<'_>, name: &str, args: Vec<Value>) -> Result<Value, String> {
    let s = |i: usize| str_arg(&args[i]);
    Ok(match name {
        "query" => {
            let Some(querier) = env.querier else {
                return Err("no querier is configured for the query function".into());
            };
            let samples = querier.query(s(0))?;
            Value::Samples(Rc::new(samples.into_iter().map(to_sample).collect()))
        }
        "first" => match samples_arg(&args[0]).first() {
            Some(sample) => Value::Sample(sample.clone()),
            None => return Err("first() called on vector with no elements".into()),
        },
        "label" => sample_arg(&args[1])?.labels.get(s(0)),
        "value" => Value::Float(sample_arg(&args[0])?.value),
        "strvalue" => sample_arg(&args[0])?.labels.get("__value__"),
        "args" => Value::Map(Rc::new(GoMap {
            entries: args
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("arg{i}"), a.clone()))
                .collect(),
            interface_elems: true,
        })),
        "reReplaceAll" => {
            // Prometheus uses regexp.MustCompile: a bad pattern panics, which the template
            // engine reports as this error.
            let re = go_regex(s(0)).map_err(|e| {
                format!(
                    "regexp: Compile({}): {}",
                    backquote(s(0)),
                    regex_error(s(0), &e)
                )
            })?;
            Value::Str(re.replace_all(s(2), s(1)).into_owned())
        }
        "match" => {
            let re = go_regex(s(0)).map_err(|e| regex_error(s(0), &e))?;
            Value::Bool(re.is_match(s(1)))
        }
        "safeHtml" => Value::Html(s(0).to_owned()),
        "title" => Value::Str(title(s(0))),
        "toUpper" => Value::Str(s(0).chars().map(simple_upper).collect()),
        "toLower" => Value::Str(s(0).chars().map(simple_lower).collect()),
        "graphLink" => Value::Str(format!("/graph?g0.expr={}&g0.tab=0", query_escape(s(0)))),
        "tableLink" => Value::Str(format!("/graph?g0.expr={}&g0.tab=1", query_escape(s(0)))),
        "sortByLabel" => {
            let label = s(0);
            let mut sorted = samples_arg(&args[1]).to_vec();
            // Stable, by the label's value (missing labels sort as "").
            sorted.sort_by(|a, b| str_arg(&a.labels.get(label)).cmp(str_arg(&b.labels.get(label))));
            Value::Samples(Rc::new(sorted))
        }
        "stripPort" => Value::Str(match split_host_port(s(0)) {
            Some((host, _)) => host.to_owned(),
            None => s(0).to_owned(),
        }),
        "stripDomain" => Value::Str(strip_domain(s(0))),
        "humanize" => Value::Str(humanize(to_float(&args[0])?)),
        "humanize1024" => Value::Str(humanize1024(to_float(&args[0])?)),
        "humanizeDuration" => Value::Str(humanize_duration(to_float(&args[0])?)),
        "humanizePercentage" => Value::Str(format!(
            "{}%",
            format_float_g(to_float(&args[0])? * 100.0, 4)
        )),
        "humanizeTimestamp" => {
            let v = to_float(&args[0])?;
            if !v.is_finite() {
                Value::Str(format_float_g(v, 4))
            } else {
                Value::Str(gofmt::format_time(float_to_time(v)?))
            }
        }
        "toTime" => Value::Time(float_to_time(to_float(&args[0])?)?),
        "pathPrefix" => Value::Str(url_path(env.external_url).to_owned()),
        "externalURL" => Value::Str(env.external_url.to_owned()),
        "parseDuration" => Value::Float(parse_prometheus_duration(s(0))?),
        _ => return Err(format!("function {name:?} not defined")),
    })
}

fn to_sample(s: QuerySample) -> Rc<Sample> {
    Rc::new(Sample {
        labels: Rc::new(GoMap::strings(
            s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        )),
        value: s.value,
    })
}

fn backquote(s: &str) -> String {
    format!("`{s}`")
}

/// Compiles a Go (RE2) regular expression. The syntax is the same as Rust's `regex`, except that
/// Go's `\d`, `\w`, `\s` and `\b` are ASCII-only where Rust's are Unicode-aware, so those
/// are rewritten to their ASCII classes first.
fn go_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut in_class = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push(c);
                    break;
                };
                match next {
                    // Nested classes are valid inside a class too, so one spelling serves both.
                    'd' => out.push_str("[0-9]"),
                    'D' => out.push_str("[^0-9]"),
                    'w' => out.push_str("[0-9A-Za-z_]"),
                    'W' => out.push_str("[^0-9A-Za-z_]"),
                    's' => out.push_str("[\\t\\n\\f\\r ]"),
                    'S' => out.push_str("[^\\t\\n\\f\\r ]"),
                    'b' if !in_class => out.push_str("(?-u:\\b)"),
                    'B' if !in_class => out.push_str("(?-u:\\B)"),
                    other => {
                        out.push(c);
                        out.push(other);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` right after `[` or `[^` is a literal.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            '[' if chars.peek() == Some(&':') => {
                // A POSIX class such as `[:alpha:]` inside a class.
                out.push(c);
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' {
                        break;
                    }
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    // The rewrite only narrows classes; should it ever fail to compile, the original pattern's
    // error is the one to report.
    regex::Regex::new(&out).or_else(|_| regex::Regex::new(pattern))
}

/// A regex syntax error worded as Go's regexp words it, where the two agree on the cause
/// (unbalanced parentheses, the usual mistake); otherwise Rust's description.
fn regex_error(pattern: &str, e: &regex::Error) -> String {
    let detail = e.to_string();
    let last = detail
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid pattern");
    let last = last.trim().trim_start_matches("error: ");
    match last {
        "unclosed group" => format!("error parsing regexp: missing closing ): `{pattern}`"),
        "unopened group" => format!("error parsing regexp: unexpected ): `{pattern}`"),
        _ => format!("error parsing regexp: {last}"),
    }
}

/// Prometheus' `convertToFloat`.
fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => parse_go_float(s),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

/// Go's `strconv.ParseFloat(s, 64)` and its error messages.
pub(crate) fn parse_go_float(s: &str) -> Result<f64, String> {
    let err = |why: &str| {
        format!(
            "strconv.ParseFloat: parsing {}: {why}",
            gofmt::quote(s, false)
        )
    };
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity") {
        return Ok(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if let Some(hex) = lower.strip_prefix("0x") {
        // Hexadecimal floats need their binary exponent (`0x1.8p+1`).
        let value = hex
            .contains('p')
            .then(|| super::parse::parse_hex_float(hex))
            .flatten()
            .ok_or_else(|| err("invalid syntax"))?;
        return Ok(if s.starts_with('-') { -value } else { value });
    }
    if lower == "nan" {
        return if body.len() == s.len() {
            Ok(f64::NAN)
        } else {
            Err(err("invalid syntax"))
        };
    }
    let valid_chars = body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'));
    if body.is_empty() || !valid_chars || !super::parse::underscores_ok(body, false) {
        return Err(err("invalid syntax"));
    }
    let f: f64 = s
        .replace('_', "")
        .parse()
        .map_err(|_| err("invalid syntax"))?;
    if f.is_infinite() {
        return Err(err("value out of range"));
    }
    Ok(f)
}

/// Go's float64 → int64 conversion on amd64: out-of-range values (and NaN) become MinInt64.
fn go_f64_to_i64(v: f64) -> i64 {
    if v.is_nan() || !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v) {
        i64::MIN
    } else {
        v as i64
    }
}

/// Prometheus' `humanize`: SI prefixes, 4 significant digits.
pub(crate) fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format_float_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", format_float_g(v, 4))
}

/// Prometheus' `humanize1024`: binary prefixes above 1, 4 significant digits.
pub(crate) fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return format_float_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", format_float_g(v, 4))
}

/// Prometheus' `humanizeDuration`: `1d 2h 3m 4s` from a minute up, `1.5s`, `1.5ms`, ….
pub(crate) fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return format_float_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", format_float_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let duration = go_f64_to_i64(v);
        let seconds = duration % 60;
        let minutes = (duration / 60) % 60;
        let hours = (duration / 60 / 60) % 24;
        let days = duration / 60 / 60 / 24;
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", format_float_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_float_g(v, 4))
}

/// Prometheus' `floatToTime`: seconds to a UTC time, truncated to milliseconds as
/// `model.TimeFromUnixNano` does.
fn float_to_time(v: f64) -> Result<GoTime, String> {
    if !v.is_finite() {
        return Err("value is NaN or Inf".into());
    }
    let nanos = v * 1e9;
    if nanos > i64::MAX as f64 || nanos < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            gofmt::format_float_v(v)
        ));
    }
    let millis = (nanos as i64) / 1_000_000;
    Ok(GoTime {
        secs: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as u32,
    })
}

/// Prometheus' `model.ParseDuration`, in seconds: `<int><unit>` terms in the order
/// y, w, d, h, m, s, ms, each at most once.
fn parse_prometheus_duration(s: &str) -> Result<f64, String> {
    match s {
        "0" => return Ok(0.0),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    let invalid = || format!("not a valid duration string: {}", gofmt::quote(s, false));
    const UNITS: [(&str, i64); 7] = [
        ("y", 1000 * 60 * 60 * 24 * 365),
        ("w", 1000 * 60 * 60 * 24 * 7),
        ("d", 1000 * 60 * 60 * 24),
        ("h", 1000 * 60 * 60),
        ("m", 1000 * 60),
        ("s", 1000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut next_unit = 0;
    let mut total_ms: i64 = 0;
    let mut overflow = false;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let (num, after) = rest.split_at(digits);
        let unit_len = if after.starts_with("ms") {
            2
        } else {
            after.chars().next().map_or(0, char::len_utf8)
        };
        let unit = &after[..unit_len];
        let Some(i) = UNITS[next_unit..].iter().position(|(u, _)| *u == unit) else {
            return Err(invalid());
        };
        let (_, mult) = UNITS[next_unit + i];
        next_unit += i + 1;
        let n: i64 = num.parse().unwrap_or(i64::MAX);
        if n > i64::MAX / 1_000_000 / mult {
            overflow = true;
        }
        total_ms = total_ms.saturating_add(n.saturating_mul(mult));
        rest = &after[unit_len..];
    }
    if overflow || total_ms > i64::MAX / 1_000_000 {
        return Err("duration out of range".into());
    }
    Ok((total_ms * 1_000_000) as f64 / 1e9)
}

/// Go's `net.SplitHostPort`, `None` where Go returns an error.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let colon = s.rfind(':')?;
    let host = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')? + 1;
        // The closing bracket must be right before the port's colon.
        if end + 1 != colon {
            return None;
        }
        &s[1..end]
    } else {
        let host = &s[..colon];
        if host.contains(':') {
            return None;
        }
        host
    };
    let (before, port) = (&s[..colon], &s[colon + 1..]);
    let inner = before.strip_prefix('[').unwrap_or(before);
    if inner.contains('[')
        || inner.contains(']') && !before.starts_with('[')
        || port.contains(['[', ']'])
    {
        return None;
    }
    Some((host, port))
}

/// Prometheus' `stripDomain`: the first DNS label of a host name (IPs unchanged), port kept.
fn strip_domain(host_port: &str) -> String {
    let (host, port) = split_host_port(host_port).unwrap_or((host_port, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host_port.to_owned();
    }
    let host = host.split('.').next().unwrap_or(host);
    if port.is_empty() {
        return host.to_owned();
    }
    // net.JoinHostPort brackets hosts with colons.
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The path of a URL (Go's `url.URL.Path`), for `pathPrefix`.
fn url_path(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let Some(slash) = after_scheme.find('/') else {
        return "";
    };
    let path = &after_scheme[slash..];
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

/// Go's `url.QueryEscape`: bytes other than ASCII letters, digits and `-_.~` as `%XX`,
/// spaces as `+` (also the ruler's generator URLs).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
            }
        }
    }
    out
}

/// Go's `unicode.ToUpper` (a one-rune mapping: `ß` stays `ß`).
fn simple_upper(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// Go's `unicode.ToLower` (a one-rune mapping).
fn simple_lower(c: char) -> char {
    if c == '\u{130}' {
        return 'i';
    }
    let mut low = c.to_lowercase();
    match (low.next(), low.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Go's (deprecated) `strings.Title`: upper-cases each letter that starts a word.
fn title(s: &str) -> String {
    let is_separator = |c: char| {
        if c.is_ascii() {
            return !(c.is_ascii_alphanumeric() || c == '_');
        }
        if c.is_alphabetic() || c.is_numeric() {
            return false;
        }
        c.is_whitespace()
    };
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let out = if is_separator(prev) {
                simple_upper(c)
            } else {
                c
            };
            prev = c;
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_matches_prometheus() {
        // Expected strings from Prometheus' template tests and promtool runs.
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(0.001234), "1.234m");
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(-1e-30), "-1e-06y");
        assert_eq!(humanize(1e30), "1e+06Y");
        assert_eq!(humanize(f64::INFINITY), "+Inf");
        assert_eq!(humanize(f64::NAN), "NaN");
        assert_eq!(humanize1024(1048576.0), "1Mi");
        assert_eq!(humanize1024(1.0), "1");
        assert_eq!(humanize1024(-2048.0), "-2ki");
        assert_eq!(humanize_duration(90061.5), "1d 1h 1m 1s");
        assert_eq!(humanize_duration(0.0015), "1.5ms");
        assert_eq!(humanize_duration(-59.99), "-59.99s");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(3600.0), "1h 0m 0s");
    }

    #[test]
    fn durations_parse_like_prometheus() {
        assert_eq!(parse_prometheus_duration("1h30m"), Ok(5400.0));
        assert_eq!(parse_prometheus_duration("1ms"), Ok(0.001));
        assert_eq!(
            parse_prometheus_duration("1y2w3d4h5m6s7ms"),
            Ok(33_019_506.007)
        );
        assert_eq!(parse_prometheus_duration("0"), Ok(0.0));
        assert_eq!(
            parse_prometheus_duration("1m1h").unwrap_err(),
            "not a valid duration string: \"1m1h\""
        );
        assert_eq!(
            parse_prometheus_duration("").unwrap_err(),
            "empty duration string"
        );
    }

    #[test]
    fn host_helpers() {
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", "80")));
        assert_eq!(split_host_port("host:80"), Some(("host", "80")));
        assert_eq!(split_host_port("host"), None);
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(strip_domain("a.b.c:80"), "a:80");
        assert_eq!(strip_domain("a.b.c"), "a");
        assert_eq!(strip_domain("10.0.0.1:80"), "10.0.0.1:80");
        assert_eq!(url_path("http://example.com:9090/prom"), "/prom");
        assert_eq!(url_path("http://example.com"), "");
    }

    #[test]
    fn regexes_have_go_ascii_classes() {
        let replace =
            |p: &str, r: &str, t: &str| go_regex(p).unwrap().replace_all(t, r).into_owned();
        // Go: `\w` does not match é.
        assert_eq!(replace(r"(\w+)", "<$1>", "héllo"), "<h>é<llo>");
        assert_eq!(replace(r"(\w+)", "${1}y", "héllo"), "hyélloy");
        assert_eq!(replace(r"[\d.]+", "N", "v1.25 ٣"), "vN ٣");
        assert_eq!(replace(r"\bé", "E", "é aé"), "é aE");
        assert_eq!(replace(r"[]a]", "x", "]ab"), "xxb");
        assert_eq!(replace(r"[[:digit:]x]", "_", "1x2y"), "___y");
        assert!(go_regex("(").is_err());
    }

    #[test]
    fn text_helpers() {
        assert_eq!(title("hello wOrld-foo_bar a1b"), "Hello WOrld-Foo_bar A1b");
        assert_eq!(query_escape("a b&c/d"), "a+b%26c%2Fd");
        assert_eq!(
            parse_go_float("abc").unwrap_err(),
            "strconv.ParseFloat: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            parse_go_float("1e400").unwrap_err(),
            "strconv.ParseFloat: parsing \"1e400\": value out of range"
        );
        assert_eq!(parse_go_float("-Inf"), Ok(f64::NEG_INFINITY));
    }
}
