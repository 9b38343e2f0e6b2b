//! Block write → read round trips, matcher selection against a brute-force oracle, and
//! damaged files: every truncation and many bit flips give errors, never panics.

use std::path::Path;

use strata_model::{Labels, MatchOp, Matcher};
use strata_tsdb::block::{Block, BlockWriter, BlockWriterOptions};
use strata_tsdb::index::{IndexReader, IndexWriter};
use strata_tsdb::meta::ThanosMeta;
use strata_tsdb::{BlockMeta, ChunkReader};

/// Deterministic series: a few label dimensions, some labels missing on some series.
fn gen_series(n: usize) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut pairs = vec![
            ("__name__".to_string(), format!("metric_{}", i % 3)),
            ("instance".to_string(), format!("host-{:03}", i % 17)),
            (
                "job".to_string(),
                ["api", "db", "web", "job with spaces"][i % 4].to_string(),
            ),
        ];
        if i % 5 != 0 {
            pairs.push(("zone".to_string(), format!("z{}", i % 2)));
        }
        if i % 7 == 0 {
            pairs.push(("path".to_string(), format!("/a/ü/\"q\"\n{i}")));
        }
        pairs.push(("id".to_string(), i.to_string()));
        let labels = Labels::from_pairs(&pairs);
        let mut samples = Vec::new();
        let mut t = 1_700_000_000_123i64 + (i as i64 * 37) % 1000;
        for k in 0..(50 + (i * 13) % 400) {
            t += 15_000 + ((k * i) % 3) as i64 - 1;
            let v = match i % 4 {
                0 => (k as f64) * 1.5,
                1 => ((k * i) as f64).sin() * 1e6,
                2 => 42.0,
                _ => {
                    f64::from_bits(0x7ff0_0000_0000_0002 ^ ((k % 2) as u64 * 0x0008_0000_0000_0000))
                }
            };
            samples.push((t, v));
        }
        out.push((labels, samples));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn write_block(
    dir: &Path,
    series: &[(Labels, Vec<(i64, f64)>)],
    opts: BlockWriterOptions,
) -> BlockMeta {
    let mut w = BlockWriter::new(dir, opts).unwrap();
    for (l, s) in series {
        w.add_series(l, s).unwrap();
    }
    w.finish().unwrap()
}

fn same_samples(a: &[(i64, f64)], ts: &[i64], vs: &[f64]) -> bool {
    a.len() == ts.len()
        && a.iter()
            .zip(ts.iter().zip(vs))
            .all(|((t, v), (t2, v2))| t == t2 && v.to_bits() == v2.to_bits())
}

#[test]
fn write_then_read_every_series_and_sample() {
    let dir = tempfile::tempdir().unwrap();
    let series = gen_series(300);
    let meta = write_block(dir.path(), &series, BlockWriterOptions::default());
    let total: usize = series.iter().map(|s| s.1.len()).sum();
    assert_eq!(meta.stats.num_series, 300);
    assert_eq!(meta.stats.num_samples, total as u64);
    assert_eq!(meta.compaction.level, 1);
    assert_eq!(meta.compaction.sources, vec![meta.ulid]);
    let min = series.iter().map(|s| s.1[0].0).min().unwrap();
    let max = series.iter().map(|s| s.1.last().unwrap().0).max().unwrap();
    assert_eq!((meta.min_time, meta.max_time), (min, max + 1));
    // The temporary directory is gone; the block is in place.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![meta.ulid.to_string()]);

    let block = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
    assert_eq!(block.meta(), &meta);
    let all = block.index().all_postings().unwrap();
    assert_eq!(all.len(), 300);
    for (i, id) in all.iter().enumerate() {
        let s = block.series_samples(*id, i64::MIN, i64::MAX).unwrap();
        assert_eq!(s.labels, series[i].0);
        assert!(
            same_samples(&series[i].1, &s.timestamps, &s.values),
            "series {}",
            s.labels
        );
        let (_, chunks) = block.index().series(*id).unwrap();
        assert!(chunks.iter().all(|c| c.min_time <= c.max_time));
        assert_eq!(chunks.len(), series[i].1.len().div_ceil(120));
    }
    // Label names and values come back sorted and complete.
    let names = block.index().label_names();
    assert_eq!(
        names,
        vec!["__name__", "id", "instance", "job", "path", "zone"]
    );
    assert_eq!(
        block.index().label_values("job"),
        vec!["api", "db", "job with spaces", "web"]
    );
    assert_eq!(block.index().label_values("nope"), Vec::<&str>::new());
}

/// Releasing the mapped pages between reads changes nothing about what is read (the pages
/// come back from the file), and the process' resident memory drops.
#[test]
fn released_pages_read_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let series = gen_series(2000);
    let meta = write_block(dir.path(), &series, BlockWriterOptions::default());
    let block = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
    let read_all = || {
        let mut out = Vec::new();
        for id in block.index().all_postings().unwrap() {
            let s = block.series_samples(id, i64::MIN, i64::MAX).unwrap();
            out.push((
                s.labels,
                s.timestamps,
                s.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            ));
        }
        out
    };
    let first = read_all();
    for _ in 0..3 {
        block.release_memory();
        assert_eq!(read_all(), first);
    }
    // A block held in memory (not mapped) is left alone: releasing must never touch heap data.
    let index = std::fs::read(block.dir().join("index")).unwrap();
    let mem_index = strata_tsdb::IndexReader::from_bytes("index", index.into()).unwrap();
    mem_index.release_memory();
    assert_eq!(mem_index.all_postings().unwrap().len(), 2000);
}

#[test]
fn range_restricted_reads_trim_samples() {
    let dir = tempfile::tempdir().unwrap();
    let series = gen_series(20);
    let meta = write_block(dir.path(), &series, BlockWriterOptions::default());
    let block = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
    let (lo, hi) = (meta.min_time + 600_000, meta.min_time + 1_800_000);
    let got: Vec<_> = block
        .query(&[], lo, hi)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<_> = series
        .iter()
        .filter_map(|(l, s)| {
            let s: Vec<_> = s
                .iter()
                .copied()
                .filter(|(t, _)| *t >= lo && *t <= hi)
                .collect();
            (!s.is_empty()).then(|| (l.clone(), s))
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.labels, w.0);
        assert!(same_samples(&w.1, &g.timestamps, &g.values));
    }
}

fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
    Matcher::new(op, n, v).unwrap()
}

#[test]
fn selection_matches_a_brute_force_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let series = gen_series(400);
    let meta = write_block(dir.path(), &series, BlockWriterOptions::default());
    let block = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
    let cases: Vec<Vec<Matcher>> = vec![
        vec![m(MatchOp::Equal, "job", "api")],
        vec![
            m(MatchOp::Equal, "job", "api"),
            m(MatchOp::Equal, "zone", "z1"),
        ],
        vec![m(MatchOp::NotEqual, "job", "api")],
        vec![m(MatchOp::Equal, "zone", "")],
        vec![m(MatchOp::NotEqual, "zone", "")],
        vec![m(MatchOp::RegexMatch, "instance", "host-00[1-3]")],
        vec![m(
            MatchOp::RegexMatch,
            "instance",
            "host-001|host-016|nothing",
        )],
        vec![
            m(MatchOp::RegexMatch, "instance", "host-0.*"),
            m(MatchOp::RegexNoMatch, "job", "db|web"),
        ],
        vec![m(MatchOp::RegexMatch, "zone", "z1|")],
        vec![m(MatchOp::RegexNoMatch, "zone", "z1")],
        vec![m(MatchOp::RegexMatch, "zone", ".*")],
        vec![m(MatchOp::RegexMatch, "zone", ".+")],
        vec![m(MatchOp::RegexMatch, "path", ".*\n.*")],
        vec![m(MatchOp::Equal, "nolabel", "")],
        vec![m(MatchOp::Equal, "nolabel", "x")],
        vec![
            m(MatchOp::NotEqual, "nolabel", "x"),
            m(MatchOp::Equal, "__name__", "metric_1"),
        ],
        vec![
            m(MatchOp::RegexNoMatch, "__name__", "metric_(0|1)"),
            m(MatchOp::Equal, "zone", ""),
        ],
        vec![
            m(MatchOp::Equal, "job", "job with spaces"),
            m(MatchOp::RegexMatch, "id", "1.*"),
        ],
        vec![],
    ];
    for ms in cases {
        let ids = block.select(&ms).unwrap();
        let got: Vec<Labels> = ids
            .iter()
            .map(|&id| block.index().series(id).unwrap().0)
            .collect();
        let want: Vec<Labels> = series
            .iter()
            .map(|s| &s.0)
            .filter(|l| ms.iter().all(|m| m.matches(l.get(m.name()).unwrap_or(""))))
            .cloned()
            .collect();
        assert_eq!(got, want, "matchers {ms:?}");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "sorted output for {ms:?}"
        );
    }
}

#[test]
fn postings_built_in_many_batches_equal_one_batch() {
    let series = gen_series(200);
    let mut symbols = std::collections::BTreeSet::new();
    for (l, _) in &series {
        for lb in l {
            symbols.insert(lb.name.clone());
            symbols.insert(lb.value.clone());
        }
    }
    let symbols: Vec<String> = symbols.into_iter().collect();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for budget in [1u64, 1 << 30] {
        let path = dir.path().join(format!("index-{budget}"));
        let mut w = IndexWriter::create(&path, symbols.clone()).unwrap();
        w.set_postings_budget(budget);
        for (l, _) in &series {
            w.add_series(l, &[]).unwrap();
        }
        let stats = w.finish().unwrap();
        if budget == 1 {
            assert!(stats.postings_passes > 1, "{stats:?}");
        } else {
            assert_eq!(stats.postings_passes, 1);
        }
        files.push(std::fs::read(&path).unwrap());
    }
    assert_eq!(files[0], files[1], "batching must not change the bytes");
}

#[test]
fn writer_refuses_contract_violations_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = Labels::from_pairs(&[("__name__", "a")]);
    let b = Labels::from_pairs(&[("__name__", "b")]);

    let mut w = BlockWriter::new(dir.path(), BlockWriterOptions::default()).unwrap();
    w.add_series(&b, &[(1, 1.0)]).unwrap();
    let err = w.add_series(&a, &[(1, 1.0)]).unwrap_err().to_string();
    assert!(err.contains("increasing label order"), "{err}");
    let err = w.add_series(&b, &[(1, 1.0)]).unwrap_err().to_string();
    assert!(err.contains("increasing label order"), "{err}");
    drop(w);

    let mut w = BlockWriter::new(dir.path(), BlockWriterOptions::default()).unwrap();
    let err = w
        .add_series(&a, &[(5, 1.0), (5, 2.0)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not after the previous sample"), "{err}");
    w.abort();

    let opts = BlockWriterOptions {
        time_range: Some((0, 100)),
        ..Default::default()
    };
    let mut w = BlockWriter::new(dir.path(), opts).unwrap();
    let err = w.add_series(&a, &[(100, 1.0)]).unwrap_err().to_string();
    assert!(err.contains("outside the block range"), "{err}");
    drop(w);

    let w = BlockWriter::new(dir.path(), BlockWriterOptions::default()).unwrap();
    assert!(w.finish().unwrap_err().to_string().contains("no samples"));

    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no leftovers"
    );
}

#[test]
fn thanos_section_gets_files_and_index_stats() {
    let dir = tempfile::tempdir().unwrap();
    let series = gen_series(10);
    let thanos = ThanosMeta {
        labels: [("cluster".to_string(), "eu1".to_string())].into(),
        source: "test".into(),
        ..Default::default()
    };
    let opts = BlockWriterOptions {
        thanos: Some(thanos),
        ..Default::default()
    };
    let meta = write_block(dir.path(), &series, opts);
    let t = meta.thanos.as_ref().unwrap();
    let bdir = dir.path().join(meta.ulid.to_string());
    let paths: Vec<&str> = t.files.iter().map(|f| f.rel_path.as_str()).collect();
    assert_eq!(paths, vec!["chunks/000001", "index", "meta.json"]);
    for f in &t.files[..2] {
        assert_eq!(
            f.size_bytes as u64,
            std::fs::metadata(bdir.join(&f.rel_path)).unwrap().len()
        );
    }
    assert!(t.index_stats.series_max_size > 0 && t.index_stats.chunk_max_size > 0);
}

#[test]
fn empty_block_with_time_range_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BlockWriterOptions {
        time_range: Some((0, 7_200_000)),
        ..Default::default()
    };
    let meta = BlockWriter::new(dir.path(), opts)
        .unwrap()
        .finish()
        .unwrap();
    let block = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
    assert!(block.index().all_postings().unwrap().is_empty());
    assert!(
        block
            .select(&[m(MatchOp::Equal, "a", "b")])
            .unwrap()
            .is_empty()
    );
}

/// Opens every series and decodes every chunk; returns the first error.
fn read_everything(index: &[u8], chunks: &[u8]) -> Result<(), strata_tsdb::Error> {
    let ir = IndexReader::from_bytes("index", bytes::Bytes::copy_from_slice(index))?;
    let cr = ChunkReader::from_segments(vec![(
        "000001".into(),
        bytes::Bytes::copy_from_slice(chunks),
    )])?;
    for name in ir.label_names() {
        for v in ir.label_values(name) {
            ir.postings(name, v)?;
        }
    }
    for id in ir.all_postings()? {
        let (_, metas) = ir.series(id)?;
        for c in metas {
            let raw = cr.chunk(c.chunk_ref)?;
            strata_tsdb::block::decode_xor(&raw).map_err(|source| strata_tsdb::Error::Chunk {
                file: "chunks".into(),
                chunk_ref: c.chunk_ref,
                source,
            })?;
        }
    }
    Ok(())
}

#[test]
fn damaged_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let series = gen_series(12);
    let meta = write_block(dir.path(), &series, BlockWriterOptions::default());
    let bdir = dir.path().join(meta.ulid.to_string());
    let index = std::fs::read(bdir.join("index")).unwrap();
    let chunks = std::fs::read(bdir.join("chunks/000001")).unwrap();
    read_everything(&index, &chunks).unwrap();

    // Every truncation of the index fails cleanly (the TOC is at the end).
    for cut in 0..index.len() {
        assert!(
            read_everything(&index[..cut], &chunks).is_err(),
            "index cut at {cut}"
        );
    }
    // Every single-bit flip in the index is either detected or harmless (padding bytes):
    // it never panics, and when reading succeeds the data is unchanged.
    let mut detected = 0;
    for i in 0..index.len() {
        let mut bad = index.clone();
        bad[i] ^= 1 << (i % 8);
        match read_everything(&bad, &chunks) {
            Err(_) => detected += 1,
            Ok(()) => assert_eq!(
                bad[i] & !(1 << (i % 8)),
                0,
                "undetected flip of a non-padding byte {i}"
            ),
        }
    }
    assert!(
        detected > index.len() * 9 / 10,
        "{detected} of {} flips detected",
        index.len()
    );
    // Chunk segment truncations and flips.
    for cut in (0..chunks.len()).step_by(7) {
        assert!(
            read_everything(&index, &chunks[..cut]).is_err(),
            "chunks cut at {cut}"
        );
    }
    for i in (8..chunks.len()).step_by(3) {
        let mut bad = chunks.clone();
        bad[i] ^= 0x04;
        assert!(read_everything(&index, &bad).is_err(), "chunk flip at {i}");
    }
}

#[test]
fn unsupported_chunk_encodings_fail_only_their_series() {
    use strata_tsdb::{Encoding, RawChunk};
    let dir = tempfile::tempdir().unwrap();
    let a = Labels::from_pairs(&[("__name__", "floats")]);
    let h = Labels::from_pairs(&[("__name__", "histograms")]);
    let mut w = BlockWriter::new(dir.path(), BlockWriterOptions::default()).unwrap();
    w.add_series(&a, &[(1000, 1.0), (2000, 2.0)]).unwrap();
    // A native-histogram chunk: carried as bytes; we do not decode encoding 2 yet.
    let hist = RawChunk::new(Encoding::Histogram, vec![0u8, 1, 0x40, 0, 0, 0]);
    w.add_series_chunks(&h, &[(1000, 1000, hist)]).unwrap();
    let meta = w.finish().unwrap();
    assert_eq!(meta.stats.num_histogram_samples, 1);
    let block = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
    let ids = block.index().all_postings().unwrap();
    let float_series = block.series_samples(ids[0], i64::MIN, i64::MAX).unwrap();
    assert_eq!(float_series.timestamps, vec![1000, 2000]);
    let err = block
        .series_samples(ids[1], i64::MIN, i64::MAX)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not supported yet") && err.contains("histogram"),
        "{err}"
    );
    // The raw chunk is still served untouched (the store gateway passes such chunks on).
    let (_, metas) = block.index().series(ids[1]).unwrap();
    let raw = block.chunk(metas[0].chunk_ref).unwrap();
    assert_eq!(raw.encoding, Encoding::Histogram);
    assert_eq!(&raw.data[..], &[0u8, 1, 0x40, 0, 0, 0]);
}

/// Regression (fuzz/regressions/block/series-samples-amplification): a 20 KB block whose one
/// series has 1,000 chunk entries all pointing at the same 65,535-sample chunk used to return
/// 65 million samples (1 GB). Samples outside their entry's range are now refused.
#[test]
fn chunk_entries_cannot_amplify_a_chunk() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/block/series-samples-amplification");
    let block = Block::open(&dir).unwrap();
    let ids = block.index().all_postings().unwrap();
    for id in ids {
        let err = block
            .series_samples(id, i64::MIN, i64::MAX)
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the chunk's time range"), "{err}");
    }
}
