//! Series entries as the gateway keeps them in its index cache: label strings resolved and
//! chunk metas decoded, laid out so that reading one back is slicing, not decoding.
//!
//! Why: an index series entry holds symbol references and delta-encoded varints. Decoding it,
//! then looking its symbols up in the index-header (sorting a batch's references to read each
//! symbol group once), was about a sixth of the gateway's CPU for a warm query over 5,000
//! series, and it was done again for every query although the entry never changes. The cache
//! now keeps each entry in this resolved form: built once when the entry is read from the
//! bucket, then used as it is. It is larger than the index entry (strings instead of
//! references, fixed-width chunk metas), and the index cache counts it at its real size, so
//! `--index-cache-size` still bounds the memory.
//!
//! The labels are kept final: the block's external labels attached (a block's external labels
//! never change: relabelling one makes a new block). Their part of the entry is laid out as a
//! [`PackedLabels`], so a Series call that removes no replica labels takes its label set as a
//! shared slice of the entry, without allocating or copying.
//!
//! Layout, integers little-endian:
//!
//! ```text
//! u32 n (labels) | u32 m (chunks) | u32 index labels | u32 index bytes
//!     | m × (i64 min_time, i64 max_time, u64 ref) | 2n × u32 ends | text
//! ```
//!
//! `text` is the labels' names and values back to back; `ends[2k]` is where name `k` ends in
//! it and `ends[2k + 1]` where its value ends. "Index labels" is how many labels the series
//! has in the index, before external labels were attached; "index bytes" is the size of its
//! index entry, which a cache hit counts as touched, so byte limits and series size metrics
//! keep Thanos' meaning whatever form the cache keeps. Entries are written only by [`encode`]
//! in this process, but [`ResolvedEntry::parse`] checks every bound anyway, so a bug can give
//! an error and never a panic or a wrong slice.

use bytes::Bytes;
use strata_tsdb::{ChunkMeta, ChunkRef};

use crate::packed::PackedLabels;

const HEADER: usize = 16;
const CHUNK: usize = 24;

/// Writes a resolved entry: the final `labels` (sorted, names unique), how many labels the
/// series has in the index, the size of its index entry, and every chunk meta of the series.
pub(crate) fn encode<'a>(
    labels: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone,
    index_len: usize,
    index_bytes: usize,
    chunks: &[ChunkMeta],
) -> Bytes {
    let n = labels.len();
    let text_len: usize = labels.clone().map(|(a, b)| a.len() + b.len()).sum();
    let mut out = Vec::with_capacity(HEADER + CHUNK * chunks.len() + 8 * n + text_len);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    out.extend_from_slice(&(index_len as u32).to_le_bytes());
    out.extend_from_slice(&(index_bytes as u32).to_le_bytes());
    for c in chunks {
        out.extend_from_slice(&c.min_time.to_le_bytes());
        out.extend_from_slice(&c.max_time.to_le_bytes());
        out.extend_from_slice(&c.chunk_ref.0.to_le_bytes());
    }
    let mut end = 0u32;
    for (name, value) in labels.clone() {
        end += name.len() as u32;
        out.extend_from_slice(&end.to_le_bytes());
        end += value.len() as u32;
        out.extend_from_slice(&end.to_le_bytes());
    }
    for (name, value) in labels {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    Bytes::from(out)
}

/// The size of the index entry `entry` was resolved from (0 if `entry` is too short to say).
pub(crate) fn index_bytes(entry: &[u8]) -> u64 {
    entry.get(12..16).map_or(0, |w| {
        u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    })
}

/// A resolved entry read in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResolvedEntry<'a> {
    chunks: &'a [u8],
    /// Where the labels (their ends) start in the entry.
    labels_at: usize,
    /// Labels in the entry.
    labels: usize,
    index_len: usize,
}

impl<'a> ResolvedEntry<'a> {
    /// Checks the layout: lengths, text that is UTF-8, label ends that do not go back and fall
    /// on character boundaries.
    pub(crate) fn parse(b: &'a [u8]) -> Result<Self, &'static str> {
        let word = |at: usize| -> Option<usize> {
            Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
        };
        let (n, m, index_len) = match (word(0), word(4), word(8)) {
            (Some(n), Some(m), Some(i)) => (n, m, i),
            _ => return Err("shorter than its header"),
        };
        let labels_at = m
            .checked_mul(CHUNK)
            .and_then(|l| HEADER.checked_add(l))
            .ok_or("chunk count out of range")?;
        let text_at = n
            .checked_mul(8)
            .and_then(|l| labels_at.checked_add(l))
            .filter(|&t| t <= b.len())
            .ok_or("shorter than its counts say")?;
        let text = std::str::from_utf8(&b[text_at..]).map_err(|_| "label text is not UTF-8")?;
        let ends = &b[labels_at..text_at];
        let mut last = 0;
        for e in ends.chunks_exact(4) {
            let e = u32::from_le_bytes(e.try_into().map_err(|_| "label end")?) as usize;
            if e < last || !text.is_char_boundary(e) {
                return Err("label ends out of order or off a character boundary");
            }
            last = e;
        }
        if last != text.len() {
            return Err("label text longer than its labels");
        }
        Ok(ResolvedEntry {
            chunks: &b[HEADER..labels_at],
            labels_at,
            labels: n,
            index_len,
        })
    }

    /// How many labels the series has in the index (before external labels).
    pub(crate) fn index_len(&self) -> usize {
        self.index_len
    }

    /// The labels (final, names sorted) as a [`PackedLabels`] sharing `entry`, the bytes this
    /// was parsed from; `parse` checked what `PackedLabels` requires of them.
    pub(crate) fn packed(&self, entry: &Bytes) -> PackedLabels {
        PackedLabels::from_checked(entry.slice(self.labels_at..), self.labels)
    }

    /// Every chunk meta of the series, in index order.
    pub(crate) fn chunks(self) -> impl Iterator<Item = ChunkMeta> + 'a {
        self.chunks.chunks_exact(CHUNK).map(|c| {
            let word = |at: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&c[at..at + 8]);
                w
            };
            ChunkMeta {
                min_time: i64::from_le_bytes(word(0)),
                max_time: i64::from_le_bytes(word(8)),
                chunk_ref: ChunkRef(u64::from_le_bytes(word(16))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(min_time: i64, max_time: i64, r: u64) -> ChunkMeta {
        ChunkMeta {
            min_time,
            max_time,
            chunk_ref: ChunkRef(r),
        }
    }

    #[test]
    fn round_trip() {
        let labels = [("__name__", "up"), ("instance", "héllo:9090"), ("job", "")];
        let chunks = [meta(-5, 10, 7), meta(11, i64::MAX, u64::MAX)];
        let b = encode(labels.iter().copied(), 2, 77, &chunks);
        let e = ResolvedEntry::parse(&b).unwrap();
        assert_eq!(e.index_len(), 2);
        assert_eq!(index_bytes(&b), 77);
        assert_eq!(index_bytes(&b[..15]), 0);
        assert_eq!(e.chunks().collect::<Vec<_>>(), chunks);
        // The packed label set shares the entry and is the one a builder makes.
        let mut builder = crate::packed::PackedBuilder::default();
        for (n, v) in labels {
            builder.push(n, v);
        }
        assert_eq!(e.packed(&b), builder.finish());
        assert_eq!(e.packed(&b).len(), 3);
        assert_eq!(e.packed(&b).iter().collect::<Vec<_>>(), labels);

        let empty = encode(std::iter::empty(), 0, 0, &[]);
        let e = ResolvedEntry::parse(&empty).unwrap();
        assert_eq!(e.packed(&empty).iter().count(), 0);
        assert_eq!(e.chunks().count(), 0);
    }

    #[test]
    fn damaged_entries_are_errors() {
        let b = encode(
            [("a", "b"), ("c", "dé")].into_iter(),
            1,
            9,
            &[meta(1, 2, 3)],
        );
        for len in 0..b.len() {
            assert!(ResolvedEntry::parse(&b[..len]).is_err(), "cut at {len}");
        }
        let mut longer = b.to_vec();
        longer.push(b'x');
        assert!(ResolvedEntry::parse(&longer).is_err());
        // The second label's value ends inside "é".
        let mut split = b.to_vec();
        split[HEADER + CHUNK + 12] -= 1;
        assert!(ResolvedEntry::parse(&split).is_err());
        let mut huge = b.to_vec();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ResolvedEntry::parse(&huge).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(e) = ResolvedEntry::parse(&b) {
                let _ = e.packed(&Bytes::from(b.clone())).iter().count();
                let _ = e.chunks().count();
            }
        }

        #[test]
        fn encodes_what_it_is_given(
            labels in proptest::collection::vec(("\\PC{0,6}", "\\PC{0,6}"), 0..6),
            chunks in proptest::collection::vec((any::<i64>(), any::<i64>(), any::<u64>()), 0..5),
        ) {
            let chunks: Vec<ChunkMeta> = chunks.into_iter().map(|(a, b, r)| meta(a, b, r)).collect();
            let b = encode(labels.iter().map(|(n, v)| (n.as_str(), v.as_str())), 0, 0, &chunks);
            let e = ResolvedEntry::parse(&b).unwrap();
            let back: Vec<(String, String)> =
                e.packed(&b).iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            prop_assert_eq!(back, labels);
            prop_assert_eq!(e.chunks().collect::<Vec<_>>(), chunks);
        }
    }
}
