//! Random templates expanded by Prometheus 2.42 (`promtool test rules`, which evaluates an
//! alerting rule and prints the annotations it got) and by `strata_rule::template` must agree.
//!
//! A seeded generator builds a few hundred templates from function calls, `printf` verbs,
//! pipelines, control structures, variables and `define`/`template`, over ints, floats,
//! strings, maps and missing values, for several alert values (0, NaN, ±Inf, tiny, huge). Many
//! of them fail, which compares error messages too. A second test throws token soup at the
//! parser and compares its syntax errors with `promtool check rules`'. The rule files are JSON
//! (valid YAML).

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::json;
use strata_model::Labels;
use strata_rule::template::{Template, TemplateData, expand};
use strata_testutil::prometheus::promtool;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const INTS: &[&str] = &[
    "0", "1", "-1", "42", "255", "3", "1000000", "0x10", "017", "'a'",
];
const FLOATS: &[&str] = &[
    "$value",
    "$value",
    "1.5",
    "0.0",
    "-2.25",
    "1e3",
    "1e-9",
    "123456.789",
    "0.5",
    "2.5",
    "1e21",
    ".5",
];
const STRINGS: &[&str] = &[
    r#""abc""#,
    r#""héllo""#,
    r#""host-1.example.com:9100""#,
    r#""""#,
    r#""1.5""#,
    r#""-3""#,
    r#""a b&c""#,
    r#""%d""#,
    r#""<x>""#,
    r#""NaN""#,
    r#""1e5""#,
    r#""1h30m""#,
    r#""[::1]:80""#,
];
const VALUES: &[&str] = &[
    "$value",
    ".Value",
    "$labels.instance",
    ".Labels.instance",
    "$labels.nope",
    "$externalLabels",
    ".Labels",
    "$",
    r#"(args 1 "x")"#,
    "(args).nope",
    "nil",
    "true",
    "false",
];
const UNARY: &[&str] = &[
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "title",
    "toUpper",
    "toLower",
    "stripPort",
    "stripDomain",
    "safeHtml",
    "graphLink",
    "tableLink",
    "len",
    "not",
    "html",
    "js",
    "urlquery",
    "print",
    "println",
    "parseDuration",
];
const BINARY: &[&str] = &[
    "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "index", "slice", "match", "print",
];
const FORMATS: &[&str] = &[
    r#""%v""#,
    r#""%d""#,
    r#""%s""#,
    r#""%5.2f""#,
    r#""%x""#,
    r#""%q""#,
    r#""%e""#,
    r#""%g""#,
    r#""%-6v|""#,
    r#""%+d""#,
    r#""%T""#,
    r#""%08.3f""#,
    r#""%.3s""#,
    r#""%t""#,
    r#""%c""#,
    r#""%U""#,
    r#""%o""#,
    r#""%X""#,
    r#""% d""#,
    r#""%#v""#,
    r#""%6.1e""#,
    r#""%.0f""#,
    r#""%10.4g""#,
    r#""%%%v""#,
];

fn atom(r: &mut Rng, depth: usize) -> String {
    match r.below(5) {
        0 => r.pick(INTS).to_owned(),
        1 => r.pick(FLOATS).to_owned(),
        2 => r.pick(STRINGS).to_owned(),
        3 => r.pick(VALUES).to_owned(),
        _ if depth > 2 => r.pick(VALUES).to_owned(),
        _ => format!("({})", expr(r, depth + 1)),
    }
}

fn expr(r: &mut Rng, depth: usize) -> String {
    match r.below(20) {
        0..=5 => format!("{} {}", r.pick(UNARY), atom(r, depth)),
        6..=10 => format!("{} {} {}", r.pick(BINARY), atom(r, depth), atom(r, depth)),
        11..=14 => {
            let n = r.below(3);
            let args: Vec<String> = (0..n).map(|_| atom(r, depth)).collect();
            format!("printf {} {}", r.pick(FORMATS), args.join(" "))
        }
        15..=16 => format!("{} | {}", atom(r, depth), r.pick(UNARY)),
        17 => format!(
            "reReplaceAll {} {} {}",
            r.pick(&[r#""(a|b)""#, r#""[0-9]+""#, r#""(\\w+)""#]),
            r.pick(&[r#""<$1>""#, r#""x""#, r#""${1}y""#]),
            atom(r, depth)
        ),
        _ => atom(r, depth),
    }
}

fn template(r: &mut Rng, n: usize) -> String {
    match r.below(20) {
        0 => format!(
            "{{{{- {} -}}}} x {{{{/* c */}}}} {{{{ $y := {} }}}}{{{{ if $y }}}}{{{{ $y = 1 }}}}{{{{ end }}}}{{{{ $y }}}}",
            expr(r, 0),
            atom(r, 0)
        ),
        1 => format!(
            "{{{{ define \"d{n}\" }}}}<{{{{ . }}}}>{{{{ end }}}}{{{{ template \"d{n}\" {} }}}}",
            atom(r, 0)
        ),
        2..=14 => format!("{{{{ {} }}}}", expr(r, 0)),
        15..=16 => format!("{{{{ if {} }}}}T{{{{ else }}}}F{{{{ end }}}}", expr(r, 0)),
        17..=18 => format!(
            "{{{{ with {} }}}}[{{{{ . }}}}]{{{{ else }}}}none{{{{ end }}}}",
            expr(r, 0)
        ),
        _ => format!(
            "{{{{ range $k, $v := {} }}}}{{{{ $k }}}}={{{{ {} }}}};{{{{ end }}}}",
            r.pick(&[
                "$labels",
                "$externalLabels",
                r#"(args 1 2.5 "s")"#,
                ".Labels"
            ]),
            r.pick(&["$v", r#"printf "%v" $v"#, "len $v", "humanize $v"])
        ),
    }
}

/// Go's `strconv.Unquote` of a `%q` string body (between the quotes).
fn go_unquote(s: &str) -> String {
    let mut bytes = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            bytes.extend_from_slice(c.to_string().as_bytes());
            continue;
        }
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| {
            let digits: String = chars.take(n).collect();
            u32::from_str_radix(&digits, 16).expect("hex escape")
        };
        match chars.next() {
            Some('a') => bytes.push(7),
            Some('b') => bytes.push(8),
            Some('f') => bytes.push(12),
            Some('n') => bytes.push(b'\n'),
            Some('r') => bytes.push(b'\r'),
            Some('t') => bytes.push(b'\t'),
            Some('v') => bytes.push(11),
            Some('x') => bytes.push(hex(&mut chars, 2) as u8),
            Some('u') => bytes.extend_from_slice(
                char::from_u32(hex(&mut chars, 4))
                    .unwrap()
                    .to_string()
                    .as_bytes(),
            ),
            Some('U') => bytes.extend_from_slice(
                char::from_u32(hex(&mut chars, 8))
                    .unwrap()
                    .to_string()
                    .as_bytes(),
            ),
            Some(other) => bytes.extend_from_slice(other.to_string().as_bytes()),
            None => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The `aNNNN="…"` annotations in promtool's report of what the alert got.
fn promtool_annotations(report: &str) -> BTreeMap<usize, String> {
    let got = &report[report
        .find("got:")
        .unwrap_or_else(|| panic!("no alert in promtool's report:\n{report}"))..];
    let mut out = BTreeMap::new();
    let mut rest = got;
    // Each annotation reads ` aNNNN="…"` (or `{aNNNN="…"` for the first).
    while let Some(i) = rest.find("=\"") {
        let key = &rest[..i];
        let key = key.rsplit([' ', '{']).next().unwrap_or_default();
        let body = &rest[i + 2..];
        // The closing quote is the first one not escaped.
        let mut end = body.len();
        let mut escaped = false;
        for (j, c) in body.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = j;
                    break;
                }
                _ => {}
            }
        }
        if let Some(n) = key.strip_prefix('a').and_then(|n| n.parse::<usize>().ok()) {
            out.insert(n, go_unquote(&body[..end]));
        }
        rest = &body[(end + 1).min(body.len())..];
    }
    out
}

fn compare(seed: u64, value: &str, count: usize) -> Vec<String> {
    let mut rng = Rng(seed);
    let texts: Vec<String> = (0..count)
        .map(|i| {
            format!(
                "{}{}",
                template(&mut rng, 2 * i),
                template(&mut rng, 2 * i + 1)
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let annotations: BTreeMap<String, &String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("a{i:04}"), t))
        .collect();
    let rules = json!({"groups": [{"name": "g", "rules": [{
        "alert": "A",
        "expr": format!(r#"label_replace(vector({value}), "instance", "host-1:9100", "", "")"#),
        "annotations": annotations,
    }]}]});
    std::fs::write(dir.path().join("rules.yml"), rules.to_string()).unwrap();
    let test = json!({
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "external_labels": {"cluster": "c1", "env": "prod"},
            "input_series": [],
            "alert_rule_test": [{"eval_time": "0m", "alertname": "A", "exp_alerts": [{"exp_labels": {}, "exp_annotations": {}}]}],
        }],
    });
    std::fs::write(dir.path().join("test.yml"), test.to_string()).unwrap();
    let output = Command::new(promtool().expect("promtool (Prometheus 2.42)"))
        .args(["test", "rules", "test.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let theirs = promtool_annotations(&report);
    assert_eq!(
        theirs.len(),
        texts.len(),
        "promtool's report lacks annotations:\n{report}"
    );

    let data = TemplateData {
        labels: Labels::from_pairs(&[("instance", "host-1:9100")]),
        external_labels: Labels::from_pairs(&[("cluster", "c1"), ("env", "prod")]),
        external_url: String::new(),
        value: match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap(),
        },
    };
    let mut mismatches = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let ours = expand("__alert_A", text, &data, None).unwrap_or_else(|e| e.alert_text());
        if theirs[&i] != ours {
            mismatches.push(format!(
                "value {value}: {text}\n  prometheus: {:?}\n  strata:     {ours:?}",
                theirs[&i]
            ));
        }
    }
    mismatches
}

#[test]
fn random_templates_match_promtool() {
    let mut mismatches = Vec::new();
    for (seed, value) in [
        (1, "1234.5678"),
        (2, "0"),
        (3, "NaN"),
        (4, "+Inf"),
        (5, "-1e-300"),
        (6, "123456789012"),
    ] {
        mismatches.extend(compare(seed, value, 250));
    }
    assert!(
        mismatches.is_empty(),
        "{} expansions differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Pieces of template syntax, valid and not, for the parser test.
const SOUP: &[&str] = &[
    "{{",
    "}}",
    "{{- ",
    " -}}",
    "if ",
    "else ",
    "end",
    "range ",
    "with ",
    r#"define "x""#,
    r#"template "x""#,
    r#"block "b" ."#,
    "break",
    "continue",
    "$x := ",
    "$x = ",
    "$y",
    "$",
    ".",
    ".a",
    ".a.b",
    "(",
    ")",
    "|",
    " ",
    "1",
    "1.5",
    r#""s""#,
    "`r`",
    "'c'",
    "nil",
    "true",
    "printf ",
    "len ",
    "nosuch ",
    "@",
    ";",
    "/* c */",
    "$i, $e := ",
    r#""unterminated"#,
    "0x",
    "1e",
    "3x",
    ".5.5",
    ",",
    "=",
    ":=",
    "\n",
    "text ",
];

#[test]
fn random_syntax_errors_match_promtool() {
    let mut rng = Rng(42);
    let texts: Vec<String> = (0..600)
        .map(|_| {
            let n = 1 + rng.below(10);
            (0..n).map(|_| rng.pick(SOUP)).collect()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let annotations: BTreeMap<String, &String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("a{i:04}"), t))
        .collect();
    let rules = json!({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "vector(1)", "annotations": annotations}]}]});
    std::fs::write(dir.path().join("rules.yml"), rules.to_string()).unwrap();
    let output = Command::new(promtool().expect("promtool (Prometheus 2.42)"))
        .args(["check", "rules", "rules.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    // One line per annotation that does not parse: `… annotation "aNNNN": template: …`.
    let mut theirs = BTreeMap::new();
    for line in report.lines() {
        if let Some((_, rest)) = line.split_once("annotation \"a") {
            let (n, msg) = rest.split_once("\": ").expect("promtool's line format");
            theirs.insert(n.parse::<usize>().unwrap(), msg.to_owned());
        }
    }
    assert!(theirs.len() > 100, "expected many syntax errors:\n{report}");
    let mut mismatches = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let ours = match Template::parse_alert("__alert_A", text) {
            Ok(_) => None,
            Err(e) => Some(
                e.to_string()
                    .trim_start_matches("error parsing template __alert_A: ")
                    .to_owned(),
            ),
        };
        if theirs.get(&i) != ours.as_ref() {
            mismatches.push(format!(
                "{text:?}\n  prometheus: {:?}\n  strata:     {ours:?}",
                theirs.get(&i)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} differ:\n{}",
        mismatches.len(),
        texts.len(),
        mismatches.join("\n")
    );
}
