//! Unit tests of the WAL: page and fragment boundaries, compression, damage and repair,
//! checkpoints and replay.

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use strata_model::Labels;

use super::record::{self, RefSample, RefSeries, Stone};
use super::*;

fn opts(compress: bool) -> WalOptions {
    WalOptions {
        compress,
        ..WalOptions::default()
    }
}

fn read_all(dir: &Path) -> WalResult<Vec<Vec<u8>>> {
    let mut r = Reader::open(dir)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next()? {
        out.push(rec.to_vec());
    }
    Ok(out)
}

/// Incompressible bytes (a xorshift stream), so that sizes on disk are what the test says.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The fragment headers of a segment: (offset, type byte, length).
fn fragments(seg: &[u8]) -> Vec<(usize, u8, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < seg.len() {
        let in_page = PAGE_SIZE - pos % PAGE_SIZE;
        if in_page < HEADER_SIZE || seg[pos] == 0 {
            pos += in_page;
            continue;
        }
        let len = u16::from_be_bytes([seg[pos + 1], seg[pos + 2]]) as usize;
        out.push((pos, seg[pos], len));
        pos += HEADER_SIZE + len;
    }
    out
}

#[test]
fn records_round_trip_with_and_without_compression() {
    for compress in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let recs: Vec<Vec<u8>> = vec![
            vec![],
            b"hello".to_vec(),
            vec![b'a'; 1000],
            noise(5000, 1),
            vec![7; 100_000],
        ];
        let mut w = Wal::open(d.path(), opts(compress)).unwrap();
        w.log(&recs[..2]).unwrap();
        w.log(&recs[2..]).unwrap();
        w.close().unwrap();
        assert_eq!(read_all(d.path()).unwrap(), recs);
        let seg = fs::read(segment_path(d.path(), 0)).unwrap();
        let snappy = fragments(&seg).iter().any(|f| f.1 & SNAPPY_FLAG != 0);
        assert_eq!(snappy, compress, "compression flag");
        // Reopening starts a new segment, as Prometheus does.
        let mut w = Wal::open(d.path(), opts(compress)).unwrap();
        assert_eq!(w.active_segment(), 1);
        w.log(&[b"more"]).unwrap();
        w.fsync().unwrap();
        assert_eq!(w.segments().unwrap(), 0..=1);
        let mut all = recs.clone();
        all.push(b"more".to_vec());
        assert_eq!(read_all(d.path()).unwrap(), all);
    }
}

#[test]
fn a_record_of_a_page_minus_header_fills_one_page() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Wal::open(d.path(), opts(false)).unwrap();
    let exact = noise(PAGE_SIZE - HEADER_SIZE, 2);
    let plus_one = noise(PAGE_SIZE - HEADER_SIZE + 1, 3);
    w.log(&[&exact]).unwrap();
    w.log(&[&plus_one]).unwrap();
    w.close().unwrap();
    let seg = fs::read(segment_path(d.path(), 0)).unwrap();
    assert_eq!(
        fragments(&seg),
        vec![
            (0, FRAG_FULL, PAGE_SIZE - HEADER_SIZE),
            (PAGE_SIZE, FRAG_FIRST, PAGE_SIZE - HEADER_SIZE),
            (2 * PAGE_SIZE, FRAG_LAST, 1),
        ]
    );
    assert_eq!(seg.len(), 3 * PAGE_SIZE);
    assert_eq!(read_all(d.path()).unwrap(), vec![exact, plus_one]);
}

#[test]
fn no_record_starts_in_the_last_bytes_of_a_page() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Wal::open(d.path(), opts(false)).unwrap();
    // Leaves 3 bytes in the first page: too few for a header.
    let a = noise(PAGE_SIZE - HEADER_SIZE - 3, 4);
    let b = noise(10, 5);
    w.log(&[&a, &b]).unwrap();
    drop(w); // Without close: the last page stays partial on disk.
    let seg = fs::read(segment_path(d.path(), 0)).unwrap();
    assert_eq!(&seg[PAGE_SIZE - 3..PAGE_SIZE], &[0, 0, 0]);
    assert_eq!(
        fragments(&seg),
        vec![
            (0, FRAG_FULL, PAGE_SIZE - HEADER_SIZE - 3),
            (PAGE_SIZE, FRAG_FULL, 10)
        ]
    );
    assert_eq!(seg.len(), PAGE_SIZE + HEADER_SIZE + 10);
    assert_eq!(read_all(d.path()).unwrap(), vec![a, b]);
}

#[test]
fn records_spanning_pages_and_segments() {
    let d = tempfile::tempdir().unwrap();
    let o = WalOptions {
        segment_size: 2 * PAGE_SIZE as u64,
        compress: false,
    };
    let mut w = Wal::open(d.path(), o).unwrap();
    let small = noise(100, 6);
    let three_pages = noise(3 * PAGE_SIZE, 7); // larger than a segment
    let one_page = noise(PAGE_SIZE, 8);
    w.log(&[&small]).unwrap();
    w.log(&[&three_pages]).unwrap();
    w.log(&[&one_page]).unwrap();
    w.log(&[&small]).unwrap();
    w.close().unwrap();
    // The big record did not fit segment 0: it got segment 1 to itself, larger than the
    // segment size; the next record did not fit what was left of segment 1.
    assert_eq!(segment_range(d.path()).unwrap(), Some(0..=2));
    let s1 = fs::read(segment_path(d.path(), 1)).unwrap();
    assert_eq!(s1.len(), 4 * PAGE_SIZE);
    let types: Vec<u8> = fragments(&s1).iter().map(|f| f.1).collect();
    assert_eq!(types, vec![FRAG_FIRST, FRAG_MIDDLE, FRAG_MIDDLE, FRAG_LAST]);
    assert_eq!(
        read_all(d.path()).unwrap(),
        vec![small.clone(), three_pages, one_page, small]
    );
}

#[test]
fn crc_failure_before_the_last_segment_is_corruption() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Wal::open(d.path(), opts(false)).unwrap();
    w.log(&[b"one", b"two"]).unwrap();
    w.next_segment().unwrap();
    w.log(&[b"three"]).unwrap();
    w.close().unwrap();
    let p = segment_path(d.path(), 0);
    let mut seg = fs::read(&p).unwrap();
    let second = HEADER_SIZE + 3;
    seg[second + HEADER_SIZE] ^= 1; // a data byte of "two"
    fs::write(&p, &seg).unwrap();
    let e = read_all(d.path()).unwrap_err();
    let c = e.corruption().unwrap().clone();
    assert!(!e.is_torn_tail(), "{e}");
    assert_eq!(
        (c.segment, c.offset, c.at),
        (0, second as u64, second as u64)
    );
    let msg = e.to_string();
    assert!(
        msg.contains("00000000") && msg.contains("checksum"),
        "{msg}"
    );
    // Repair as Prometheus does: keep what precedes, drop everything after.
    repair(d.path(), &c).unwrap();
    assert_eq!(read_all(d.path()).unwrap(), vec![b"one".to_vec()]);
    assert_eq!(segment_range(d.path()).unwrap(), Some(0..=0));
}

#[test]
fn torn_tail_is_reported_and_repaired() {
    for compress in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let mut w = Wal::open(d.path(), opts(compress)).unwrap();
        let big = noise(2 * PAGE_SIZE, 9);
        w.log(&[b"a".as_slice(), b"b"]).unwrap();
        w.next_segment().unwrap();
        w.log(&[b"c".as_slice(), &big]).unwrap();
        w.close().unwrap();
        let p = segment_path(d.path(), 1);
        let seg = fs::read(&p).unwrap();
        let good = (HEADER_SIZE + 1) as u64;
        // Crash in the middle of the big record: cut at several points.
        for cut in [
            good + 3,
            good + 100,
            PAGE_SIZE as u64 + 5,
            2 * PAGE_SIZE as u64,
        ] {
            fs::write(&p, &seg[..cut as usize]).unwrap();
            // An empty segment created by a restarted writer does not change the verdict.
            fs::write(segment_path(d.path(), 2), b"").unwrap();
            let e = read_all(d.path()).unwrap_err();
            assert!(e.is_torn_tail(), "cut {cut}: {e}");
            let c = e.corruption().unwrap().clone();
            assert_eq!((c.segment, c.offset), (1, good), "cut {cut}");
            let mut w = Wal::open(d.path(), opts(compress)).unwrap();
            assert_eq!(w.active_segment(), 3);
            w.repair(&c).unwrap();
            assert_eq!(w.active_segment(), 2);
            w.log(&[b"d"]).unwrap();
            w.close().unwrap();
            assert_eq!(
                read_all(d.path()).unwrap(),
                vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
            );
            let repaired = fs::read(&p).unwrap();
            assert_eq!(repaired.len(), PAGE_SIZE);
            fs::remove_file(segment_path(d.path(), 2)).unwrap();
        }
    }
}

#[test]
fn garbage_in_padding_and_bad_headers_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Wal::open(d.path(), opts(false)).unwrap();
    w.log(&[b"x"]).unwrap();
    w.close().unwrap();
    let p = segment_path(d.path(), 0);
    let seg = fs::read(&p).unwrap();
    let cases: Vec<(usize, u8, &str)> = vec![
        (100, 1, "padding"),
        (0, 0x20, "flag bits"),
        (0, 0x11, "zstd"),
        (0, 0x06, "fragment type"),
        (0, 0x03, "without a first"),
        (1, 0xff, "runs past"),
    ];
    for (at, b, want) in cases {
        let mut s = seg.clone();
        s[at] = b;
        fs::write(&p, &s).unwrap();
        let e = read_all(d.path()).unwrap_err();
        assert!(e.to_string().contains(want), "{at}={b:#x}: {e}");
    }
    // A non-zero byte in the last 6 bytes of a page.
    let mut s = seg.clone();
    s[PAGE_SIZE - 3] = 1;
    fs::write(&p, &s).unwrap();
    assert!(read_all(d.path()).is_err());
}

#[test]
fn segments_must_be_sequential() {
    let d = tempfile::tempdir().unwrap();
    fs::write(segment_path(d.path(), 0), b"").unwrap();
    fs::write(segment_path(d.path(), 2), b"").unwrap();
    fs::write(d.path().join("notes.txt"), b"").unwrap();
    let e = Wal::open(d.path(), opts(true)).unwrap_err();
    assert!(e.to_string().contains("not sequential"), "{e}");
    let e = Wal::open(
        d.path(),
        WalOptions {
            segment_size: 1000,
            compress: true,
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("multiple"), "{e}");
}

#[test]
fn truncate_deletes_older_segments_only() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Wal::open(d.path(), opts(true)).unwrap();
    for i in 0..4u8 {
        w.log(&[[i]]).unwrap();
        w.next_segment().unwrap();
    }
    assert_eq!(w.segments().unwrap(), 0..=4);
    w.truncate(2).unwrap();
    assert_eq!(w.segments().unwrap(), 2..=4);
    w.truncate(100).unwrap(); // never the active segment
    assert_eq!(w.segments().unwrap(), 4..=4);
}

fn series(r: u64, name: &str) -> RefSeries {
    RefSeries {
        series_ref: r,
        labels: Labels::from_pairs(&[("__name__", name), ("job", "rule")]),
    }
}

fn sample(r: u64, t: i64, v: f64) -> RefSample {
    RefSample {
        series_ref: r,
        t,
        v,
    }
}

fn enc(rec: &record::Record) -> Vec<u8> {
    let mut b = Vec::new();
    record::encode(rec, &mut b);
    b
}

#[test]
fn checkpoint_then_replay() {
    use record::Record::*;
    let d = tempfile::tempdir().unwrap();
    let mut w = Wal::open(d.path(), opts(true)).unwrap();
    // Segment 0: three series and early samples.
    w.log(&[
        enc(&Series(vec![
            series(1, "a"),
            series(2, "b"),
            series(3, "c"),
        ])),
        enc(&Samples(vec![sample(1, 100, 1.0), sample(2, 100, 2.0)])),
        vec![record::METADATA, 1, 2, 3],
    ])
    .unwrap();
    w.next_segment().unwrap();
    // Segment 1: samples on both sides of min_time, a tombstone.
    w.log(&[
        enc(&Samples(vec![
            sample(1, 200, 3.0),
            sample(3, 300, f64::from_bits(0x7ff0_0000_0000_0002)),
        ])),
        enc(&Tombstones(vec![
            Stone {
                series_ref: 1,
                min_time: 0,
                max_time: 50,
            },
            Stone {
                series_ref: 3,
                min_time: 0,
                max_time: 500,
            },
        ])),
    ])
    .unwrap();
    w.next_segment().unwrap();
    // Segment 2: not checkpointed.
    w.log(&[enc(&Samples(vec![sample(2, 50, 9.0)]))]).unwrap();
    w.fsync().unwrap();

    let st = checkpoint(d.path(), 0..=1, |r| r != 2, 250, true).unwrap();
    assert_eq!(
        (st.total_series, st.dropped_series),
        (3, 1),
        "series 2 is dropped"
    );
    assert_eq!((st.total_samples, st.dropped_samples), (4, 3));
    assert_eq!((st.total_tombstones, st.dropped_tombstones), (2, 1));
    assert_eq!(st.dropped_unknown_records, 1);
    w.truncate(2).unwrap();
    delete_checkpoints(d.path(), 1).unwrap();
    let (cp, idx) = last_checkpoint(d.path()).unwrap().unwrap();
    assert_eq!(
        (cp.file_name().unwrap().to_str().unwrap(), idx),
        ("checkpoint.00000001", 1)
    );
    assert!(!d.path().join("checkpoint.00000001.tmp").exists());

    let mut got = Vec::new();
    let rs = replay(d.path(), |r| got.push(r)).unwrap();
    assert_eq!(
        got,
        vec![
            Series(vec![series(1, "a"), series(3, "c")]),
            Samples(vec![sample(3, 300, f64::from_bits(0x7ff0_0000_0000_0002))]),
            Tombstones(vec![Stone {
                series_ref: 3,
                min_time: 0,
                max_time: 500
            }]),
            Samples(vec![sample(2, 50, 9.0)]),
        ]
    );
    assert_eq!(rs.records, 4);

    // A second checkpoint builds on the first; the old one can then go.
    w.log(&[enc(&Samples(vec![sample(1, 400, 4.0)]))]).unwrap();
    w.next_segment().unwrap();
    let e = checkpoint(d.path(), 0..=1, |_| true, 0, false).unwrap_err();
    assert!(e.to_string().contains("already in checkpoint"), "{e}");
    let e = checkpoint(d.path(), 3..=3, |_| true, 0, false).unwrap_err();
    assert!(e.to_string().contains("gap"), "{e}");
    checkpoint(d.path(), 2..=2, |_| true, 0, false).unwrap();
    w.truncate(3).unwrap();
    delete_checkpoints(d.path(), 2).unwrap();
    let mut got = Vec::new();
    let rs = replay(d.path(), |r| got.push(r)).unwrap();
    assert_eq!(rs.samples, 3);
    assert_eq!(got.last(), Some(&Samples(vec![sample(1, 400, 4.0)])));
    assert_eq!(last_checkpoint(d.path()).unwrap().unwrap().1, 2);
}

#[test]
fn replay_counts_unknown_records_and_reports_undecodable_ones() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Wal::open(d.path(), opts(false)).unwrap();
    w.log(&[vec![record::EXEMPLARS, 0], vec![42], vec![]])
        .unwrap();
    w.log(&[vec![record::SAMPLES, 1, 2]]).unwrap();
    w.close().unwrap();
    let e = replay(d.path(), |_| {}).unwrap_err();
    assert!(e.is_torn_tail(), "{e}");
    let c = e.corruption().unwrap();
    assert!(c.reason.contains("samples record"), "{e}");
    let mut w = Wal::open(d.path(), opts(false)).unwrap();
    w.repair(&c.clone()).unwrap();
    drop(w);
    let st = replay(d.path(), |_| {}).unwrap();
    assert_eq!((st.records, st.unknown_records), (3, 3));
}

#[test]
fn segment_reader_over_short_and_empty_inputs() {
    let mut r = SegmentReader::new(&[][..]);
    assert!(!r.next_record().unwrap());
    // A lone page terminator followed by nothing is a valid (empty) segment.
    let mut r = SegmentReader::new(&[0u8, 0, 0][..]);
    assert!(!r.next_record().unwrap());
    let mut r = SegmentReader::new(&[1u8, 0][..]);
    assert!(matches!(
        r.next_record(),
        Err(SegmentError::Corrupt { good_end: 0, .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes as a segment never panic the reader, and whatever it accepts it
    /// accepts consistently: the error offset is never before the last record's end.
    #[test]
    fn arbitrary_segments_never_panic(
        data in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(any::<u8>(), 0..(3 * PAGE_SIZE)),
        ],
        header in proptest::collection::vec((0usize..200, any::<u8>()), 0..4),
    ) {
        let mut data = data;
        // Plant plausible fragment types so that the decoder gets past the first byte.
        for (i, b) in header {
            if i < data.len() {
                data[i] = b % 0x20;
            }
        }
        let mut r = SegmentReader::new(&data[..]);
        let mut end = 0;
        loop {
            match r.next_record() {
                Ok(true) => end = r.good_end(),
                Ok(false) => break,
                Err(SegmentError::Corrupt { good_end, at, .. }) => {
                    prop_assert_eq!(good_end, end);
                    prop_assert!(at >= good_end);
                    break;
                }
                Err(SegmentError::Io(e)) => panic!("{e}"),
            }
        }
    }

    /// Random record sequences round-trip through the writer and the reader, through every
    /// page and segment boundary, compressed or not.
    #[test]
    fn random_records_round_trip(
        recs in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                proptest::collection::vec(0u8..4, 0..40_000),
                (0usize..70_000, any::<u64>()).prop_map(|(n, s)| noise(n, s)),
            ],
            0..12,
        ),
        compress in any::<bool>(),
        pages in 1u64..4,
        batch in 1usize..4,
    ) {
        let d = tempfile::tempdir().unwrap();
        let mut w = Wal::open(
            d.path(),
            WalOptions { segment_size: pages * PAGE_SIZE as u64, compress },
        ).unwrap();
        for c in recs.chunks(batch) {
            w.log(c).unwrap();
        }
        w.close().unwrap();
        prop_assert_eq!(read_all(d.path()).unwrap(), recs);
    }

    /// Series, samples (any bits, NaNs included) and tombstones round-trip through records.
    #[test]
    fn typed_records_round_trip(
        s in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..50),
        names in proptest::collection::vec(("[a-z_]{1,8}", "[ -~]{0,12}"), 0..6),
    ) {
        let samples: Vec<RefSample> =
            s.iter().map(|&(r, t, v)| sample(r, t, f64::from_bits(v))).collect();
        let rec = record::Record::Samples(samples);
        prop_assert_eq!(record::decode(&enc(&rec)).unwrap(), rec);
        let labels = Labels::from_pairs(&names);
        let rec = record::Record::Series(vec![RefSeries { series_ref: 5, labels }]);
        prop_assert_eq!(record::decode(&enc(&rec)).unwrap(), rec);
        let stones: Vec<Stone> = s
            .iter()
            .map(|&(r, t, v)| Stone { series_ref: r, min_time: t, max_time: v as i64 })
            .collect();
        let rec = record::Record::Tombstones(stones);
        prop_assert_eq!(record::decode(&enc(&rec)).unwrap(), rec);
    }
}

/// Found by the `wal_reader` fuzz target: the repair point is the end of the last record, not
/// the end of the padding after it.
#[test]
fn damage_after_padding_points_back_at_the_last_record() {
    let mut seg = vec![FRAG_FULL, 0, 1];
    seg.extend_from_slice(&crate::encoding::crc32c(b"x").to_be_bytes());
    seg.push(b'x');
    seg.resize(PAGE_SIZE, 0);
    seg.push(0xff);
    let mut r = SegmentReader::new(&seg[..]);
    assert!(r.next_record().unwrap());
    assert_eq!(r.record(), b"x");
    match r.next_record() {
        Err(SegmentError::Corrupt { good_end, at, .. }) => {
            assert_eq!((good_end, at), (8, PAGE_SIZE as u64));
        }
        other => panic!("{other:?}"),
    }
    let regression = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/regressions/wal_reader/padding-after-record"
    );
    let data = fs::read(regression).unwrap();
    let mut r = SegmentReader::new(&data[..]);
    let mut end = 0;
    loop {
        match r.next_record() {
            Ok(true) => end = r.good_end(),
            Ok(false) => break,
            Err(SegmentError::Corrupt { good_end, .. }) => {
                assert_eq!(good_end, end);
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn replay_of_a_missing_directory_is_empty() {
    let d = tempfile::tempdir().unwrap();
    let st = replay(&d.path().join("wal"), |_| panic!("no records")).unwrap();
    assert_eq!(st, ReplayStats::default());
    assert!(Reader::open(&d.path().join("wal")).is_err());
}
