//! The `tombstones` file: deleted time intervals per series.
//!
//! ```text
//! magic BE32 0x0130BA30 | version u8 = 1 | entry* | CRC32C BE32 over the entries only
//! entry: series_ref uvarint | mint varint | maxt varint      -- closed interval [mint, maxt]
//! ```
//!
//! (`tsdb/docs/format/tombstones.md` still describes an older layout; this follows
//! `tsdb/tombstones/tombstones.go`.) A block without the file has no tombstones. Thanos never
//! uploads tombstones, but Prometheus' own blocks may carry them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::encoding::{Decbuf, crc32c, put_uvarint, put_varint};
use crate::error::{Error, Result};

pub const TOMBSTONES_MAGIC: u32 = 0x0130_BA30;
pub const TOMBSTONES_VERSION: u8 = 1;
pub const TOMBSTONES_FILENAME: &str = "tombstones";

/// A closed time interval, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    pub min: i64,
    pub max: i64,
}

impl Interval {
    pub fn contains(&self, t: i64) -> bool {
        self.min <= t && t <= self.max
    }
}

/// Deleted intervals per series ref, each list sorted and merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tombstones {
    series: BTreeMap<u64, Vec<Interval>>,
}

impl Tombstones {
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Total number of intervals (what `stats.numTombstones` counts).
    pub fn num_intervals(&self) -> u64 {
        self.series.values().map(|v| v.len() as u64).sum()
    }

    /// Adds a deleted interval, merging it with overlapping or adjacent ones.
    pub fn add(&mut self, series: u64, iv: Interval) {
        let list = self.series.entry(series).or_default();
        list.push(iv);
        normalize(list);
    }

    /// The deleted intervals of a series (empty when none).
    pub fn get(&self, series: u64) -> &[Interval] {
        self.series.get(&series).map_or(&[], Vec::as_slice)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &[Interval])> {
        self.series.iter().map(|(&s, v)| (s, v.as_slice()))
    }

    /// Parses a tombstones file. `file` names it in errors.
    pub fn parse(file: &str, data: &[u8]) -> Result<Self> {
        if data.len() < 9 {
            return Err(Error::corrupt(
                file,
                0,
                "tombstones",
                "file shorter than 9 bytes",
            ));
        }
        let magic = u32::from_be_bytes(data[..4].try_into().expect("4 bytes"));
        if magic != TOMBSTONES_MAGIC {
            return Err(Error::corrupt(
                file,
                0,
                "tombstones header",
                format!("magic {magic:#010x}, want {TOMBSTONES_MAGIC:#010x}"),
            ));
        }
        if data[4] != TOMBSTONES_VERSION {
            return Err(Error::Unsupported {
                file: file.to_string(),
                detail: format!("tombstones format version {} is not supported", data[4]),
            });
        }
        let body = &data[5..data.len() - 4];
        let stored = u32::from_be_bytes(data[data.len() - 4..].try_into().expect("4 bytes"));
        let computed = crc32c(body);
        if stored != computed {
            return Err(Error::corrupt(
                file,
                5,
                "tombstones",
                format!("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"),
            ));
        }
        // Collect first and normalize each series once: adding entries one by one would
        // re-sort a series' list per entry, quadratic in the file size.
        let mut series: BTreeMap<u64, Vec<Interval>> = BTreeMap::new();
        let mut d = Decbuf::new(body);
        while !d.is_empty() {
            let at = 5 + (body.len() - d.remaining()) as u64;
            let e = |e| Error::decode(file, at, "tombstone entry", e);
            let s = d.uvarint().map_err(e)?;
            let min = d.varint().map_err(e)?;
            let max = d.varint().map_err(e)?;
            series.entry(s).or_default().push(Interval { min, max });
        }
        for list in series.values_mut() {
            normalize(list);
        }
        Ok(Tombstones { series })
    }

    /// Reads `<dir>/tombstones`; a missing file means no tombstones.
    pub fn read_from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(TOMBSTONES_FILENAME);
        match std::fs::read(&path) {
            Ok(data) => Self::parse(&path.display().to_string(), &data),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Tombstones::default()),
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&TOMBSTONES_MAGIC.to_be_bytes());
        out.push(TOMBSTONES_VERSION);
        for (&s, ivs) in &self.series {
            for iv in ivs {
                put_uvarint(&mut out, s);
                put_varint(&mut out, iv.min);
                put_varint(&mut out, iv.max);
            }
        }
        let crc = crc32c(&out[5..]);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }
}

/// Sorts intervals and merges overlapping or adjacent ones, in place.
fn normalize(list: &mut Vec<Interval>) {
    list.sort_unstable();
    let mut w = 0;
    for r in 0..list.len() {
        let iv = list[r];
        if w > 0 && iv.min <= list[w - 1].max.saturating_add(1) {
            list[w - 1].max = list[w - 1].max.max(iv.max);
        } else {
            list[w] = iv;
            w += 1;
        }
    }
    list.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_merge() {
        let mut t = Tombstones::default();
        t.add(16, Interval { min: 10, max: 20 });
        t.add(16, Interval { min: 15, max: 30 });
        t.add(16, Interval { min: 31, max: 40 });
        t.add(16, Interval { min: 100, max: 200 });
        t.add(3, Interval { min: -5, max: 5 });
        assert_eq!(
            t.get(16),
            &[
                Interval { min: 10, max: 40 },
                Interval { min: 100, max: 200 }
            ]
        );
        assert_eq!(t.num_intervals(), 3);
        let bytes = t.encode();
        assert_eq!(Tombstones::parse("t", &bytes).unwrap(), t);
        // An empty file is just the header and the CRC of nothing.
        let empty = Tombstones::default().encode();
        assert_eq!(empty.len(), 9);
        assert!(Tombstones::parse("t", &empty).unwrap().is_empty());
    }

    /// Regression (fuzz/regressions/tombstones): parsing was quadratic in the number of
    /// intervals of one series. 200,000 intervals take milliseconds now; before, minutes.
    #[test]
    fn many_intervals_of_one_series_parse_in_linear_time() {
        let mut t = Tombstones::default();
        let ivs: Vec<Interval> = (0..200_000i64)
            .map(|i| Interval {
                min: i * 10,
                max: i * 10 + 5,
            })
            .collect();
        t.series.insert(7, ivs.clone());
        let start = std::time::Instant::now();
        let parsed = Tombstones::parse("t", &t.encode()).unwrap();
        assert_eq!(parsed.get(7), &ivs[..]);
        assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
        let saved = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/regressions/tombstones/quadratic-parse-10k-intervals.bin"
        ))
        .unwrap();
        let parsed = Tombstones::parse("t", &saved).unwrap();
        assert_eq!(parsed.num_intervals(), 10_000);
    }

    #[test]
    fn corruption_is_an_error() {
        let mut t = Tombstones::default();
        t.add(1, Interval { min: 1, max: 2 });
        let bytes = t.encode();
        for cut in 0..bytes.len() {
            assert!(Tombstones::parse("t", &bytes[..cut]).is_err(), "cut {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Tombstones::parse("t", &b).is_err(), "flip {i}");
        }
    }
}
