//! Properties of both algorithms over generated replicas, and a differential test of the
//! penalty iterator against a straightforward recursive model of Thanos' nested pairs.

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_dedup::{Algorithm, ChainIter, IterCursor, PenaltyIter, Sample, dedup_samples};

/// Timestamp steps: millisecond spacing (where the 5 s initial penalty dominates), realistic
/// scrape intervals with jitter, and long gaps.
fn step() -> impl Strategy<Value = i64> {
    prop_oneof![1i64..20, 14_950i64..15_050, 1i64..200_000]
}

/// Sorted replicas with counter-like, arbitrary or special values.
fn replica(max_len: usize) -> impl Strategy<Value = Vec<Sample>> {
    let value = prop_oneof![
        4 => (0u32..1000).prop_map(f64::from),
        1 => any::<f64>(),
        1 => Just(f64::from_bits(0x7ff0_0000_0000_0002)), // the staleness marker
    ];
    (
        -1_000_000i64..1_000_000,
        proptest::collection::vec((step(), value), 0..max_len),
    )
        .prop_map(|(start, steps)| {
            let mut t = start;
            steps
                .into_iter()
                .map(|(d, v)| {
                    t += d;
                    (t, v)
                })
                .collect()
        })
}

/// Non-decreasing counters without NaNs.
fn counter_replica(max_len: usize) -> impl Strategy<Value = Vec<Sample>> {
    (
        -1_000_000i64..1_000_000,
        0u32..1000,
        proptest::collection::vec((step(), 0u32..50), 0..max_len),
    )
        .prop_map(|(start, base, steps)| {
            let (mut t, mut v) = (start, f64::from(base));
            steps
                .into_iter()
                .map(|(d, inc)| {
                    t += d;
                    v += f64::from(inc);
                    (t, v)
                })
                .collect()
        })
}

/// Replicas of one timeline, as an HA pair scrapes it: each keeps most of the scrapes, with no
/// jitter (equal timestamps across replicas), a little, or a lot, and its own value offset.
fn correlated(max_n: usize, max_len: usize) -> impl Strategy<Value = Vec<Vec<Sample>>> {
    let jitter = prop_oneof![Just(0i64), -3i64..3, -2_000i64..2_000];
    let one = (
        0u32..20,
        proptest::collection::vec((proptest::bool::weighted(0.8), jitter), max_len),
    );
    (
        proptest::collection::vec((step(), 0u32..50), 0..max_len),
        proptest::collection::vec(one, 0..=max_n),
    )
        .prop_map(|(base, reps)| {
            let mut t = 0i64;
            let mut v = 0.0;
            let timeline: Vec<Sample> = base
                .into_iter()
                .map(|(d, inc)| {
                    t += d;
                    v += f64::from(inc);
                    (t, v)
                })
                .collect();
            reps.into_iter()
                .map(|(offset, keep)| {
                    let mut r: Vec<Sample> = timeline
                        .iter()
                        .zip(&keep)
                        .filter(|(_, (k, _))| *k)
                        .map(|(&(t, v), &(_, j))| (t + j, v + f64::from(offset)))
                        .collect();
                    r.sort_by_key(|s| s.0);
                    r.dedup_by_key(|s| s.0);
                    r
                })
                .collect()
        })
}

fn replicas(max_n: usize, max_len: usize) -> impl Strategy<Value = Vec<Vec<Sample>>> {
    prop_oneof![
        proptest::collection::vec(replica(max_len), 0..=max_n),
        correlated(max_n, max_len),
    ]
}

fn refs(rs: &[Vec<Sample>]) -> Vec<&[Sample]> {
    rs.iter().map(Vec::as_slice).collect()
}

fn bits(s: &[Sample]) -> Vec<(i64, u64)> {
    s.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

fn strictly_increasing(s: &[Sample]) -> bool {
    s.windows(2).all(|w| w[0].0 < w[1].0)
}

// --- A model of Thanos' nested pairs, boxed and recursive, for differential testing. ---

trait Model {
    fn next(&mut self) -> bool;
    fn seek(&mut self, t: i64) -> bool;
    fn at(&self) -> Sample;
    fn adjust(&mut self, last: f64);
}

struct ModelLeaf<'a> {
    s: &'a [Sample],
    i: Option<usize>,
    adj: f64,
    counter: bool,
}

impl Model for ModelLeaf<'_> {
    fn next(&mut self) -> bool {
        let i = self.i.map_or(0, |i| i + 1);
        self.i = Some(i);
        i < self.s.len()
    }
    fn seek(&mut self, t: i64) -> bool {
        let mut i = self.i.unwrap();
        while i < self.s.len() && self.s[i].0 < t {
            i += 1;
        }
        self.i = Some(i);
        i < self.s.len()
    }
    fn at(&self) -> Sample {
        let (t, v) = self.s[self.i.unwrap()];
        if self.adj != 0.0 && !v.is_nan() {
            (t, v + self.adj)
        } else {
            (t, v)
        }
    }
    fn adjust(&mut self, last: f64) {
        if self.counter {
            let v = self.at().1;
            if last > v {
                self.adj += last - v;
            }
        }
    }
}

struct ModelPair<'a> {
    a: Box<dyn Model + 'a>,
    b: Box<dyn Model + 'a>,
    a_ok: bool,
    b_ok: bool,
    last_t: Option<i64>,
    pen_a: i64,
    pen_b: i64,
    use_a: bool,
}

impl<'a> ModelPair<'a> {
    fn new(mut a: Box<dyn Model + 'a>, mut b: Box<dyn Model + 'a>) -> Self {
        let a_ok = a.next();
        let b_ok = b.next();
        ModelPair {
            a,
            b,
            a_ok,
            b_ok,
            last_t: None,
            pen_a: 0,
            pen_b: 0,
            use_a: true,
        }
    }
}

impl Model for ModelPair<'_> {
    fn next(&mut self) -> bool {
        let last = if self.use_a && self.a_ok {
            Some(self.a.at().1)
        } else if !self.use_a && self.b_ok {
            Some(self.b.at().1)
        } else {
            None
        };
        let was_a = self.use_a;
        let from = self.last_t.map_or(i64::MIN + 1, |t| t + 1);
        if self.a_ok {
            self.a_ok = self.a.seek(from + self.pen_a);
        }
        if self.b_ok {
            self.b_ok = self.b.seek(from + self.pen_b);
        }
        let ok = match (self.a_ok, self.b_ok) {
            (false, b_ok) => {
                self.use_a = false;
                if b_ok {
                    self.last_t = Some(self.b.at().0);
                    self.pen_b = 0;
                }
                b_ok
            }
            (true, false) => {
                self.use_a = true;
                self.last_t = Some(self.a.at().0);
                self.pen_a = 0;
                true
            }
            (true, true) => {
                let (ta, tb) = (self.a.at().0, self.b.at().0);
                let t = ta.min(tb);
                let pen = self.last_t.map_or(5000, |l| 2 * (t - l));
                self.use_a = ta <= tb;
                if self.use_a {
                    (self.pen_a, self.pen_b) = (0, pen);
                } else {
                    (self.pen_a, self.pen_b) = (pen, 0);
                }
                self.last_t = Some(t);
                true
            }
        };
        if let Some(v) = last
            && self.use_a != was_a
        {
            self.adjust(v);
        }
        ok
    }
    fn seek(&mut self, t: i64) -> bool {
        while self.at().0 < t {
            if !self.next() {
                return false;
            }
        }
        true
    }
    fn at(&self) -> Sample {
        if self.use_a { self.a.at() } else { self.b.at() }
    }
    fn adjust(&mut self, last: f64) {
        if self.a_ok {
            self.a.adjust(last);
        }
        if self.b_ok {
            self.b.adjust(last);
        }
    }
}

fn model_leaf(s: &[Sample], counter: bool) -> Box<dyn Model + '_> {
    Box::new(ModelLeaf {
        s,
        i: None,
        adj: 0.0,
        counter,
    })
}

fn model(rs: &[Vec<Sample>], counter: bool) -> Vec<Sample> {
    match rs {
        [] => vec![],
        [one] => one.clone(),
        [first, rest @ ..] => {
            let mut it: Box<dyn Model + '_> = model_leaf(first, counter);
            for r in rest {
                it = Box::new(ModelPair::new(it, model_leaf(r, counter)));
            }
            let mut out = Vec::new();
            while it.next() {
                out.push(it.at());
            }
            out
        }
    }
}

fn penalty(rs: &[Vec<Sample>], counter: bool) -> Vec<Sample> {
    dedup_samples(&refs(rs), Algorithm::Penalty, counter)
}

fn chain(rs: &[Vec<Sample>]) -> Vec<Sample> {
    dedup_samples(&refs(rs), Algorithm::Chain, false)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn penalty_matches_model(rs in replicas(5, 40), counter in any::<bool>()) {
        prop_assert_eq!(bits(&penalty(&rs, counter)), bits(&model(&rs, counter)));
    }

    #[test]
    fn output_strictly_increasing(rs in replicas(5, 40), counter in any::<bool>()) {
        let p = penalty(&rs, counter);
        prop_assert!(strictly_increasing(&p), "{:?}", p);
        let c = chain(&rs);
        prop_assert!(strictly_increasing(&c), "{:?}", c);
    }

    #[test]
    fn penalty_is_strictly_increasing_even_for_unsorted_input(
        rs in proptest::collection::vec(
            proptest::collection::vec((-50i64..50, any::<f64>()), 0..20), 2..5),
        counter in any::<bool>(),
    ) {
        let p = penalty(&rs, counter);
        prop_assert!(strictly_increasing(&p), "{:?}", p);
        prop_assert_eq!(bits(&p), bits(&model(&rs, counter)));
    }

    #[test]
    fn identical_replicas_give_one_replica(r in replica(60), n in 1usize..5, counter in any::<bool>()) {
        let rs = vec![r.clone(); n];
        prop_assert_eq!(bits(&penalty(&rs, counter)), bits(&r));
        prop_assert_eq!(bits(&chain(&rs)), bits(&r));
    }

    #[test]
    fn one_replica_is_returned_as_is(r in replica(60), counter in any::<bool>()) {
        let rs = vec![r.clone()];
        prop_assert_eq!(bits(&penalty(&rs, counter)), bits(&r));
        prop_assert_eq!(bits(&chain(&rs)), bits(&r));
    }

    #[test]
    fn penalty_samples_come_from_replicas(rs in replicas(5, 40)) {
        let all: Vec<(i64, u64)> = rs.iter().flat_map(|r| bits(r)).collect();
        for s in bits(&penalty(&rs, false)) {
            prop_assert!(all.contains(&s), "{:?} is in no replica", s);
        }
    }

    /// With counter adjustment a value may be raised, never lowered, and NaNs (stale markers
    /// included) keep their bits.
    #[test]
    fn counter_adjusted_samples_come_from_replicas(rs in replicas(5, 40)) {
        for (t, v) in penalty(&rs, true) {
            let found = rs.iter().flatten().any(|&(rt, rv)| {
                rt == t && (v.to_bits() == rv.to_bits() || (!rv.is_nan() && v >= rv))
            });
            prop_assert!(found, "({}, {}) matches no replica sample", t, v);
        }
    }

    /// The point of the counter adjustment: switching replicas never makes a counter go down.
    #[test]
    fn counter_adjustment_keeps_counters_monotonic(
        rs in proptest::collection::vec(counter_replica(40), 0..5),
    ) {
        let p = penalty(&rs, true);
        prop_assert!(p.windows(2).all(|w| w[0].1 <= w[1].1), "{:?}", p);
    }

    #[test]
    fn empty_replicas_are_neutral(rs in replicas(4, 30), at in 0usize..5, counter in any::<bool>()) {
        let mut with = rs.clone();
        with.insert(at.min(rs.len()), vec![]);
        prop_assert_eq!(bits(&penalty(&with, counter)), bits(&penalty(&rs, counter)));
        prop_assert_eq!(bits(&chain(&with)), bits(&chain(&rs)));
    }

    /// Chain is the sorted union of all samples, one per timestamp, the earliest replica's.
    #[test]
    fn chain_is_sorted_union(rs in replicas(5, 40)) {
        let mut union = BTreeMap::new();
        for r in &rs {
            for &(t, v) in r {
                union.entry(t).or_insert(v.to_bits());
            }
        }
        let expected: Vec<(i64, u64)> = union.into_iter().collect();
        prop_assert_eq!(bits(&chain(&rs)), expected);
    }

    /// The iterators agree with the collecting helper and are fused.
    /// Two replicas take `dedup_into`'s fast path (`penalty::pair_into`), which must give the
    /// iterator's output bit for bit, counter corrections and all.
    #[test]
    fn two_replicas_fast_path_matches_the_iterator(
        rs in prop_oneof![
            (replica(80), replica(80)).prop_map(|(a, b)| vec![a, b]),
            (counter_replica(80), counter_replica(80)).prop_map(|(a, b)| vec![a, b]),
            correlated(2, 80).prop_filter("two replicas", |r| r.len() == 2),
        ],
        counter in any::<bool>(),
    ) {
        let it = PenaltyIter::new(rs.iter().map(|r| IterCursor::new(r.iter().copied())), counter);
        let want: Vec<Sample> = it.collect();
        prop_assert_eq!(bits(&penalty(&rs, counter)), bits(&want));
    }

    #[test]
    fn iterators_agree_and_are_fused(rs in replicas(4, 30), counter in any::<bool>()) {
        let mut p = PenaltyIter::new(rs.iter().map(|r| IterCursor::new(r.iter().copied())), counter);
        let got: Vec<Sample> = p.by_ref().collect();
        prop_assert_eq!(bits(&got), bits(&penalty(&rs, counter)));
        prop_assert!(p.next().is_none());
        let mut c = ChainIter::new(rs.iter().map(|r| r.iter().copied()));
        let got: Vec<Sample> = c.by_ref().collect();
        prop_assert_eq!(bits(&got), bits(&chain(&rs)));
        prop_assert!(c.next().is_none());
    }
}

/// Penalty arithmetic saturates instead of wrapping near the ends of the timestamp range.
#[test]
fn extreme_timestamps() {
    let a = vec![(i64::MIN + 1, 1.0), (i64::MAX - 1, 2.0), (i64::MAX, 3.0)];
    let b = vec![(i64::MIN + 2, 4.0), (0, 5.0), (i64::MAX, 6.0)];
    let p = penalty(&[a.clone(), b.clone()], false);
    assert!(strictly_increasing(&p), "{p:?}");
    assert_eq!(p.first(), Some(&(i64::MIN + 1, 1.0)));
    let c = chain(&[a, b]);
    assert_eq!(
        c,
        [
            (i64::MIN + 1, 1.0),
            (i64::MIN + 2, 4.0),
            (0, 5.0),
            (i64::MAX - 1, 2.0),
            (i64::MAX, 3.0)
        ]
    );
}
