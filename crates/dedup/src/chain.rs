//! The chain merge: Prometheus' `ChainedSeriesMerge` (`storage/merge.go`,
//! `chainSampleIterator`), which Thanos' querier uses for `--deduplication.func=chain` and
//! whose compacting variant its compactor uses by default.
//!
//! The replicas are merged by timestamp and a sample whose timestamp was already emitted is
//! dropped. That is exact for replicas that hold identical samples (Receive replication) and
//! keeps everything for replicas whose timestamps never coincide (which is why HA Prometheus
//! pairs want the penalty algorithm instead).

use std::iter::FusedIterator;

use crate::Sample;

#[derive(Debug, Clone)]
struct Head<I> {
    iter: I,
    cur: Sample,
}

/// The chain merge of any number of replicas of one series.
///
/// When replicas hold different values for the same timestamp, the earliest replica in the
/// given order wins. Prometheus leaves this to the order of its heap; this crate makes it
/// deterministic, like the one-to-one merge of the compactor. Picking the next sample scans
/// the replicas' heads, which for the handful of replicas of an HA setup is cheaper than a
/// heap. Output timestamps are strictly increasing: a sample at or before the last emitted
/// timestamp is dropped, which for well-formed (sorted) replicas is exactly Prometheus'
/// "same timestamp" rule.
#[derive(Debug, Clone)]
pub struct ChainIter<I> {
    /// Replicas that still have samples, in the given order, each on its next sample.
    heads: Vec<Head<I>>,
    /// Replicas not yet read: the first `next` moves them into `heads`.
    fresh: Vec<I>,
    last_t: Option<i64>,
}

impl<I: Iterator<Item = Sample>> ChainIter<I> {
    /// Merges `replicas`, each in increasing timestamp order. Reads nothing until the first
    /// `next`.
    pub fn new(replicas: impl IntoIterator<Item = I>) -> Self {
        let fresh: Vec<I> = replicas.into_iter().collect();
        ChainIter {
            heads: Vec::with_capacity(fresh.len()),
            fresh,
            last_t: None,
        }
    }

    fn start(&mut self) {
        for mut iter in self.fresh.drain(..) {
            if let Some(cur) = iter.next() {
                self.heads.push(Head { iter, cur });
            }
        }
    }
}

impl<I: Iterator<Item = Sample>> Iterator for ChainIter<I> {
    type Item = Sample;

    #[inline]
    fn next(&mut self) -> Option<Sample> {
        if !self.fresh.is_empty() {
            self.start();
        }
        loop {
            // The earliest head; the first of equal ones.
            let mut best = 0;
            let mut best_t = self.heads.first()?.cur.0;
            for (i, h) in self.heads.iter().enumerate().skip(1) {
                if h.cur.0 < best_t {
                    best = i;
                    best_t = h.cur.0;
                }
            }
            let head = &mut self.heads[best];
            let s = head.cur;
            match head.iter.next() {
                Some(next) => head.cur = next,
                // Order-preserving, so ties keep going to the earlier replica.
                None => drop(self.heads.remove(best)),
            }
            if self.last_t.is_none_or(|last| s.0 > last) {
                self.last_t = Some(s.0);
                return Some(s);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let mut upper = Some(self.heads.len());
        for h in &self.heads {
            upper = upper.and_then(|u| h.iter.size_hint().1.and_then(|n| u.checked_add(n)));
        }
        for f in &self.fresh {
            upper = upper.and_then(|u| f.size_hint().1.and_then(|n| u.checked_add(n)));
        }
        // Everything left may repeat an emitted timestamp.
        (0, upper)
    }
}

impl<I: Iterator<Item = Sample>> FusedIterator for ChainIter<I> {}
