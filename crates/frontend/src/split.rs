//! Cutting a range query into parts that the querier answers independently and that join
//! back into the answer of the whole.
//!
//! A range query is evaluated at `start`, `start + step`, … up to `end`, each step on its
//! own, so any cut between two steps gives parts whose answers, joined, are the whole's
//! (except for `@ start()` / `@ end()`, which name the range itself: such queries are not
//! cut, see [`uses_range_bounds`]). Parts end at the last step before a multiple of the
//! split interval, so a given day of a dashboard's query is always the same part, whatever
//! range it was asked within: that is what lets the results cache reuse it.

/// Moves `start` and `end` down to multiples of `step` (`--query-range.align-range-with-step`),
/// as Grafana does by itself: then the steps of overlapping queries coincide and cached
/// answers can be reused.
pub fn align(start: i64, end: i64, step: i64) -> (i64, i64) {
    if step <= 0 {
        return (start, end);
    }
    (start.div_euclid(step) * step, end.div_euclid(step) * step)
}

/// The parts of `[start, end]` at `step` cut at multiples of `interval` (milliseconds; 0 or
/// less: one part). Every part starts on the query's own steps; a part that would hold only
/// the final step is joined to the one before.
pub fn split(start: i64, end: i64, step: i64, interval: i64) -> Vec<(i64, i64)> {
    if interval <= 0 || step <= 0 || end <= start {
        return vec![(start, end)];
    }
    let mut parts = Vec::new();
    let mut s = start;
    while s <= end {
        let mut e = last_step_before_next_interval(s, step, interval);
        if e.saturating_add(step) >= end {
            e = end;
        }
        parts.push((s, e));
        match e.checked_add(step) {
            Some(next) => s = next,
            None => break,
        }
    }
    parts
}

/// The last of the steps `t`, `t + step`, … that lies before the next multiple of
/// `interval` after `t`.
fn last_step_before_next_interval(t: i64, step: i64, interval: i64) -> i64 {
    let next = (t.div_euclid(interval) + 1).saturating_mul(interval);
    let last = next.saturating_sub(next.saturating_sub(t).rem_euclid(step));
    if last == next { last - step } else { last }
}

/// The split interval a part lies in (its number since the epoch): part of its cache key.
pub fn interval_number(start: i64, interval: i64) -> i64 {
    if interval <= 0 {
        0
    } else {
        start.div_euclid(interval)
    }
}

/// Whether `query` may use the `@ start()` or `@ end()` modifier, whose value is the range
/// of the request: a part of the range would evaluate it at its own bounds. A look at the
/// text, so a label value that reads like one also counts (that query is then only not
/// cut, which is always correct).
pub fn uses_range_bounds(query: &str) -> bool {
    let b = query.as_bytes();
    let mut i = 0;
    while let Some(at) = b[i..].iter().position(|&c| c == b'@') {
        let mut j = i + at + 1;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let rest = &query[j..];
        for word in ["start", "end"] {
            if let Some(after) = rest.strip_prefix(word)
                && after.trim_start().starts_with('(')
            {
                return true;
            }
        }
        i = j;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: i64 = 3_600_000;
    const DAY: i64 = 24 * H;

    #[test]
    fn align_moves_both_ends_down_to_the_step() {
        assert_eq!(align(61_000, 3_599_999, 60_000), (60_000, 3_540_000));
        assert_eq!(align(-1, 0, 10), (-10, 0));
    }

    #[test]
    fn parts_end_before_each_day_on_the_querys_steps() {
        // Two days and a bit, 1 h steps starting at 23:00 of day 0.
        let parts = split(23 * H, 2 * DAY + 2 * H, H, DAY);
        assert_eq!(
            parts,
            vec![
                (23 * H, 23 * H),
                (DAY, DAY + 23 * H),
                (2 * DAY, 2 * DAY + 2 * H)
            ]
        );
        // Steps not on the interval's grid: 7 min steps.
        let parts = split(0, DAY + H, 7 * 60_000, DAY);
        assert_eq!(parts[0].0, 0);
        assert!(parts[0].1 < DAY && parts[0].1 + 7 * 60_000 >= DAY);
        assert_eq!(parts[1].0, parts[0].1 + 7 * 60_000);
    }

    #[test]
    fn a_part_with_only_the_last_step_is_joined_to_the_one_before() {
        assert_eq!(split(0, DAY, H, DAY), vec![(0, DAY)]);
        assert_eq!(split(5, 5, H, DAY), vec![(5, 5)]);
        assert_eq!(split(0, 10 * DAY, H, 0), vec![(0, 10 * DAY)]);
    }

    proptest! {
        #[test]
        fn parts_cover_every_step_once(
            start in -3 * DAY..3 * DAY,
            len in 0i64..5 * DAY,
            step in 1_000i64..4 * H,
            interval in prop_oneof![Just(H), Just(DAY), 60_000i64..2 * DAY],
        ) {
            let end = start + len;
            let parts = split(start, end, step, interval);
            let mut steps = Vec::new();
            for (s, e) in &parts {
                prop_assert!(s <= e);
                prop_assert_eq!((s - start).rem_euclid(step), 0);
                let mut t = *s;
                while t <= *e { steps.push(t); t += step; }
                // A part never crosses a multiple of the interval, unless it is the last
                // part holding the final step.
                if *e != end {
                    prop_assert_eq!(s.div_euclid(interval), e.div_euclid(interval));
                }
            }
            let want: Vec<i64> = (0..).map(|k| start + k * step).take_while(|t| *t <= end).collect();
            prop_assert_eq!(steps, want);
        }
    }

    #[test]
    fn range_bound_modifiers_are_found() {
        assert!(uses_range_bounds("up @ start()"));
        assert!(uses_range_bounds("rate(x[5m] @ end ( ))"));
        assert!(uses_range_bounds("x @ 100 + y @end()"));
        assert!(!uses_range_bounds("x @ 100"));
        assert!(!uses_range_bounds("sum(rate(x[5m]))"));
        assert!(!uses_range_bounds("x{a=\"@\"}"));
    }
}
