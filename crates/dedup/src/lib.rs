//! Replica deduplication of time series, with Thanos' semantics.
//!
//! An HA pair of Prometheus servers scrapes the same targets, so every series exists once per
//! replica, with timestamps a few milliseconds to seconds apart and with gaps where one replica
//! was down. Two callers need those copies merged into one series:
//!
//! - the compactor's vertical compaction (`--deduplication.func=penalty`, or `""` for a
//!   one-to-one merge), which decodes one series from every overlapping replica block, merges
//!   the samples and re-encodes them;
//! - the querier (`--query.replica-label` with `--deduplication.func=penalty|chain`), which
//!   merges the Store API series that differ only in their replica labels.
//!
//! Two algorithms exist, as in Thanos (`pkg/dedup`):
//!
//! - [`Algorithm::Penalty`] ([`PenaltyIter`]): follow one replica and switch to another only
//!   when the followed one has a gap. Interleaving two replicas would double the sample rate and
//!   make `rate()` jittery; sticking to one keeps the original scrape cadence. Built for HA
//!   Prometheus pairs, whose replicas never agree on timestamps.
//! - [`Algorithm::Chain`] ([`ChainIter`]): Prometheus' `ChainedSeriesMerge`, the sorted union of
//!   all samples with one sample per timestamp. Built for Receive replication, whose replicas
//!   carry identical samples.
//!
//! Both are iterators over `(timestamp ms, value)` pairs that allocate once when built and
//! never per sample. Stale markers (the staleness NaN) pass through untouched like any value;
//! the algorithms never look at values except for the counter adjustment, which leaves NaNs,
//! stale markers included, bit for bit as they are.
//!
//! **Architecture invariant:** no IO, no async, no dependency on any other Strata crate. Chunk
//! decoding, grouping series by labels and chunk boundaries belong to the callers.

mod chain;
mod penalty;

#[cfg(test)]
mod upstream_tests;

use std::fmt;
use std::str::FromStr;

pub use chain::ChainIter;
pub use penalty::{Cursor, INITIAL_PENALTY, IterCursor, PenaltyIter, Replica, pair_into};

/// One sample: timestamp in milliseconds since the epoch, and its value.
pub type Sample = (i64, f64);

/// A deduplication algorithm (Thanos' `--deduplication.func`).
///
/// The querier's flag takes `penalty` (the default) or `chain`, which is what [`FromStr`]
/// accepts. The compactor's flag takes `""` (the default: Prometheus' one-to-one compacting
/// merger, which at the sample level is [`Algorithm::Chain`]) or `penalty`; parse it with
/// [`Algorithm::from_compactor_flag`]. Thanos' newer `quorum` is not implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Stick to one replica and switch only across a gap (HA Prometheus pairs).
    #[default]
    Penalty,
    /// Sorted union, one sample per timestamp (identical replicas, e.g. Receive).
    Chain,
}

impl Algorithm {
    /// The flag spelling, as Thanos writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Penalty => "penalty",
            Algorithm::Chain => "chain",
        }
    }

    /// Parses the compactor's `--deduplication.func`: `""` is the one-to-one merge
    /// ([`Algorithm::Chain`] at the sample level), `penalty` is [`Algorithm::Penalty`].
    /// Thanos' compactor rejects `chain` by name, and so does this.
    pub fn from_compactor_flag(s: &str) -> Result<Self, ParseAlgorithmError> {
        match s {
            "" => Ok(Algorithm::Chain),
            "penalty" => Ok(Algorithm::Penalty),
            _ => Err(ParseAlgorithmError {
                value: s.to_owned(),
                expected: r#""", "penalty""#,
            }),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = ParseAlgorithmError;

    /// Parses the querier's `--deduplication.func`: `penalty` or `chain`, nothing else (Thanos'
    /// flag is an enum of exactly these, so an empty value is an error there too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "penalty" => Ok(Algorithm::Penalty),
            "chain" => Ok(Algorithm::Chain),
            _ => Err(ParseAlgorithmError {
                value: s.to_owned(),
                expected: r#""penalty", "chain""#,
            }),
        }
    }
}

/// An unknown deduplication function name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown deduplication function {value:?} (possible values: {expected})")]
pub struct ParseAlgorithmError {
    /// The text that was given.
    pub value: String,
    /// The accepted spellings, for the message.
    pub expected: &'static str,
}

/// Whether the querier deduplicates with counter adjustment, decided, as in Thanos, from the
/// name of the PromQL function the selector is an argument of (the `func` of Prometheus'
/// select hints): `rate`, `irate`, `increase` and `resets`.
///
/// Thanos does not look at the metric name or its `_total` suffix: only these functions
/// misread a counter that appears to go down as a reset, so only they need the adjustment
/// (see [`PenaltyIter::new`]). The compactor never adjusts: it must not rewrite stored values.
pub fn is_counter_function(func: &str) -> bool {
    matches!(func, "rate" | "irate" | "increase" | "resets")
}

/// A deduplicating iterator with the algorithm chosen at run time; see [`dedup`].
#[derive(Debug, Clone)]
pub enum DedupIter<I: Iterator<Item = Sample>> {
    /// [`Algorithm::Penalty`].
    Penalty(PenaltyIter<IterCursor<I>>),
    /// [`Algorithm::Chain`].
    Chain(ChainIter<I>),
}

impl<I: Iterator<Item = Sample>> Iterator for DedupIter<I> {
    type Item = Sample;

    #[inline]
    fn next(&mut self) -> Option<Sample> {
        match self {
            DedupIter::Penalty(it) => it.next(),
            DedupIter::Chain(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            DedupIter::Penalty(it) => it.size_hint(),
            DedupIter::Chain(it) => it.size_hint(),
        }
    }
}

impl<I: Iterator<Item = Sample>> std::iter::FusedIterator for DedupIter<I> {}

/// Deduplicates the replicas of one series.
///
/// Each replica must be in increasing timestamp order, as chunks are. The order of the
/// replicas matters for penalty (ties go to the earlier replica, and more than two replicas
/// are merged pairwise, left to right, as Thanos does) and for chain (on equal timestamps the
/// earlier replica's value is kept). `counter` enables the counter adjustment of the penalty
/// algorithm (see [`is_counter_function`]); chain ignores it, as Thanos' does.
pub fn dedup<R, S>(replicas: R, algorithm: Algorithm, counter: bool) -> DedupIter<S::IntoIter>
where
    R: IntoIterator<Item = S>,
    S: IntoIterator<Item = Sample>,
{
    let iters = replicas.into_iter().map(IntoIterator::into_iter);
    match algorithm {
        Algorithm::Penalty => {
            DedupIter::Penalty(PenaltyIter::new(iters.map(IterCursor::new), counter))
        }
        Algorithm::Chain => DedupIter::Chain(ChainIter::new(iters)),
    }
}

/// Deduplicates replicas held in memory and appends the result to `out`, which callers reuse
/// across series to avoid an allocation per series.
pub fn dedup_into(
    replicas: &[&[Sample]],
    algorithm: Algorithm,
    counter: bool,
    out: &mut Vec<Sample>,
) {
    // The output is usually about as long as the longest replica: reserve that once.
    out.reserve(replicas.iter().map(|r| r.len()).max().unwrap_or(0));
    if let (Algorithm::Penalty, [a, b]) = (algorithm, replicas) {
        penalty::pair_into(*a, *b, counter, out);
        return;
    }
    out.extend(dedup(
        replicas.iter().map(|r| r.iter().copied()),
        algorithm,
        counter,
    ));
}

/// Deduplicates replicas held in memory into a new vector; see [`dedup`].
pub fn dedup_samples(replicas: &[&[Sample]], algorithm: Algorithm, counter: bool) -> Vec<Sample> {
    let mut out = Vec::new();
    dedup_into(replicas, algorithm, counter, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_flags() {
        assert_eq!("penalty".parse(), Ok(Algorithm::Penalty));
        assert_eq!("chain".parse(), Ok(Algorithm::Chain));
        let err = "".parse::<Algorithm>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown deduplication function "" (possible values: "penalty", "chain")"#
        );
        assert!("Penalty".parse::<Algorithm>().is_err());
        assert_eq!(Algorithm::from_compactor_flag(""), Ok(Algorithm::Chain));
        assert_eq!(
            Algorithm::from_compactor_flag("penalty"),
            Ok(Algorithm::Penalty)
        );
        let err = Algorithm::from_compactor_flag("chain").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown deduplication function "chain" (possible values: "", "penalty")"#
        );
        assert_eq!(Algorithm::default(), Algorithm::Penalty);
        for a in [Algorithm::Penalty, Algorithm::Chain] {
            assert_eq!(a.to_string().parse(), Ok(a));
        }
    }

    #[test]
    fn counter_functions() {
        for f in ["rate", "irate", "increase", "resets"] {
            assert!(is_counter_function(f), "{f}");
        }
        for f in [
            "",
            "delta",
            "idelta",
            "deriv",
            "sum",
            "max_over_time",
            "Rate",
            "http_requests_total",
        ] {
            assert!(!is_counter_function(f), "{f}");
        }
    }

    #[test]
    fn ties_go_to_the_first_replica_bit_for_bit() {
        let a: &[Sample] = &[(-43, -0.0)];
        let b: &[Sample] = &[(-43, 0.0)];
        for alg in [Algorithm::Penalty, Algorithm::Chain] {
            let out = dedup_samples(&[a, b], alg, true);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].1.to_bits(), (-0.0f64).to_bits(), "{alg}");
        }
    }

    #[test]
    fn stale_markers_pass_through_counter_adjustment() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        // b is raised by 90 when taken over after a's gap; its stale marker stays one.
        let a: &[Sample] = &[(0, 100.0), (15_000, 110.0)];
        let b: &[Sample] = &[
            (1_000, 10.0),
            (61_000, 20.0),
            (76_000, stale),
            (91_000, 30.0),
        ];
        let out = dedup_samples(&[a, b], Algorithm::Penalty, true);
        let t: Vec<i64> = out.iter().map(|s| s.0).collect();
        assert_eq!(t, [0, 15_000, 61_000, 76_000, 91_000]);
        assert_eq!(out[2].1, 110.0);
        assert_eq!(out[3].1.to_bits(), stale.to_bits());
        assert_eq!(out[4].1, 120.0);
    }

    #[test]
    fn helpers_agree() {
        let a: &[Sample] = &[(10_000, 1.0), (20_000, 2.0), (40_000, 4.0)];
        let b: &[Sample] = &[(10_001, 5.0), (20_001, 6.0), (30_001, 7.0), (40_001, 8.0)];
        for alg in [Algorithm::Penalty, Algorithm::Chain] {
            let v = dedup_samples(&[a, b], alg, false);
            let it: Vec<Sample> = dedup([a.to_vec(), b.to_vec()], alg, false).collect();
            assert_eq!(v, it);
            let mut out = vec![(0, 0.0)];
            dedup_into(&[a, b], alg, false, &mut out);
            assert_eq!(out[1..], v[..], "dedup_into appends");
        }
        assert_eq!(
            dedup_samples(&[a, b], Algorithm::Penalty, false),
            a.to_vec()
        );
        assert!(dedup_samples(&[], Algorithm::Penalty, false).is_empty());
        assert!(dedup_samples(&[], Algorithm::Chain, false).is_empty());
    }
}
