//! A series' label set packed into two allocations, for the Series call's hot path.
//!
//! A Series call decodes every matching series once per block it occurs in, and a query over
//! a day of two-hour blocks decodes the same label set a dozen times before the k-way merge
//! keeps one. As a [`Labels`] each decode is two heap strings per label plus the vector; a
//! profile of the gateway (`examples/series_profile.rs`, 5,000 series × 7 blocks) had three
//! quarters of all allocations, and a quarter of all instructions, in those strings. Packed,
//! a decode is two allocations whatever the number of labels, comparisons stay slice
//! comparisons, and strings are made only for the series that are sent.

use std::cmp::Ordering;
use std::fmt;

#[cfg(test)]
use strata_model::Label;
#[cfg(test)]
use strata_model::Labels;

/// A label set sorted by name, names unique: every name and value concatenated in `text`,
/// with `ends[2i]` the end of name `i` and `ends[2i + 1]` the end of its value.
///
/// Ordering and equality are those of the same set as [`Labels`]: label by label, name then
/// value, a proper prefix first.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct PackedLabels {
    text: Box<str>,
    ends: Box<[u32]>,
}

impl PackedLabels {
    /// Number of labels.
    pub(crate) fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Label `i` as `(name, value)`.
    fn at(&self, i: usize) -> (&str, &str) {
        let start = if i == 0 {
            0
        } else {
            self.ends[2 * i - 1] as usize
        };
        let mid = self.ends[2 * i] as usize;
        let end = self.ends[2 * i + 1] as usize;
        (&self.text[start..mid], &self.text[mid..end])
    }

    /// The labels in order, as `(name, value)`.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        (0..self.len()).map(|i| self.at(i))
    }

    /// The value of label `name`, if present.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The same set as [`Labels`].
    #[cfg(test)]
    pub(crate) fn to_labels(&self) -> Labels {
        Labels::from_sorted(self.iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    /// The same set as Store API wire labels.
    pub(crate) fn to_wire(&self) -> Vec<strata_storepb::thanos::Label> {
        self.iter()
            .map(|(n, v)| strata_storepb::thanos::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    /// Packs a [`Labels`] (tests and external labels).
    #[cfg(test)]
    pub(crate) fn from_labels(labels: &Labels) -> Self {
        let mut b = PackedBuilder::default();
        for l in labels.iter() {
            b.push(&l.name, &l.value);
        }
        b.finish()
    }
}

impl Ord for PackedLabels {
    /// String order is byte order, so this walks the bytes without re-slicing `str`s: each
    /// name and value is one byte-slice comparison between consecutive ends.
    fn cmp(&self, o: &Self) -> Ordering {
        let (at, bt) = (self.text.as_bytes(), o.text.as_bytes());
        let (mut a0, mut b0) = (0usize, 0usize);
        for (&ae, &be) in self.ends.iter().zip(o.ends.iter()) {
            let (ae, be) = (ae as usize, be as usize);
            match at[a0..ae].cmp(&bt[b0..be]) {
                Ordering::Equal => {}
                other => return other,
            }
            (a0, b0) = (ae, be);
        }
        self.ends.len().cmp(&o.ends.len())
    }
}

impl PartialOrd for PackedLabels {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl fmt::Debug for PackedLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// Builds [`PackedLabels`] one label at a time; reused across series, so its buffers are
/// allocated once per batch, not per series.
#[derive(Debug, Default)]
pub(crate) struct PackedBuilder {
    text: String,
    ends: Vec<u32>,
}

impl PackedBuilder {
    /// Appends a label; the caller keeps names sorted and unique.
    pub(crate) fn push(&mut self, name: &str, value: &str) {
        self.text.push_str(name);
        self.ends.push(self.text.len() as u32);
        self.text.push_str(value);
        self.ends.push(self.text.len() as u32);
    }

    /// The labels pushed so far, packed; the builder is empty afterwards.
    pub(crate) fn finish(&mut self) -> PackedLabels {
        let p = PackedLabels {
            text: self.text.as_str().into(),
            ends: self.ends.as_slice().into(),
        };
        self.text.clear();
        self.ends.clear();
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs)
    }

    #[test]
    fn round_trips_and_answers_lookups() {
        let l = ls(&[("__name__", "up"), ("job", "api"), ("zone", "")]);
        let p = PackedLabels::from_labels(&l);
        assert_eq!(p.to_labels(), l);
        assert_eq!(p.len(), 2);
        assert_eq!(p.get("job"), Some("api"));
        assert_eq!(p.get("zone"), None);
        assert_eq!(format!("{p:?}"), r#"{__name__="up", job="api"}"#);
        let w = p.to_wire();
        assert_eq!((w[1].name.as_str(), w[1].value.as_str()), ("job", "api"));
        assert_eq!(PackedLabels::default().to_labels(), Labels::default());
    }

    #[test]
    fn orders_exactly_like_labels() {
        // Prefixes, equal names with different values, names that are prefixes of names,
        // and values that are prefixes of values: the cases where concatenation could lie.
        let sets = [
            ls(&[]),
            ls(&[("a", "1")]),
            ls(&[("a", "1"), ("b", "2")]),
            ls(&[("a", "1"), ("bb", "")]),
            ls(&[("a", "1"), ("bb", "0")]),
            ls(&[("a", "10")]),
            ls(&[("a", "1"), ("c", "")]),
            ls(&[("ab", "1")]),
            ls(&[("a", "1b")]),
            ls(&[("a", "")]),
            ls(&[("a", "1"), ("b", "10")]),
            ls(&[("a", "1"), ("b", "1"), ("c", "1")]),
            ls(&[("b", "1")]),
        ];
        for x in &sets {
            for y in &sets {
                let (px, py) = (PackedLabels::from_labels(x), PackedLabels::from_labels(y));
                assert_eq!(px.cmp(&py), x.cmp(y), "{x:?} vs {y:?}");
                assert_eq!(px == py, x == y, "{x:?} vs {y:?}");
            }
        }
    }

    #[test]
    fn the_builder_is_reusable() {
        let mut b = PackedBuilder::default();
        b.push("a", "1");
        let first = b.finish();
        b.push("b", "2");
        let second = b.finish();
        assert_eq!(first.to_labels(), ls(&[("a", "1")]));
        assert_eq!(second.to_labels(), ls(&[("b", "2")]));
    }
}
