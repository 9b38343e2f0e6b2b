//! Runs Prometheus' own PromQL test scripts (`tests/conformance/prometheus/*.test`, an unchanged
//! copy of `shared/conformance/promql/`, Apache-2.0 with their LICENSE and NOTICE) against the
//! engine over in-memory storage, the way Prometheus' `promqltest` does, and prints
//! `N passed, M failed, K skipped`.
//!
//! What the upstream harness does and this runner replicates (see the scripts' README):
//! every `eval instant` is also run as a range query around its time and compared at the
//! middle step, and re-run with `@ <time>` added to every selector at several other
//! evaluation times; floats compare with a relative tolerance of 1e-6; delayed name removal
//! and experimental functions are on.
//!
//! Skipped cases are listed, with their reason, in `tests/conformance/skips.toml`; a case
//! not listed there must pass. `STRATA_CONFORMANCE_UPDATE=1` rewrites the list from the
//! automatic classification (native histograms, experimental feature files) plus the
//! manually explained entries already in it. `STRATA_CONFORMANCE_FILTER=<substring>` runs
//! only matching files; `STRATA_CONFORMANCE_VERBOSE=1` prints every failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use promql_parser::parser::{AtModifier, Expr};
use regex::Regex;

use strata_model::{Label, Labels};
use strata_promql::{
    Engine, EngineOptions, Error, MemStorage, QueryContext, QueryOutput, SelectBatches,
    SelectHints, SelectResult, Storage, StorageError, Value,
};

/// Files that exercise features this engine does not implement (yet), skipped whole.
const SKIPPED_FILES: &[(&str, &str)] = &[
    (
        "native_histograms.test",
        "native histograms (a later issue)",
    ),
    (
        "duration_expression.test",
        "experimental: duration expressions",
    ),
    (
        "extended_vectors.test",
        "experimental: anchored/smoothed range selectors",
    ),
    (
        "fill-modifier.test",
        "experimental: fill modifiers of binary operators",
    ),
    ("info.test", "experimental: info() function"),
    ("start_timestamps.test", "experimental: start timestamps"),
    (
        "type_and_unit.test",
        "experimental: __type__/__unit__ labels",
    ),
];

/// The test scripts: the checked-in copy under `tests/conformance/prometheus/` (so the runner
/// works in any clone), which must equal the shared reference copy wherever that exists
/// (`shared/conformance/promql` next to the repository): the copy is never edited, only
/// replaced as a whole.
fn conformance_dir() -> PathBuf {
    let vendored = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/prometheus");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = here.ancestors().find_map(|up| {
        [
            up.join("shared/conformance/promql"),
            up.join("../shared/conformance/promql"),
        ]
        .into_iter()
        .find(|p| p.is_dir())
    });
    if let Some(shared) = shared {
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(&vendored),
            names(&shared),
            "the files of {} differ from {}: copy the shared scripts over unchanged",
            vendored.display(),
            shared.display()
        );
        for n in names(&shared) {
            assert!(
                std::fs::read(vendored.join(&n)).unwrap()
                    == std::fs::read(shared.join(&n)).unwrap(),
                "{} differs from {}: copy the shared scripts over unchanged",
                vendored.join(&n).display(),
                shared.join(&n).display()
            );
        }
    }
    assert!(vendored.is_dir(), "{} is missing", vendored.display());
    vendored
}

fn skips_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/skips.toml")
}

// ---------------------------------------------------------------------------------------
// Script parsing.

#[derive(Debug, Clone)]
enum SeqValue {
    Omitted,
    Float(f64),
    Histogram,
}

#[derive(Debug, Default)]
struct Expect {
    fail: Option<Option<Matcher>>,
    warn: Vec<Matcher>,
    info: Vec<Matcher>,
    no_warn: bool,
    no_info: bool,
    ordered: bool,
    any_warn: bool,
    any_info: bool,
}

#[derive(Debug, Clone)]
enum Matcher {
    Msg(String),
    Re(Regex),
}

impl Matcher {
    fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Msg(m) => m == s,
            Matcher::Re(r) => r.is_match(s),
        }
    }
}

#[derive(Debug)]
struct Eval {
    line: usize,
    expr: String,
    range: Option<(i64, i64, i64)>,
    at: i64,
    expect: Expect,
    scalar: Option<f64>,
    string: Option<String>,
    range_vector: Option<(i64, i64, i64)>,
    series: Vec<(Labels, Vec<SeqValue>, usize)>,
}

#[derive(Debug)]
enum Cmd {
    Clear,
    Load {
        interval: i64,
        nhcb: bool,
        series: Vec<(Labels, Vec<SeqValue>)>,
    },
    Eval(Box<Eval>),
}

fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('-') {
        return parse_duration(rest).map(|d| -d);
    }
    if s == "0" {
        return Ok(0);
    }
    let mut total = 0i64;
    let mut num = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    if b.is_empty() {
        return Err("empty duration".into());
    }
    while i < b.len() {
        if b[i].is_ascii_digit() {
            num.push(b[i] as char);
            i += 1;
            continue;
        }
        let unit_start = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[unit_start..i];
        let n: i64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
        num.clear();
        total += n * match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return Err(format!("bad unit in {s:?}")),
        };
    }
    if !num.is_empty() {
        return Err(format!("missing unit in {s:?}"));
    }
    Ok(total)
}

/// Go's `strconv.ParseFloat` (and `ParseInt(s, 0, 64)`) for test values.
fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let lower = body.to_ascii_lowercase();
    let v = if lower == "inf" || lower == "infinity" {
        f64::INFINITY
    } else if lower == "nan" {
        f64::NAN
    } else if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()? as f64
    } else {
        if body.is_empty()
            || !body
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Unquotes a PromQL / Go string literal (`"..."`, `'...'`, `` `...` ``).
fn unquote(s: &str) -> Result<String, String> {
    let q = s.chars().next().ok_or("empty")?;
    if !s.ends_with(q) || s.len() < 2 {
        return Err(format!("unterminated string {s:?}"));
    }
    let body = &s[1..s.len() - 1];
    if q == '`' {
        return Ok(body.to_string());
    }
    let mut out = Vec::new();
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 1;
        let c = *b.get(i).ok_or("trailing backslash")?;
        i += 1;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\\' => out.push(b'\\'),
            b'"' => out.push(b'"'),
            b'\'' => out.push(b'\''),
            b'x' => {
                let h = std::str::from_utf8(&b[i..i + 2]).map_err(|e| e.to_string())?;
                out.push(u8::from_str_radix(h, 16).map_err(|e| e.to_string())?);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if c == b'u' { 4 } else { 8 };
                let h = std::str::from_utf8(&b[i..i + n]).map_err(|e| e.to_string())?;
                let cp = u32::from_str_radix(h, 16).map_err(|e| e.to_string())?;
                let ch = char::from_u32(cp).ok_or("bad code point")?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            b'0'..=b'7' => {
                let h = std::str::from_utf8(&b[i - 1..i + 2]).map_err(|e| e.to_string())?;
                out.push(u8::from_str_radix(h, 8).map_err(|e| e.to_string())?);
                i += 2;
            }
            other => return Err(format!("unknown escape \\{}", other as char)),
        }
    }
    String::from_utf8(out).map_err(|_| "invalid UTF-8 in string".to_string())
}

/// Parses `metric{l="v", ...} values...` into labels and the rest of the line.
fn parse_series_labels(line: &str) -> Result<(Labels, &str), String> {
    let line = line.trim();
    let mut labels = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    if i > 0 {
        labels.push(Label::new("__name__", &line[..i]));
    }
    if i < b.len() && b[i] == b'{' {
        i += 1;
        loop {
            while i < b.len() && (b[i] == b' ' || b[i] == b',' || b[i] == b'\t') {
                i += 1;
            }
            if i >= b.len() {
                return Err("unterminated label set".into());
            }
            if b[i] == b'}' {
                i += 1;
                break;
            }
            // A name, possibly quoted.
            let (name, after) = if b[i] == b'"' || b[i] == b'\'' {
                let end = find_quote_end(b, i)?;
                (unquote(&line[i..=end])?, end + 1)
            } else {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                (line[start..i].to_string(), i)
            };
            i = after;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i < b.len() && b[i] == b'=' {
                i += 1;
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
                let end = find_quote_end(b, i)?;
                let value = unquote(&line[i..=end])?;
                i = end + 1;
                labels.push(Label::new(name, value));
            } else {
                // A bare quoted metric name: {"metric.name"}.
                labels.push(Label::new("__name__", name));
            }
        }
    }
    Ok((Labels::new(labels), &line[i..]))
}

fn find_quote_end(b: &[u8], start: usize) -> Result<usize, String> {
    let q = *b.get(start).ok_or("expected a quote")?;
    if q != b'"' && q != b'\'' && q != b'`' {
        return Err(format!("expected a quoted string at byte {start}"));
    }
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && q != b'`' {
            i += 2;
            continue;
        }
        if b[i] == q {
            return Ok(i);
        }
        i += 1;
    }
    Err("unterminated string".into())
}

/// Expands the value notation (`1 2 _ stale 0+10x10 1x5 _x3 {{...}}x2`).
fn parse_values(s: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            // A native histogram, possibly with an expansion suffix.
            let end = rest.find("}}").ok_or("unterminated histogram")? + 2;
            let mut tail_end = end;
            let tail = &rest[end..];
            let mut count = 1usize;
            if let Some(t) = tail.strip_prefix('+').or_else(|| tail.strip_prefix('-')) {
                if t.starts_with("{{") {
                    let e2 = t.find("}}").ok_or("unterminated histogram")? + 2;
                    let after = &t[e2..];
                    let x = after.strip_prefix('x').ok_or("expected x")?;
                    let digits: String = x.chars().take_while(|c| c.is_ascii_digit()).collect();
                    count = digits.parse::<usize>().map_err(|e| e.to_string())? + 1;
                    tail_end = end + 1 + e2 + 1 + digits.len();
                }
            } else if let Some(x) = tail.strip_prefix('x') {
                let digits: String = x.chars().take_while(|c| c.is_ascii_digit()).collect();
                if !digits.is_empty() {
                    count = digits.parse::<usize>().map_err(|e| e.to_string())? + 1;
                    tail_end = end + 1 + digits.len();
                }
            }
            out.extend(std::iter::repeat_n(SeqValue::Histogram, count));
            rest = rest[tail_end..].trim_start();
            continue;
        }
        let tok_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let tok = &rest[..tok_end];
        rest = rest[tok_end..].trim_start();
        out.extend(expand_token(tok)?);
    }
    Ok(out)
}

fn expand_token(tok: &str) -> Result<Vec<SeqValue>, String> {
    if tok == "_" {
        return Ok(vec![SeqValue::Omitted]);
    }
    if let Some(n) = tok.strip_prefix("_x") {
        let n: usize = n.parse().map_err(|_| format!("bad token {tok:?}"))?;
        return Ok(vec![SeqValue::Omitted; n]);
    }
    if tok == "stale" {
        return Ok(vec![SeqValue::Float(f64::from_bits(
            strata_promql::STALE_NAN_BITS,
        ))]);
    }
    if !tok.starts_with("0x")
        && let Some(v) = parse_number(tok)
    {
        return Ok(vec![SeqValue::Float(v)]);
    }
    // a+bxn, a-bxn, axn.
    let xpos = tok.rfind('x').ok_or_else(|| format!("bad value {tok:?}"))?;
    let times: usize = tok[xpos + 1..]
        .parse()
        .map_err(|_| format!("bad value {tok:?}"))?;
    let head = &tok[..xpos];
    let bytes = head.as_bytes();
    let mut split = None;
    for i in (1..bytes.len()).rev() {
        if (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E') {
            split = Some(i);
            break;
        }
    }
    let (a, b) = match split {
        Some(i) => {
            let a = parse_number(&head[..i]).ok_or_else(|| format!("bad value {tok:?}"))?;
            let d = parse_number(&head[i + 1..]).ok_or_else(|| format!("bad value {tok:?}"))?;
            (a, if bytes[i] == b'-' { -d } else { d })
        }
        None => (
            parse_number(head).ok_or_else(|| format!("bad value {tok:?}"))?,
            0.0,
        ),
    };
    let mut out = Vec::with_capacity(times + 1);
    let mut v = a;
    for _ in 0..=times {
        out.push(SeqValue::Float(v));
        v += b;
    }
    Ok(out)
}

fn parse_expect_line(line: &str, ex: &mut Expect) -> Result<(), String> {
    let re =
        Regex::new(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
            .expect("valid");
    let caps = re
        .captures(line.trim())
        .ok_or_else(|| format!("invalid expect line {line:?}"))?;
    let m = match (caps.get(2).map(|m| m.as_str()), caps.get(3)) {
        (Some("msg"), Some(t)) => Some(Matcher::Msg(t.as_str().trim().to_string())),
        (Some("regex"), Some(t)) => Some(Matcher::Re(
            Regex::new(t.as_str().trim()).map_err(|e| e.to_string())?,
        )),
        _ => None,
    };
    match &caps[1] {
        "ordered" => ex.ordered = true,
        "fail" => ex.fail = Some(m),
        "warn" => match m {
            Some(m) => ex.warn.push(m),
            None => ex.any_warn = true,
        },
        "info" => match m {
            Some(m) => ex.info.push(m),
            None => ex.any_info = true,
        },
        "no_warn" => ex.no_warn = true,
        _ => ex.no_info = true,
    }
    Ok(())
}

fn parse_script(text: &str) -> Result<Vec<(usize, Cmd)>, String> {
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_string()
            }
        })
        .collect();
    let re_load = Regex::new(r"^load(?:_(with_nhcb))?\s+(.+?)$").expect("valid");
    let re_inst =
        Regex::new(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
            .expect("valid");
    let re_range = Regex::new(
        r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
    )
    .expect("valid");
    let re_rv = Regex::new(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$")
        .expect("valid");
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let lineno = i + 1;
        let word = l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if word == "clear" {
            cmds.push((lineno, Cmd::Clear));
            i += 1;
        } else if word.starts_with("load") {
            let caps = re_load.captures(l).ok_or("bad load")?;
            let nhcb = caps.get(1).is_some();
            let interval = parse_duration(&caps[2])?;
            let mut series = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].is_empty() {
                let (labels, rest) =
                    parse_series_labels(&lines[i]).map_err(|e| format!("line {}: {e}", i + 1))?;
                if labels.is_empty() && rest.trim_start().starts_with("@st") {
                    i += 1;
                    continue;
                }
                if rest.starts_with("@st") {
                    i += 1;
                    continue;
                }
                let vals = parse_values(rest).map_err(|e| format!("line {}: {e}", i + 1))?;
                series.push((labels, vals));
                i += 1;
            }
            cmds.push((
                lineno,
                Cmd::Load {
                    interval,
                    nhcb,
                    series,
                },
            ));
        } else if word.starts_with("eval") {
            let mut ev = Eval {
                line: lineno,
                expr: String::new(),
                range: None,
                at: 0,
                expect: Expect::default(),
                scalar: None,
                string: None,
                range_vector: None,
                series: Vec::new(),
            };
            let modifier;
            if let Some(c) = re_inst.captures(l) {
                modifier = c.get(1).map(|m| m.as_str().to_string());
                ev.at = c.get(2).map_or(Ok(0), |m| parse_duration(m.as_str()))?;
                ev.expr = c[3].to_string();
            } else if let Some(c) = re_range.captures(l) {
                modifier = c.get(1).map(|m| m.as_str().to_string());
                ev.range = Some((
                    parse_duration(&c[2])?,
                    parse_duration(&c[3])?,
                    parse_duration(&c[4])?,
                ));
                ev.expr = c[5].to_string();
            } else {
                return Err(format!("line {lineno}: bad eval {l:?}"));
            }
            match modifier.as_deref() {
                Some("fail") => ev.expect.fail = Some(None),
                Some("warn") => ev.expect.any_warn = true,
                Some("info") => ev.expect.any_info = true,
                Some("ordered") => ev.expect.ordered = true,
                _ => {}
            }
            i += 1;
            let mut pos = 0;
            while i < lines.len() && !lines[i].is_empty() {
                let d = &lines[i];
                i += 1;
                if let Some(rest) = d.strip_prefix("expected_fail_message") {
                    ev.expect.fail = Some(Some(Matcher::Msg(rest.trim().to_string())));
                    break;
                }
                if let Some(rest) = d.strip_prefix("expected_fail_regexp") {
                    ev.expect.fail = Some(Some(Matcher::Re(
                        Regex::new(rest.trim()).map_err(|e| e.to_string())?,
                    )));
                    break;
                }
                if let Some(c) = re_rv.captures(d) {
                    ev.range_vector = Some((
                        parse_duration(&c[1])?,
                        parse_duration(&c[2])?,
                        parse_duration(&c[3])?,
                    ));
                    continue;
                }
                if let Some(rest) = d.strip_prefix("expect string") {
                    ev.string = Some(unquote(rest.trim())?);
                    continue;
                }
                if d.split(' ').next() == Some("expect") {
                    parse_expect_line(d, &mut ev.expect)?;
                    continue;
                }
                if let Some(v) = parse_number(d) {
                    ev.scalar = Some(v);
                    break;
                }
                pos += 1;
                let (labels, rest) =
                    parse_series_labels(d).map_err(|e| format!("line {i}: {e}"))?;
                let vals = parse_values(rest).map_err(|e| format!("line {i}: {e}"))?;
                ev.series.push((labels, vals, pos));
            }
            cmds.push((lineno, Cmd::Eval(Box::new(ev))));
        } else {
            return Err(format!("line {lineno}: unknown command {l:?}"));
        }
    }
    Ok(cmds)
}

// ---------------------------------------------------------------------------------------
// Execution.

fn almost_equal(a: f64, b: f64) -> bool {
    const EPS: f64 = 1e-6;
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < EPS * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < EPS
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Pass,
    Fail(String),
    /// Evaluation touched native histograms.
    NativeHistogram,
}

/// The test data as the engine sees it: [`MemStorage`]'s selections handed over in batches
/// of two series (after an empty one), so that every case also checks evaluation over
/// batches, which is how the querier hands over selections while they stream in. Every
/// selection is started early, before evaluation, as the querier's are
/// ([`Storage::select_early`]); the counters below check that evaluation then takes them.
#[derive(Debug)]
struct Batched(MemStorage);

/// Selections started early, early selections evaluation read, and selections made without
/// an early start.
static EARLY: AtomicUsize = AtomicUsize::new(0);
static READ: AtomicUsize = AtomicUsize::new(0);
static LATE: AtomicUsize = AtomicUsize::new(0);

impl Batched {
    fn batches(
        &self,
        ms: &[strata_model::Matcher],
        hints: &SelectHints,
    ) -> Result<Vec<Result<SelectResult, StorageError>>, StorageError> {
        let all = self.0.select(ms, hints)?;
        let mut batches = vec![Ok(SelectResult {
            series: Vec::new(),
            warnings: all.warnings,
        })];
        for pair in all.series.chunks(2) {
            batches.push(Ok(SelectResult {
                series: pair.to_vec(),
                warnings: Vec::new(),
            }));
        }
        Ok(batches)
    }
}

impl Storage for Batched {
    fn selects_early(&self) -> bool {
        true
    }

    fn select_early(
        &self,
        ms: &[strata_model::Matcher],
        hints: &SelectHints,
    ) -> Option<Result<SelectBatches, StorageError>> {
        EARLY.fetch_add(1, Ordering::Relaxed);
        let mut first = true;
        Some(self.batches(ms, hints).map(|b| -> SelectBatches {
            Box::new(b.into_iter().inspect(move |_| {
                if std::mem::take(&mut first) {
                    READ.fetch_add(1, Ordering::Relaxed);
                }
            }))
        }))
    }

    fn select(
        &self,
        ms: &[strata_model::Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        self.0.select(ms, hints)
    }

    fn select_batches(
        &self,
        ms: &[strata_model::Matcher],
        hints: &SelectHints,
    ) -> Result<SelectBatches, StorageError> {
        LATE.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(self.batches(ms, hints)?.into_iter()))
    }

    fn label_names(
        &self,
        sets: &[Vec<strata_model::Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.0.label_names(sets, mint, maxt)
    }

    fn label_values(
        &self,
        name: &str,
        sets: &[Vec<strata_model::Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.0.label_values(name, sets, mint, maxt)
    }

    fn series_labels(
        &self,
        sets: &[Vec<strata_model::Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        self.0.series_labels(sets, mint, maxt)
    }
}

struct Runner {
    engine: Engine,
    storage: Batched,
    /// Whether the loaded data has native (or NHCB) histograms.
    has_histograms: bool,
}

fn load(
    storage: &mut MemStorage,
    interval: i64,
    nhcb: bool,
    series: &[(Labels, Vec<SeqValue>)],
) -> bool {
    let mut hist = false;
    for (labels, vals) in series {
        for (i, v) in vals.iter().enumerate() {
            let t = i as i64 * interval;
            match v {
                SeqValue::Omitted => {}
                SeqValue::Float(f) => storage.add(labels, t, *f),
                SeqValue::Histogram => {
                    hist = true;
                    storage.add_native_histogram(labels, t);
                }
            }
        }
        if nhcb {
            // Classic histogram series also become a native histogram with custom buckets
            // under the base name: record it as histogram samples.
            let name = labels.get("__name__").unwrap_or("");
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suf| name.strip_suffix(suf));
            if let Some(base) = base {
                if name.ends_with("_bucket") && labels.get("le").is_none() {
                    continue;
                }
                let mut b = labels.builder();
                b.set("__name__", base.to_string());
                b.remove("le");
                let l = b.build();
                for (i, v) in vals.iter().enumerate() {
                    if matches!(v, SeqValue::Float(_)) {
                        hist = true;
                        storage.add_native_histogram(&l, i as i64 * interval);
                    }
                }
            }
        }
    }
    hist
}

fn check_annotations(out: &QueryOutput, ex: &Expect) -> Result<(), String> {
    let warnings: Vec<&String> = out.annotations.warnings.iter().collect();
    let infos: Vec<&String> = out.annotations.infos.iter().collect();
    if ex.any_warn && warnings.is_empty() && ex.warn.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if ex.any_info && infos.is_empty() && ex.info.is_empty() {
        return Err("expected infos but got none".into());
    }
    for (kind, exp, got) in [("warn", &ex.warn, &warnings), ("info", &ex.info, &infos)] {
        if exp.is_empty() {
            continue;
        }
        if got.is_empty() {
            return Err(format!("expected {kind} annotations but none were found"));
        }
        for e in exp.iter() {
            if !got.iter().any(|g| e.matches(g)) {
                return Err(format!("expected {kind} annotation {e:?}, found {got:?}"));
            }
        }
        for g in got.iter() {
            if !exp.iter().any(|e| e.matches(g)) {
                return Err(format!("unexpected {kind} annotation {g:?}"));
            }
        }
    }
    if ex.no_warn && !warnings.is_empty() {
        return Err(format!("unexpected warnings {warnings:?}"));
    }
    if ex.no_info && !infos.is_empty() {
        return Err(format!("unexpected infos {infos:?}"));
    }
    Ok(())
}

fn compare(ev: &Eval, v: &Value, range: Option<(i64, i64, i64)>) -> Result<(), String> {
    match v {
        Value::Matrix(series) => {
            if ev.expect.ordered {
                return Err("expected ordered result, but query returned a matrix".into());
            }
            if ev.scalar.is_some() {
                return Err("expected scalar, got matrix".into());
            }
            for w in series.windows(2) {
                if w[0].labels > w[1].labels {
                    return Err("matrix not sorted by labels".into());
                }
            }
            let (start, end, step) = range.unwrap_or((0, 0, 1));
            let mut seen = 0;
            for s in series {
                let Some((_, exp, _)) = ev.series.iter().find(|(l, _, _)| *l == s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result: {:?}",
                        s.labels, s.points
                    ));
                };
                seen += 1;
                let mut expected = Vec::new();
                for (i, e) in exp.iter().enumerate() {
                    let t = start + i as i64 * step;
                    if t > end {
                        return Err(format!("expected {} points, range too short", exp.len()));
                    }
                    match e {
                        SeqValue::Float(f) => expected.push((t, *f)),
                        SeqValue::Histogram => return Err("histogram expected".into()),
                        SeqValue::Omitted => {}
                    }
                }
                if expected.len() != s.points.len() {
                    return Err(format!(
                        "{}: expected {} points {:?}, got {:?}",
                        s.labels,
                        expected.len(),
                        expected,
                        s.points
                    ));
                }
                for (e, g) in expected.iter().zip(&s.points) {
                    if e.0 != g.0 || !almost_equal(e.1, g.1) {
                        return Err(format!(
                            "{}: expected {:?}, got {:?}",
                            s.labels, expected, s.points
                        ));
                    }
                }
            }
            if seen != ev.series.len() {
                let missing: Vec<String> = ev
                    .series
                    .iter()
                    .filter(|(l, _, _)| !series.iter().any(|s| s.labels == *l))
                    .map(|(l, _, _)| l.to_string())
                    .collect();
                return Err(format!("expected metrics not found: {missing:?}"));
            }
            Ok(())
        }
        Value::Vector(samples) => {
            if ev.scalar.is_some() {
                return Err(format!("expected scalar, got vector {samples:?}"));
            }
            for (pos, s) in samples.iter().enumerate() {
                let Some((_, exp, epos)) = ev.series.iter().find(|(l, _, _)| *l == s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, value {}",
                        s.labels, s.v
                    ));
                };
                if ev.expect.ordered && *epos != pos + 1 {
                    return Err(format!(
                        "expected {} at position {epos}, was at {}",
                        s.labels,
                        pos + 1
                    ));
                }
                match exp.first() {
                    Some(SeqValue::Float(f)) => {
                        if !almost_equal(*f, s.v) {
                            return Err(format!("expected {f} for {}, got {}", s.labels, s.v));
                        }
                    }
                    Some(SeqValue::Histogram) => return Err("histogram expected".into()),
                    _ => return Err(format!("no expected value for {}", s.labels)),
                }
            }
            for (l, _, _) in &ev.series {
                if !samples.iter().any(|s| s.labels == *l) {
                    return Err(format!("expected metric {l} not found"));
                }
            }
            Ok(())
        }
        Value::Scalar { v, .. } => match ev.scalar {
            Some(e) if almost_equal(e, *v) => Ok(()),
            Some(e) => Err(format!("expected scalar {e}, got {v}")),
            None => Err(format!("expected vector or matrix, got scalar {v}")),
        },
        Value::String { s, .. } => match &ev.string {
            Some(e) if e == s => Ok(()),
            other => Err(format!("expected string {other:?}, got {s:?}")),
        },
    }
}

/// Functions whose results depend on the evaluation time even with `@`
/// (Prometheus' `AtModifierUnsafeFunctions`).
const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
    "start",
    "end",
    "range",
    "step",
];

/// Adds `@ t` to every selector and subquery without one, except inside subqueries that
/// have one. Returns false if the expression uses an `@`-unsafe function.
fn add_at(e: &mut Expr, t: i64) -> bool {
    let at = AtModifier::try_from(t as f64 / 1000.0).expect("finite");
    fn walk(e: &mut Expr, at: &AtModifier, safe: &mut bool) {
        match e {
            Expr::VectorSelector(vs) if vs.at.is_none() => vs.at = Some(at.clone()),
            Expr::MatrixSelector(ms) if ms.vs.at.is_none() => ms.vs.at = Some(at.clone()),
            // Prometheus leaves everything inside a subquery with `@` alone (and does not
            // look for unsafe functions there either).
            Expr::Subquery(sq) if sq.at.is_none() => sq.at = Some(at.clone()),
            Expr::Aggregate(a) => {
                walk(&mut a.expr, at, safe);
                if let Some(p) = &mut a.param {
                    walk(p, at, safe);
                }
            }
            Expr::Unary(u) => walk(&mut u.expr, at, safe),
            Expr::Binary(b) => {
                walk(&mut b.lhs, at, safe);
                walk(&mut b.rhs, at, safe);
            }
            Expr::Paren(p) => walk(&mut p.expr, at, safe),
            Expr::Call(c) => {
                if AT_UNSAFE.contains(&c.func.name) {
                    *safe = false;
                }
                for a in &mut c.args.args {
                    walk(a, at, safe);
                }
            }
            _ => {}
        }
    }
    let mut safe = true;
    walk(e, &at, &mut safe);
    safe
}

impl Runner {
    fn run_eval(&self, ev: &Eval) -> Outcome {
        let expr = match self.engine.parse(&ev.expr) {
            Ok(e) => e,
            Err(e) => {
                return if ev.expect.fail.is_some() {
                    check_fail(ev, &e)
                } else {
                    Outcome::Fail(format!("parse: {e}"))
                };
            }
        };
        let ctx = QueryContext::new();
        if let Some((start, end, step)) = ev.range {
            let res = self
                .engine
                .range_expr(&self.storage, &expr, start, end, step, &ctx);
            return self.judge(ev, res, Some((start, end, step)));
        }
        let (t, rv) = match ev.range_vector {
            Some((s, e, st)) => (e, Some((s, e, st))),
            None => (ev.at, None),
        };
        let res = self.engine.instant_expr(&self.storage, &expr, t, &ctx);
        let is_scalar = matches!(
            res,
            Ok(QueryOutput {
                value: Value::Scalar { .. },
                ..
            })
        );
        let o = self.judge(ev, res, rv);
        if o != Outcome::Pass || ev.expect.fail.is_some() {
            return o;
        }
        let skip_range = ev.string.is_some()
            || ev.range_vector.is_some()
            || Regex::new(r"(start|end|range|step)\(\)")
                .expect("valid")
                .is_match(&ev.expr);
        if !skip_range && let Err(o) = self.range_check(ev, &expr, t, is_scalar) {
            return o;
        }
        // The @ re-runs.
        let mut at_expr = expr.clone();
        if add_at(&mut at_expr, t) {
            let times: Vec<i64> = if t == 0 {
                vec![-1000, 0, 1000]
            } else {
                vec![-10 * t, 0, t / 5, t, 10 * t]
            };
            for et in times {
                let res = self.engine.instant_expr(&self.storage, &at_expr, et, &ctx);
                let is_scalar = matches!(
                    res,
                    Ok(QueryOutput {
                        value: Value::Scalar { .. },
                        ..
                    })
                );
                let o = self.judge(ev, res, rv);
                if o != Outcome::Pass {
                    return match o {
                        Outcome::Fail(m) => Outcome::Fail(format!("@ re-run at {et}: {m}")),
                        other => other,
                    };
                }
                if !skip_range && let Err(o) = self.range_check(ev, &at_expr, et, is_scalar) {
                    return o;
                }
            }
        }
        Outcome::Pass
    }

    fn range_check(&self, ev: &Eval, expr: &Expr, t: i64, is_scalar: bool) -> Result<(), Outcome> {
        let ctx = QueryContext::new();
        let res = self
            .engine
            .range_expr(&self.storage, expr, t - 60_000, t + 60_000, 60_000, &ctx);
        let out = match res {
            Ok(o) => o,
            Err(Error::NativeHistogram(_)) => return Err(Outcome::NativeHistogram),
            Err(e) => return Err(Outcome::Fail(format!("range mode: {e}"))),
        };
        if ev.expect.ordered {
            return Ok(());
        }
        let Value::Matrix(m) = out.value else {
            return Err(Outcome::Fail("range mode: not a matrix".into()));
        };
        for w in m.windows(2) {
            if w[0].labels > w[1].labels {
                return Err(Outcome::Fail("range mode: matrix not sorted".into()));
            }
        }
        let samples: Vec<strata_promql::Sample> = m
            .iter()
            .filter_map(|s| {
                s.points
                    .iter()
                    .find(|p| p.0 == t)
                    .map(|p| strata_promql::Sample {
                        labels: s.labels.clone(),
                        t,
                        v: p.1,
                    })
            })
            .collect();
        let v = if is_scalar {
            match samples.first() {
                Some(s) => Value::Scalar { t, v: s.v },
                None => return Err(Outcome::Fail("range mode: no scalar point".into())),
            }
        } else {
            Value::Vector(samples)
        };
        compare(ev, &v, None).map_err(|m| Outcome::Fail(format!("range mode: {m}")))
    }

    fn judge(
        &self,
        ev: &Eval,
        res: Result<QueryOutput, Error>,
        range: Option<(i64, i64, i64)>,
    ) -> Outcome {
        match res {
            Err(Error::NativeHistogram(_)) => Outcome::NativeHistogram,
            Err(e) => {
                if ev.expect.fail.is_some() {
                    check_fail(ev, &e)
                } else {
                    Outcome::Fail(format!("error: {e}"))
                }
            }
            Ok(out) => {
                if ev.expect.fail.is_some() {
                    return Outcome::Fail(format!("expected an error, got {:?}", out.value));
                }
                if let Err(m) = check_annotations(&out, &ev.expect) {
                    return Outcome::Fail(m);
                }
                match compare(ev, &out.value, range) {
                    Ok(()) => Outcome::Pass,
                    Err(m) => Outcome::Fail(m),
                }
            }
        }
    }
}

fn check_fail(ev: &Eval, e: &Error) -> Outcome {
    match &ev.expect.fail {
        Some(Some(m)) if !m.matches(&e.to_string()) => {
            Outcome::Fail(format!("expected error matching {m:?}, got {e}"))
        }
        _ => Outcome::Pass,
    }
}

fn read_skips() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(skips_path()) else {
        return out;
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((k, v)) = line.split_once(" = ") {
            out.insert(
                k.trim().trim_matches('"').to_string(),
                v.trim().trim_matches('"').to_string(),
            );
        }
    }
    out
}

fn write_skips(skips: &BTreeMap<String, String>) {
    let mut s = String::from(
        "# Conformance cases the engine skips, with the reason (file:line of the eval command).\n\
         # Generated by `STRATA_CONFORMANCE_UPDATE=1 cargo test -p strata-promql --test \
         conformance`;\n# entries whose reason starts with \"known:\" are kept by hand.\n\n[skips]\n",
    );
    for (k, v) in skips {
        s.push_str(&format!("\"{k}\" = \"{v}\"\n"));
    }
    std::fs::write(skips_path(), s).expect("writing skips.toml");
}

fn main() {
    let dir = conformance_dir();
    let update = std::env::var("STRATA_CONFORMANCE_UPDATE").is_ok_and(|v| v == "1");
    let verbose = std::env::var("STRATA_CONFORMANCE_VERBOSE").is_ok_and(|v| v == "1");
    let filter = std::env::var("STRATA_CONFORMANCE_FILTER").unwrap_or_default();
    let old_skips = read_skips();
    let mut new_skips: BTreeMap<String, String> = old_skips
        .iter()
        .filter(|(_, v)| v.starts_with("known:"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("reading conformance dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for path in files {
        let fname = path.file_name().unwrap().to_string_lossy().to_string();
        if !filter.is_empty() && !fname.contains(&filter) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("reading test file");
        let cmds = match parse_script(&text) {
            Ok(c) => c,
            Err(e) => panic!("{fname}: {e}"),
        };
        let file_skip = SKIPPED_FILES
            .iter()
            .find(|(f, _)| *f == fname)
            .map(|(_, r)| *r);
        let mut runner = Runner {
            engine: Engine::new(EngineOptions {
                experimental_functions: true,
                delayed_name_removal: true,
                ..EngineOptions::default()
            }),
            storage: Batched(MemStorage::new()),
            has_histograms: false,
        };
        for (_, cmd) in &cmds {
            match cmd {
                Cmd::Clear => {
                    runner.storage.0.clear();
                    runner.has_histograms = false;
                }
                Cmd::Load {
                    interval,
                    nhcb,
                    series,
                } => {
                    runner.has_histograms |= load(&mut runner.storage.0, *interval, *nhcb, series);
                }
                Cmd::Eval(ev) => {
                    let key = format!("{fname}:{}", ev.line);
                    if let Some(reason) = file_skip {
                        skipped += 1;
                        if update {
                            new_skips.insert(key, reason.to_string());
                        }
                        continue;
                    }
                    if !update && let Some(_reason) = old_skips.get(&key) {
                        skipped += 1;
                        continue;
                    }
                    if update && new_skips.contains_key(&key) {
                        skipped += 1;
                        continue;
                    }
                    let expects_hist = ev
                        .series
                        .iter()
                        .any(|(_, v, _)| v.iter().any(|x| matches!(x, SeqValue::Histogram)));
                    let outcome = if expects_hist {
                        Outcome::NativeHistogram
                    } else {
                        runner.run_eval(ev)
                    };
                    match outcome {
                        Outcome::Pass => passed += 1,
                        Outcome::NativeHistogram => {
                            if update {
                                skipped += 1;
                                new_skips.insert(key, "native histograms (a later issue)".into());
                            } else {
                                failed += 1;
                                failures.push(format!(
                                    "{key}: {}: touches native histograms but is not in skips.toml",
                                    ev.expr
                                ));
                            }
                        }
                        Outcome::Fail(m) => {
                            failed += 1;
                            failures.push(format!("{key}: {}: {m}", ev.expr));
                        }
                    }
                }
            }
        }
    }
    if update {
        write_skips(&new_skips);
    }
    if verbose || failures.len() <= 50 {
        for f in &failures {
            println!("FAIL {f}");
        }
    } else {
        for f in failures.iter().take(50) {
            println!("FAIL {f}");
        }
        println!("... and {} more failures", failures.len() - 50);
    }
    println!("conformance: {passed} passed, {failed} failed, {skipped} skipped");
    let (early, read, late) = (
        EARLY.load(Ordering::Relaxed),
        READ.load(Ordering::Relaxed),
        LATE.load(Ordering::Relaxed),
    );
    println!("selections: {early} started early, {read} of them read, {late} made late");
    // The pass that finds a query's selections must find exactly what evaluation selects:
    // a selection made late lost its head start, one never read was a wasted request.
    if late > 0 || read != early {
        println!("FAIL early selections do not match what evaluation selected");
        std::process::exit(1);
    }
    if failed > 0 {
        std::process::exit(1);
    }
}
