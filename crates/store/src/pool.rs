//! The chunk pool (`--chunk-pool-size`): a byte budget for chunk data held by all Series
//! requests at once.
//!
//! Chunk bytes are the one part of a request's memory that grows with the data a query
//! touches, so they are what the pool bounds, and it bounds them exactly: a request reserves
//! the bytes its next batch of range reads can return *before* reading (waiting for room, or
//! `ResourceExhausted` when one series alone needs more than the whole pool), and every read
//! buffer carries its share of the reservation inside its [`Bytes`] owner. Chunk data is sent
//! as zero-copy slices of those buffers, so a buffer (and its permits) lives until the last
//! frame referencing it has been encoded by the gRPC stream: the pool counts what is really
//! resident, including frames queued for a slow client, not an estimate released early.
//!
//! Permits are KiB, so a pool of up to 4 TiB fits a `u32` count of permits.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::StoreError;
use crate::metrics::StoreMetrics;

/// The store-wide pool.
#[derive(Debug)]
pub(crate) struct ChunkPool {
    sem: Arc<Semaphore>,
    capacity_kib: u64,
    accounting: Arc<Accounting>,
}

/// Bytes of pooled buffers alive now and at most, for tests and metrics.
#[derive(Debug, Default)]
struct Accounting {
    held: AtomicU64,
    peak: AtomicU64,
    held_gauge: Gauge,
    peak_gauge: Gauge,
}

impl Accounting {
    fn add(&self, n: u64) {
        let held = self.held.fetch_add(n, Ordering::Relaxed) + n;
        let peak = self.peak.fetch_max(held, Ordering::Relaxed).max(held);
        self.held_gauge.set(held as i64);
        self.peak_gauge.set(peak as i64);
    }

    fn sub(&self, n: u64) {
        let held = self.held.fetch_sub(n, Ordering::Relaxed).saturating_sub(n);
        self.held_gauge.set(held as i64);
    }
}

/// What the pool has seen, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkPoolStats {
    /// `--chunk-pool-size`, rounded down to KiB.
    pub capacity: u64,
    /// Bytes of chunk read buffers alive now.
    pub held: u64,
    /// The most bytes of chunk read buffers alive at once since start.
    pub peak: u64,
}

fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024)
}

impl ChunkPool {
    /// A pool of `bytes` (at least 1 KiB), reporting into `metrics`' pool gauges.
    pub(crate) fn new(bytes: u64, metrics: &StoreMetrics) -> Self {
        let capacity_kib = (bytes / 1024).clamp(1, u64::from(u32::MAX));
        ChunkPool {
            sem: Arc::new(Semaphore::new(capacity_kib as usize)),
            capacity_kib,
            accounting: Arc::new(Accounting {
                held_gauge: metrics.chunk_pool_held.clone(),
                peak_gauge: metrics.chunk_pool_peak.clone(),
                ..Default::default()
            }),
        }
    }

    pub(crate) fn stats(&self) -> ChunkPoolStats {
        ChunkPoolStats {
            capacity: self.capacity_kib * 1024,
            held: self.accounting.held.load(Ordering::Relaxed),
            peak: self.accounting.peak.load(Ordering::Relaxed),
        }
    }

    /// Waits until `bytes` of the pool are free and reserves them. A request reserves once per
    /// batch and holds nothing else while waiting (its earlier buffers are owned by frames the
    /// gRPC stream drains on its own), so waiting requests cannot deadlock each other.
    pub(crate) async fn reserve(&self, bytes: u64) -> Result<Budget, StoreError> {
        let n = kib(bytes).max(1);
        if n > self.capacity_kib {
            return Err(self.too_small(bytes));
        }
        let permit = self
            .sem
            .clone()
            .acquire_many_owned(n as u32)
            .await
            .map_err(|_| StoreError::Cancelled)?;
        Ok(Budget {
            sem: self.sem.clone(),
            accounting: self.accounting.clone(),
            permit: Mutex::new(Some(permit)),
            capacity: self.capacity_kib,
        })
    }

    /// The error for a single series whose chunk reads cannot fit the pool at all.
    pub(crate) fn too_small(&self, bytes: u64) -> StoreError {
        StoreError::ResourceExhausted(format!(
            "exceeded chunk pool: reading one series' chunks needs {bytes} bytes, more than the whole pool of {} bytes; raise --chunk-pool-size",
            self.capacity_kib * 1024
        ))
    }
}

/// One batch's reservation. Read buffers take their share of it through [`Budget::adopt`];
/// what is left returns to the pool when the budget is dropped.
#[derive(Debug)]
pub(crate) struct Budget {
    sem: Arc<Semaphore>,
    accounting: Arc<Accounting>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    capacity: u64,
}

impl Budget {
    /// Takes ownership of a buffer just read: its bytes move from this budget to the buffer,
    /// and go back to the pool when the last slice of the returned [`Bytes`] is dropped. A
    /// buffer larger than what is left (an exact re-read of a chunk longer than estimated)
    /// takes free room from the pool without waiting, or fails with `ResourceExhausted`.
    pub(crate) fn adopt(&self, data: Bytes) -> Result<Bytes, StoreError> {
        let len = data.len() as u64;
        let n = kib(len) as usize;
        let permit = {
            let mut g = self.permit.lock().unwrap_or_else(|e| e.into_inner());
            match g.as_mut() {
                Some(p) if p.num_permits() > n => p.split(n),
                Some(p) if p.num_permits() == n => g.take(),
                _ => None,
            }
        };
        let permit = match permit {
            Some(p) => p,
            None => self
                .sem
                .clone()
                .try_acquire_many_owned(n.min(u32::MAX as usize) as u32)
                .map_err(|_| {
                    StoreError::ResourceExhausted(format!(
                        "exceeded chunk pool: a chunk re-read of {len} bytes found no room in the pool of {} bytes; raise --chunk-pool-size",
                        self.capacity * 1024
                    ))
                })?,
        };
        self.accounting.add(len);
        Ok(Bytes::from_owner(Pooled {
            data,
            accounting: self.accounting.clone(),
            _permit: permit,
        }))
    }
}

/// A read buffer holding its pool permits.
struct Pooled {
    data: Bytes,
    accounting: Arc<Accounting>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.accounting.sub(self.data.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn buffers_hold_their_permits_until_the_last_slice_is_dropped() {
        let pool = ChunkPool::new(8 << 10, &StoreMetrics::unregistered());
        let budget = pool.reserve(4 << 10).await.unwrap();
        let a = budget.adopt(Bytes::from(vec![1u8; 3 << 10])).unwrap();
        let slice = a.slice(10..20);
        drop(a);
        drop(budget);
        // 3 KiB still owned by the slice; the budget's last KiB went back.
        assert_eq!(pool.sem.available_permits(), 5);
        assert_eq!(pool.stats().held, 3 << 10);
        drop(slice);
        assert_eq!(pool.sem.available_permits(), 8);
        assert_eq!(pool.stats().held, 0);
        assert_eq!(pool.stats().peak, 3 << 10);
    }

    #[tokio::test]
    async fn more_than_the_pool_is_an_error_naming_the_flag() {
        let pool = ChunkPool::new(4 << 10, &StoreMetrics::unregistered());
        let e = pool.reserve(5 << 10).await.unwrap_err();
        assert!(e.to_string().contains("--chunk-pool-size"), "{e}");
        let budget = pool.reserve(4 << 10).await.unwrap();
        let _a = budget.adopt(Bytes::from(vec![0u8; 4 << 10])).unwrap();
        let e = budget.adopt(Bytes::from(vec![0u8; 10])).unwrap_err();
        assert!(e.to_string().contains("--chunk-pool-size"), "{e}");
    }
}
