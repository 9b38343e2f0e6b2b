//! The behaviour of Thanos' `pkg/dedup/iter_test.go` and `chunk_iter_test.go`, and of
//! Prometheus' chain merge tests (`storage/merge_test.go`), as test vectors.
//!
//! Thanos' unit tests feed the penalty iterator from a mock whose `Seek` binary-searches the
//! whole replica, so it can move *backwards* to a sample that an earlier penalty jumped over.
//! Real chunk iterators, which is what Thanos' querier and compactor run on, never move
//! backwards, and neither does this crate. Each penalty vector therefore runs twice: through
//! [`MockCursor`], which behaves like the mock and must reproduce Thanos' expected output
//! exactly (showing the algorithm is the same), and through [`IterCursor`], the production
//! path. The two differ only where the mock rewound; those cases state both outputs.

use crate::{Algorithm, ChainIter, Cursor, IterCursor, PenaltyIter, Sample, dedup_samples};

/// A cursor with the seek of Thanos' test mock: the first sample at or after `t` in the whole
/// replica, wherever the cursor was.
#[derive(Debug)]
struct MockCursor<'a> {
    samples: &'a [Sample],
    /// Index of the current sample; `None` before the first.
    idx: Option<usize>,
}

impl Cursor for MockCursor<'_> {
    fn advance(&mut self) -> bool {
        let i = self.idx.map_or(0, |i| i + 1);
        self.idx = Some(i);
        i < self.samples.len()
    }

    fn at(&self) -> Sample {
        self.samples[self.idx.expect("at before advance")]
    }

    fn seek(&mut self, t: i64) -> bool {
        let i = self.samples.partition_point(|s| s.0 < t);
        self.idx = Some(i);
        i < self.samples.len()
    }
}

fn penalty_mock(replicas: &[&[Sample]], counter: bool) -> Vec<Sample> {
    let cursors = replicas.iter().map(|r| MockCursor {
        samples: r,
        idx: None,
    });
    PenaltyIter::new(cursors, counter).collect()
}

fn penalty_real(replicas: &[&[Sample]], counter: bool) -> Vec<Sample> {
    let cursors = replicas.iter().map(|r| IterCursor::new(r.iter().copied()));
    let out: Vec<Sample> = PenaltyIter::new(cursors, counter).collect();
    // The public helper is the same path.
    assert_eq!(
        dedup_samples(replicas, Algorithm::Penalty, counter),
        out,
        "dedup_samples"
    );
    out
}

/// Asserts that Thanos' expected output is reproduced under the mock's seek, and that the
/// production path gives `real` (the same, unless the mock rewound).
#[track_caller]
fn check_penalty(
    replicas: &[&[Sample]],
    counter: bool,
    upstream_expected: &[Sample],
    real: &[Sample],
) {
    assert_eq!(
        penalty_mock(replicas, counter),
        upstream_expected,
        "with Thanos' mock seek"
    );
    assert_eq!(penalty_real(replicas, counter), real, "with forward seeks");
}

#[track_caller]
fn check_penalty_same(replicas: &[&[Sample]], counter: bool, expected: &[Sample]) {
    check_penalty(replicas, counter, expected, expected);
}

/// Samples whose value is their timestamp (Prometheus' `GenerateSamples` and Thanos'
/// `sample{t, t}` vectors).
fn ident(ts: impl IntoIterator<Item = i64>) -> Vec<Sample> {
    ts.into_iter().map(|t| (t, t as f64)).collect()
}

// --- TestDedupSeriesIterator: two replicas, no counter adjustment. ---

#[test]
fn iterator_prefers_first_replica() {
    let a = [(10000, 10.0), (20000, 11.0), (30000, 12.0), (40000, 13.0)];
    let b = [(10000, 20.0), (20000, 21.0), (30000, 22.0), (40000, 23.0)];
    check_penalty_same(&[&a, &b], false, &a);
}

#[test]
fn iterator_prefers_b_when_it_starts_earlier() {
    let a = [(10100, 1.0), (20100, 1.0), (30100, 1.0), (40100, 1.0)];
    let b = [(10000, 2.0), (20000, 2.0), (30000, 2.0), (40000, 2.0)];
    check_penalty_same(&[&a, &b], false, &b);
}

#[test]
fn iterator_does_not_switch_on_one_interval_gap() {
    let a = [(10000, 1.0), (20000, 1.0), (40000, 1.0)];
    let b = [(10000, 2.0), (20000, 2.0), (30000, 2.0), (40000, 2.0)];
    check_penalty_same(&[&a, &b], false, &a);
}

#[test]
fn iterator_does_not_switch_to_offset_replica_on_one_interval_gap() {
    let a = [(10000, 1.0), (20000, 1.0), (40000, 1.0)];
    let b = [(15000, 2.0), (25000, 2.0), (35000, 2.0), (45000, 2.0)];
    check_penalty_same(&[&a, &b], false, &a);
}

#[test]
fn iterator_switches_after_gap_over_two_intervals_and_stays() {
    let a = [
        (10000, 1.0),
        (20000, 1.0),
        (30000, 1.0),
        (60000, 1.0),
        (70000, 1.0),
    ];
    let b = [
        (10100, 2.0),
        (20100, 2.0),
        (30100, 2.0),
        (40100, 2.0),
        (50100, 2.0),
        (60100, 2.0),
    ];
    let exp = [
        (10000, 1.0),
        (20000, 1.0),
        (30000, 1.0),
        (50100, 2.0),
        (60100, 2.0),
    ];
    check_penalty_same(&[&a, &b], false, &exp);
}

/// TestDedupSeriesIterator_NativeHistograms, with floats in place of histograms (this crate
/// carries floats only): a replica whose only sample comes first is followed by the other
/// replica's samples, whichever order the replicas are given in.
#[test]
fn iterator_mixed_single_sample_then_other_replica() {
    let a = [(0, 0.0)];
    let b = [(10000, 7.0), (20000, 7.0), (30000, 7.0), (40000, 7.0)];
    let exp = [
        (0, 0.0),
        (10000, 7.0),
        (20000, 7.0),
        (30000, 7.0),
        (40000, 7.0),
    ];
    check_penalty_same(&[&b, &a], false, &exp);
    check_penalty_same(&[&a, &b], false, &exp);
}

// --- TestDedupSeriesSet: the sample-level result of each group of replicas. ---

#[test]
fn series_set_single_dedup_label_four_replicas() {
    let r1 = [(10000, 1.0), (20000, 2.0)];
    let r2 = [(60000, 3.0), (70000, 4.0)];
    let r3 = [(200000, 5.0), (210000, 6.0)];
    let exp = [
        (10000, 1.0),
        (20000, 2.0),
        (60000, 3.0),
        (70000, 4.0),
        (200000, 5.0),
        (210000, 6.0),
    ];
    check_penalty_same(&[&r1, &r2, &r3, &r1], false, &exp);
    // The groups of one series come out unchanged.
    check_penalty_same(&[&r1], false, &r1);
    // {a="2", c="3"}: two replicas that follow each other.
    check_penalty_same(&[&r1, &r2], false, &exp[..4]);
}

#[test]
fn series_set_multi_dedup_label_three_replicas() {
    let r1 = [(10000, 1.0), (20000, 2.0)];
    let r2 = [(60000, 3.0), (70000, 4.0)];
    let r3 = [(200000, 5.0), (210000, 6.0)];
    let exp = [
        (10000, 1.0),
        (20000, 2.0),
        (60000, 3.0),
        (70000, 4.0),
        (200000, 5.0),
        (210000, 6.0),
    ];
    check_penalty_same(&[&r1, &r2, &r3], false, &exp);
}

#[test]
fn series_set_some_series_lack_dedup_labels() {
    let r1 = [(10000, 1.0), (20000, 2.0)];
    let r2 = [(60000, 3.0), (70000, 4.0)];
    let exp = [(10000, 1.0), (20000, 2.0), (60000, 3.0), (70000, 4.0)];
    check_penalty_same(&[&r1, &r2], false, &exp);
}

/// The replicas of Thanos' regression test for issue 2401: replica a has a gap after 20000
/// (a restart), replica b takes over at 45001 with a lower counter total, then b stops.
const ISSUE_2401_A: [Sample; 8] = [
    (10000, 8.0),
    (20000, 9.0),
    (50001, 10.0),
    (60000, 11.0),
    (70000, 12.0),
    (80000, 13.0),
    (90000, 14.0),
    (100000, 15.0),
];
const ISSUE_2401_B: [Sample; 4] = [(10001, 8.0), (45001, 8.5), (55001, 9.5), (65001, 10.5)];

#[test]
fn series_set_regression_2401_counter() {
    // b is raised by 0.5 when switched to, so the counter never goes down.
    let upstream = [
        (10000, 8.0),
        (20000, 9.0),
        (45001, 9.0),
        (55001, 10.0),
        (65001, 11.0),
        (90000, 14.0),
        (100000, 15.0),
    ];
    // While b was followed, a was sought to 95004 (45001 + 1 + a penalty of 2 × 25001), past
    // 90000. Thanos' mock seeks back to 90000 when b runs out; a chunk iterator cannot, so in
    // production (and here) the series resumes at 100000.
    let real = [
        (10000, 8.0),
        (20000, 9.0),
        (45001, 9.0),
        (55001, 10.0),
        (65001, 11.0),
        (100000, 15.0),
    ];
    check_penalty(&[&ISSUE_2401_A, &ISSUE_2401_B], true, &upstream, &real);
}

#[test]
fn series_set_regression_2401_no_counter() {
    let upstream = [
        (10000, 8.0),
        (20000, 9.0),
        (45001, 8.5),
        (55001, 9.5),
        (65001, 10.5),
        (90000, 14.0),
        (100000, 15.0),
    ];
    let real = [
        (10000, 8.0),
        (20000, 9.0),
        (45001, 8.5),
        (55001, 9.5),
        (65001, 10.5),
        (100000, 15.0),
    ];
    check_penalty(&[&ISSUE_2401_A, &ISSUE_2401_B], false, &upstream, &real);
}

/// Parses `testdata/thanos_issue_2401_real.txt`: sections `== name` of `{t: ms, f: value}`.
fn real_data() -> (Vec<Sample>, Vec<Sample>, Vec<Sample>) {
    let text = include_str!("../testdata/thanos_issue_2401_real.txt");
    let mut sections: Vec<(String, Vec<Sample>)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("== ") {
            sections.push((name.to_owned(), Vec::new()));
            continue;
        }
        let samples = &mut sections.last_mut().expect("data before a section").1;
        let nums: Vec<i64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(nums.len() % 2, 0, "{line}");
        samples.extend(nums.chunks(2).map(|p| (p[0], p[1] as f64)));
    }
    let mut get = |name: &str| {
        let i = sections.iter().position(|s| s.0 == name).unwrap();
        sections.remove(i).1
    };
    (get("a"), get("b"), get("expected"))
}

#[test]
fn series_set_regression_2401_real_data() {
    let (a, b, exp) = real_data();
    assert_eq!((a.len(), b.len(), exp.len()), (236, 236, 237));
    for r in [&a, &b, &exp] {
        assert!(r.windows(2).all(|w| w[0].0 < w[1].0));
    }
    // Here the mock never rewinds, so production gives Thanos' expected output too: a is
    // followed until its 75 s gap after 1587692480791, b takes over at 1587692542149 raised
    // by 7 (496537 → 496544), and b is followed to the end.
    check_penalty_same(&[&a, &b], true, &exp);
    let tail = &exp[exp.len() - 3..];
    assert_eq!(tail[2], (1587693592139, 511495.0));
}

// --- TestDedupChunkSeriesMerger (compactor): the sample-level merge of each group of
// overlapping chunks, in the order the compactor gives them (the chunk with the smallest
// minimum time first, then by maximum time). The compactor itself copies chunks that overlap
// nothing and drops byte-identical duplicates before it gets here. Those tests run on real
// chunk iterators, so the mock and the production path agree. ---

#[test]
fn chunks_two_duplicated() {
    let a = ident([1, 2, 3, 5]);
    let b = ident([2, 3, 5]);
    check_penalty_same(&[&a, &b], false, &a);
}

#[test]
fn chunks_two_overlapping() {
    let a = ident([3, 8]);
    let b = ident([7, 9]);
    check_penalty_same(&[&a, &b], false, &a);
}

#[test]
fn chunks_two_overlapping_with_large_time_diff() {
    // Chunks [1 2] [2 5008] of one series and [7 9] [10] of the other all overlap the first.
    let chunks = [ident([1, 2]), ident([2, 5008]), ident([7, 9]), ident([10])];
    let refs: Vec<&[Sample]> = chunks.iter().map(Vec::as_slice).collect();
    check_penalty_same(&refs, false, &ident([1, 2, 5008]));
}

#[test]
fn chunks_three_overlapping() {
    // The series with the earliest sample wins; the penalty of 5000 ms after its first sample
    // excludes every other sample of the millisecond-spaced replicas.
    let c = ident([0, 4]);
    let a = ident([1, 2, 3, 5]);
    let b = ident([2, 3, 6]);
    check_penalty_same(&[&c, &a, &b], false, &c);
}

#[test]
fn chunks_three_in_chained_overlap() {
    let a = ident([1, 2, 3, 5]);
    let b = vec![(4, 4.0), (6, 66.0)];
    let c = ident([6, 10]);
    check_penalty_same(&[&a, &b, &c], false, &a);
}

#[test]
fn chunks_three_in_chained_overlap_complex() {
    // Five chunks overlap transitively; the first wins. ([31 35] overlaps none and is copied.)
    let chunks = [
        ident([0, 5]),
        ident([2, 20]),
        ident([10, 15]),
        ident([18, 26]),
        ident([25, 30]),
    ];
    let refs: Vec<&[Sample]> = chunks.iter().map(Vec::as_slice).collect();
    check_penalty_same(&refs, false, &ident([0, 5]));
}

#[test]
fn chunks_110_overlapping_samples() {
    let a = ident(0..110);
    let b = ident(60..110);
    check_penalty_same(&[&a, &b], false, &a);
}

#[test]
fn chunks_150_overlapping_samples_penalty_drops_the_tail() {
    // The second replica is sought 5000 ms past the first sample and so is never used: its
    // samples 90..150 are lost. Penalty deduplication assumes scrape intervals of seconds.
    let a = ident(0..90);
    let b = ident(60..150);
    check_penalty_same(&[&a, &b], false, &a);
}

// --- Prometheus' TestChainSampleIterator. ---

fn chain(replicas: &[Vec<Sample>]) -> Vec<Sample> {
    let out: Vec<Sample> = ChainIter::new(replicas.iter().map(|r| r.iter().copied())).collect();
    let refs: Vec<&[Sample]> = replicas.iter().map(Vec::as_slice).collect();
    assert_eq!(dedup_samples(&refs, Algorithm::Chain, false), out);
    assert_eq!(
        dedup_samples(&refs, Algorithm::Chain, true),
        out,
        "no counters"
    );
    out
}

#[test]
fn chain_vectors() {
    assert_eq!(chain(&[ident([0, 1])]), ident([0, 1]));
    assert_eq!(chain(&[ident([0, 1]), ident([2, 3])]), ident(0..4));
    assert_eq!(
        chain(&[ident([0, 3]), ident([1, 4]), ident([2, 5])]),
        ident(0..6)
    );
    assert_eq!(
        chain(&[
            ident([0, 1]),
            ident([0, 2]),
            ident([2, 3]),
            vec![],
            vec![],
            vec![]
        ]),
        ident(0..4)
    );
    assert_eq!(
        chain(&[ident([0, 1, 2, 4]), ident([0, 1, 3, 5])]),
        ident(0..6)
    );
    assert_eq!(chain(&[]), vec![]);
    assert_eq!(chain(&[vec![], vec![]]), vec![]);
}

#[test]
fn chain_first_replica_wins_ties() {
    let a = vec![(1, 10.0), (2, 20.0)];
    let b = vec![(1, 11.0), (2, 21.0), (3, 31.0)];
    assert_eq!(
        chain(&[a.clone(), b.clone()]),
        [(1, 10.0), (2, 20.0), (3, 31.0)]
    );
    assert_eq!(chain(&[b, a]), [(1, 11.0), (2, 21.0), (3, 31.0)]);
}
