//! Merging real Prometheus blocks, checked with Prometheus' own `promtool`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use strata_compact::merge::{MergeOptions, merge_blocks};
use strata_model::Labels;
use strata_testutil::prometheus::{self, DumpSample};
use strata_tsdb::block::{Block, BlockWriter, BlockWriterOptions};
use strata_tsdb::tombstones::{Interval, TOMBSTONES_FILENAME, Tombstones};

type Series = BTreeMap<Vec<(String, String)>, Vec<(i64, u64)>>;

/// Samples keyed by labels, values as bits (NaN payloads are normalised: dump prints "NaN").
fn as_series(dump: Vec<DumpSample>) -> Series {
    let mut out = Series::new();
    for s in dump {
        let bits = if s.value.is_nan() {
            f64::NAN.to_bits()
        } else {
            s.value.to_bits()
        };
        out.entry(s.labels).or_default().push((s.t, bits));
    }
    out
}

/// Eight hours of data for 30 series: promtool cuts it into four 2h blocks.
fn prometheus_blocks(dir: &Path) -> Vec<PathBuf> {
    let mut om = String::from("# TYPE cpu counter\n");
    for i in 0..30 {
        let mut v = 0.0f64;
        for k in 0..(8 * 240) {
            let t = 1_699_999_200_000i64 + k * 15_000 + 777 + i;
            v += ((k * 7 + i) % 13) as f64 * 0.25;
            writeln!(
                om,
                "cpu_total{{core=\"{i}\",mode=\"user\"}} {v:?} {}.{:03}",
                t / 1000,
                t % 1000
            )
            .unwrap();
        }
    }
    om.push_str("# EOF\n");
    let blocks = prometheus::create_blocks_from_openmetrics(&om, dir).unwrap();
    assert_eq!(blocks.len(), 4, "{blocks:?}");
    blocks
}

fn opts() -> MergeOptions {
    MergeOptions {
        labels: [("cluster".to_string(), "eu1".to_string())].into(),
        ..Default::default()
    }
}

#[test]
fn four_prometheus_2h_blocks_merge_into_one_that_promtool_reads_identically() {
    let dir = tempfile::tempdir().unwrap();
    let inputs_dir = dir.path().join("in");
    let paths = prometheus_blocks(&inputs_dir);
    // Tombstones on one input: Prometheus applies them when dumping, the merge must too.
    let first = Block::open(&paths[0]).unwrap();
    let sid = first.index().all_postings().unwrap()[3];
    let mint = first.meta().min_time;
    let mut t = Tombstones::default();
    t.add(
        u64::from(sid),
        Interval {
            min: mint + 600_000,
            max: mint + 1_200_000,
        },
    );
    std::fs::write(paths[0].join(TOMBSTONES_FILENAME), t.encode()).unwrap();

    let inputs: Vec<Block> = paths.iter().map(|p| Block::open(p).unwrap()).collect();
    let out_dir = dir.path().join("out");
    let (meta, stats) = merge_blocks(&inputs, &out_dir, &opts()).unwrap().unwrap();

    let want = as_series(prometheus::dump(&inputs_dir).unwrap());
    let got = as_series(prometheus::dump(&out_dir).unwrap());
    assert_eq!(got.len(), 30);
    assert_eq!(
        got, want,
        "promtool dump of the merged block equals the inputs' union"
    );

    // Lineage and the Thanos section.
    assert_eq!(meta.compaction.level, 2);
    let mut sources: Vec<_> = inputs.iter().map(|b| b.meta().ulid).collect();
    sources.sort();
    assert_eq!(meta.compaction.sources, sources);
    assert_eq!(meta.compaction.parents.len(), 4);
    assert_eq!(meta.min_time, inputs[0].meta().min_time);
    assert_eq!(meta.max_time, inputs[3].meta().max_time);
    let thanos = meta.thanos.as_ref().unwrap();
    assert_eq!(thanos.source, "compactor");
    assert_eq!(
        thanos.labels.get("cluster").map(String::as_str),
        Some("eu1")
    );
    let deleted = 40 + 1; // samples of that series inside the 10-minute tombstone, inclusive
    let input_samples: u64 = inputs.iter().map(|b| b.meta().stats.num_samples).sum();
    assert!(stats.samples + deleted >= input_samples && stats.samples < input_samples);
    // Only the chunks touched by the tombstone were rewritten; the rest passed through.
    assert!(
        stats.rewritten_chunks >= 1 && stats.rewritten_chunks <= 3,
        "{stats:?}"
    );
    let report = prometheus::analyze(&out_dir, &meta.ulid.to_string()).unwrap();
    assert!(report.contains("Series: 30"), "{report}");
}

fn write(dir: &Path, series: &[(Labels, Vec<(i64, f64)>)], range: (i64, i64)) -> Block {
    let opts = BlockWriterOptions {
        time_range: Some(range),
        ..Default::default()
    };
    let mut w = BlockWriter::new(dir, opts).unwrap();
    for (l, s) in series {
        w.add_series(l, s).unwrap();
    }
    let meta = w.finish().unwrap();
    Block::open(&dir.join(meta.ulid.to_string())).unwrap()
}

#[test]
fn overlapping_replicas_merge_one_to_one() {
    let dir = tempfile::tempdir().unwrap();
    let l = |n: &str| Labels::from_pairs(&[("__name__", n)]);
    // Replica A and B scraped the same targets; B also has a series A lacks and a gap A fills.
    let a_samples: Vec<(i64, f64)> = (0..400).map(|k| (k * 15_000, k as f64)).collect();
    let b_samples: Vec<(i64, f64)> = (0..400)
        .filter(|k| !(100..150).contains(k))
        .map(|k| (k * 15_000, k as f64))
        .collect();
    let a = write(
        &dir.path().join("a"),
        &[(l("up"), a_samples.clone())],
        (0, 7_200_000),
    );
    let b = write(
        &dir.path().join("b"),
        &[(l("only_b"), vec![(5, 1.0)]), (l("up"), b_samples)],
        (0, 7_200_000),
    );
    let out = dir.path().join("out");
    let (meta, stats) = merge_blocks(&[a, b], &out, &opts()).unwrap().unwrap();
    assert!(stats.rewritten_chunks > 0);
    let merged = Block::open(&out.join(meta.ulid.to_string())).unwrap();
    let all: Vec<_> = merged
        .query(&[], i64::MIN, i64::MAX)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].labels, l("only_b"));
    assert_eq!(all[1].labels, l("up"));
    let got: Vec<(i64, f64)> = all[1]
        .timestamps
        .iter()
        .copied()
        .zip(all[1].values.iter().copied())
        .collect();
    assert_eq!(
        got, a_samples,
        "one sample per timestamp, the union of both replicas"
    );
    // And Prometheus reads the re-encoded chunks.
    let dumped = as_series(prometheus::dump(&out).unwrap());
    assert_eq!(dumped.values().map(Vec::len).sum::<usize>(), 401);
}

#[test]
fn everything_deleted_gives_no_block() {
    let dir = tempfile::tempdir().unwrap();
    let l = Labels::from_pairs(&[("__name__", "gone")]);
    let b = write(
        &dir.path().join("a"),
        &[(l, vec![(1, 1.0), (2, 2.0)])],
        (0, 100),
    );
    let mut t = Tombstones::default();
    t.add(
        u64::from(b.index().all_postings().unwrap()[0]),
        Interval {
            min: i64::MIN,
            max: i64::MAX,
        },
    );
    std::fs::write(b.dir().join(TOMBSTONES_FILENAME), t.encode()).unwrap();
    let b = Block::open(b.dir()).unwrap();
    let out = dir.path().join("out");
    assert!(merge_blocks(&[b], &out, &opts()).unwrap().is_none());
    assert_eq!(
        std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0),
        0,
        "no leftovers"
    );
}

/// HA replicas scrape at different moments: one-to-one merging would interleave them (twice
/// the samples, 7 s and 8 s apart); penalty deduplication follows one replica, switches only
/// across its gap, and Prometheus reads the result.
#[test]
fn penalty_dedup_follows_one_replica_and_fills_its_gap() {
    let dir = tempfile::tempdir().unwrap();
    let l = Labels::from_pairs(&[("__name__", "http_requests_total"), ("job", "api")]);
    // B scrapes 7 s after A; B misses 10 minutes (a restart). 480 samples: four chunks each,
    // so the replicas' chunk boundaries line up in places, which must not matter.
    let a_samples: Vec<(i64, f64)> = (0..480).map(|k| (k * 15_000, k as f64)).collect();
    let b_samples: Vec<(i64, f64)> = (0..480)
        .filter(|k| !(200..240).contains(k))
        .map(|k| (k * 15_000 + 7_000, k as f64 + 0.5))
        .collect();
    let a = write(
        &dir.path().join("a"),
        &[(l.clone(), a_samples.clone())],
        (0, 7_200_000),
    );
    let b = write(
        &dir.path().join("b"),
        &[(l.clone(), b_samples.clone())],
        (0, 7_200_000),
    );
    let merged = |dedup, name: &str| {
        let out = dir.path().join(name);
        let o = MergeOptions { dedup, ..opts() };
        let (meta, _) = merge_blocks(&[a.clone(), b.clone()], &out, &o)
            .unwrap()
            .unwrap();
        let block = Block::open(&out.join(meta.ulid.to_string())).unwrap();
        let s = block
            .query(&[], i64::MIN, i64::MAX)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let got: Vec<(i64, f64)> = s
            .timestamps
            .iter()
            .copied()
            .zip(s.values.iter().copied())
            .collect();
        (out, got)
    };

    let (_, chain) = merged(strata_dedup::Algorithm::Chain, "chain");
    assert_eq!(
        chain.len(),
        a_samples.len() + b_samples.len(),
        "one-to-one keeps both"
    );

    let (out, pen) = merged(strata_dedup::Algorithm::Penalty, "penalty");
    let gaps: Vec<i64> = pen.windows(2).map(|w| w[1].0 - w[0].0).collect();
    // Switching replica shortens or stretches one interval; everything else is a scrape
    // interval of the replica being followed. Across B's 10-minute gap the switch to A costs
    // at most the penalty (twice B's scrape interval), as in Thanos.
    assert!(
        gaps.iter().filter(|g| **g != 15_000).count() <= 2,
        "{pen:?}"
    );
    assert!(
        gaps.iter().all(|g| (7_000..=45_000).contains(g)),
        "no interleaving, gap filled: {pen:?}"
    );
    let from_a = pen.iter().filter(|s| a_samples.contains(s)).count();
    let from_b = pen.iter().filter(|s| b_samples.contains(s)).count();
    assert_eq!(
        from_a + from_b,
        pen.len(),
        "every sample comes from a replica"
    );
    assert!(
        from_a >= 40 && from_b >= 199,
        "B until its gap, then A: {from_a} + {from_b}"
    );
    assert!(
        (479..=481).contains(&pen.len()),
        "one replica's worth: {}",
        pen.len()
    );
    let dumped = as_series(prometheus::dump(&out).unwrap());
    assert_eq!(dumped.values().map(Vec::len).sum::<usize>(), pen.len());
}
