//! The penalty algorithm: Thanos' `dedupSeriesIterator` (`pkg/dedup/iter.go`).
//!
//! Two replicas `a` and `b` are merged by a pair that remembers the last emitted timestamp
//! `last_t` and one penalty per side. Each step seeks `a` to `last_t + 1 + pen_a` and `b` to
//! `last_t + 1 + pen_b`, then emits the earlier of the two (`a` on a tie). The side that was
//! not picked gets a penalty of twice the gap between the sample just emitted and the one
//! before it (5000 ms after the very first sample, when no gap is known yet); the picked side's
//! penalty drops to zero. So the replica being followed keeps being followed while its next
//! sample comes within about one scrape interval, and the other one takes over only once it
//! has a sample earlier than the followed replica's next one: after a gap of more than two
//! scrape intervals. Samples of the other replica that a penalty jumped over are consumed and
//! never emitted. When one side runs out, the other is emitted to its end.
//!
//! More than two replicas nest pairs from the left: `pair(pair(pair(r0, r1), r2), r3)`. A nested
//! pair moves to a timestamp by stepping through its own output rather than seeking its
//! replicas, so it applies its own penalties and never skips one of its gaps.
//!
//! The pairs live in one vector and the replicas in another, addressed by index, so a merge of
//! any number of replicas is two allocations when built and none per sample.

use std::iter::FusedIterator;

use crate::Sample;

/// The penalty before any scrape interval is known, in milliseconds: after the first sample,
/// the other replica is sought this far past it. Scrape intervals are several seconds, so this
/// skips that replica's copy of the same scrape (typically a few milliseconds to seconds off)
/// and little else; with sub-5 s intervals it can skip real samples, as in Thanos.
pub const INITIAL_PENALTY: i64 = 5000;

/// A forward-only position in one replica's samples, the input of [`PenaltyIter`].
///
/// It starts before the first sample. The penalty algorithm jumps over samples by seeking, so
/// a cursor that can skip cheaply (over a whole chunk by its time range, say) overrides
/// [`Cursor::seek`]; [`IterCursor`] adapts any iterator of samples.
pub trait Cursor {
    /// Moves to the next sample; false when there is none.
    fn advance(&mut self) -> bool;

    /// The current sample. Only called after [`Cursor::advance`] or [`Cursor::seek`] returned
    /// true.
    fn at(&self) -> Sample;

    /// Moves to the first sample at or after `t`; false when there is none. It never moves
    /// backwards: if the current sample is already at or after `t`, it stays. Only called
    /// once the cursor is on a sample.
    #[inline]
    fn seek(&mut self, t: i64) -> bool {
        while self.at().0 < t {
            if !self.advance() {
                return false;
            }
        }
        true
    }
}

/// A [`Cursor`] over any iterator of samples.
#[derive(Debug, Clone)]
pub struct IterCursor<I> {
    iter: I,
    cur: Sample,
}

impl<I: Iterator<Item = Sample>> IterCursor<I> {
    /// Wraps `iter`, positioned before its first sample.
    pub fn new(iter: I) -> Self {
        IterCursor {
            iter,
            cur: (i64::MIN, 0.0),
        }
    }
}

impl<I: Iterator<Item = Sample>> Cursor for IterCursor<I> {
    #[inline]
    fn advance(&mut self) -> bool {
        match self.iter.next() {
            Some(s) => {
                self.cur = s;
                true
            }
            None => false,
        }
    }

    #[inline]
    fn at(&self) -> Sample {
        self.cur
    }
}

/// One replica and the counter correction it has accumulated.
#[derive(Debug, Clone)]
struct Leaf<C> {
    cursor: C,
    /// Added to every value of this replica in counter mode (Thanos'
    /// `counterErrAdjustSeriesIterator.errAdjust`).
    err_adjust: f64,
}

impl<C: Cursor> Leaf<C> {
    #[inline]
    fn at(&self) -> Sample {
        let (t, v) = self.cursor.at();
        (t, corrected(v, self.err_adjust))
    }
}

/// Value `v` of a replica with its counter correction `adjust` (zero unless counter mode
/// adjusted the replica). A NaN stays the NaN it was, so a stale marker keeps its exact bit
/// pattern (adding to it would quiet it into an ordinary NaN, which PromQL no longer
/// recognises as staleness).
#[inline(always)]
fn corrected(v: f64, adjust: f64) -> f64 {
    if adjust == 0.0 || v.is_nan() {
        v
    } else {
        v + adjust
    }
}

/// The state of one pair (Thanos' `dedupSeriesIterator`). Pair `k` merges its left side (pair
/// `k - 1`, or replica 0 when `k == 0`) with replica `k + 1`.
#[derive(Debug, Clone, Copy)]
struct Pair {
    /// Whether each side is on a sample (Thanos' `aval`/`bval` not `ValNone`). Once false,
    /// that side is never moved again.
    a_ok: bool,
    b_ok: bool,
    /// The side the last sample came from. True before the first step, as in Thanos, which
    /// matters for the counter adjustment of the first step.
    use_a: bool,
    /// The last emitted timestamp; `i64::MIN` before the first.
    last_t: i64,
    pen_a: i64,
    pen_b: i64,
    /// The replica the last emitted sample came from, so reading it needs no walk down the
    /// pairs. Meaningless until the first sample.
    src: usize,
}

/// A node of the merge tree.
#[derive(Debug, Clone, Copy)]
enum Node {
    Leaf(usize),
    Pair(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Fresh,
    Running,
    Done,
}

/// The penalty deduplication of any number of replicas of one series; see the module
/// documentation of [`crate`] and [`PenaltyIter::new`].
///
/// The output is in strictly increasing timestamp order whatever the input, since every step
/// seeks past the last emitted timestamp. One replica is passed through unchanged, as Thanos
/// returns a lone series as it is.
#[derive(Debug, Clone)]
pub struct PenaltyIter<C> {
    leaves: Vec<Leaf<C>>,
    pairs: Vec<Pair>,
    counter: bool,
    state: State,
}

impl<C: Cursor> PenaltyIter<C> {
    /// Merges `replicas`, each positioned before its first sample.
    ///
    /// With `counter`, a replica switched to is corrected so that the merged counter does not
    /// appear to go down: when the value the merged series last had is greater than the
    /// current value of a replica, the difference is added to that replica's values from then
    /// on. Replicas that restarted at different times hold different totals; without this a
    /// switch would read as a counter reset and make `rate()` spike. As in Thanos, on every
    /// switch each side that still has samples is checked, not only the one switched to. The
    /// corrected values are new values, which is why only the querier asks for this.
    pub fn new(replicas: impl IntoIterator<Item = C>, counter: bool) -> Self {
        let leaves: Vec<Leaf<C>> = replicas
            .into_iter()
            .map(|cursor| Leaf {
                cursor,
                err_adjust: 0.0,
            })
            .collect();
        let pairs = Vec::with_capacity(leaves.len().saturating_sub(1));
        PenaltyIter {
            leaves,
            pairs,
            counter,
            state: State::Fresh,
        }
    }

    /// Builds the pairs as Thanos' constructor does: a new pair takes the first sample of
    /// each side, and for a nested pair that is its inner pair's first step. Deferred to the
    /// first `next` so that building the iterator reads nothing.
    fn start(&mut self) {
        for k in 0..self.leaves.len().saturating_sub(1) {
            let a_ok = if k == 0 {
                self.leaves[0].cursor.advance()
            } else {
                self.step(k - 1)
            };
            let b_ok = self.leaves[k + 1].cursor.advance();
            self.pairs.push(Pair {
                a_ok,
                b_ok,
                use_a: true,
                last_t: i64::MIN,
                pen_a: 0,
                pen_b: 0,
                src: 0,
            });
        }
    }

    #[inline]
    fn side_a(k: usize) -> Node {
        if k == 0 {
            Node::Leaf(0)
        } else {
            Node::Pair(k - 1)
        }
    }

    /// One step of pair `k` (Thanos' `dedupSeriesIterator.Next`); false when both sides are
    /// exhausted.
    #[inline(always)]
    fn step(&mut self, k: usize) -> bool {
        // Pair 0, the only one when there are two replicas, merges two replicas: a build of
        // the step of its own compiles to straight-line code, with no dispatch on what side
        // `a` is. Inlined into `next`, it keeps the common case free of calls.
        if k == 0 {
            self.step_impl::<true>(0)
        } else {
            self.step_impl::<false>(k)
        }
    }

    /// [`Self::step`], with `A_IS_LEAF` telling whether side `a` is replica 0 (pair 0) or the
    /// pair before. Side `b` is always replica `k + 1`.
    #[inline]
    fn step_impl<const A_IS_LEAF: bool>(&mut self, k: usize) -> bool {
        debug_assert_eq!(A_IS_LEAF, k == 0);
        let a = Self::side_a(k);
        let b = k + 1;
        let prev = self.pairs[k];

        // The value last emitted, for the counter adjustment after a switch.
        let last_v = if !self.counter {
            None
        } else if prev.use_a {
            prev.a_ok.then(|| self.at(a).1)
        } else {
            prev.b_ok.then(|| self.leaves[b].at().1)
        };

        // Advance both sides past the last timestamp plus their penalty. Saturating, where Go
        // would wrap, only changes anything for timestamps within 2^62 ms of the i64 limits;
        // nothing can follow a sample at `i64::MAX`.
        let mut p = prev;
        match p.last_t.checked_add(1) {
            Some(from) => {
                if p.a_ok {
                    let t = from.saturating_add(p.pen_a);
                    p.a_ok = if A_IS_LEAF {
                        self.leaves[0].cursor.seek(t)
                    } else {
                        self.seek_pair(k - 1, t)
                    };
                }
                if p.b_ok {
                    p.b_ok = self.leaves[b].cursor.seek(from.saturating_add(p.pen_b));
                }
            }
            None => (p.a_ok, p.b_ok) = (false, false),
        }

        let ok = if !p.a_ok {
            p.use_a = false;
            if p.b_ok {
                p.last_t = self.leaves[b].cursor.at().0;
                p.pen_b = 0;
                p.src = b;
            }
            p.b_ok
        } else {
            let (ta, src_a) = if A_IS_LEAF {
                (self.leaves[0].cursor.at().0, 0)
            } else {
                let inner = &self.pairs[k - 1];
                (inner.last_t, inner.src)
            };
            p.src = src_a;
            if !p.b_ok {
                p.use_a = true;
                p.last_t = ta;
                p.pen_a = 0;
            } else {
                let tb = self.leaves[b].cursor.at().0;
                p.use_a = ta <= tb;
                let t = if p.use_a { ta } else { tb };
                if !p.use_a {
                    p.src = b;
                }
                let penalty = if p.last_t == i64::MIN {
                    INITIAL_PENALTY
                } else {
                    t.saturating_sub(p.last_t).saturating_mul(2)
                };
                if p.use_a {
                    p.pen_a = 0;
                    p.pen_b = penalty;
                } else {
                    p.pen_a = penalty;
                    p.pen_b = 0;
                }
                p.last_t = t;
            }
            true
        };
        self.pairs[k] = p;

        if let Some(v) = last_v
            && p.use_a != prev.use_a
        {
            if p.a_ok {
                self.adjust(a, v);
            }
            if p.b_ok {
                self.adjust(Node::Leaf(b), v);
            }
        }
        ok
    }

    /// Moves pair `k` to its first sample at or after `t`, by stepping through its own output
    /// instead of seeking its replicas, so that it does not jump over its own gaps (Thanos'
    /// `dedupSeriesIterator.Seek`). Its current timestamp is the one it last emitted.
    fn seek_pair(&mut self, k: usize, t: i64) -> bool {
        while self.pairs[k].last_t < t {
            if !self.step(k) {
                return false;
            }
        }
        true
    }

    /// The current sample of `node`; a pair's is the one it last emitted.
    #[inline]
    fn at(&self, node: Node) -> Sample {
        match node {
            Node::Leaf(i) => self.leaves[i].at(),
            Node::Pair(k) => self.leaves[self.pairs[k].src].at(),
        }
    }

    /// Thanos' `adjustAtValue`: a replica whose current value is below the last emitted one
    /// did not see the end of the counter before a restart, so it is raised by the
    /// difference from now on. A pair passes the check on to both sides that have samples.
    fn adjust(&mut self, node: Node, last_v: f64) {
        match node {
            Node::Leaf(i) => {
                let v = self.leaves[i].at().1;
                if last_v > v {
                    self.leaves[i].err_adjust += last_v - v;
                }
            }
            Node::Pair(k) => {
                let p = self.pairs[k];
                if p.a_ok {
                    self.adjust(Self::side_a(k), last_v);
                }
                if p.b_ok {
                    self.adjust(Node::Leaf(k + 1), last_v);
                }
            }
        }
    }
}

impl<C: Cursor> Iterator for PenaltyIter<C> {
    type Item = Sample;

    #[inline]
    fn next(&mut self) -> Option<Sample> {
        match self.state {
            State::Running => {}
            State::Done => return None,
            State::Fresh => {
                self.start();
                self.state = State::Running;
            }
        }
        match self.leaves.len() {
            0 => {}
            // A lone replica is returned as it is, with no seeking and no adjustment.
            1 => {
                if self.leaves[0].cursor.advance() {
                    return Some(self.leaves[0].cursor.at());
                }
            }
            n => {
                if self.step(n - 2) {
                    return Some(self.at(Node::Pair(n - 2)));
                }
            }
        }
        self.state = State::Done;
        None
    }
}

impl<C: Cursor> FusedIterator for PenaltyIter<C> {}

/// One replica's samples as [`pair_into`] reads them: by position, only forward.
///
/// Slices are one kind; the querier gives another that decodes a replica's chunks only when
/// a position in them is read, so that the replica not being followed, which is mostly
/// sought past (see [`pair_into`]'s runs), is mostly never decoded.
pub trait Replica {
    /// The sample at position `i`, `None` past the end. Positions are read in increasing
    /// order, apart from re-reading the current one.
    fn at(&mut self, i: usize) -> Option<Sample>;

    /// Moves position `i` to the first sample at or after `t`, never backwards, and returns
    /// it; `None` when there is none. A source may skip positions it knows are before `t`
    /// without producing them.
    #[inline(always)]
    fn seek(&mut self, i: &mut usize, t: i64) -> Option<Sample> {
        loop {
            let s = self.at(*i)?;
            if s.0 >= t {
                return Some(s);
            }
            *i += 1;
        }
    }
}

impl Replica for &[Sample] {
    #[inline(always)]
    fn at(&mut self, i: usize) -> Option<Sample> {
        self.get(i).copied()
    }
}

/// The penalty algorithm for exactly two replicas, appending to `out`: the steps of
/// [`PenaltyIter`] with pair 0's state in locals and each replica a position in a
/// [`Replica`], so a sample costs a few compares and a push. Through the iterator (an enum of
/// algorithms, cursors over slice iterators, one `Option` per sample into `Vec::extend`) the
/// same merge took 10.5 ns per output sample, here 3.1 with the runs below (counter mode:
/// 18.1, here 3.2; `examples/dedup_cpu.rs`); two replicas are what an HA pair gives the
/// querier for every series. The output is the iterator's, bit for bit (`tests/properties.rs`
/// checks both against a model of Thanos' pairs, and against each other).
pub fn pair_into<A: Replica, B: Replica>(mut a: A, mut b: B, counter: bool, out: &mut Vec<Sample>) {
    let (mut ia, mut ib) = (0usize, 0usize);
    // Each replica's current sample, raw (`None` once it is exhausted: Thanos' `ValNone`).
    let mut ca = a.at(0);
    let mut cb = b.at(0);
    let mut use_a = true;
    let mut last_t = i64::MIN;
    let (mut pen_a, mut pen_b) = (0i64, 0i64);
    let (mut adj_a, mut adj_b) = (0.0f64, 0.0f64);
    loop {
        let prev_use_a = use_a;
        let last_v = if !counter {
            None
        } else if use_a {
            ca.map(|s| corrected(s.1, adj_a))
        } else {
            cb.map(|s| corrected(s.1, adj_b))
        };
        match last_t.checked_add(1) {
            Some(from) => {
                if ca.is_some() {
                    ca = a.seek(&mut ia, from.saturating_add(pen_a));
                }
                if cb.is_some() {
                    cb = b.seek(&mut ib, from.saturating_add(pen_b));
                }
            }
            None => (ca, cb) = (None, None),
        }
        let from_a = match (ca, cb) {
            (None, None) => return,
            (None, Some(sb)) => {
                use_a = false;
                last_t = sb.0;
                pen_b = 0;
                false
            }
            (Some(sa), None) => {
                use_a = true;
                last_t = sa.0;
                pen_a = 0;
                true
            }
            (Some(sa), Some(sb)) => {
                let (ta, tb) = (sa.0, sb.0);
                use_a = ta <= tb;
                let t = if use_a { ta } else { tb };
                let penalty = if last_t == i64::MIN {
                    INITIAL_PENALTY
                } else {
                    t.saturating_sub(last_t).saturating_mul(2)
                };
                if use_a {
                    pen_a = 0;
                    pen_b = penalty;
                } else {
                    pen_a = penalty;
                    pen_b = 0;
                }
                last_t = t;
                use_a
            }
        };
        if let Some(v) = last_v
            && use_a != prev_use_a
        {
            if let Some(sa) = ca {
                let cur = corrected(sa.1, adj_a);
                if v > cur {
                    adj_a += v - cur;
                }
            }
            if let Some(sb) = cb {
                let cur = corrected(sb.1, adj_b);
                if v > cur {
                    adj_b += v - cur;
                }
            }
        }
        // The replica just followed keeps being followed, without a look at the other, for
        // as long as each of its next samples comes within the other's penalty: that one is
        // then sought past it whatever it holds. Those steps are taken here in one run; the
        // other replica is sought once, to the furthest of the runs' seek targets, which is
        // where the steps would have left it (seeks never move back).
        if from_a {
            let sa = ca.expect("replica a is on a sample");
            out.push((sa.0, corrected(sa.1, adj_a)));
            let target = run(
                &mut a,
                &mut ia,
                &mut ca,
                adj_a,
                &mut last_t,
                &mut pen_b,
                out,
            );
            if let (Some(t), Some(_)) = (target, cb) {
                cb = b.seek(&mut ib, t);
            }
        } else {
            let sb = cb.expect("replica b is on a sample");
            out.push((sb.0, corrected(sb.1, adj_b)));
            let target = run(
                &mut b,
                &mut ib,
                &mut cb,
                adj_b,
                &mut last_t,
                &mut pen_a,
                out,
            );
            if let (Some(t), Some(_)) = (target, ca) {
                ca = a.seek(&mut ia, t);
            }
        }
    }
}

/// One run of [`pair_into`]: the steps that follow replica `x` (whose sample `cx`, at `ix`,
/// was just emitted, at `last_t`) while its next sample comes after the previous and within
/// `pen_y` of it. Each such step would seek the other replica to `last_t + 1 + pen_y`,
/// strictly beyond that sample, so `x` wins it whichever side it is on (a tie goes to
/// replica 0); `pen_y` becomes twice the step. Returns the furthest of the steps' seek
/// targets for the other replica, which the caller seeks once.
#[inline(always)]
fn run<X: Replica>(
    x: &mut X,
    ix: &mut usize,
    cx: &mut Option<Sample>,
    adj_x: f64,
    last_t: &mut i64,
    pen_y: &mut i64,
    out: &mut Vec<Sample>,
) -> Option<i64> {
    let mut target = None;
    while let Some((t, v)) = x.at(*ix + 1) {
        let prev = *last_t;
        // Where `y` would be sought; a target the step would have to saturate is left to the
        // step itself.
        let Some(t_y) = prev.checked_add(1).and_then(|f| f.checked_add(*pen_y)) else {
            break;
        };
        if t <= prev || t >= t_y {
            break;
        }
        target = Some(target.map_or(t_y, |m: i64| m.max(t_y)));
        *ix += 1;
        *cx = Some((t, v));
        *pen_y = t.saturating_sub(prev).saturating_mul(2);
        *last_t = t;
        out.push((t, corrected(v, adj_x)));
    }
    target
}
