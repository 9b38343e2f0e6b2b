//! Alert templates expanded by real Prometheus 2.42 and by `strata_rule::template` must agree
//! byte for byte.
//!
//! Prometheus evaluates alerting rules (`for: 0s`, constant expressions with assorted values:
//! zero, negatives, tiny and huge numbers, NaN, ±Inf) whose annotations and one label exercise
//! every template function, printf verbs, control structures, trim markers, variables and
//! error messages. The test reads the firing alerts from `/api/v1/alerts` and expands the same
//! texts itself with the same data; the `query` function asks the same Prometheus over HTTP.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use strata_model::Labels;
use strata_rule::template::{QuerySample, TemplateData, TemplateQuerier, expand};
use strata_testutil::process::{ChildGuard, free_port, http_request};
use strata_testutil::prometheus::prometheus;

const EXTERNAL_URL: &str = "http://prom.example.com:9999/some/prefix";

/// The annotation texts, each a template Prometheus expands for every alert.
fn annotations() -> Vec<&'static str> {
    vec![
        "{{ $value }}",
        "{{ .Value }} {{ $labels.instance }} {{ .Labels.instance }} [{{ .Labels.missing }}]",
        "{{ humanize $value }}",
        "{{ humanize1024 $value }}",
        "{{ humanizeDuration $value }}",
        "{{ humanizePercentage $value }}",
        "{{ humanizeTimestamp $value }}",
        "{{ toTime $value }}",
        r#"{{ printf "%.2f|%5.1f|%e|%g|%v|%s|%d|%x|%q|%10.3g|%-10.1e|%+.0f" $value $value $value $value $value $value $value $value $value $value $value $value }}"#,
        r#"{{ printf "%-12s|%12s|%05d|%+d|%x|%X|%o|%c|%U|%t|%%|%q|%v" $labels.instance "right" 42 7 255 255 8 65 65 true "quo\"te" nil }}"#,
        "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
        "{{ range $externalLabels }}[{{ . }}]{{ end }} {{ $externalLabels.cluster }} {{ .ExternalLabels }}",
        "{{ $externalURL }} {{ externalURL }} {{ pathPrefix }} {{ .ExternalURL }}",
        "{{ if gt $value 100.0 }}big{{ else if lt $value 0.0 }}negative{{ else if eq $value 0.0 }}zero{{ else }}small{{ end }}",
        "{{ with $labels.instance }}{{ . | stripPort }} {{ stripDomain . }}{{ else }}no instance{{ end }}",
        "a   {{- \" b \" -}}   c {{/* comment */}} d {{- /* c2 */ -}} e\n  {{- \"f\" }}",
        r#"{{ with query "sort(label_replace(vector(3), \"x\", \"b\", \"\", \"\") or label_replace(vector(1.5), \"x\", \"a\", \"\", \"\"))" }}{{ . | first | value }} {{ . | first | label "x" }} {{ range . }}{{ .Labels.x }}={{ .Value }} {{ end }}{{ len . }}{{ end }}"#,
        r#"{{ range sortByLabel "x" (query "sort_desc(label_replace(vector(1), \"x\", \"a\", \"\", \"\") or label_replace(vector(2), \"x\", \"c\", \"\", \"\") or label_replace(vector(3), \"x\", \"b\", \"\", \"\"))") }}{{ .Labels.x }}{{ end }}"#,
        r#"{{ query "vector(1234567)" | first | value | humanize }} {{ (query "vector(7)" | first).Value }} {{ strvalue (query "vector(1)" | first) }}|"#,
        r#"{{ title "hello wide world" }} {{ toUpper "abc" }} {{ toLower "ABC" }}"#,
        r#"{{ match "^host" $labels.instance }} {{ reReplaceAll "(.*):(.*)" "$2/$1" $labels.instance }} {{ reReplaceAll "o" "0" "foo boo" }}"#,
        r#"{{ graphLink "up == 0" }} {{ tableLink "rate(x{a=\"b\"}[5m])" }}"#,
        r#"{{ args 1 "two" 3.5 }} {{ (args 1 2).arg1 }} {{ (args 1).nope }}"#,
        r#"{{ safeHtml "<b>x</b>" }} {{ html "<a href='x'>&</a>" }} {{ js "it's \"q\" <x>=&" }} {{ urlquery "a b/c?d=e&f" }}"#,
        r#"{{ parseDuration "1h2m3s" }} {{ parseDuration "1d" }} {{ parseDuration "150ms" }} {{ parseDuration "0" }}"#,
        r#"{{ len $labels }} {{ index $labels "instance" }} {{ slice "abcdef" 1 4 }} {{ len "héllo" }} {{ index "abc" 1 }}"#,
        r#"{{ define "sub" }}<{{ . }}>{{ end }}{{ template "sub" $labels.instance }}{{ block "blk" $value }}[{{ . }}]{{ end }}{{ template "sub" }}"#,
        r#"{{ print 1 2 "a" "b" 3.5 nil }} {{ println "x" 1 }}|{{ print $value "v" }}"#,
        r#"{{ and 1 0 }} {{ or 0 "" "x" }} {{ not true }} {{ and $value "nonzero" }} {{ or $value "zero" }}"#,
        "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }} {{ $.Value }} {{ with $y := 5 }}{{ $y }}{{ end }}",
        r#"{{ range $i, $e := query "sort(vector(1) or label_replace(vector(2), \"a\", \"b\", \"\", \"\") or label_replace(vector(3), \"a\", \"c\", \"\", \"\"))" }}{{ if eq $i 0 }}{{ continue }}{{ end }}{{ if eq $i 2 }}{{ break }}{{ end }}{{ $i }}:{{ $e.Value }} {{ end }}"#,
        r#"{{ eq "a" "b" "a" }} {{ ne 1 2 }} {{ le 1.5 1.5 }} {{ ge "b" "a" }} {{ lt $value 1e300 }}"#,
        "{{ 0x1F }} {{ 'a' }} {{ 1e3 }} {{ 1_000 }} {{ -0.5 }} {{ \"\\u00e9\\t\\x41\" }} {{ `raw\\n` }} {{ 0x1p-2 }} {{ 017 }}",
        r#"{{ humanize "not-a-number" }}"#,
        "{{ index $labels 1 }}",
        r#"{{ first (query "vector(1) == 2") }}"#,
        "{{ .NoSuchField }}",
        r#"{{ $value | printf "%.3e" }} {{ .Value | humanize }} {{ $value | eq 0.0 }}"#,
        r#"{{ humanize 1234567 }} {{ humanize 0.000012345 }} {{ humanize1024 1073741824 }} {{ humanizeDuration 0.0005 }} {{ humanizeDuration 59.5 }} {{ humanizeDuration 3725 }} {{ humanizeDuration "90061" }}"#,
        r#"{{ printf "%v" $labels }} {{ $labels }} {{ printf "%T %T %T %T %T" $value $labels 1 "s" (args) }}"#,
        r#"{{ printf "%d %s" 1.5 }} {{ printf "%d" 1 2 }} {{ printf "%!" }} {{ printf "%z" 1 }}"#,
        r#"{{ eq 1 1.0 }}"#,
        r#"{{ len 3 }}"#,
        r#"{{ humanizeTimestamp "1435065584.128" }} {{ toTime 1e9 }} {{ humanizeTimestamp -1.5 }}"#,
        "line1\n{{ $value }}\n  line3 {{ .Value | humanizePercentage }}",
        r#"{{ with toTime $value }}{{ .Format "2006-01-02T15:04:05.999Z07:00 Mon Jan _2 3PM" }} {{ .Unix }} {{ .UnixMilli }} {{ .Year }} {{ .Month }} {{ .Weekday }}{{ end }}"#,
        r#"{{ (toTime 1435065584.128).Format "02/01/06 15:04:05.000000 MST" }}"#,
    ]
}

/// The alerting rules: name, expression, and each resulting series' labels and value.
fn rules() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "Decimal",
            r#"label_replace(vector(1234.5678), "instance", "host-1.example.com:9100", "", "")"#,
        ),
        (
            "Zero",
            r#"label_replace(vector(0), "instance", "10.0.0.1:80", "", "")"#,
        ),
        (
            "Negative",
            r#"label_replace(vector(-42.5), "instance", "[::1]:9090", "", "")"#,
        ),
        (
            "Tiny",
            r#"label_replace(vector(1e-7), "instance", "db", "", "")"#,
        ),
        (
            "Huge",
            r#"label_replace(vector(1.5e21), "instance", "a.b.c", "", "")"#,
        ),
        ("NotANumber", "vector(NaN)"),
        (
            "PlusInf",
            r#"label_replace(vector(+Inf), "job", "j", "", "")"#,
        ),
        ("MinusInf", "vector(-Inf)"),
        (
            "Duration",
            r#"label_replace(vector(262861.25), "instance", "host-2:1", "", "")"#,
        ),
        (
            "Fraction",
            r#"label_replace(vector(0.12345), "instance", "x", "", "")"#,
        ),
        (
            "Timestamp",
            r#"label_replace(vector(1435065584.128), "instance", "ts", "", "")"#,
        ),
        (
            "TwoSeries",
            r#"label_replace(vector(1), "instance", "s1:1", "", "") or label_replace(vector(2048), "instance", "s2:2", "", "")"#,
        ),
    ]
}

const LABEL_TEMPLATE: &str = "{{ $labels.instance }}/{{ humanize $value }}";

/// Asks Prometheus' HTTP API for instant queries (the same answers the rule's `query` gets).
struct HttpQuerier {
    base: String,
}

impl TemplateQuerier for HttpQuerier {
    fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String> {
        let url = format!("{}/api/v1/query?query={}", self.base, percent_encode(expr));
        let resp = http_request("GET", &url, &[]).map_err(|e| e.to_string())?;
        let body: Json = serde_json::from_slice(&resp.body).map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(body["error"].as_str().unwrap_or("query failed").to_owned());
        }
        let result = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(result
            .iter()
            .map(|s| QuerySample {
                labels: labels_of(&s["metric"], &[]),
                value: parse_value(s["value"][1].as_str().unwrap_or("NaN")),
            })
            .collect())
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus' JSON sample values: Go's `FormatFloat(v, 'f', -1, 64)` or `NaN`/`±Inf`.
fn parse_value(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s
            .parse()
            .unwrap_or_else(|_| panic!("bad sample value {s:?}")),
    }
}

fn labels_of(obj: &Json, skip: &[&str]) -> Labels {
    let pairs: Vec<(String, String)> = obj
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !skip.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Labels::from_pairs(&pairs)
}

fn write_config(dir: &Path) {
    let ann: BTreeMap<String, &str> = annotations()
        .into_iter()
        .enumerate()
        .map(|(i, t)| (format!("a{i:02}"), t))
        .collect();
    let rules: Vec<Json> = rules()
        .into_iter()
        .map(|(name, expr)| {
            json!({
                "alert": name,
                "expr": expr,
                "for": "0s",
                "labels": {"tmpl_label": LABEL_TEMPLATE},
                "annotations": ann,
            })
        })
        .collect();
    // JSON is YAML: no quoting pitfalls for the template texts.
    let rule_file = json!({"groups": [{"name": "templates", "interval": "1s", "rules": rules}]});
    std::fs::write(
        dir.join("rules.yml"),
        serde_json::to_string_pretty(&rule_file).unwrap(),
    )
    .unwrap();
    let config = json!({
        "global": {
            "evaluation_interval": "1s",
            "scrape_interval": "1h",
            "external_labels": {"cluster": "eu-1", "replica": "r0"},
        },
        "rule_files": [dir.join("rules.yml").display().to_string()],
    });
    std::fs::write(
        dir.join("prometheus.yml"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
}

/// Polls `/api/v1/alerts` until every expected alert fires.
fn firing_alerts(base: &str, guard: &mut ChildGuard, want: usize) -> Vec<Json> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        guard.ensure_running().expect("prometheus exited");
        let body = http_request("GET", &format!("{base}/api/v1/alerts"), &[])
            .ok()
            .and_then(|resp| serde_json::from_slice::<Json>(&resp.body).ok());
        if let Some(body) = body {
            let alerts: Vec<Json> = body["data"]["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|a| a["state"] == "firing")
                .collect();
            if alerts.len() >= want {
                return alerts;
            }
        }
        assert!(Instant::now() < deadline, "alerts did not fire within 60s");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn annotations_match_prometheus() {
    let Ok(bin) = prometheus() else {
        panic!("this test needs Prometheus 2.42 (/usr/bin/prometheus or $PROMETHEUS)");
    };
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(format!(
        "--config.file={}",
        dir.path().join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.path().join("tsdb").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
    .arg(format!("--web.external-url={EXTERNAL_URL}"))
    .stdout(Stdio::null())
    .stderr(log);
    let mut guard = ChildGuard::spawn("prometheus", &mut cmd).unwrap();
    // The external URL's path is also the route prefix.
    let base = format!("http://127.0.0.1:{port}/some/prefix");
    if let Err(e) = guard.wait_for_http(&format!("{base}/-/ready"), Duration::from_secs(60)) {
        let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
        panic!("{e:#}\nprometheus log:\n{log}");
    }

    let want_alerts = rules().len() + 1; // TwoSeries fires twice.
    let alerts = firing_alerts(&base, &mut guard, want_alerts);
    let querier = HttpQuerier { base: base.clone() };
    let texts = annotations();
    let external_labels = Labels::from_pairs(&[("cluster", "eu-1"), ("replica", "r0")]);

    let mut mismatches = Vec::new();
    let mut compared = 0;
    for alert in &alerts {
        let name = alert["labels"]["alertname"].as_str().unwrap().to_owned();
        let data = TemplateData {
            labels: labels_of(&alert["labels"], &["alertname", "tmpl_label"]),
            external_labels: external_labels.clone(),
            external_url: EXTERNAL_URL.to_owned(),
            value: parse_value(alert["value"].as_str().unwrap()),
        };
        let tmpl_name = format!("__alert_{name}");
        let ours = |text: &str| match expand(&tmpl_name, text, &data, Some(&querier)) {
            Ok(s) => s,
            Err(e) => e.alert_text(),
        };
        let mut check = |what: String, text: &str, theirs: &str| {
            compared += 1;
            let got = ours(text);
            if got != theirs {
                mismatches.push(format!(
                    "{name} {what}: {text}\n  prometheus: {theirs:?}\n  strata:     {got:?}"
                ));
            }
        };
        let label = alert["labels"]["tmpl_label"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        check("label tmpl_label".into(), LABEL_TEMPLATE, &label);
        for (i, text) in texts.iter().enumerate() {
            let key = format!("a{i:02}");
            let theirs = alert["annotations"][&key]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no annotation {key}"))
                .to_owned();
            check(format!("annotation {key}"), text, &theirs);
        }
    }
    drop(guard);
    assert_eq!(
        compared,
        want_alerts * (texts.len() + 1),
        "every alert's annotations compared"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {compared} expansions differ from Prometheus:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
