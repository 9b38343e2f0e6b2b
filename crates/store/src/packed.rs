//! A series' label set packed into one buffer, for the Series call's hot path.
//!
//! A Series call decodes every matching series once per block it occurs in, and a query over
//! a day of two-hour blocks decodes the same label set a dozen times before the k-way merge
//! keeps one. As a [`Labels`] each decode is two heap strings per label plus the vector; a
//! profile of the gateway (`examples/series_profile.rs`, 5,000 series × 7 blocks) had three
//! quarters of all allocations, and a quarter of all instructions, in those strings. Packed,
//! comparisons stay slice comparisons, strings are made only for the series that are sent,
//! and a label set read from the index cache is not copied at all: it is a shared slice of
//! the cached entry (`crate::resolved`), whose labels are laid out the same way.

use std::cmp::Ordering;
use std::fmt;

use bytes::Bytes;
#[cfg(test)]
use strata_model::Label;
#[cfg(test)]
use strata_model::Labels;

/// A label set sorted by name, names unique: `2n` label ends (`u32`, little-endian), then
/// every name and value concatenated, with end `2i` the end of name `i` in that text and end
/// `2i + 1` the end of its value.
///
/// Invariant, kept by the two ways to make one ([`PackedBuilder`] from `&str`s, and
/// [`PackedLabels::from_checked`] from a cache entry that `crate::resolved` checked): the text
/// is UTF-8, the ends do not go back, lie on character boundaries, and the last is the text's
/// length. So the buffer is the set, and equality and hashing are the buffer's.
///
/// Ordering is that of the same set as [`Labels`]: label by label, name then value, a proper
/// prefix first.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct PackedLabels {
    buf: Bytes,
    n: u32,
}

impl PackedLabels {
    /// A label set already laid out and checked (see the type's invariant): `buf` holds
    /// `n` labels' ends and then their text, and nothing more.
    pub(crate) fn from_checked(buf: Bytes, n: usize) -> Self {
        debug_assert!(buf.len() >= 8 * n);
        PackedLabels { buf, n: n as u32 }
    }

    /// Number of labels.
    pub(crate) fn len(&self) -> usize {
        self.n as usize
    }

    fn end(&self, i: usize) -> usize {
        end_at(&self.buf, i)
    }

    fn text(&self) -> &[u8] {
        &self.buf[8 * self.len()..]
    }

    /// The labels in order, as `(name, value)`.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        let utf8 = "packed label text is UTF-8 and split at character boundaries";
        self.iter_bytes().map(move |(n, v)| {
            (
                std::str::from_utf8(n).expect(utf8),
                std::str::from_utf8(v).expect(utf8),
            )
        })
    }

    /// The labels in order, as `(name, value)` bytes: what the wire encoder copies, twice per
    /// series (lengths, then bytes). It walks the ends once, in order, where indexing each
    /// label read three ends with their bounds checks: 15 % of a Series call's instructions
    /// for an instant query over 5,000 series.
    pub(crate) fn iter_bytes(&self) -> LabelBytes<'_> {
        let (ends, text) = self.buf.split_at(8 * self.len());
        LabelBytes {
            ends,
            text,
            start: 0,
        }
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

/// End `i` of a label set's ends (little-endian `u32`s: a name's end, then its value's).
fn end_at(ends: &[u8], i: usize) -> usize {
    let at = 4 * i;
    u32::from_le_bytes([ends[at], ends[at + 1], ends[at + 2], ends[at + 3]]) as usize
}

/// [`PackedLabels::iter_bytes`].
#[derive(Clone)]
pub(crate) struct LabelBytes<'a> {
    /// Ends not read yet: a name's end, then its value's end, per label.
    ends: &'a [u8],
    text: &'a [u8],
    /// Where the next label's name starts.
    start: usize,
}

impl<'a> Iterator for LabelBytes<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (e, rest) = self.ends.split_first_chunk::<8>()?;
        self.ends = rest;
        let (mid, end) = (end_at(e, 0), end_at(e, 1));
        let label = (&self.text[self.start..mid], &self.text[mid..end]);
        self.start = end;
        Some(label)
    }
}

impl Ord for PackedLabels {
    /// String order is byte order, so this walks bytes without re-slicing `str`s. The k-way
    /// merge compares label sets that are often equal (the same series in several blocks) or
    /// share a long start (`__name__`, `instance`, …): equal buffers are equal sets, and the
    /// names and values inside the texts' common start whose ends agree are skipped before
    /// comparing name by name and value by value (each one byte-slice comparison).
    fn cmp(&self, o: &Self) -> Ordering {
        if self.buf == o.buf {
            return Ordering::Equal;
        }
        let (at, bt) = (self.text(), o.text());
        let common = common_prefix(at, bt);
        let segments = 2 * self.len().min(o.len());
        // Names and values ending at the same place within the common start are equal.
        let (mut i, mut start) = (0, 0);
        while i < segments {
            let e = self.end(i);
            if e > common || e != o.end(i) {
                break;
            }
            start = e;
            i += 1;
        }
        let (mut a0, mut b0) = (start, start);
        for i in i..segments {
            let (ae, be) = (self.end(i), o.end(i));
            match at[a0..ae].cmp(&bt[b0..be]) {
                Ordering::Equal => {}
                other => return other,
            }
            (a0, b0) = (ae, be);
        }
        self.len().cmp(&o.len())
    }
}

/// How many bytes `a` and `b` start with in common, eight at a time while they agree.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let word = |s: &[u8]| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
        let diff = word(a) ^ word(b);
        if diff != 0 {
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
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

    /// The labels pushed so far, packed in one allocation; the builder is empty afterwards.
    pub(crate) fn finish(&mut self) -> PackedLabels {
        let mut buf = Vec::with_capacity(4 * self.ends.len() + self.text.len());
        for e in &self.ends {
            buf.extend_from_slice(&e.to_le_bytes());
        }
        buf.extend_from_slice(self.text.as_bytes());
        let p = PackedLabels {
            buf: Bytes::from(buf),
            n: (self.ends.len() / 2) as u32,
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
                assert_eq!(py.cmp(&px), y.cmp(x), "{y:?} vs {x:?}");
                assert_eq!(px == py, x == y, "{x:?} vs {y:?}");
            }
        }
    }

    proptest::proptest! {
        /// Random label sets drawn from few names and values, so that equal sets, shared
        /// starts and prefixes are common: the packed order is the order of `Labels`.
        #[test]
        fn random_sets_order_like_labels(
            x in proptest::collection::btree_map("[a-c]{1,2}", "[a-c]{0,10}", 0..5),
            y in proptest::collection::btree_map("[a-c]{1,2}", "[a-c]{0,10}", 0..5),
        ) {
            let to = |m: &std::collections::BTreeMap<String, String>| {
                let pairs: Vec<(&str, &str)> = m.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                let mut b = PackedBuilder::default();
                for (n, v) in &pairs {
                    b.push(n, v);
                }
                (b.finish(), Labels::from_sorted(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect()))
            };
            let ((px, lx), (py, ly)) = (to(&x), to(&y));
            proptest::prop_assert_eq!(px.cmp(&py), lx.cmp(&ly));
            proptest::prop_assert_eq!(px == py, lx == ly);
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
