//! Which blocks of one stream to compact next: Thanos' planner, which is Prometheus' TSDB
//! planner without the filesystem (`pkg/compact/planner.go`, `tsdb/compact.go`).
//!
//! A pure function of the stream's metas, so it is tested exhaustively and can be replayed to
//! compute how much work is left (`thanos_compact_todo_*`).
//!
//! The rules, in order:
//! 1. Overlapping blocks are selected first (only reached with vertical compaction; without
//!    it the group halts before planning).
//! 2. Otherwise the newest block (highest min time) is left out: it was just uploaded, and
//!    keeping it gives operators a block's worth of time to act on it.
//! 3. For each range after the first (2h → **8h** → **2d** → **14d**), blocks are split into
//!    windows aligned to the range; a window with at least two blocks is chosen if it spans
//!    the whole range or lies entirely before the newest block (so a window is not compacted
//!    while another block could still arrive in it). Blocks whose last compaction failed
//!    disqualify their window. Blocks marked no-compact are cut out of the window without
//!    leaving gaps: the longest run of at least two blocks before or after them is taken.
//! 4. Failing that, a long block (at least the middle range) with more than 5% tombstones is
//!    rewritten alone.

use std::collections::HashSet;

use strata_tsdb::BlockMeta;
use ulid::Ulid;

/// Thanos' default compaction ranges: 2h, 8h, 2d, 14d (1h is first and only aligns input).
pub const DEFAULT_RANGES_MS: [i64; 5] = [
    3_600_000,
    2 * 3_600_000,
    8 * 3_600_000,
    2 * 86_400_000,
    14 * 86_400_000,
];

/// The blocks to compact into one, or an empty list when there is nothing to do.
/// `metas` must be one stream's blocks sorted by min time.
pub fn plan<'a>(
    ranges: &[i64],
    metas: &[&'a BlockMeta],
    no_compact: &HashSet<Ulid>,
) -> Vec<&'a BlockMeta> {
    if metas.is_empty() {
        return Vec::new();
    }
    let not_excluded: Vec<&BlockMeta> = metas
        .iter()
        .copied()
        .filter(|m| !no_compact.contains(&m.ulid))
        .collect();
    let overlapping = select_overlapping(&not_excluded);
    if !overlapping.is_empty() {
        return overlapping;
    }
    // Leave out the newest block.
    let newest = metas[metas.len() - 1];
    let mut candidates_not_excluded = not_excluded.clone();
    if !no_compact.contains(&newest.ulid) {
        candidates_not_excluded.pop();
    }
    let candidates = &metas[..metas.len() - 1];
    let selected = select_by_range(ranges, no_compact, candidates);
    if !selected.is_empty() {
        return selected;
    }
    // A long block with many deletions is rewritten alone.
    let mid = ranges.get(ranges.len() / 2).copied().unwrap_or(i64::MAX);
    for m in candidates_not_excluded.iter().rev() {
        if m.max_time - m.min_time < mid {
            break;
        }
        if m.stats.num_tombstones as f64 / (m.stats.num_series + 1) as f64 > 0.05 {
            return vec![m];
        }
    }
    Vec::new()
}

/// All blocks in the first run of overlapping ones, in input order.
pub fn select_overlapping<'a>(metas: &[&'a BlockMeta]) -> Vec<&'a BlockMeta> {
    let mut out: Vec<&BlockMeta> = Vec::new();
    let Some(first) = metas.first() else {
        return out;
    };
    let mut max_t = first.max_time;
    for (i, m) in metas.iter().enumerate().skip(1) {
        if m.min_time < max_t {
            if out.is_empty() {
                out.push(metas[i - 1]);
            }
            out.push(m);
        } else if !out.is_empty() {
            break;
        }
        max_t = max_t.max(m.max_time);
    }
    out
}

fn select_by_range<'a>(
    ranges: &[i64],
    no_compact: &HashSet<Ulid>,
    metas: &[&'a BlockMeta],
) -> Vec<&'a BlockMeta> {
    if ranges.len() < 2 || metas.is_empty() {
        return Vec::new();
    }
    let high_time = metas[metas.len() - 1].min_time;
    for &range in &ranges[1..] {
        'windows: for window in split_by_range(metas, range) {
            if window.iter().any(|m| m.compaction.failed) {
                continue 'windows;
            }
            if window.len() < 2 {
                continue;
            }
            let mint = window[0].min_time;
            let maxt = window[window.len() - 1].max_time;
            if maxt - mint != range && maxt > high_time {
                continue;
            }
            // Cut out no-compact blocks without creating gaps.
            let mut start = 0;
            for (i, m) in window.iter().enumerate() {
                if !no_compact.contains(&m.ulid) {
                    continue;
                }
                if i - start > 1 {
                    return window[start..i].to_vec();
                }
                start = i + 1;
            }
            if window.len() - start > 1 {
                return window[start..].to_vec();
            }
        }
    }
    Vec::new()
}

/// Splits blocks into windows aligned to `range`: each window holds the consecutive blocks
/// that fit entirely inside `[t0, t0 + range]`; a block too big for its window is skipped.
pub fn split_by_range<'a>(metas: &[&'a BlockMeta], range: i64) -> Vec<Vec<&'a BlockMeta>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < metas.len() {
        let m = metas[i];
        let t0 = m.min_time.div_euclid(range) * range;
        if m.max_time > t0 + range {
            i += 1;
            continue;
        }
        let mut window = Vec::new();
        while i < metas.len() && metas[i].max_time <= t0 + range {
            window.push(metas[i]);
            i += 1;
        }
        if !window.is_empty() {
            out.push(window);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn meta(min: i64, max: i64) -> BlockMeta {
        BlockMeta::new(Ulid::generate(), min, max)
    }

    fn ids(v: &[&BlockMeta]) -> Vec<(i64, i64)> {
        v.iter().map(|m| (m.min_time, m.max_time)).collect()
    }

    fn run(blocks: &[BlockMeta], no_compact: &[usize]) -> Vec<(i64, i64)> {
        let refs: Vec<&BlockMeta> = blocks.iter().collect();
        let nc: HashSet<Ulid> = no_compact.iter().map(|&i| blocks[i].ulid).collect();
        ids(&plan(&DEFAULT_RANGES_MS, &refs, &nc))
    }

    #[test]
    fn four_2h_blocks_make_an_8h_block_once_the_next_one_exists() {
        let b: Vec<BlockMeta> = (0..4).map(|i| meta(i * 2 * H, (i + 1) * 2 * H)).collect();
        // The newest block is left out, so three 2h blocks inside [0, 8h) are not enough:
        // another could still arrive in the window.
        assert_eq!(run(&b, &[]), Vec::<(i64, i64)>::new());
        let mut b5 = b.clone();
        b5.push(meta(8 * H, 10 * H));
        assert_eq!(
            run(&b5, &[]),
            vec![(0, 2 * H), (2 * H, 4 * H), (4 * H, 6 * H), (6 * H, 8 * H)]
        );
    }

    #[test]
    fn a_window_with_gaps_waits_until_a_newer_block_passes_it() {
        // The newest block is left out, which makes 4h-6h the newest candidate: the window
        // [0, 8h) could still receive a block, so it waits.
        let b = vec![meta(0, 2 * H), meta(4 * H, 6 * H), meta(16 * H, 18 * H)];
        assert_eq!(run(&b, &[]), Vec::<(i64, i64)>::new());
        // Once a candidate starts after the window, the window is compacted, gap and all.
        let b = vec![
            meta(0, 2 * H),
            meta(4 * H, 6 * H),
            meta(10 * H, 12 * H),
            meta(16 * H, 18 * H),
        ];
        assert_eq!(run(&b, &[]), vec![(0, 2 * H), (4 * H, 6 * H)]);
    }

    #[test]
    fn overlapping_blocks_come_first() {
        let b = vec![
            meta(0, 2 * H),
            meta(H, 3 * H),
            meta(4 * H, 6 * H),
            meta(5 * H, 7 * H),
        ];
        assert_eq!(run(&b, &[]), vec![(0, 2 * H), (H, 3 * H)]);
    }

    #[test]
    fn no_compact_marks_split_the_window_without_gaps() {
        let mut b: Vec<BlockMeta> = (0..4).map(|i| meta(i * 2 * H, (i + 1) * 2 * H)).collect();
        b.push(meta(8 * H, 10 * H));
        // Marking the second block leaves [0,2h) alone and [4h,8h) as the run to compact.
        assert_eq!(run(&b, &[1]), vec![(4 * H, 6 * H), (6 * H, 8 * H)]);
        // Marking the third leaves [0,4h).
        assert_eq!(run(&b, &[2]), vec![(0, 2 * H), (2 * H, 4 * H)]);
    }

    #[test]
    fn failed_compactions_disqualify_their_window() {
        let mut b: Vec<BlockMeta> = (0..4).map(|i| meta(i * 2 * H, (i + 1) * 2 * H)).collect();
        b.push(meta(8 * H, 10 * H));
        b[2].compaction.failed = true;
        assert_eq!(run(&b, &[]), Vec::<(i64, i64)>::new());
    }

    #[test]
    fn larger_levels() {
        // Six 8h blocks fill 2d: they become one 2d block once a newer block exists.
        let mut b: Vec<BlockMeta> = (0..6).map(|i| meta(i * 8 * H, (i + 1) * 8 * H)).collect();
        b.push(meta(48 * H, 50 * H));
        let got = run(&b, &[]);
        assert_eq!(got.len(), 6);
        assert_eq!((got[0].0, got[5].1), (0, 48 * H));
    }

    #[test]
    fn split_by_range_matches_the_documented_example() {
        let b = [meta(0, 10), meta(10, 20), meta(50, 60), meta(90, 100)];
        let refs: Vec<&BlockMeta> = b.iter().collect();
        let parts: Vec<Vec<(i64, i64)>> =
            split_by_range(&refs, 30).iter().map(|p| ids(p)).collect();
        assert_eq!(
            parts,
            vec![vec![(0, 10), (10, 20)], vec![(50, 60)], vec![(90, 100)]]
        );
    }

    #[test]
    fn tombstone_heavy_long_block_is_rewritten() {
        let mut b = vec![meta(0, 14 * 24 * H), meta(14 * 24 * H, 14 * 24 * H + 2 * H)];
        b[0].stats.num_series = 100;
        b[0].stats.num_tombstones = 10;
        assert_eq!(run(&b, &[]), vec![(0, 14 * 24 * H)]);
    }
}
