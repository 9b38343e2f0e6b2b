//! Arbitrary bytes as a WAL segment: the page and fragment decoder never panics, reports
//! damage at or after the end of the last record it returned, and every record it returns
//! decodes (or fails to) without panicking; series, samples and tombstones that decode encode
//! back to the same records.
//!
//! Each input is also read as a list of fragments `(type, length, data)` laid out in pages with
//! correct CRCs, so that the fuzzer reaches fragment sequencing, page padding and Snappy
//! decompression without having to solve checksums.
#![no_main]

use strata_tsdb::encoding::crc32c;
use strata_tsdb::wal::record;
use strata_tsdb::wal::{HEADER_SIZE, PAGE_SIZE, SegmentError, SegmentReader};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    read_segment(data);
    read_segment(&framed(data));
});

/// Lays the input out as fragments: each one takes a type byte, a length byte and that many
/// data bytes from the input; a fragment that does not fit in the page starts the next one.
fn framed(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let [t, n, rest @ ..] = data {
        let n = (*n as usize * 3).min(rest.len());
        let (payload, tail) = rest.split_at(n);
        let room = PAGE_SIZE - out.len() % PAGE_SIZE;
        if room < HEADER_SIZE + n {
            out.resize(out.len() + room, 0);
        }
        out.push(*t);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&crc32c(payload).to_be_bytes());
        out.extend_from_slice(payload);
        data = tail;
    }
    out
}

fn read_segment(seg: &[u8]) {
    let mut r = SegmentReader::new(seg);
    let mut end = 0;
    loop {
        match r.next_record() {
            Ok(true) => {
                assert!(r.good_end() > end, "a record must consume bytes");
                assert!(
                    r.record_start() >= end,
                    "record starts before the previous one ended"
                );
                end = r.good_end();
                assert!(end <= seg.len() as u64, "record ends past the data");
                check_record(r.record());
            }
            Ok(false) => break,
            Err(SegmentError::Corrupt { good_end, at, .. }) => {
                assert_eq!(good_end, end, "damage reported before the last good record");
                assert!(at >= good_end);
                break;
            }
            Err(SegmentError::Io(e)) => panic!("reading a slice failed: {e}"),
        }
    }
    assert!(
        !r.next_record().unwrap(),
        "a finished reader returned a record"
    );
}

fn check_record(rec: &[u8]) {
    let Ok(decoded) = record::decode(rec) else {
        return;
    };
    let mut again = Vec::new();
    if record::encode(&decoded, &mut again) {
        assert_eq!(
            record::decode(&again).expect("our own encoding decodes"),
            decoded,
            "record does not round-trip"
        );
    }
}
