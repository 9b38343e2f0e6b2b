//! Set operations on postings lists: sorted, duplicate-free `u32` series refs.
//!
//! Intersection is the core of every selector with more than one matcher. Lists differ in
//! length by orders of magnitude (`job="api"` versus `pod="x-1"`), so the intersection
//! gallops through the longer list (exponential then binary search) when the ratio is large
//! and falls back to a linear merge when the lists are comparable.

/// Below this length ratio a linear merge beats galloping.
const GALLOP_RATIO: usize = 16;

/// Refs present in both `a` and `b`.
pub fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    if small.is_empty() {
        return out;
    }
    if large.len() / small.len() >= GALLOP_RATIO {
        let mut rest = large;
        for &x in small {
            let i = gallop(rest, x);
            if i == rest.len() {
                break;
            }
            if rest[i] == x {
                out.push(x);
                rest = &rest[i + 1..];
            } else {
                rest = &rest[i..];
            }
        }
    } else {
        let (mut i, mut j) = (0, 0);
        while i < small.len() && j < large.len() {
            let (x, y) = (small[i], large[j]);
            // Branch-light merge: advance whichever side is behind, both on a match.
            if x == y {
                out.push(x);
            }
            i += usize::from(x <= y);
            j += usize::from(y <= x);
        }
    }
    out
}

/// Index of the first element `>= x` in a sorted slice, searching exponentially from the
/// front: O(log d) where d is the distance to the answer.
#[inline]
fn gallop(s: &[u32], x: u32) -> usize {
    let mut bound = 1;
    while bound < s.len() && s[bound - 1] < x {
        bound *= 2;
    }
    let lo = bound / 2;
    let hi = bound.min(s.len());
    lo + s[lo..hi].partition_point(|&v| v < x)
}

/// Refs present in every list. Starts from the shortest list so the working set only shrinks.
pub fn intersect_many(mut lists: Vec<Vec<u32>>) -> Vec<u32> {
    if lists.is_empty() {
        return Vec::new();
    }
    lists.sort_by_key(Vec::len);
    let mut iter = lists.into_iter();
    let mut acc = iter.next().expect("non-empty");
    for l in iter {
        if acc.is_empty() {
            break;
        }
        acc = intersect(&acc, &l);
    }
    acc
}

/// Refs present in at least one list, sorted and deduplicated.
pub fn union_many(mut lists: Vec<Vec<u32>>) -> Vec<u32> {
    lists.retain(|l| !l.is_empty());
    match lists.len() {
        0 => Vec::new(),
        1 => lists.pop().expect("one list"),
        2 => {
            let (a, b) = (&lists[0], &lists[1]);
            let mut out = Vec::with_capacity(a.len() + b.len());
            let (mut i, mut j) = (0, 0);
            while i < a.len() && j < b.len() {
                let (x, y) = (a[i], b[j]);
                out.push(x.min(y));
                i += usize::from(x <= y);
                j += usize::from(y <= x);
            }
            out.extend_from_slice(&a[i..]);
            out.extend_from_slice(&b[j..]);
            out
        }
        _ => {
            let total: usize = lists.iter().map(Vec::len).sum();
            let lo = lists.iter().map(|l| l[0]).min().expect("non-empty lists");
            let hi = lists
                .iter()
                .map(|l| l[l.len() - 1])
                .max()
                .expect("non-empty lists");
            let span = (hi - lo) as usize + 1;
            // Series refs of one index are dense (offset / 16 of consecutive entries), so a
            // bitmap over their span is usually small: set a bit per ref, then read the bits
            // back in order. Linear, where sorting the concatenation is O(n log n).
            if span / 64 <= total {
                union_bitmap(&lists, lo, span, total)
            } else {
                let mut out = Vec::with_capacity(total);
                for l in &lists {
                    out.extend_from_slice(l);
                }
                out.sort_unstable();
                out.dedup();
                out
            }
        }
    }
}

fn union_bitmap(lists: &[Vec<u32>], lo: u32, span: usize, total: usize) -> Vec<u32> {
    let mut words = vec![0u64; span.div_ceil(64)];
    for l in lists {
        for &r in l {
            let i = (r - lo) as usize;
            words[i / 64] |= 1 << (i % 64);
        }
    }
    let mut out = Vec::with_capacity(total);
    for (wi, &w) in words.iter().enumerate() {
        let mut w = w;
        while w != 0 {
            let bit = w.trailing_zeros();
            out.push(lo + (wi * 64) as u32 + bit);
            w &= w - 1;
        }
    }
    out
}

/// Refs in `a` that are not in `b`.
pub fn difference(a: &[u32], b: &[u32]) -> Vec<u32> {
    if b.is_empty() {
        return a.to_vec();
    }
    let mut out = Vec::with_capacity(a.len());
    if b.len() / a.len().max(1) >= GALLOP_RATIO {
        let mut rest = b;
        for &x in a {
            let i = gallop(rest, x);
            rest = &rest[i..];
            if rest.first() != Some(&x) {
                out.push(x);
            }
        }
    } else {
        let mut j = 0;
        for &x in a {
            while j < b.len() && b[j] < x {
                j += 1;
            }
            if j == b.len() || b[j] != x {
                out.push(x);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn set(v: &[u32]) -> BTreeSet<u32> {
        v.iter().copied().collect()
    }

    proptest::proptest! {
        #[test]
        fn ops_match_set_semantics(
            a in proptest::collection::btree_set(0u32..5000, 0..400),
            b in proptest::collection::btree_set(0u32..5000, 0..40),
            c in proptest::collection::btree_set(0u32..500, 0..300),
        ) {
            let (a, b, c): (Vec<u32>, Vec<u32>, Vec<u32>) =
                (a.into_iter().collect(), b.into_iter().collect(), c.into_iter().collect());
            let want: Vec<u32> = set(&a).intersection(&set(&b)).copied().collect();
            proptest::prop_assert_eq!(intersect(&a, &b), want.clone());
            proptest::prop_assert_eq!(intersect(&b, &a), want);
            let want: Vec<u32> = set(&a).difference(&set(&b)).copied().collect();
            proptest::prop_assert_eq!(difference(&a, &b), want);
            let want: Vec<u32> = set(&b).difference(&set(&a)).copied().collect();
            proptest::prop_assert_eq!(difference(&b, &a), want);
            let want: Vec<u32> = set(&a).union(&set(&b)).chain(set(&c).iter()).copied()
                .collect::<BTreeSet<_>>().into_iter().collect();
            proptest::prop_assert_eq!(union_many(vec![a.clone(), b.clone(), c.clone()]), want);
            let want: Vec<u32> = set(&a).union(&set(&c)).copied().collect();
            proptest::prop_assert_eq!(union_many(vec![a.clone(), c.clone()]), want);
            let want: Vec<u32> = set(&a).intersection(&set(&b)).copied()
                .collect::<BTreeSet<_>>().intersection(&set(&c)).copied().collect();
            proptest::prop_assert_eq!(intersect_many(vec![a, b, c]), want);
        }
    }

    #[test]
    fn union_of_sparse_and_dense_lists() {
        // Sparse: the span is far larger than the refs, so the sort path is taken.
        let sparse = vec![vec![1, u32::MAX - 1], vec![7, 1 << 30], vec![1, 8]];
        assert_eq!(union_many(sparse), vec![1, 7, 8, 1 << 30, u32::MAX - 1]);
        // Dense: the bitmap path, including refs at word boundaries.
        let dense = vec![
            vec![100, 163, 164, 300],
            vec![99, 164, 227],
            vec![100, 228, 300],
        ];
        assert_eq!(union_many(dense), vec![99, 100, 163, 164, 227, 228, 300]);
    }

    #[test]
    fn gallop_finds_lower_bound() {
        let s: Vec<u32> = (0..100).map(|i| i * 2).collect();
        for x in 0..210 {
            assert_eq!(gallop(&s, x), s.partition_point(|&v| v < x), "x={x}");
        }
        assert_eq!(gallop(&[], 5), 0);
    }
}
