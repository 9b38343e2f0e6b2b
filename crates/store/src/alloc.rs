//! Keeping glibc's allocator from holding on to memory the gateway has freed.
//!
//! Measured (`docs/benchmarks.md`, heaptrack on the store gateway benchmark): under 4
//! concurrent Series calls the live heap peaked at 50 MiB while RSS reached 109 MiB. The rest
//! was glibc keeping freed memory: one arena per thread that allocated under contention (the
//! blocking pool reads chunks on many threads), and a mmap threshold that grows to the largest
//! buffer freed, so multi-MiB read buffers end up inside arenas and stay resident after they
//! are freed. `strata store` calls [`tune`] at start (fewer arenas) and Series calls
//! [`release_freed`] when they finish (freed arena pages go back). Fixing the mmap threshold
//! instead was measured too: 9 MiB less RSS but 30-45 % more CPU per query (every large read
//! buffer mapped, faulted in and unmapped), so it is not done.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

static TUNED: AtomicBool = AtomicBool::new(false);
static LAST_TRIM_MS: AtomicI64 = AtomicI64::new(0);

/// Least time between two trims: a trim walks every arena's free lists (about a millisecond
/// per 100 MiB), so it runs at most this often however many requests finish.
const TRIM_EVERY_MS: i64 = 1_000;

/// Bounds glibc's arenas to two per CPU (its default is eight) and enables [`release_freed`].
/// Does nothing on other C libraries.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt only sets an allocator parameter, valid for glibc.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, (2 * cpus).min(64) as libc::c_int);
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
