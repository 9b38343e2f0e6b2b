//! The index cache's byte budget counts what its items really cost in memory (keys, values,
//! the map and recency bookkeeping), measured with a counting allocator, so
//! `--index-cache-size` bounds resident memory and not just payload bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::Bytes;
use strata_store::cache::{CacheKey, IndexCache, IndexCacheConfig};
use strata_store::chunk_cache::{ChunkCache, ChunkCacheConfig, SubrangeKey};
use ulid::Ulid;

/// Live heap bytes of this test binary.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Fills a cache with `n` items the way queries do (a copied body, then a hit that shares
/// it) and returns (heap bytes used, bytes the cache accounts).
fn fill(n: u32, body: usize, postings: bool) -> (isize, u64) {
    let cache = IndexCache::new(IndexCacheConfig::with_size(1 << 40), None);
    let block = Ulid::from_parts(1, 2);
    let before = LIVE.load(Ordering::Relaxed);
    for id in 0..n {
        let key = if postings {
            CacheKey::Postings {
                block,
                name: "instance".into(),
                value: format!("i-{id}"),
            }
        } else {
            CacheKey::Series { block, id }
        };
        cache.put(key.clone(), Bytes::copy_from_slice(&vec![7u8; body]));
        drop(cache.get(&key));
    }
    let used = LIVE.load(Ordering::Relaxed) - before;
    let accounted = cache.size();
    drop(cache);
    (used, accounted)
}

/// One test: the counter is process-wide, so measurements must not overlap.
#[test]
fn the_cache_budget_covers_the_memory_it_uses() {
    items_cost_what_they_are_charged();
    a_churning_cache_stays_within_its_budget();
    a_churning_chunk_cache_stays_within_its_budget();
}

fn items_cost_what_they_are_charged() {
    // 58 000 items leave the hash table least full (just past a doubling), 100 000 fuller.
    for (n, body, postings) in [
        (100_000, 60, false),
        (58_000, 60, false),
        (58_000, 200, false),
        (58_000, 40, true),
    ] {
        let (used, accounted) = fill(n, body, postings);
        eprintln!(
            "{n} items, body {body}, postings {postings}: {:.0} B/item used, {:.0} B/item accounted",
            used as f64 / f64::from(n),
            accounted as f64 / f64::from(n)
        );
        assert!(
            accounted as isize >= used,
            "{body}-byte items: cache accounts {accounted} bytes but uses {used}"
        );
    }
}

/// Under churn (evictions), hashbrown's table settles at 2.3-4.6 buckets per item, because
/// deleted slots make it grow rather than rehash in place once it is half full; the budget
/// has to cover that too.
fn a_churning_cache_stays_within_its_budget() {
    for (budget, body) in [(4u64 << 20, 60usize), (4 << 20, 300)] {
        let block = Ulid::from_parts(1, 2);
        let before = LIVE.load(Ordering::Relaxed);
        let cache = IndexCache::new(IndexCacheConfig::with_size(budget), None);
        let mut peak = 0isize;
        for id in 0..(8 * budget as u32 / body as u32) {
            let key = CacheKey::Series { block, id };
            cache.put(key.clone(), Bytes::copy_from_slice(&vec![7u8; body]));
            drop(cache.get(&key));
            if id % 64 == 0 {
                peak = peak.max(LIVE.load(Ordering::Relaxed) - before);
            }
        }
        peak = peak.max(LIVE.load(Ordering::Relaxed) - before);
        eprintln!(
            "budget {budget}, {body}-byte items: peak {peak} bytes ({:.2}x), {} items",
            peak as f64 / budget as f64,
            cache.len()
        );
        assert!(
            peak <= budget as isize,
            "a {budget}-byte cache of {body}-byte items peaked at {peak} bytes"
        );
    }
}

/// The caching bucket's chunk cache under churn: subranges stored as the gateway stores them
/// (slices of one read each), looked up again, evicted; its heap use stays within
/// `max_size`, bookkeeping included. Small subranges are the hard case for the per-entry
/// charge.
fn a_churning_chunk_cache_stays_within_its_budget() {
    for (budget, subrange) in [(4u64 << 20, 100usize), (4 << 20, 16_000)] {
        let block = Ulid::from_parts(1, 2);
        let before = LIVE.load(Ordering::Relaxed);
        let cache = ChunkCache::new(
            ChunkCacheConfig {
                max_size: budget,
                max_item_size: budget,
                subrange_size: subrange as u64,
                ..ChunkCacheConfig::default()
            },
            None,
        );
        let mut peak = 0isize;
        let per_read = 8;
        let reads = 8 * budget / (subrange * per_read) as u64;
        for r in 0..reads {
            let data = Bytes::from(vec![7u8; subrange * per_read]);
            let items: Vec<(SubrangeKey, Bytes)> = (0..per_read)
                .map(|k| {
                    let key = SubrangeKey {
                        block,
                        segment: 1,
                        index: r * per_read as u64 + k as u64,
                    };
                    (key, data.slice(k * subrange..(k + 1) * subrange))
                })
                .collect();
            drop(data);
            cache.store(items, (subrange * per_read) as u64);
            let first = r * per_read as u64;
            drop(cache.lookup(block, 1, &[first, first + 1], 2 * subrange as u64));
            if r % 16 == 0 {
                peak = peak.max(LIVE.load(Ordering::Relaxed) - before);
            }
        }
        peak = peak.max(LIVE.load(Ordering::Relaxed) - before);
        eprintln!(
            "chunk cache budget {budget}, {subrange}-byte subranges: peak {peak} bytes ({:.2}x), {} items",
            peak as f64 / budget as f64,
            cache.len()
        );
        assert!(
            peak <= budget as isize,
            "a {budget}-byte chunk cache of {subrange}-byte subranges peaked at {peak} bytes"
        );
    }
}
