//! The file globs Thanos' file flags take (`--store.sd-files`, `--query.sd-files`,
//! `--rule-file`, `tools rules-check --rules`): a path, or a pattern with `*` and `?` in its
//! last element, the subset of Go's `filepath.Glob` these flags are used with.

use std::path::PathBuf;

/// Expands a path, or a glob with `*`/`?` in its file name, to the paths it matches, sorted.
/// A path without wildcards stands for itself (whether it exists or not).
pub fn expand_glob(pattern: &str) -> Vec<PathBuf> {
    let path = PathBuf::from(pattern);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![path];
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| glob_match(&name, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// `*` and `?` wildcard match (the subset of Go's `filepath.Match` file SD users rely on).
fn glob_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.yml", "a.yml"));
        assert!(glob_match("sd-?.json", "sd-1.json"));
        assert!(!glob_match("*.yml", "a.yaml"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "ac"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
    }

    #[test]
    fn patterns_expand_to_sorted_files() {
        let dir = std::env::temp_dir().join(format!("strata-glob-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["b.yml", "a.yml", "c.json"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let got = expand_glob(&format!("{}/*.yml", dir.display()));
        assert_eq!(got, vec![dir.join("a.yml"), dir.join("b.yml")]);
        let plain = format!("{}/none.yml", dir.display());
        assert_eq!(expand_glob(&plain), vec![PathBuf::from(&plain)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
