//! Keeping glibc's allocator from holding on to memory the gateway has freed.
//!
//! Measured (`docs/benchmarks.md`, heaptrack on the store gateway benchmark): under 4
//! concurrent Series calls the live heap peaked at 50 MiB while RSS reached 109 MiB. The rest
//! was glibc keeping freed memory: one arena per thread that allocated under contention (the
//! blocking pool reads chunks on many threads), and a mmap threshold that grows to the largest
//! buffer freed, so multi-MiB read buffers end up inside arenas and stay resident after they
//! are freed. `strata store` calls [`tune`] at start (fewer arenas) and Series calls
//! [`release_freed`] when they finish (freed arena pages go back). Fixing the mmap threshold
//! low instead was measured too: 9 MiB less RSS but 30-45 % more CPU per query (every large
//! read buffer mapped, faulted in and unmapped), so it is not done.
//!
//! The opposite, fixed thresholds high (mmap at 32 MiB, automatic trimming at 128 MiB), is
//! done: with glibc's sliding defaults a query over 5,000 series still took about 5,000 page
//! faults (20 MiB of read and frame buffers given back by `free` and faulted in again by the
//! next query), 7 % of the gateway's CPU. With them: about 750 faults and 10 % less gateway
//! CPU per query, and the same peak RSS under the store gateway benchmark's load (44 / 104
//! MiB at 5,000 / 20,000 series per block, 16MB caches), since [`release_freed`] still hands
//! free memory back once the calls are done.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

static TUNED: AtomicBool = AtomicBool::new(false);
static LAST_TRIM_MS: AtomicI64 = AtomicI64::new(0);

/// Least time between two trims: a trim walks every arena's free lists (about a millisecond
/// per 100 MiB), so it runs at most this often however many requests finish.
const TRIM_EVERY_MS: i64 = 1_000;

/// Allocations from this size up get their own mapping (glibc's sliding default starts at
/// 128 KiB and only grows as such buffers are freed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// Free memory at the top of a heap beyond this is given back by `free` itself; below it,
/// [`release_freed`] gives it back once the calls are done.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 128 << 20;

/// Bounds glibc's arenas to two per CPU (its default is eight), fixes the mmap and trim
/// thresholds high (see the module docs) and enables [`release_freed`]. Does nothing on
/// other C libraries.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt only sets an allocator parameter, valid for glibc.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, (2 * cpus).min(64) as libc::c_int);
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
        TUNED.store(true, Ordering::Relaxed);
    }
}

/// Returns free memory inside glibc's arenas to the system, at most once a second, when
/// [`tune`] was called.
pub(crate) fn release_freed() {
    if !TUNED.load(Ordering::Relaxed) {
        return;
    }
    let now = crate::sync::now_ms();
    let last = LAST_TRIM_MS.load(Ordering::Relaxed);
    if now - last < TRIM_EVERY_MS
        || LAST_TRIM_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
