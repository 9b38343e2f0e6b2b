//! `strata tools rules-check`: checks Prometheus rule files as Thanos' `tools rules-check`
//! does, so that a CI pipeline that gates rule changes with it keeps working. The reading and
//! its checks are the ruler's own ([`strata_rule::rulefmt`]): the file must be Prometheus'
//! rule format (unknown fields refused, as Prometheus' strict YAML reading does) with Thanos'
//! `partial_response_strategy` allowed on groups; group names present and unique per file;
//! each rule either `record` or `alert`, with an `expr` that parses as PromQL, a valid metric
//! name to record under, valid label and annotation names, and no alerting-only fields on
//! recording rules.

use std::path::Path;

use anyhow::{Result, bail};

/// The number of rules in one file's text, or every problem found in it.
pub(crate) fn check(text: &str) -> Result<usize, Vec<String>> {
    strata_rule::rulefmt::parse(text).map(|f| f.rule_count())
}

/// Checks every file each of `patterns` matches (a path, or a glob with `*`/`?` in its file
/// name), logging each file's result; fails naming how many files failed.
pub(crate) fn run(patterns: &[String]) -> Result<()> {
    let mut failed = 0usize;
    for p in patterns {
        tracing::info!(pattern = %p, "checking");
        let files: Vec<_> = strata_query::endpoint::expand_glob(p)
            .into_iter()
            .filter(|f| f.is_file())
            .collect();
        if files.is_empty() {
            tracing::error!(result = "FAILED", pattern = %p, error = "matching file not found");
            failed += 1;
            continue;
        }
        for f in files {
            if !check_file(&f) {
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} rule file(s) or pattern(s) failed the check (see the errors above)");
    }
    Ok(())
}

fn check_file(f: &Path) -> bool {
    tracing::info!(filename = %f.display(), "checking");
    let text = match std::fs::read_to_string(f) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(result = "FAILED", filename = %f.display(), error = %e, "cannot read the file");
            return false;
        }
    };
    match check(&text) {
        Ok(n) => {
            tracing::info!(result = "SUCCESS", filename = %f.display(), rules_found = n);
            true
        }
        Err(errors) => {
            tracing::error!(result = "FAILED", filename = %f.display());
            for e in errors {
                tracing::error!(filename = %f.display(), error = %e);
            }
            false
        }
    }
}
