//! Arbitrary bytes as a tombstones file: whatever parses must encode and parse back equal,
//! with each series' intervals sorted and merged.
//!
//! Each input is also tried wrapped in a valid header and CRC, as the entries of a file, so
//! the entry decoder is reached without the fuzzer having to solve the checksum.
#![no_main]

use strata_tsdb::encoding::crc32c;
use strata_tsdb::tombstones::{TOMBSTONES_MAGIC, TOMBSTONES_VERSION, Tombstones};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    parse_and_check(data);
    let mut wrapped = TOMBSTONES_MAGIC.to_be_bytes().to_vec();
    wrapped.push(TOMBSTONES_VERSION);
    wrapped.extend_from_slice(data);
    wrapped.extend_from_slice(&crc32c(data).to_be_bytes());
    parse_and_check(&wrapped);
});

fn parse_and_check(data: &[u8]) {
    let Ok(t) = Tombstones::parse("tombstones", data) else {
        return;
    };
    let mut n = 0;
    for (series, ivs) in t.iter() {
        assert!(!ivs.is_empty(), "series {series} listed without intervals");
        assert_eq!(t.get(series), ivs);
        for w in ivs.windows(2) {
            // Merged: each interval starts past the end of the previous one plus one.
            assert!(w[1].min > w[0].max.saturating_add(1), "not merged: {w:?}");
        }
        n += ivs.len() as u64;
    }
    assert_eq!(t.num_intervals(), n);
    assert_eq!(t.is_empty(), n == 0);
    let enc = t.encode();
    let again = Tombstones::parse("tombstones", &enc).expect("our own encoding parses");
    assert_eq!(again, t, "tombstones do not round-trip");
    assert_eq!(again.encode(), enc, "encode is not stable");
}
