//! Keeping glibc's allocator from holding on to freed memory, and from handing it back to
//! the kernel only to fault it in again on the next request.
//!
//! Both serving components free large buffers after every request: the store gateway its
//! chunk reads and encoded frames, the querier the frames it received and the samples it
//! evaluated. glibc's defaults serve such a pattern badly in two ways.
//!
//! - Memory kept: one arena per thread that allocated under contention, and a mmap threshold
//!   that grows to the largest buffer freed, so multi-MiB buffers end up inside arenas and stay
//!   resident. Measured on the store gateway benchmark (heaptrack): the live heap peaked at
//!   50 MiB under 4 concurrent Series calls while RSS reached 109 MiB. [`tune`] bounds the
//!   arenas and [`release_freed`], called when a request finishes, gives free arena pages back.
//! - Memory faulted in again: until the sliding threshold has grown, buffers above 128 KiB get
//!   a mapping of their own, which `free` unmaps and the next request maps and faults in page by
//!   page. A gateway query over 5,000 series took about 5,000 page faults (7 % of its CPU); a
//!   querier receiving a 1.1 MB frame took 255 faults per query for 100 series, and the local
//!   engine about 880 for an instant query over 5,000 series. [`tune`] fixes the thresholds high
//!   (mmap at 32 MiB, automatic trimming at 128 MiB): the gateway's faults fell to about 750 per
//!   query (10 % less CPU), the querier's to about 10, with the same peak RSS under the store
//!   gateway benchmark's load (44 / 104 MiB at 5,000 / 20,000 series per block), since
//!   [`release_freed`] still hands free memory back once requests are done.
//!
//! Fixing the mmap threshold low instead was measured too: 9 MiB less RSS in the gateway but
//! 30-45 % more CPU per query (every large buffer mapped, faulted in and unmapped).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Instant;

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
/// [`tune`] was called. Cheap to call after every request: all but one call a second return
/// after reading the clock.
pub fn release_freed() {
    if !TUNED.load(Ordering::Relaxed) {
        return;
    }
    let now = monotonic_ms();
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

/// Calls [`release_freed`] when dropped: declared before a request's buffers, it runs after
/// they are freed, on every way out.
#[derive(Debug)]
pub struct ReleaseFreedOnDrop;

impl Drop for ReleaseFreedOnDrop {
    fn drop(&mut self) {
        release_freed();
    }
}

/// Milliseconds since the first call, from a clock that never goes back (a wall clock set
/// back would stop the trims until it caught up).
fn monotonic_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64
}
