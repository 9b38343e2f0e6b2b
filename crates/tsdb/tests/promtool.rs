//! Cross-checks against real Prometheus 2.42 tools (`promtool`, Debian package `prometheus`,
//! installed by `scripts/test.sh`):
//!
//! - blocks made by `promtool tsdb create-blocks-from openmetrics` read back with every series
//!   and sample equal to `promtool tsdb dump` of the same blocks, and every chunk in them
//!   re-encodes bit-identically with our XOR encoder;
//! - a block written by us is read by `promtool tsdb dump` with exactly our input, and
//!   `promtool tsdb analyze` and `list` accept it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use strata_model::Labels;
use strata_testutil::prometheus::{self, DumpSample};
use strata_tsdb::block::{Block, BlockWriter, BlockWriterOptions};
use strata_tsdb::{Encoding, XorEncoder};

type Series = BTreeMap<Labels, Vec<(i64, f64)>>;

fn to_labels(pairs: &[(String, String)]) -> Labels {
    Labels::from_pairs(pairs)
}

fn dump_to_series(dump: Vec<DumpSample>) -> Series {
    let mut out = Series::new();
    for s in dump {
        out.entry(to_labels(&s.labels))
            .or_default()
            .push((s.t, s.value));
    }
    out
}

/// Equal timestamps; values bit-equal, except that any NaN equals any NaN (the dump prints
/// every NaN, stale markers included, as `NaN`).
fn assert_same(ours: &Series, theirs: &Series) {
    assert_eq!(ours.len(), theirs.len(), "series count");
    for ((la, a), (lb, b)) in ours.iter().zip(theirs) {
        assert_eq!(la, lb);
        assert_eq!(a.len(), b.len(), "sample count of {la}");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.0, y.0, "timestamp in {la}");
            assert!(
                x.1.to_bits() == y.1.to_bits() || (x.1.is_nan() && y.1.is_nan()),
                "value at {} in {la}: ours {} theirs {}",
                x.0,
                x.1,
                y.1
            );
        }
    }
}

/// OpenMetrics text: gauges and counters, special values, awkward label values, timestamps
/// off whole seconds, 7 hours at 15 s so promtool cuts several 2h blocks.
fn openmetrics_input() -> (String, usize) {
    let start_ms: i64 = 1_700_000_000_000;
    let mut out = String::new();
    let mut n_series = 0;
    let fmt_v = |v: f64| -> String {
        if v.is_nan() {
            "NaN".into()
        } else if v == f64::INFINITY {
            "+Inf".into()
        } else if v == f64::NEG_INFINITY {
            "-Inf".into()
        } else {
            format!("{v:?}")
        }
    };
    out.push_str("# HELP node_temp A gauge.\n# TYPE node_temp gauge\n");
    for i in 0..60 {
        n_series += 1;
        let labels = format!(
            "{{instance=\"host-{i:02}\",job=\"node\",path=\"/a b/\\\"q\\\"/{}\"}}",
            i % 3
        );
        for k in 0..(7 * 240) {
            let t = start_ms + k * 15_000 + 123 + (i * 7) % 500;
            let v = match (i % 6, k % 97) {
                (0, 5) => f64::NAN,
                (0, 6) => f64::INFINITY,
                (1, _) => ((k * (i + 1)) as f64).sin() * 1e-9,
                (2, _) => 1e21 + (k as f64) * 1e7,
                (3, _) => -((k % 13) as f64) / 7.0,
                (4, _) => 20.0 + ((k / 40) as f64),
                _ => (k as f64) * 0.1 + (i as f64),
            };
            writeln!(
                out,
                "node_temp{labels} {} {}.{:03}",
                fmt_v(v),
                t / 1000,
                t % 1000
            )
            .unwrap();
        }
    }
    out.push_str("# HELP http_requests A counter.\n# TYPE http_requests counter\n");
    for i in 0..40 {
        n_series += 1;
        let labels = format!("{{code=\"{}\",handler=\"h{}\"}}", [200, 404, 500][i % 3], i);
        let mut v = 0.0;
        for k in 0..(7 * 240) {
            let t = start_ms + k * 15_000 + 500 + i as i64;
            v += ((k * 31 + i as i64) % 17) as f64;
            if k == 1000 && i % 4 == 0 {
                v = 3.0; // a counter reset
            }
            writeln!(
                out,
                "http_requests_total{labels} {} {}.{:03}",
                fmt_v(v),
                t / 1000,
                t % 1000
            )
            .unwrap();
        }
    }
    out.push_str("# EOF\n");
    (out, n_series)
}

fn read_dir_with_our_reader(dir: &Path) -> (Series, usize) {
    let mut series = Series::new();
    let mut chunks_checked = 0;
    let mut blocks: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    blocks.sort();
    for bdir in blocks {
        let block = Block::open(&bdir).unwrap();
        let mut total_samples = 0u64;
        for id in block.index().all_postings().unwrap() {
            let s = block.series_samples(id, i64::MIN, i64::MAX).unwrap();
            total_samples += s.timestamps.len() as u64;
            let e = series.entry(s.labels).or_default();
            e.extend(s.timestamps.into_iter().zip(s.values));
            // Bit-exact: Prometheus' chunk bytes equal our re-encoding of their samples.
            let (_, metas) = block.index().series(id).unwrap();
            for m in metas {
                let raw = block.chunk(m.chunk_ref).unwrap();
                assert_eq!(raw.encoding, Encoding::Xor);
                let samples: Vec<(i64, f64)> =
                    raw.xor_iter().unwrap().map(Result::unwrap).collect();
                assert_eq!(samples.first().unwrap().0, m.min_time);
                assert_eq!(samples.last().unwrap().0, m.max_time);
                let ours = XorEncoder::encode(samples).unwrap();
                assert_eq!(
                    &ours[..],
                    &raw.data[..],
                    "chunk {} of {:?} re-encodes differently",
                    m.chunk_ref,
                    bdir
                );
                chunks_checked += 1;
            }
        }
        assert_eq!(
            total_samples,
            block.meta().stats.num_samples,
            "{bdir:?} numSamples"
        );
    }
    for v in series.values_mut() {
        v.sort_by_key(|s| s.0);
    }
    (series, chunks_checked)
}

#[test]
fn blocks_made_by_prometheus_read_back_equal_to_promtool_dump() {
    let dir = tempfile::tempdir().unwrap();
    let (input, n_series) = openmetrics_input();
    let blocks = prometheus::create_blocks_from_openmetrics(&input, dir.path()).unwrap();
    assert!(
        blocks.len() >= 3,
        "expected several 2h blocks, got {blocks:?}"
    );

    let theirs = dump_to_series(prometheus::dump(dir.path()).unwrap());
    let (ours, chunks_checked) = read_dir_with_our_reader(dir.path());
    assert_eq!(ours.len(), n_series);
    assert_same(&ours, &theirs);
    assert!(chunks_checked > 300, "only {chunks_checked} chunks checked");
}

/// Series exercising what a writer can get wrong: many labels and values, non-ASCII and
/// escaped characters, multi-chunk series, special floats, stale markers.
fn our_series() -> Series {
    let mut out = Series::new();
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    for i in 0..1500usize {
        let labels = Labels::from_pairs(&[
            ("__name__", format!("m{}", i % 11)),
            ("a", format!("v{}", i % 97)),
            ("b", format!("ü-\"{}\"\n", i % 5)),
            ("idx", i.to_string()),
            (
                "zz",
                if i % 3 == 0 {
                    String::new()
                } else {
                    "set".into()
                },
            ),
        ]);
        let n = 1 + (i * 37) % 500;
        let mut t = 1_600_000_000_000i64 + (i as i64) * 11 - 5_000;
        let samples = (0..n)
            .map(|k| {
                t += if k % 50 == 49 {
                    60_000
                } else {
                    15_000 + (k % 3) as i64
                };
                let v = match (i + k) % 9 {
                    0 => stale,
                    1 => f64::NEG_INFINITY,
                    2 => 1e-300,
                    3 => -0.0,
                    _ => (k as f64) * 1.25 - (i as f64),
                };
                (t, v)
            })
            .collect();
        out.insert(labels, samples);
    }
    out
}

#[test]
fn promtool_reads_blocks_we_write_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let series = our_series();
    let mut w = BlockWriter::new(dir.path(), BlockWriterOptions::default()).unwrap();
    for (l, s) in &series {
        w.add_series(l, s).unwrap();
    }
    let meta = w.finish().unwrap();

    let theirs = dump_to_series(prometheus::dump(dir.path()).unwrap());
    assert_same(&series, &theirs);

    let report = prometheus::analyze(dir.path(), &meta.ulid.to_string()).unwrap();
    assert!(
        report.contains(&format!("Block ID: {}", meta.ulid)),
        "{report}"
    );
    assert!(
        report.contains(&format!("Series: {}", series.len())),
        "{report}"
    );
    assert!(report.contains("Label names: 5"), "{report}");
    let list = prometheus::list(dir.path()).unwrap();
    assert!(list.contains(&meta.ulid.to_string()), "{list}");
    let samples: usize = series.values().map(Vec::len).sum();
    assert!(
        list.contains(&samples.to_string()),
        "sample count in {list}"
    );
}

#[test]
fn tombstones_we_write_are_applied_the_same_by_promtool_and_by_us() {
    use strata_tsdb::tombstones::{Interval, TOMBSTONES_FILENAME, Tombstones};

    let dir = tempfile::tempdir().unwrap();
    let series: Series = our_series().into_iter().take(50).collect();
    let mut w = BlockWriter::new(dir.path(), BlockWriterOptions::default()).unwrap();
    for (l, s) in &series {
        w.add_series(l, s).unwrap();
    }
    let meta = w.finish().unwrap();
    let bdir = dir.path().join(meta.ulid.to_string());

    // Delete part of every third series, and all of one series.
    let block = Block::open(&bdir).unwrap();
    let ids = block.index().all_postings().unwrap();
    let mut t = Tombstones::default();
    let mut expected = series.clone();
    for (i, (id, (labels, samples))) in ids.iter().zip(&series).enumerate() {
        if i % 3 != 0 || samples.len() < 4 {
            continue;
        }
        let iv = if i == 0 {
            Interval {
                min: i64::MIN,
                max: i64::MAX,
            }
        } else {
            Interval {
                min: samples[1].0,
                max: samples[samples.len() / 2].0,
            }
        };
        t.add(u64::from(*id), iv);
        let kept: Vec<(i64, f64)> = samples
            .iter()
            .copied()
            .filter(|(ts, _)| !iv.contains(*ts))
            .collect();
        if kept.is_empty() {
            expected.remove(labels);
        } else {
            expected.insert(labels.clone(), kept);
        }
    }
    std::fs::write(bdir.join(TOMBSTONES_FILENAME), t.encode()).unwrap();

    let theirs = dump_to_series(prometheus::dump(dir.path()).unwrap());
    assert_same(&expected, &theirs);
    let block = Block::open(&bdir).unwrap();
    let ours: Series = block
        .query(&[], i64::MIN, i64::MAX)
        .unwrap()
        .map(|s| {
            let s = s.unwrap();
            (s.labels, s.timestamps.into_iter().zip(s.values).collect())
        })
        .collect();
    assert_same(&expected, &ours);
}
