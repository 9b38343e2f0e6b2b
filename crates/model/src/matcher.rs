//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus 3.x semantics.
//!
//! Regular expressions are RE2 syntax, **fully anchored** and **dot-all**: `=~"foo.*"` is
//! compiled as `^(?s:foo.*)$`, so it never matches a substring and `.` also matches `\n`.
//! A label that is absent has the value `""`, which is why `{job=""}` selects series without a
//! `job` label and `{job!~"a|b"}` selects series with no `job` at all.
//!
//! Regexes are analysed once at construction. Most regexes that users write are a literal
//! alternation (`a|b|c`, Grafana's multi-value variables), a prefix (`foo.*`), `.*` or `.+`;
//! those are matched without running the regex engine, and [`Matcher::set_matches`] exposes
//! the literal set so that postings selection can look values up instead of scanning them.

use std::fmt;

use regex::Regex;
use regex_syntax::hir::{Class, Hir, HirKind};

use crate::labels::GoQuoted;

/// The largest literal set we expand a regex into. Bigger sets fall back to the regex engine.
const MAX_SET_MATCHES: usize = 256;

/// The four matcher operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    RegexMatch,
    /// `!~`
    RegexNoMatch,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        }
    }

    /// The operator that selects exactly the complement.
    pub fn inverse(self) -> MatchOp {
        match self {
            MatchOp::Equal => MatchOp::NotEqual,
            MatchOp::NotEqual => MatchOp::Equal,
            MatchOp::RegexMatch => MatchOp::RegexNoMatch,
            MatchOp::RegexNoMatch => MatchOp::RegexMatch,
        }
    }

    fn is_regex(self) -> bool {
        matches!(self, MatchOp::RegexMatch | MatchOp::RegexNoMatch)
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A matcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error("invalid regular expression {value:?} in matcher for label {name:?}: {source}")]
    InvalidRegex {
        name: String,
        value: String,
        #[source]
        source: Box<regex::Error>,
    },
}

/// A label matcher: `name op "value"`.
#[derive(Clone)]
pub struct Matcher {
    op: MatchOp,
    name: String,
    value: String,
    /// Set for the regex operators only.
    re: Option<FastRegex>,
}

impl Matcher {
    /// Builds a matcher; regex operators compile and analyse their pattern here, once.
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let (name, value) = (name.into(), value.into());
        let re = if op.is_regex() {
            Some(
                FastRegex::new(&value).map_err(|source| MatcherError::InvalidRegex {
                    name: name.clone(),
                    value: value.clone(),
                    source: Box::new(source),
                })?,
            )
        } else {
            None
        };
        Ok(Matcher {
            op,
            name,
            value,
            re,
        })
    }

    /// `name="value"`; infallible.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            op: MatchOp::Equal,
            name: name.into(),
            value: value.into(),
            re: None,
        }
    }

    /// `name!="value"`; infallible.
    pub fn not_equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            op: MatchOp::NotEqual,
            name: name.into(),
            value: value.into(),
            re: None,
        }
    }

    pub fn op(&self) -> MatchOp {
        self.op
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a label value (`""` for an absent label) satisfies the matcher.
    #[inline]
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::RegexMatch => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::RegexNoMatch => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Whether series *without* this label are selected.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// The matcher selecting exactly the label values this one rejects.
    pub fn inverse(&self) -> Matcher {
        Matcher {
            op: self.op.inverse(),
            name: self.name.clone(),
            value: self.value.clone(),
            re: self.re.clone(),
        }
    }

    /// For `=` and for `=~` over a finite literal alternation, the exact set of values that
    /// match, sorted and deduplicated. Postings lookup uses it to fetch only those values.
    pub fn set_matches(&self) -> Option<Vec<&str>> {
        match self.op {
            MatchOp::Equal => Some(vec![self.value.as_str()]),
            MatchOp::RegexMatch => match &*self.re.as_ref()?.strategy {
                Strategy::Set(set) => Some(set.iter().map(String::as_str).collect()),
                _ => None,
            },
            _ => None,
        }
    }

    /// For `=~` whose matches all start with a literal prefix, that prefix. Lets a sorted
    /// value list be narrowed with a binary search before matching.
    pub fn literal_prefix(&self) -> Option<&str> {
        match (self.op, &*self.re.as_ref()?.strategy) {
            (MatchOp::RegexMatch, Strategy::Prefix(p)) => Some(p),
            (MatchOp::RegexMatch, Strategy::Regex { prefix, .. }) if !prefix.is_empty() => {
                Some(prefix)
            }
            _ => None,
        }
    }

    /// True for `=~".*"`: matches every value, absent included, so it selects everything.
    pub fn matches_everything(&self) -> bool {
        self.op == MatchOp::RegexMatch
            && matches!(self.re.as_ref().map(|r| &*r.strategy), Some(Strategy::Any))
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op && self.name == other.name && self.value == other.value
    }
}

impl Eq for Matcher {}

impl std::hash::Hash for Matcher {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.op.hash(state);
        self.name.hash(state);
        self.value.hash(state);
    }
}

/// Prints `name="value"`, `name!~"re"`, … as PromQL writes matchers.
impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op, GoQuoted(&self.value))
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A compiled, anchored regex plus the cheapest equivalent way to evaluate it. Shared, so
/// that a matcher is cloned without copying a large alternation's literals (the store's
/// matcher cache hands out clones).
#[derive(Clone)]
struct FastRegex {
    strategy: std::sync::Arc<Strategy>,
}

#[derive(Clone)]
enum Strategy {
    /// `.*`: everything, including the empty string.
    Any,
    /// `.+`: any non-empty string.
    NonEmpty,
    /// A finite set of literals (sorted, deduplicated).
    Set(Vec<String>),
    /// `lit.*`
    Prefix(String),
    /// `.*lit`
    Suffix(String),
    /// `.*lit.*`
    Contains(String),
    /// The general case. `prefix` is a literal every match starts with (may be empty): a
    /// cheap pre-check before running the automaton.
    Regex { re: Regex, prefix: String },
}

impl FastRegex {
    fn new(pattern: &str) -> Result<FastRegex, regex::Error> {
        // Compile first: this validates the pattern with the same engine that will run it, so
        // a pattern is accepted or rejected the same way whichever strategy is chosen.
        let re = Regex::new(&format!("^(?s:{pattern})$"))?;
        let hir = regex_syntax::ParserBuilder::new()
            .dot_matches_new_line(true)
            .build()
            .parse(pattern)
            .ok();
        let strategy = match hir.as_ref().and_then(analyse) {
            Some(s) => s,
            None => {
                let prefix = hir.as_ref().map(literal_prefix_of).unwrap_or_default();
                Strategy::Regex { re, prefix }
            }
        };
        Ok(FastRegex {
            strategy: std::sync::Arc::new(strategy),
        })
    }

    #[inline]
    fn is_match(&self, v: &str) -> bool {
        match &*self.strategy {
            Strategy::Any => true,
            Strategy::NonEmpty => !v.is_empty(),
            Strategy::Set(set) => {
                if set.len() <= 8 {
                    set.iter().any(|s| s == v)
                } else {
                    set.binary_search_by(|s| s.as_str().cmp(v)).is_ok()
                }
            }
            Strategy::Prefix(p) => v.starts_with(p.as_str()),
            Strategy::Suffix(s) => v.ends_with(s.as_str()),
            Strategy::Contains(s) => v.contains(s.as_str()),
            Strategy::Regex { re, prefix } => v.starts_with(prefix.as_str()) && re.is_match(v),
        }
    }
}

fn unwrap_captures(h: &Hir) -> &Hir {
    let mut h = h;
    while let HirKind::Capture(c) = h.kind() {
        h = &c.sub;
    }
    h
}

/// `.*` (min 0) or `.+` (min 1) with `.` matching every character: returns the minimum.
fn any_char_repetition(h: &Hir) -> Option<u32> {
    match unwrap_captures(h).kind() {
        HirKind::Repetition(r) if r.max.is_none() && r.min <= 1 => {
            is_any_char(unwrap_captures(&r.sub)).then_some(r.min)
        }
        _ => None,
    }
}

fn is_any_char(h: &Hir) -> bool {
    match h.kind() {
        HirKind::Class(Class::Unicode(c)) => {
            let r = c.ranges();
            r.len() == 1 && r[0].start() == '\0' && r[0].end() == char::MAX
        }
        HirKind::Class(Class::Bytes(c)) => {
            let r = c.ranges();
            r.len() == 1 && r[0].start() == 0 && r[0].end() == 0xFF
        }
        _ => false,
    }
}

/// Picks a non-regex strategy when the pattern has one of the recognised shapes.
fn analyse(hir: &Hir) -> Option<Strategy> {
    let h = unwrap_captures(hir);
    match any_char_repetition(h) {
        Some(0) => return Some(Strategy::Any),
        Some(_) => return Some(Strategy::NonEmpty),
        None => {}
    }
    if let Some(mut set) = literal_set(h, MAX_SET_MATCHES) {
        set.sort();
        set.dedup();
        return Some(Strategy::Set(set));
    }
    if let HirKind::Concat(parts) = h.kind() {
        let n = parts.len();
        let lead = any_char_repetition(&parts[0]) == Some(0);
        let trail = any_char_repetition(&parts[n - 1]) == Some(0);
        let inner = &parts[usize::from(lead)..n - usize::from(trail)];
        if !inner.is_empty()
            && (lead || trail)
            && let Some(lit) = single_literal(inner)
        {
            return Some(match (lead, trail) {
                (false, true) => Strategy::Prefix(lit),
                (true, false) => Strategy::Suffix(lit),
                _ => Strategy::Contains(lit),
            });
        }
    }
    None
}

/// If the concatenation of `parts` matches exactly one string, that string.
fn single_literal(parts: &[Hir]) -> Option<String> {
    let mut out = String::new();
    for p in parts {
        let set = literal_set(p, 1)?;
        out.push_str(&set[0]);
    }
    Some(out)
}

/// The finite set of strings `h` matches, if it has at most `limit` members.
fn literal_set(h: &Hir, limit: usize) -> Option<Vec<String>> {
    match h.kind() {
        HirKind::Empty => Some(vec![String::new()]),
        HirKind::Literal(l) => Some(vec![String::from_utf8(l.0.to_vec()).ok()?]),
        HirKind::Capture(c) => literal_set(&c.sub, limit),
        HirKind::Class(Class::Unicode(c)) => {
            let mut out = Vec::new();
            for r in c.ranges() {
                for ch in r.start()..=r.end() {
                    if out.len() == limit {
                        return None;
                    }
                    out.push(ch.to_string());
                }
            }
            Some(out)
        }
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for a in alts {
                out.extend(literal_set(a, limit)?);
                if out.len() > limit {
                    return None;
                }
            }
            Some(out)
        }
        HirKind::Concat(parts) => {
            let mut acc = vec![String::new()];
            for p in parts {
                let next = literal_set(p, limit)?;
                if acc.len() * next.len() > limit {
                    return None;
                }
                acc = acc
                    .iter()
                    .flat_map(|a| next.iter().map(move |b| format!("{a}{b}")))
                    .collect();
            }
            Some(acc)
        }
        HirKind::Repetition(r) if r.max == Some(r.min) && r.min <= 8 => {
            let one = literal_set(&r.sub, limit)?;
            let mut acc = vec![String::new()];
            for _ in 0..r.min {
                if acc.len() * one.len() > limit {
                    return None;
                }
                acc = acc
                    .iter()
                    .flat_map(|a| one.iter().map(move |b| format!("{a}{b}")))
                    .collect();
            }
            Some(acc)
        }
        _ => None,
    }
}

/// The longest literal that every match of `h` starts with.
fn literal_prefix_of(h: &Hir) -> String {
    let h = unwrap_captures(h);
    match h.kind() {
        HirKind::Literal(l) => String::from_utf8(l.0.to_vec()).unwrap_or_default(),
        HirKind::Concat(parts) => {
            let mut out = String::new();
            for p in parts {
                match literal_set(p, 1) {
                    Some(s) => out.push_str(&s[0]),
                    None => {
                        out.push_str(&literal_prefix_of(p));
                        break;
                    }
                }
            }
            out
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(op: MatchOp, v: &str) -> Matcher {
        Matcher::new(op, "l", v).unwrap()
    }

    fn strategy_name(mt: &Matcher) -> &'static str {
        match &*mt.re.as_ref().unwrap().strategy {
            Strategy::Any => "any",
            Strategy::NonEmpty => "nonempty",
            Strategy::Set(_) => "set",
            Strategy::Prefix(_) => "prefix",
            Strategy::Suffix(_) => "suffix",
            Strategy::Contains(_) => "contains",
            Strategy::Regex { .. } => "regex",
        }
    }

    #[test]
    fn regex_is_fully_anchored_and_dotall() {
        let r = m(MatchOp::RegexMatch, "foo");
        assert!(r.matches("foo"));
        assert!(!r.matches("xfoo"));
        assert!(!r.matches("foox"));
        let r = m(MatchOp::RegexMatch, "a.c");
        assert!(r.matches("a\nc"));
        let r = m(MatchOp::RegexMatch, "foo|bar");
        assert!(r.matches("bar") && !r.matches("foobar"));
    }

    #[test]
    fn strategies_are_chosen_and_agree_with_the_regex() {
        let cases = [
            (".*", "any"),
            ("(.*)", "any"),
            (".+", "nonempty"),
            ("a|b|c", "set"),
            ("foo|foobar|bar", "set"),
            ("(?i)abc", "set"),
            ("api-(a|b)", "set"),
            ("", "set"),
            ("foo.*", "prefix"),
            (".*foo", "suffix"),
            (".*foo.*", "contains"),
            ("fo+.*", "regex"),
            ("[0-9]+", "regex"),
            ("^foo$", "regex"),
        ];
        let inputs = [
            "", "a", "b", "c", "d", "abc", "ABC", "aBc", "foo", "foobar", "bar", "xfoo", "xfoox",
            "fooo", "api-a", "api-b", "api-c", "123", "\n", "foo\nbar",
        ];
        for (pat, want) in cases {
            let mt = m(MatchOp::RegexMatch, pat);
            assert_eq!(strategy_name(&mt), want, "strategy for {pat:?}");
            let reference = Regex::new(&format!("^(?s:{pat})$")).unwrap();
            for v in inputs {
                assert_eq!(mt.matches(v), reference.is_match(v), "{pat:?} on {v:?}");
                let nm = m(MatchOp::RegexNoMatch, pat);
                assert_eq!(nm.matches(v), !reference.is_match(v), "!~{pat:?} on {v:?}");
            }
        }
    }

    #[test]
    fn set_matches_and_prefix() {
        let mt = m(MatchOp::RegexMatch, "b|a|b");
        assert_eq!(mt.set_matches(), Some(vec!["a", "b"]));
        assert_eq!(m(MatchOp::Equal, "x").set_matches(), Some(vec!["x"]));
        assert_eq!(m(MatchOp::RegexNoMatch, "a|b").set_matches(), None);
        assert_eq!(
            m(MatchOp::RegexMatch, "foo.*").literal_prefix(),
            Some("foo")
        );
        assert_eq!(
            m(MatchOp::RegexMatch, "foo[0-9]+").literal_prefix(),
            Some("foo")
        );
        assert!(m(MatchOp::RegexMatch, ".*").matches_everything());
    }

    #[test]
    fn empty_value_semantics() {
        assert!(m(MatchOp::Equal, "").matches_empty());
        assert!(!m(MatchOp::NotEqual, "").matches_empty());
        assert!(m(MatchOp::NotEqual, "x").matches_empty());
        assert!(m(MatchOp::RegexMatch, "a|").matches_empty());
        assert!(!m(MatchOp::RegexMatch, ".+").matches_empty());
        assert!(m(MatchOp::RegexNoMatch, "a").matches_empty());
    }

    #[test]
    fn invalid_regex_names_the_pattern() {
        let err = Matcher::new(MatchOp::RegexMatch, "job", "a(b").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"a(b\"") && msg.contains("\"job\""), "{msg}");
    }

    #[test]
    fn display() {
        assert_eq!(m(MatchOp::RegexNoMatch, "a\"b").to_string(), r#"l!~"a\"b""#);
    }

    proptest::proptest! {
        #[test]
        fn fast_paths_agree_with_regex_on_random_input(
            pat in "(\\.\\*)?[ab]{0,3}(\\|[ab]{1,2}){0,2}(\\.\\*)?",
            v in "[ab\\n]{0,5}"
        ) {
            let mt = m(MatchOp::RegexMatch, &pat);
            let reference = Regex::new(&format!("^(?s:{pat})$")).unwrap();
            proptest::prop_assert_eq!(mt.matches(&v), reference.is_match(&v));
        }
    }
}
