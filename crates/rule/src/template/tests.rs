//! End-to-end template tests. Every expected string was produced by Prometheus 2.42 itself
//! (`promtool test rules` on an alert whose annotations are these templates), with the data in
//! [`data`] and a querier answering `up` with two series.

use strata_model::Labels;

use super::*;

fn data() -> TemplateData {
    TemplateData {
        labels: Labels::from_pairs(&[("instance", "host-1:9100")]),
        external_labels: Labels::from_pairs(&[("cluster", "c1"), ("env", "prod")]),
        external_url: String::new(),
        value: 1234.5678,
    }
}

/// Answers `up` with the series promtool's test data had (in the order it returned them);
/// anything else is empty.
struct Up;

impl TemplateQuerier for Up {
    fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String> {
        if expr != "up" {
            return Ok(Vec::new());
        }
        Ok(vec![
            QuerySample {
                labels: Labels::from_pairs(&[("__name__", "up"), ("instance", "i1"), ("job", "j")]),
                value: 1.0,
            },
            QuerySample {
                labels: Labels::from_pairs(&[("__name__", "up"), ("instance", "i0"), ("job", "j")]),
                value: 0.0,
            },
        ])
    }
}

fn run(text: &str) -> String {
    match expand("__alert_A", text, &data(), Some(&Up)) {
        Ok(s) => s,
        Err(e) => e.alert_text(),
    }
}

#[track_caller]
fn check(cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (text, want) in cases {
        let got = run(text);
        if got != *want {
            failures.push(format!("{text}\n   got: {got:?}\n  want: {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn values_print_like_go() {
    check(&[
        (
            "{{ 1.5 }}|{{ 1e21 }}|{{ 0.0000001 }}|{{ 100000000.0 }}|{{ 1e20 }}",
            "1.5|1e+21|1e-07|1e+08|1e+20",
        ),
        ("[{{ .Labels.nope }}]", "[]"),
        ("{{ (args 1).x }}", "<no value>"),
        ("{{ printf \"%v\" nil }}", "<nil>"),
        ("{{ $externalURL }}", ""),
        ("{{ $value }}", "1234.5678"),
        ("{{ .Labels }}", "map[instance:host-1:9100]"),
        ("{{ $externalLabels }}", "map[cluster:c1 env:prod]"),
        ("{{ args 1 \"a\" 2.5 }}", "map[arg0:1 arg1:a arg2:2.5]"),
        (
            "{{ first (query \"up\") }}",
            "{map[__name__:up instance:i1 job:j] 1}",
        ),
        (
            "{{ . }}",
            "{map[instance:host-1:9100] map[cluster:c1 env:prod]  1234.5678}",
        ),
        (
            "{{ template \"x\" }}{{ define \"x\" }}[{{ . }}]{{ end }}",
            "[<no value>]",
        ),
        (
            "{{ 1 | printf \"%d %s\" \"a\" }}",
            "%!d(string=a) %!s(int=1)",
        ),
        (
            "{{ 'a' }} {{ 0x1F }} {{ 1_000 }} {{ 0o17 }} {{ 017 }} {{ 0b101 }} {{ 1e3 }} {{ -0 }} {{ +5 }}",
            "97 31 1000 15 15 5 1000 0 5",
        ),
        (
            "{{ \"\\x41\\u00e9\\t|\\101|\\a\" }} {{ `raw\\n` }} {{ '\\n' }} {{ '\\'' }} {{ 1.5e3 }} {{ 0x1p4 }} {{ .5 }} {{ 1. }} {{ -1.5 }}",
            "Aé\t|A|\u{7} raw\\n 10 39 1500 16 0.5 1 -1.5",
        ),
    ]);
}

#[test]
fn prometheus_functions() {
    check(&[
        ("{{ toTime 1 }}", "1970-01-01 00:00:01 +0000 UTC"),
        ("{{ stripDomain \"a.b.c:80\" }}", "a:80"),
        ("{{ stripPort \"[::1]:80\" }}", "::1"),
        (
            "{{ humanize 1234567 }} {{ humanize \"0.001234\" }} {{ humanize 0 }} {{ humanize -1e-30 }}",
            "1.235M 1.234m 0 -1e-06y",
        ),
        (
            "{{ humanizeDuration 90061.5 }} {{ humanizeDuration 0.0015 }} {{ humanizeDuration -59.99 }}",
            "1d 1h 1m 1s 1.5ms -59.99s",
        ),
        (
            "{{ humanizeTimestamp 1435065584.128 }} {{ humanizeTimestamp 0 }} {{ humanizeTimestamp 1.5 }}",
            "2015-06-23 13:19:44.128 +0000 UTC 1970-01-01 00:00:00 +0000 UTC 1970-01-01 00:00:01.5 +0000 UTC",
        ),
        (
            "{{ toTime 1435065584.128 }}",
            "2015-06-23 13:19:44.128 +0000 UTC",
        ),
        (
            "{{ title \"hello wOrld-foo_bar a1b\" }}",
            "Hello WOrld-Foo_bar A1b",
        ),
        (
            "{{ parseDuration \"1h30m\" }} {{ parseDuration \"1ms\" }}",
            "5400 0.001",
        ),
        (
            "{{ graphLink \"up{a=\\\"b\\\"} + 1\" }} {{ tableLink \"x y\" }}",
            "/graph?g0.expr=up%7Ba%3D%22b%22%7D+%2B+1&g0.tab=0 /graph?g0.expr=x+y&g0.tab=1",
        ),
        (
            "{{ safeHtml \"<b>\" }} {{ html \"<a&'\\\"b>\" }} {{ js \"<a&'\\\"b\\\\>=\\u2028\" }} {{ urlquery \"a b&c/d\" }}",
            "<b> &lt;a&amp;&#39;&#34;b&gt; \\u003Ca\\u0026\\'\\\"b\\\\\\u003E\\u003D\\u2028 a+b%26c%2Fd",
        ),
        (
            "{{ sortByLabel \"instance\" (query \"up\") | len }} {{ range sortByLabel \"instance\" (query \"up\") }}{{ .Labels.instance }}{{ end }}",
            "2 i0i1",
        ),
        (
            "{{ with query \"up\" }}{{ . | first | value }} {{ . | first | label \"instance\" }} {{ . | first | strvalue }}{{ end }}",
            "1 i1 ",
        ),
        (
            "{{ match \"^h.*\" \"hello\" }} {{ reReplaceAll \"(\\\\w+)-(\\\\d+)\" \"$2_$1\" \"host-1 node-22\" }}",
            "true host node",
        ),
        (
            "{{ toUpper \"abc\" }} {{ toLower \"ÀBC\" }} {{ humanize1024 1048576 }} {{ humanize1024 1 }} {{ humanize1024 -2048 }} {{ humanizePercentage 0.12345 }}",
            "ABC àbc 1Mi 1 -2ki 12.35%",
        ),
        (
            "{{ (query \"up\" | first).Labels.job }} {{ $value | humanize }} {{ .Value | printf \"%.1f\" }}",
            "j 1.235k 1234.6",
        ),
        (
            "{{ index (args 1 2) \"arg1\" }} {{ (args 1 2).arg0 }} {{ index .Labels \"nope\" | len }}",
            "2 1 0",
        ),
    ]);
}

#[test]
fn builtins_and_control_flow() {
    check(&[
        ("{{ eq \"a\" \"b\" \"a\" }}", "true"),
        ("{{ eq $value 1234.5678 }}", "true"),
        (
            "{{ lt \"a\" \"b\" }} {{ gt 2 1 }} {{ le 2 2 }} {{ ne 1 2 }} {{ ge 1.5 2.5 }}",
            "true true true true false",
        ),
        ("{{ eq nil nil }}", "true"),
        ("{{ len .Labels }} {{ len \"héllo\" }}", "1 6"),
        (
            "{{ index .Labels \"instance\" }} {{ index \"abc\" 1 }}",
            "host-1:9100 98",
        ),
        (
            "{{ slice \"hello\" 1 3 }} {{ slice \"hello\" 2 }}",
            "el llo",
        ),
        (
            "{{ printf \"%s|%v|%d|%f|%.2f|%g|%e|%q|%x|%5.2f|%-10s|%%|%X|%o|%b|%c|%U|%t|%8.3e|%+d|%05d|% d|%#x|%#v\" \"s\" 1.5 42 3.14159 2.5 1e21 123456.789 \"q\\\"x\" 255 3.14159 \"left\" 255 8 5 65 65 true 1234.5678 5 42 7 255 \"s\" }}",
            "s|1.5|42|3.141590|2.50|1e+21|1.234568e+05|\"q\\\"x\"|ff| 3.14|left      |%|FF|10|101|A|U+0041|true|1.235e+03|+5|00042| 7|0xff|\"s\"",
        ),
        (
            "{{ printf \"%d\" 1.5 }} {{ printf \"%s\" 1.5 }} {{ printf \"%d\" }} {{ printf \"%d\" 1 2 }} {{ printf \"%x\" \"hi\" }} {{ printf \"%q\" 65 }} {{ printf \"%v\" .Labels }} {{ printf \"%T %T %T\" 1 1.5 \"s\" }}",
            "%!d(float64=1.5) %!s(float64=1.5) %!d(MISSING) 1%!(EXTRA int=2) 6869 'A' map[instance:host-1:9100] int float64 string",
        ),
        (
            "{{ printf \"%.3s|%10.4v|%-8.2f|%08.3f|%+.2e|%6.2f%%\" \"abcdef\" 3.14159265 1.5 -3.14159 12345.678 99.5 }}",
            "abc|     3.142|1.50    |-003.142|+1.23e+04| 99.50%",
        ),
        (
            "{{ print 1 2 \"a\" \"b\" 3 true nil 1.5 }}|{{ println 1 \"a\" }}|{{ print \"a\" 1 \"b\" }}",
            "1 2ab3 true <nil> 1.5|1 a\n|a1b",
        ),
        (
            "{{ not 0 }} {{ not \"\" }} {{ not .Labels }} {{ and 1 0 2 }} {{ or 0 \"\" \"x\" }} {{ and 1 2 }} {{ or 0 \"\" }}",
            "true true false 0 x 2 ",
        ),
        (
            "{{ if $labels.instance }}yes{{ else }}no{{ end }} {{ if .Labels.nope }}yes{{ else if eq 1 1 }}elif{{ else }}no{{ end }}",
            "yes elif",
        ),
        (
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }} {{ range $externalLabels }}<{{ . }}>{{ end }} {{ range $i, $e := query \"up\" }}{{ $i }}:{{ $e.Labels.instance }}={{ $e.Value }},{{ end }}",
            "instance=host-1:9100; <c1><prod> 0:i1=1,1:i0=0,",
        ),
        (
            "{{ range query \"nosuch\" }}x{{ else }}empty{{ end }} {{ with .Labels.instance }}[{{ . }}]{{ end }} {{ with .Labels.nope }}x{{ else }}nope{{ end }}",
            "empty [host-1:9100] nope",
        ),
        (
            "a  {{- \" b \" -}}  c {{- /* comment */ -}} d {{/* c2 */}} e",
            "a b cd  e",
        ),
        (
            "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }} {{ $ }}",
            "2 {map[instance:host-1:9100] map[cluster:c1 env:prod]  1234.5678}",
        ),
        (
            "{{ block \"b\" \"arg\" }}[{{ . }}]{{ end }} {{ template \"b\" 5 }}",
            "[arg] [5]",
        ),
        (
            "{{ range $i, $e := query \"up\" }}{{ if eq $i 0 }}{{ continue }}{{ end }}{{ $i }}{{ break }}{{ end }}",
            "1",
        ),
        (
            "{{ $value = 3 }}{{ $value }} {{ 1 | eq 1 }} {{ \"x\" | printf \"%s-%s\" \"y\" }}",
            "3 true y-x",
        ),
    ]);
}

#[test]
fn errors_read_like_prometheus() {
    let exec = |at: &str, msg: &str| {
        format!(
            "<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing \"__alert_A\" at <{at}>: {msg}>"
        )
    };
    check(&[
        ("{{ nil }}", &exec("nil", "nil is not a command")),
        (
            "{{ humanize \"abc\" }}",
            &exec(
                "humanize \"abc\"",
                "error calling humanize: strconv.ParseFloat: parsing \"abc\": invalid syntax",
            ),
        ),
        (
            "{{ eq 1 1.0 }}",
            &exec(
                "eq 1 1.0",
                "error calling eq: incompatible types for comparison",
            ),
        ),
        (
            "{{ eq 1 \"a\" }}",
            &exec(
                "eq 1 \"a\"",
                "error calling eq: incompatible types for comparison",
            ),
        ),
        (
            "{{ lt 1 2.5 }}",
            &exec(
                "lt 1 2.5",
                "error calling lt: incompatible types for comparison",
            ),
        ),
        (
            "{{ lt true false }}",
            &exec(
                "lt true false",
                "error calling lt: invalid type for comparison",
            ),
        ),
        (
            "{{ eq .Labels .Labels }}",
            &exec(
                "eq .Labels .Labels",
                "error calling eq: non-comparable type map[instance:host-1:9100]: map[string]string",
            ),
        ),
        (
            "{{ humanizePercentage \"x\" }}",
            &exec(
                "humanizePercentage \"x\"",
                "error calling humanizePercentage: strconv.ParseFloat: parsing \"x\": invalid syntax",
            ),
        ),
        (
            "{{ nosuchfn }}",
            "<error expanding template: error parsing template __alert_A: template: __alert_A:1: function \"nosuchfn\" not defined>",
        ),
    ]);
    // Errors past the start: columns count from the template's start (prefix included).
    check(&[
        (
            "{{ len .Labels }} {{ len \"héllo\" }} {{ len 3 }}",
            "<error expanding template: error executing template __alert_A: template: __alert_A:1:152: executing \"__alert_A\" at <len 3>: error calling len: len of type int>",
        ),
        (
            "{{ index .Labels \"instance\" }} {{ index \"abc\" 1 }} {{ index \"abc\" 5 }}",
            "<error expanding template: error executing template __alert_A: template: __alert_A:1:166: executing \"__alert_A\" at <index \"abc\" 5>: error calling index: index out of range: 5>",
        ),
        (
            "{{ slice \"hello\" 1 3 }} {{ slice \"hello\" 2 }} {{ slice \"hello\" 3 1 }}",
            "<error expanding template: error executing template __alert_A: template: __alert_A:1:161: executing \"__alert_A\" at <slice \"hello\" 3 1>: error calling slice: invalid slice index: 3 > 1>",
        ),
    ]);
}

#[test]
fn more_go_behaviours() {
    check(&[
        (
            r#"{{ reReplaceAll "(\\w+)-(\\d+)" "$2_$1" "host-1 node-22" }} {{ reReplaceAll "(\\w+)-(\\d+)" "${2}_$1" "host-1 node-22" }}"#,
            "host node 1_host 22_node",
        ),
        (
            r#"{{ index $externalLabels "nope" }}|{{ index (query "up") 0 }}"#,
            "|{map[__name__:up instance:i1 job:j] 1}",
        ),
        (r#"{{ slice (query "up") 1 | len }}"#, "1"),
        (
            r#"{{ toTime (0 | printf "%v") }}"#,
            "1970-01-01 00:00:00 +0000 UTC",
        ),
        (
            "{{ humanizeDuration 1e30 }} {{ humanizeDuration 1e19 }} {{ humanizeDuration 86400 }} {{ humanizeDuration 3600.5 }} {{ humanizeDuration 59.999999 }}",
            "-106751991167300d -15h -30m -8s -106751991167300d -15h -30m -8s 1d 0h 0m 0s 1h 0m 0s 60s",
        ),
        (
            r#"{{ printf "%5t|%-5d|%x|%o|%e|%G|%E" true 3 -255 8 0.0 1e-10 1e100 }}"#,
            " true|3    |-ff|10|0.000000e+00|1E-10|1.000000E+100",
        ),
        (
            r#"{{ printf "%s %v %d" (first (query "up")) (query "up" | len) .Labels }}"#,
            "&{map[__name__:up instance:i1 job:j] %!s(float64=1)} 2 map[%!d(string=instance):%!d(string=host-1:9100)]",
        ),
        (
            r#"{{ printf "%q %v %+q %#q %x % x %#x" "héllo\n" 'x' "é" "a`b" "hé" "ab" "ab" }}"#,
            r#""héllo\n" 120 "\u00e9" "a`b" 68c3a9 61 62 0x6162"#,
        ),
        (
            r#"{{ printf "%6.2f|%-8.3g|%+.1e|%010.4f|%.0f|%.0f|%.0f" 3.14159 0.000123456 -1234.5 -3.14159 0.5 1.5 2.5 }}"#,
            "  3.14|0.000123|-1.2e+03|-0003.1416|0|2|2",
        ),
        (
            r#"{{ printf "%v %v %v %v" 1e6 1e-5 123456789.0 0.000123 }}"#,
            "1e+06 1e-05 1.23456789e+08 0.000123",
        ),
        (
            r#"{{ printf "%g %g %.3g %.10g %g" 100000.0 1000000.0 1e-4 1.0 1e-5 }}"#,
            "100000 1e+06 0.0001 1 1e-05",
        ),
        (
            "{{ humanize 999.9999 }} {{ humanize 1000 }} {{ humanize 0.9999999 }} {{ humanize -1234 }} {{ humanize 1e27 }}",
            "1000 1k 1000m -1.234k 1000Y",
        ),
        (
            r#"{{ humanizePercentage 1 }} {{ humanizePercentage 0.000001 }} {{ humanizePercentage "0.5" }}"#,
            "100% 0.0001% 50%",
        ),
        (
            r#"{{ html 1 "a" }} {{ urlquery 1 2 }} {{ js nil }} {{ html (args 1).x }}"#,
            r"1a 1+2 \u003Cno value\u003E &lt;no value&gt;",
        ),
        ("{{ len (args) }} {{ args }}", "0 map[]"),
        (
            r#"{{ eq 1 nil }} {{ eq (index "a" 0) 97 }} {{ lt "B" "a" }} {{ gt 0.5 0.25 }}"#,
            "false true true true",
        ),
        (
            "{{ $x := 5 }}{{ with $x }}{{ $y := 2 }}{{ $y }}{{ end }}{{ $x }}",
            "25",
        ),
        (
            r#"{{ range $i, $e := query "up" }}{{ $i }}{{ else }}none{{ end }}{{ range $k, $v := (args "a" "b") }}{{ $k }}={{ $v }} {{ end }}"#,
            "01arg0=a arg1=b ",
        ),
        (
            r#"{{ "a\u00e9" | len }} {{ print }} {{ println }}|{{ printf "%%" }}"#,
            "3  \n|%",
        ),
        (
            r#"{{ stripPort "host" }} {{ stripPort "host:1:2" }} {{ stripPort "[::1]" }} {{ stripDomain "[2001:db8::1]:80" }} {{ stripDomain "a.b" }} {{ stripDomain "1.2.3.4" }}"#,
            "host host:1:2 [::1] [2001:db8::1]:80 a 1.2.3.4",
        ),
        (
            r#"{{ title "ünïcode wörds" }} {{ toUpper "straße" }} {{ toLower "İ" }}"#,
            "Ünïcode Wörds STRAßE i",
        ),
        (
            r#"{{ humanize "inf" }} {{ humanize "-Infinity" }} {{ humanize "NaN" }} {{ humanize1024 "1_000" }}"#,
            "+Inf -Inf NaN 1000",
        ),
    ]);
}

#[test]
fn time_methods() {
    check(&[
        (
            r#"{{ (toTime 1435065584.128).Format "2006-01-02T15:04:05Z07:00" }}|{{ (toTime 1435065584.128).Format "Mon Jan _2 15:04:05.000 MST 2006 -0700 pm 002" }}"#,
            "2015-06-23T13:19:44Z|Tue Jun 23 13:19:44.128 UTC 2015 +0000 pm 174",
        ),
        (
            "{{ with toTime 1435065584.128 }}{{ .Unix }} {{ .UnixMilli }} {{ .Year }} {{ .Month }} {{ .Day }} {{ .Hour }} {{ .Minute }} {{ .Second }} {{ .Weekday }} {{ .YearDay }} {{ .Nanosecond }} {{ .UTC }}{{ end }}",
            "1435065584 1435065584128 2015 June 23 13 19 44 Tuesday 174 128000000 2015-06-23 13:19:44.128 +0000 UTC",
        ),
        (
            r#"{{ (toTime 0).Format "January 2, 2006 3:04:05.999 PM" }}|{{ (toTime -1.5).Format "2006-01-02 15:04:05.99" }}|{{ $value | toTime }}"#,
            "January 1, 1970 12:00:00 AM|1969-12-31 23:59:58.5|1970-01-01 00:20:34.567 +0000 UTC",
        ),
    ]);
}

#[test]
fn more_errors_read_like_prometheus() {
    let exec = |col: usize, at: &str, msg: &str| {
        format!(
            "<error expanding template: error executing template __alert_A: template: __alert_A:1:{col}: executing \"__alert_A\" at <{at}>: {msg}>"
        )
    };
    check(&[
        (
            r#"{{ reReplaceAll "(" "x" "y" }}"#,
            &exec(
                115,
                r#"reReplaceAll "(" "x" "y""#,
                "error calling reReplaceAll: regexp: Compile(`(`): error parsing regexp: missing closing ): `(`",
            ),
        ),
        (
            r#"{{ index "abc" 3 }}"#,
            &exec(
                115,
                r#"index "abc" 3"#,
                "error calling index: reflect: string index out of range",
            ),
        ),
        (
            "{{ index .Labels 1 }}",
            &exec(
                115,
                "index .Labels 1",
                "error calling index: value has type int; should be string",
            ),
        ),
        (
            r#"{{ index (query "up") 2 }}"#,
            &exec(
                115,
                r#"index (query "up") 2"#,
                "error calling index: reflect: slice index out of range",
            ),
        ),
        (
            r#"{{ toTime "x" }}"#,
            &exec(
                115,
                r#"toTime "x""#,
                r#"error calling toTime: strconv.ParseFloat: parsing "x": invalid syntax"#,
            ),
        ),
        (
            "{{ humanizeTimestamp 1e300 }}",
            &exec(
                115,
                "humanizeTimestamp 1e300",
                "error calling humanizeTimestamp: 1e+300 cannot be represented as a nanoseconds timestamp since it overflows int64",
            ),
        ),
        (
            "{{ .Missing }}",
            &exec(
                115,
                ".Missing",
                "can't evaluate field Missing in type struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }",
            ),
        ),
        (
            "{{ $labels.a.b }}",
            &exec(122, "$labels.a.b", "can't evaluate field b in type string"),
        ),
        (
            "{{ 1 | .Labels }}",
            &exec(
                119,
                ".Labels",
                "Labels has arguments but cannot be invoked as function",
            ),
        ),
        (
            "{{ .Labels.instance 1 }}",
            &exec(
                122,
                ".Labels.instance",
                "instance is not a method but has arguments",
            ),
        ),
        (
            "{{ range 5 }}x{{ end }}",
            &exec(121, "5", "range can't iterate over 5"),
        ),
        (
            r#"{{ range "abc" }}x{{ end }}"#,
            &exec(121, r#""abc""#, "range can't iterate over abc"),
        ),
        (
            "{{ printf 1 }}",
            &exec(122, "1", "expected string; found 1"),
        ),
        (
            "{{ toUpper 1 }}",
            &exec(123, "1", "expected string; found 1"),
        ),
        (
            "{{ toUpper nil }}",
            &exec(123, "nil", "cannot assign nil to string"),
        ),
        (
            "{{ toUpper .Value }}",
            &exec(
                123,
                ".Value",
                "wrong type for value; expected string; got float64",
            ),
        ),
        (
            r#"{{ first "x" }}"#,
            &exec(
                121,
                r#""x""#,
                r#"can't handle "x" for arg of type template.queryResult"#,
            ),
        ),
        (
            "{{ value nil }}",
            &exec(
                115,
                "value nil",
                "error calling value: runtime error: invalid memory address or nil pointer dereference",
            ),
        ),
        (
            r#"{{ label "x" }}"#,
            &exec(115, "label", "wrong number of args for label: want 2 got 1"),
        ),
        (
            r#"{{ template "nope" }}"#,
            &exec(
                124,
                r#"{{template "nope"}}"#,
                r#"template "nope" not defined"#,
            ),
        ),
        (
            r#"{{ parseDuration "1x" }}"#,
            &exec(
                115,
                r#"parseDuration "1x""#,
                r#"error calling parseDuration: not a valid duration string: "1x""#,
            ),
        ),
        (
            r#"{{ parseDuration "" }}"#,
            &exec(
                115,
                r#"parseDuration """#,
                "error calling parseDuration: empty duration string",
            ),
        ),
        (
            r#"{{ humanize "1e400" }}"#,
            &exec(
                115,
                r#"humanize "1e400""#,
                r#"error calling humanize: strconv.ParseFloat: parsing "1e400": value out of range"#,
            ),
        ),
    ]);
}

#[test]
fn parse_once_execute_many() {
    let t = Template::parse_alert("__alert_A", "{{ $labels.instance }}={{ $value }}").unwrap();
    let mut d = data();
    assert_eq!(t.execute(&d, None).unwrap(), "host-1:9100=1234.5678");
    d.value = 0.5;
    assert_eq!(t.execute(&d, None).unwrap(), "host-1:9100=0.5");
    assert_eq!(t.name(), "__alert_A");
}

#[test]
fn runaway_templates_stop() {
    let err = run("{{ define \"r\" }}{{ template \"r\" . }}{{ end }}{{ template \"r\" . }}");
    assert!(err.contains("exceeded maximum template depth"), "{err}");
    let err = run(
        "{{ define \"r\" }}{{ template \"r\" . }}{{ template \"r\" . }}x{{ end }}{{ template \"r\" . }}",
    );
    assert!(err.contains("exceeded"), "{err}");
}

#[test]
fn deep_nesting_stays_within_the_stack() {
    // At the nesting limit, parsing and executing fit a test thread's 2 MiB stack even unoptimised.
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(99), ")".repeat(99));
    assert_eq!(run(&parens), "1");
    let ifs = format!("{}x{}", "{{ if 1 }}".repeat(99), "{{ end }}".repeat(99));
    assert_eq!(run(&ifs), "x");
    let ranges = format!(
        "{}x{}",
        "{{ range $labels }}".repeat(99),
        "{{ end }}".repeat(99)
    );
    assert_eq!(run(&ranges), "x");
    let too_deep = format!("{}x{}", "{{ with 1 }}".repeat(101), "{{ end }}".repeat(101));
    assert!(run(&too_deep).contains("nested more than 100 levels"));
    // Recursion through a deeply nested body.
    let nested_recursion = format!(
        "{{{{ define \"r\" }}}}{}{{{{ template \"r\" . }}}}{}{{{{ end }}}}{{{{ template \"r\" . }}}}",
        "{{ if (((((((((1))))))))) }}".repeat(90),
        "{{ end }}".repeat(90)
    );
    let out = run(&nested_recursion);
    assert!(out.contains("nested more than 200 levels deep"), "{out}");
    let nested_ranges = format!(
        "{{{{ define \"r\" }}}}{}{{{{ template \"r\" $ }}}}{}{{{{ end }}}}{{{{ template \"r\" . }}}}",
        "{{ range $i, $e := (((((((($.Labels)))))))) }}{{ with $e }}".repeat(45),
        "{{ end }}{{ end }}".repeat(45)
    );
    let out = run(&nested_ranges);
    assert!(out.contains("nested more than 200 levels deep"), "{out}");
    let deep_parens = "{{ ".to_owned() + &"(".repeat(100_000);
    assert!(run(&deep_parens).contains("nested more than 100 levels"));
}

#[test]
fn templates_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Template>();
    assert_send_sync::<TemplateError>();
}

#[test]
fn query_without_querier_fails() {
    let err = expand("t", "{{ query \"up\" }}", &data(), None).unwrap_err();
    assert!(err.to_string().contains("no querier"), "{err}");
}

#[test]
fn random_differential_findings() {
    // Found by expanding random templates with Prometheus 2.42 (promtool) and with us.
    let exec = |col: usize, at: &str, msg: &str| {
        format!(
            "<error expanding template: error executing template __alert_A: template: __alert_A:1:{col}: executing \"__alert_A\" at <{at}>: {msg}>"
        )
    };
    check(&[
        (r#"{{ humanize (printf "%x" 1e3) }}"#, "1k"),
        (
            "{{ len (args).nope }}",
            &exec(
                115,
                "len (args).nope",
                "error calling len: len of nil pointer",
            ),
        ),
        (
            r#"{{ slice "héllo" (args).nope }}"#,
            &exec(
                115,
                r#"slice "héllo" (args).nope"#,
                "error calling slice: cannot index slice/array with type interface {}",
            ),
        ),
        (
            r#"{{ slice "héllo" nil }}"#,
            &exec(
                115,
                r#"slice "héllo" nil"#,
                "error calling slice: cannot index slice/array with nil",
            ),
        ),
        (
            r#"{{ template "a" }}{{ define "a" }}{{ template "b" }}{{ end }}"#,
            r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:158: executing "a" at <{{template "b"}}>: template "b" not defined>"#,
        ),
        (
            "{{ 1 2 }}",
            &exec(115, "1", "can't give argument to non-function 1"),
        ),
        (
            "{{ .Value.x }}",
            &exec(121, ".Value.x", "can't evaluate field x in type float64"),
        ),
        (
            "{{ (1).x }}",
            &exec(116, "1", "can't evaluate field x in type int"),
        ),
        (
            r#"{{ label "x" (args).nope }}"#,
            &exec(
                126,
                "args",
                "wrong type for value; expected *template.sample; got interface {}",
            ),
        ),
        (
            r#"{{ label "x" nil }}"#,
            &exec(
                115,
                r#"label "x" nil"#,
                "error calling label: runtime error: invalid memory address or nil pointer dereference",
            ),
        ),
        (
            r#"{{ index (first (query "up")) 1 }}"#,
            &exec(
                115,
                r#"index (first (query "up")) 1"#,
                "error calling index: can't index item of type template.sample",
            ),
        ),
        (
            r#"{{ len (first (query "up")) }}"#,
            &exec(
                115,
                r#"len (first (query "up"))"#,
                "error calling len: len of type template.sample",
            ),
        ),
        (
            r#"{{ printf "%t|%q" (query "up") (query "none") }}"#,
            "[%!t(*template.sample=&{map[__name__:up instance:i1 job:j] 1}) %!t(*template.sample=&{map[__name__:up instance:i0 job:j] 0})]|[]",
        ),
        (
            "{{ eq .Labels $ }}",
            &exec(
                115,
                "eq .Labels $",
                "error calling eq: non-comparable types map[instance:host-1:9100]: map[string]string, struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }: {map[instance:host-1:9100] map[cluster:c1 env:prod]  1234.5678}",
            ),
        ),
        (
            r#"{{ ne $ (args 1 "x") }}"#,
            &exec(
                115,
                r#"ne $ (args 1 "x")"#,
                "error calling ne: non-comparable types {map[instance:host-1:9100] map[cluster:c1 env:prod]  %!s(float64=1234.5678)}: struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }, map[string]interface {}: map[arg0:1 arg1:x]",
            ),
        ),
        (
            r#"{{ index (toTime 1) 255 }}"#,
            &exec(
                115,
                "index (toTime 1) 255",
                "error calling index: can't index item of type time.Time",
            ),
        ),
        (
            r#"{{ humanize (index "abc" 0) }}"#,
            &exec(
                115,
                r#"humanize (index "abc" 0)"#,
                "error calling humanize: can't convert uint8 to float",
            ),
        ),
        (
            r#"{{ index "abc" 0 }} {{ eq (index "a" 0) 97 }} {{ lt (index "a" 0) 98 }} {{ printf "%c %T %#v" (index "a" 0) (index "a" 0) (index "a" 0) }}"#,
            "97 true true a uint8 0x61",
        ),
        (
            "{{ eq .Labels 1 }}",
            &exec(
                115,
                "eq .Labels 1",
                "error calling eq: incompatible types for comparison",
            ),
        ),
        (
            "{{ eq 1 .Labels }}",
            &exec(
                115,
                "eq 1 .Labels",
                "error calling eq: incompatible types for comparison",
            ),
        ),
        (
            r#"{{ ne (args 1 "x") .Labels }}"#,
            &exec(
                115,
                r#"ne (args 1 "x") .Labels"#,
                "error calling ne: non-comparable type map[instance:host-1:9100]: map[string]string",
            ),
        ),
        (
            r#"{{ printf "%T" "a" (args).nope }}"#,
            "string%!(EXTRA <nil>)",
        ),
        (
            r#"{{ (args).nope | parseDuration }}"#,
            &exec(129, "parseDuration", "invalid value; expected string"),
        ),
        (
            r#"{{ toLower ("1.5" | safeHtml) }}"#,
            &exec(
                132,
                "safeHtml",
                "wrong type for value; expected string; got template.HTML",
            ),
        ),
        (
            r#"{{ title (args).nope }}"#,
            &exec(
                122,
                "args",
                "wrong type for value; expected string; got interface {}",
            ),
        ),
        (
            "{{ len nil }}",
            &exec(
                115,
                "len nil",
                "error calling len: reflect: call of reflect.Value.Type on zero Value",
            ),
        ),
        (
            r#"{{ printf "%%%v" 1e21 (safeHtml "-3") }} {{ eq (safeHtml "a") "a" }} {{ len (safeHtml "ab") }}"#,
            "%1e+21%!(EXTRA template.HTML=-3) true 2",
        ),
        (
            r#"[{{ printf "%10.4g" }}] [{{ printf "%.0f" (printf "%10.4g") }}] [{{ printf "%d %s" }}]"#,
            "[%!g(MISSING)] [%!f(string=)] [%!d(MISSING) %!s(MISSING)]",
        ),
        (
            r#"{{ printf "%#v|%#v|%#v|%#v|%#v" (args 1 "a" nil) 1.5 1e21 true nil }}"#,
            r#"map[string]interface {}{"arg0":1, "arg1":"a", "arg2":interface {}(nil)}|1.5|1e+21|true|<nil>"#,
        ),
        (
            r#"{{ printf "%6.2d|%-8q|%08s|%5.1s|%x" 1.5 2.5 true "abc" true }}"#,
            "%!d(float64=   1.5)|%!q(float64=2.5     )|%!s(bool=0000true)|    a|%!x(bool=true)",
        ),
        (
            r#"{{ printf "%#v" $externalLabels }} {{ printf "%10.4g" 3 }}"#,
            r#"map[string]string{"cluster":"c1", "env":"prod"} %!g(int=      0003)"#,
        ),
        (
            r#"{{ printf "% d" $ }}"#,
            "{map[%!d(string=instance):%!d(string=host-1:9100)] map[%!d(string=cluster):%!d(string=c1) %!d(string=env):%!d(string=prod)] %!d(string=) %!d(float64= 1234.5678)}",
        ),
    ]);
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("{{".to_owned()),
            Just("}}".to_owned()),
            Just("{{- ".to_owned()),
            Just(" -}}".to_owned()),
            Just("$labels".to_owned()),
            Just("$x := ".to_owned()),
            Just(".Labels.instance".to_owned()),
            Just("| ".to_owned()),
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just("if ".to_owned()),
            Just("else ".to_owned()),
            Just("end".to_owned()),
            Just("range ".to_owned()),
            Just("with ".to_owned()),
            Just("define \"a\"".to_owned()),
            Just("template \"a\" .".to_owned()),
            Just("break".to_owned()),
            Just("printf \"%5.2f %q %x %-3s %\" ".to_owned()),
            Just("index ".to_owned()),
            Just("slice ".to_owned()),
            Just("humanize ".to_owned()),
            Just("humanizeDuration ".to_owned()),
            Just("toTime ".to_owned()),
            Just("query \"up\" ".to_owned()),
            Just("first ".to_owned()),
            Just("eq ".to_owned()),
            Just("lt ".to_owned()),
            Just("len ".to_owned()),
            Just("args 1 ".to_owned()),
            Just("reReplaceAll \"(a\" \"b\" \"c\" ".to_owned()),
            Just("nil ".to_owned()),
            Just("/* c */".to_owned()),
            "[ -~]{0,6}",
            "-?[0-9]{1,3}(\\.[0-9]{0,2})?(e[+-]?[0-9]{1,3})? ",
            "\"[a-z\\\\%]{0,4}\" ",
            "'.' ",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn arbitrary_templates_never_panic(parts in proptest::collection::vec(fragment(), 0..24)) {
            let text = parts.concat();
            let _ = expand("t", &text, &data(), Some(&Up));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,64}") {
            let _ = expand("t", &text, &data(), Some(&Up));
        }

        #[test]
        fn arbitrary_printf_never_panics(format in "[%a-z0-9.+# *-]{0,16}", n in proptest::num::f64::ANY, i in any::<i64>()) {
            let _ = gofmt::sprintf(&format, &[value::Value::Float(n), value::Value::Int(i), value::Value::Str("s".into())]);
        }
    }
}
