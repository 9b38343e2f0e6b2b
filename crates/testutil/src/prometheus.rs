//! Real Prometheus tools for tests: `promtool` (Debian package `prometheus`, version 2.42)
//! makes blocks from OpenMetrics text and dumps or analyzes blocks, so that our reader and
//! writer are checked against Prometheus itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Finds an executable: `$env_var` if set, else the first match on `PATH`, else `/usr/bin`.
pub fn find_tool(name: &str, env_var: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env_var) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{name} not found (looked at ${env_var}, PATH and /usr/bin): run ./scripts/test.sh, \
         which installs Debian's `prometheus` package, or set {env_var}"
    )
}

/// The `promtool` binary.
pub fn promtool() -> Result<PathBuf> {
    find_tool("promtool", "STRATA_PROMTOOL")
}

/// The `prometheus` server binary.
pub fn prometheus() -> Result<PathBuf> {
    find_tool("prometheus", "STRATA_PROMETHEUS")
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}:\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("promtool output is not UTF-8")
}

/// Runs `promtool tsdb create-blocks-from openmetrics` on `openmetrics` text, writing blocks
/// into `out_dir`. Returns the block directories, sorted.
pub fn create_blocks_from_openmetrics(openmetrics: &str, out_dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir)?;
    let input = out_dir.join("input.om");
    std::fs::write(&input, openmetrics)?;
    run(Command::new(promtool()?)
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(&input)
        .arg(out_dir))?;
    std::fs::remove_file(&input)?;
    let mut blocks: Vec<PathBuf> = std::fs::read_dir(out_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    blocks.sort();
    Ok(blocks)
}

/// One line of `promtool tsdb dump`: labels, value, timestamp (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct DumpSample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub t: i64,
}

/// Runs `promtool tsdb dump` over a directory of blocks and parses every sample. (promtool
/// opens the directory as a database, so an empty `wal/` is created if missing.)
pub fn dump(db_dir: &Path) -> Result<Vec<DumpSample>> {
    std::fs::create_dir_all(db_dir.join("wal"))?;
    let out = run(Command::new(promtool()?).args(["tsdb", "dump"]).arg(db_dir))?;
    out.lines()
        .filter(|l| !l.is_empty())
        .map(parse_dump_line)
        .collect()
}

/// Runs `promtool tsdb analyze <db> <block>` and returns its report.
pub fn analyze(db_dir: &Path, block_id: &str) -> Result<String> {
    std::fs::create_dir_all(db_dir.join("wal"))?;
    run(Command::new(promtool()?)
        .args(["tsdb", "analyze"])
        .arg(db_dir)
        .arg(block_id))
}

/// Runs `promtool tsdb list` and returns its report.
pub fn list(db_dir: &Path) -> Result<String> {
    std::fs::create_dir_all(db_dir.join("wal"))?;
    run(Command::new(promtool()?).args(["tsdb", "list"]).arg(db_dir))
}

/// Parses `{a="x", b="y"} <%g value> <ms>`; values are Go-quoted strings.
pub fn parse_dump_line(line: &str) -> Result<DumpSample> {
    let err = || anyhow::anyhow!("unparsable promtool dump line: {line:?}");
    let mut rest = line.strip_prefix('{').ok_or_else(err)?;
    let mut labels = Vec::new();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            rest = r;
            break;
        }
        if !labels.is_empty() {
            rest = rest.strip_prefix(", ").ok_or_else(err)?;
        }
        let eq = rest.find('=').ok_or_else(err)?;
        let name = rest[..eq].to_string();
        let (value, r) = parse_go_quoted(&rest[eq + 1..]).ok_or_else(err)?;
        labels.push((name, value));
        rest = r;
    }
    let mut parts = rest.trim_start().split(' ');
    let v = parts.next().ok_or_else(err)?;
    let t = parts
        .next()
        .ok_or_else(err)?
        .parse::<i64>()
        .map_err(|_| err())?;
    let value = match v {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse::<f64>().map_err(|_| err())?,
    };
    Ok(DumpSample { labels, value, t })
}

/// Parses a Go `strconv.Quote`d string at the start of `s`; returns it and the rest.
fn parse_go_quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('"')?.char_indices();
    let body = &s[1..];
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{07}'),
                    'b' => out.push('\u{08}'),
                    'f' => out.push('\u{0C}'),
                    'v' => out.push('\u{0B}'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String =
                            (0..n).filter_map(|_| chars.next().map(|x| x.1)).collect();
                        let code = u32::from_str_radix(&hex, 16).ok()?;
                        out.push(char::from_u32(code)?);
                    }
                    _ => return None,
                }
            }
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dump_lines() {
        let s = parse_dump_line(
            r#"{__name__="x", path="/a b\"c\n\x01", z="é"} 1.2345678e+07 1700010000000"#,
        )
        .unwrap();
        assert_eq!(
            s.labels[1],
            ("path".to_string(), "/a b\"c\n\u{1}".to_string())
        );
        assert_eq!(s.labels[2].1, "é");
        assert_eq!(s.value, 12345678.0);
        assert_eq!(s.t, 1700010000000);
        assert!(parse_dump_line("{} NaN 5").unwrap().value.is_nan());
        assert_eq!(
            parse_dump_line("{} -Inf -5").unwrap().value,
            f64::NEG_INFINITY
        );
        assert!(parse_dump_line("{a=\"x} 1 2").is_err());
    }
}
