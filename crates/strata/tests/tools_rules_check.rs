//! `strata tools rules-check` against Prometheus 2.42's own `promtool check rules` on the
//! same files: every file one accepts the other accepts with the same number of rules, every
//! file one refuses the other refuses; Thanos' `partial_response_strategy` is accepted (and
//! checked) by Strata alone, as by Thanos; globs, missing files and the exit status.

use std::path::Path;
use std::process::Command;

use strata_testutil::prometheus::promtool;

/// Rule files both tools must judge alike: (name, contents, valid).
const FILES: &[(&str, &str, bool)] = &[
    ("empty.yml", "", true),
    (
        "good.yml",
        "groups:\n  - name: g\n    interval: 30s\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n      - alert: Down\n        expr: up == 0\n        for: 5m\n        labels:\n          severity: page\n        annotations:\n          summary: \"{{ $labels.job }} is down\"\n  - name: h\n    rules:\n      - record: x:y\n        expr: rate(x[5m])\n",
        true,
    ),
    (
        "both.yml",
        "groups:\n  - name: g\n    rules:\n      - record: a\n        alert: b\n        expr: up\n",
        false,
    ),
    (
        "noexpr.yml",
        "groups:\n  - name: g\n    rules:\n      - record: a\n",
        false,
    ),
    (
        "badexpr.yml",
        "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: sum(up\n",
        false,
    ),
    (
        "badname.yml",
        "groups:\n  - name: g\n    rules:\n      - record: 1a\n        expr: up\n",
        false,
    ),
    (
        "recordfor.yml",
        "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n        for: 1m\n",
        false,
    ),
    (
        "badlabel.yml",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        labels:\n          bad-name: x\n",
        false,
    ),
    (
        "dupgroup.yml",
        "groups:\n  - name: g\n    rules: []\n  - name: g\n    rules: []\n",
        false,
    ),
    (
        "unknownfield.yml",
        "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n        lables:\n          x: y\n",
        false,
    ),
    (
        "baddur.yml",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        for: soon\n",
        false,
    ),
];

fn strata_check(args: &[String]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["tools", "rules-check"])
        .args(args)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

fn promtool_check(file: &Path) -> (bool, String) {
    let out = Command::new(promtool().unwrap())
        .args(["check", "rules"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn judges_rule_files_as_promtool_does() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, valid) in FILES {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (prom_ok, prom_log) = promtool_check(&path);
        assert_eq!(prom_ok, *valid, "promtool on {name}: {prom_log}");
        let (ok, log) = strata_check(&[format!("--rules={}", path.display())]);
        assert_eq!(ok, *valid, "strata on {name}: {log}\npromtool: {prom_log}");
        if *valid {
            // promtool: "SUCCESS: N rules found".
            let n = prom_log
                .split("SUCCESS: ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or_else(|| panic!("{prom_log}"));
            assert!(log.contains(&format!("rules_found={n}")), "{name}: {log}");
        } else {
            assert!(log.contains("result=FAILED"), "{name}: {log}");
        }
    }
}

#[test]
fn thanos_partial_response_strategy_globs_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let thanos = dir.path().join("thanos.yml");
    std::fs::write(
        &thanos,
        "groups:\n  - name: g\n    partial_response_strategy: warn\n    rules:\n      - record: a\n        expr: up\n",
    )
    .unwrap();
    assert!(
        !promtool_check(&thanos).0,
        "Prometheus refuses the Thanos field"
    );
    let (ok, log) = strata_check(&[format!("--rules={}", thanos.display())]);
    assert!(ok, "{log}");
    assert!(log.contains("rules_found=1"), "{log}");

    let bad = dir.path().join("bad-strategy.yml");
    std::fs::write(
        &bad,
        "groups:\n  - name: g\n    partial_response_strategy: sometimes\n    rules: []\n",
    )
    .unwrap();
    let (ok, log) = strata_check(&[format!("--rules={}", bad.display())]);
    assert!(!ok && log.contains("partial_response_strategy"), "{log}");

    // A glob checks every file it matches: one bad file fails the run, the good one is still
    // reported.
    let (ok, log) = strata_check(&[format!("--rules={}/*.yml", dir.path().display())]);
    assert!(!ok, "{log}");
    assert!(
        log.contains("thanos.yml") && log.contains("result=SUCCESS"),
        "{log}"
    );

    let (ok, log) = strata_check(&[format!("--rules={}/none-*.yml", dir.path().display())]);
    assert!(!ok && log.contains("matching file not found"), "{log}");
    let (ok, log) = strata_check(&[]);
    assert!(
        !ok && log.contains("--rules"),
        "a missing --rules is a usage error: {log}"
    );
}
