//! Label sets, ordered and printed the way Prometheus orders and prints them.
//!
//! A [`Labels`] value is always sorted by label name with no duplicate names. That one
//! invariant is what lets the block index, the Store API and the engine merge series streams
//! without re-sorting: the derived [`Ord`] on `Labels` is exactly Prometheus' `labels.Compare`
//! (pairwise by name, then by value, then shorter first).

use std::fmt;

/// The label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One `name="value"` pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set: sorted by name, names unique, no empty values.
///
/// Prometheus treats a label with an empty value as absent, so the constructors drop such
/// labels; that keeps `{a=""}` and `{}` the same series everywhere in Strata.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// The empty label set.
    pub const fn empty() -> Self {
        Labels(Vec::new())
    }

    /// Builds a label set from labels in any order. When a name repeats, the last value wins,
    /// matching what Prometheus' `labels.Builder` does.
    pub fn new(labels: impl IntoIterator<Item = Label>) -> Self {
        let mut v: Vec<Label> = labels.into_iter().filter(|l| !l.value.is_empty()).collect();
        // Stable sort keeps insertion order among equal names so that "last wins" holds.
        v.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(v.len());
        for l in v {
            match out.last_mut() {
                Some(prev) if prev.name == l.name => *prev = l,
                _ => out.push(l),
            }
        }
        Labels(out)
    }

    /// Builds a label set from `(name, value)` pairs in any order.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Self {
        Labels::new(
            pairs
                .iter()
                .map(|(n, v)| Label::new(n.as_ref(), v.as_ref())),
        )
    }

    /// Wraps labels that the caller guarantees are sorted by name, unique and non-empty
    /// (for example, labels decoded from a block index, which stores them sorted).
    ///
    /// The invariant is checked in debug builds only; use [`Labels::new`] for untrusted input.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(
            labels.windows(2).all(|w| w[0].name < w[1].name),
            "labels not sorted or not unique: {labels:?}"
        );
        Labels(labels)
    }

    /// Builds a label set from labels received from another process (a Store API answer): kept
    /// as they are when they already are a label set (sorted, unique, no empty values, as
    /// well-behaved stores send them), which reuses the vector; otherwise as [`Labels::new`].
    pub fn from_received(labels: Vec<Label>) -> Self {
        if Labels::is_valid_sorted(&labels) && labels.iter().all(|l| !l.value.is_empty()) {
            Labels(labels)
        } else {
            Labels::new(labels)
        }
    }

    /// Whether `labels` is sorted by name with unique names: the form a block index must store.
    pub fn is_valid_sorted(labels: &[Label]) -> bool {
        labels.windows(2).all(|w| w[0].name < w[1].name)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        // Label sets are short (typically < 20): a linear scan beats a binary search here.
        self.0
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The value of `__name__`, if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// A builder seeded with these labels, for adding, replacing or removing some.
    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            labels: self.0.clone(),
        }
    }

    /// Merges `extra` into `self`; on a name clash the value from `extra` wins. This is how
    /// Thanos attaches a block's external labels to every series it serves.
    pub fn merged_with(&self, extra: &Labels) -> Labels {
        if extra.is_empty() {
            return self.clone();
        }
        let mut out = Vec::with_capacity(self.len() + extra.len());
        let (mut a, mut b) = (self.0.iter().peekable(), extra.0.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => match x.name.cmp(&y.name) {
                    std::cmp::Ordering::Less => out.push(a.next().unwrap().clone()),
                    std::cmp::Ordering::Greater => out.push(b.next().unwrap().clone()),
                    std::cmp::Ordering::Equal => {
                        a.next();
                        out.push(b.next().unwrap().clone());
                    }
                },
                (Some(_), None) => out.push(a.next().unwrap().clone()),
                (None, Some(_)) => out.push(b.next().unwrap().clone()),
                (None, None) => break,
            }
        }
        Labels(out)
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<Label> for Labels {
    fn from_iter<T: IntoIterator<Item = Label>>(iter: T) -> Self {
        Labels::new(iter)
    }
}

/// Prints `{name="value", ...}` exactly like Prometheus' `labels.Labels.String()`, with values
/// quoted as Go's `strconv.Quote` does.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", l.name, GoQuoted(&l.value))?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Edits a label set and produces a new, valid one.
#[derive(Clone, Debug, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let (name, value) = (name.into(), value.into());
        match self.labels.binary_search_by(|l| l.name.as_str().cmp(&name)) {
            Ok(i) if value.is_empty() => {
                self.labels.remove(i);
            }
            Ok(i) => self.labels[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.labels.insert(i, Label { name, value }),
        }
        self
    }

    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.labels.retain(|l| l.name != name);
        self
    }

    pub fn build(&self) -> Labels {
        Labels(self.labels.clone())
    }
}

/// Formats a string the way Go's `strconv.Quote` does for the characters that appear in
/// label values: backslash escapes for quotes, backslashes and control characters.
#[derive(Debug)]
pub struct GoQuoted<'a>(pub &'a str);

impl fmt::Display for GoQuoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\u{07}' => f.write_str("\\a")?,
                '\u{08}' => f.write_str("\\b")?,
                '\u{0C}' => f.write_str("\\f")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\u{0B}' => f.write_str("\\v")?,
                c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{:02x}", c as u32)?,
                c if c.is_control() => {
                    if (c as u32) <= 0xFFFF {
                        write!(f, "\\u{:04x}", c as u32)?
                    } else {
                        write!(f, "\\U{:08x}", c as u32)?
                    }
                }
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sorts_dedups_and_drops_empty_values() {
        let l = Labels::from_pairs(&[("b", "2"), ("a", "1"), ("c", ""), ("b", "3")]);
        assert_eq!(l.to_string(), r#"{a="1", b="3"}"#);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn ordering_matches_prometheus_compare() {
        let a = Labels::from_pairs(&[("a", "1")]);
        let ab = Labels::from_pairs(&[("a", "1"), ("b", "1")]);
        let a2 = Labels::from_pairs(&[("a", "2")]);
        let b = Labels::from_pairs(&[("b", "0")]);
        let mut v = vec![b.clone(), a2.clone(), ab.clone(), a.clone()];
        v.sort();
        assert_eq!(v, vec![a, ab, a2, b]);
    }

    #[test]
    fn merge_prefers_extra() {
        let s = Labels::from_pairs(&[("a", "1"), ("replica", "x"), ("z", "9")]);
        let ext = Labels::from_pairs(&[("cluster", "eu"), ("replica", "r1")]);
        assert_eq!(
            s.merged_with(&ext).to_string(),
            r#"{a="1", cluster="eu", replica="r1", z="9"}"#
        );
    }

    #[test]
    fn builder_set_and_remove() {
        let l = Labels::from_pairs(&[("a", "1"), ("b", "2")]);
        let out = l.builder().set("c", "3").set("a", "").remove("b").build();
        assert_eq!(out.to_string(), r#"{c="3"}"#);
    }

    #[test]
    fn quoting_matches_go() {
        assert_eq!(
            GoQuoted("a\"b\\c\nd\u{1}é").to_string(),
            r#""a\"b\\c\nd\x01é""#
        );
    }
}
