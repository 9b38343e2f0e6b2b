//! Range reads of FILESYSTEM buckets: from the page cache inline, otherwise in one blocking call.
//!
//! Why not `object_store`'s own: its `LocalFileSystem::get_range` opens the file and reads it
//! in two separate blocking-pool calls, and its `get_ranges` fails a range that reaches past
//! the end of the file instead of cutting it there as S3 does (the semantics of
//! [`crate::Bucket::get_range`]). The store gateway reads chunks in many small ranged reads,
//! each waiting for its blocking-pool hops; measured on the fan-out benchmark, a read of a
//! block's chunks for one batch took 0.21 ms on average from the page cache. Here one blocking
//! call opens the file once, reads every range with positioned reads, and cuts ranges at the
//! end of the file.
//!
//! On Linux the reads are first tried on the calling task with `preadv2(RWF_NOWAIT)`, which
//! copies what the page cache holds and refuses (`EAGAIN`) rather than wait for the disk. A
//! small Series call of the gateway spent about a tenth of its CPU handing reads to the
//! blocking pool and waking up again (thread switches, the pool's lock); a read that the
//! page cache answers costs less than that hand-off. Anything the cache does not hold, a
//! kernel or file system without `RWF_NOWAIT`, and ranges over [`INLINE_MAX`] bytes in
//! total go to the blocking pool as before, so a slow disk never stalls a runtime worker
//! for longer than opening the file.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::PathBuf;

use bytes::Bytes;

/// What reading ranges of one file found.
pub(crate) struct Ranges {
    /// The file's size when it was opened.
    pub(crate) size: u64,
    /// Per range: its bytes (cut at `size`), or `None` when the range starts at or after the
    /// end of the file (empty ranges give empty bytes).
    pub(crate) data: Vec<Option<Bytes>>,
}

/// The most bytes read on the calling task: copying 4 MiB from the page cache takes a few
/// hundred microseconds, about what a runtime worker may be held by any one poll.
pub(crate) const INLINE_MAX: u64 = 4 << 20;

/// Reads `ranges` of the file at `path`: inline when the page cache holds them all (Linux),
/// otherwise in one blocking-pool call. A missing file, or a directory, is
/// [`io::ErrorKind::NotFound`]; a file that shrinks while it is read is
/// [`io::ErrorKind::UnexpectedEof`].
pub(crate) async fn read_ranges(path: PathBuf, ranges: Vec<Range<u64>>) -> io::Result<Ranges> {
    let total: u64 = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
    if total <= INLINE_MAX
        && let Some(read) = read_ranges_with(&path, &ranges, Read::CachedOnly)?
    {
        return Ok(read);
    }
    tokio::task::spawn_blocking(move || {
        read_ranges_with(&path, &ranges, Read::Blocking)?
            .ok_or_else(|| io::Error::other("a blocking read gave up (a bug)"))
    })
    .await
    .map_err(io::Error::other)?
}

/// How [`read_ranges_with`] may read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Only what the page cache holds: `Ok(None)` as soon as a read would wait for the disk.
    CachedOnly,
    /// Whatever it takes.
    Blocking,
}

fn read_ranges_with(
    path: &std::path::Path,
    ranges: &[Range<u64>],
    how: Read,
) -> io::Result<Option<Ranges>> {
    if how == Read::CachedOnly && !nowait::available() {
        return Ok(None);
    }
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "is a directory"));
    }
    let size = meta.len();
    let mut data = Vec::with_capacity(ranges.len());
    for r in ranges {
        if r.is_empty() {
            data.push(Some(Bytes::new()));
            continue;
        }
        if r.start >= size {
            data.push(None);
            continue;
        }
        let len = usize::try_from(r.end.min(size) - r.start).map_err(io::Error::other)?;
        let mut buf = Vec::with_capacity(len);
        // Only a cached-only read stops short.
        if !read_exact_at(&file, &mut buf, len, r.start, how == Read::CachedOnly)? {
            return Ok(None);
        }
        data.push(Some(Bytes::from(buf)));
    }
    Ok(Some(Ranges { size, data }))
}

/// Appends `len` bytes of `file` from `offset` to the empty `buf` (whose capacity is at least
/// `len`), without zeroing it first. With `nowait`, returns `Ok(false)` as soon as the page
/// cache cannot supply the rest; the bytes read so far are then discarded by the caller.
fn read_exact_at(
    file: &File,
    buf: &mut Vec<u8>,
    len: usize,
    mut offset: u64,
    nowait: bool,
) -> io::Result<bool> {
    debug_assert!(buf.is_empty() && buf.capacity() >= len);
    while buf.len() < len {
        let want = len - buf.len();
        let spare = &mut buf.spare_capacity_mut()[..want];
        let n = match nowait::pread(file, spare, offset, nowait) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was read",
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if nowait && e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        // SAFETY: the kernel wrote `n` bytes at the start of the spare capacity, and
        // `n <= spare.len()`, so the first `buf.len() + n` bytes are initialised.
        unsafe { buf.set_len(buf.len() + n) };
        offset += n as u64;
    }
    Ok(true)
}

/// Positioned reads into uninitialised memory, optionally with `RWF_NOWAIT` (Linux only).
mod nowait {
    use std::fs::File;
    use std::io;
    use std::mem::MaybeUninit;

    /// Cleared the first time the kernel or file system refuses the flag itself
    /// (`EOPNOTSUPP`, or `EINVAL` from kernels older than 4.14), so that later reads go
    /// straight to the blocking pool.
    #[cfg(target_os = "linux")]
    static SUPPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

    /// Whether inline (`RWF_NOWAIT`) reads are worth trying.
    pub(super) fn available() -> bool {
        #[cfg(target_os = "linux")]
        return SUPPORTED.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(target_os = "linux"))]
        return false;
    }

    /// One positioned read into `buf`. With `nowait`, a read the page cache cannot answer
    /// fails with [`io::ErrorKind::WouldBlock`] (so does one where the flag is unsupported).
    #[cfg(target_os = "linux")]
    pub(super) fn pread(
        file: &File,
        buf: &mut [MaybeUninit<u8>],
        offset: u64,
        nowait: bool,
    ) -> io::Result<usize> {
        use std::os::fd::AsRawFd;

        let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
        // SAFETY: `iov` describes `buf`, writable for its whole length and alive for the
        // call; the kernel writes at most `iov_len` bytes into it.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if nowait && matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) {
                SUPPORTED.store(false, std::sync::atomic::Ordering::Relaxed);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            return Err(e);
        }
        Ok(n as usize)
    }

    /// One positioned read into `buf` (never asked for `nowait`: [`available`] is false).
    #[cfg(not(target_os = "linux"))]
    pub(super) fn pread(
        file: &File,
        buf: &mut [MaybeUninit<u8>],
        offset: u64,
        _nowait: bool,
    ) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;

        for b in buf.iter_mut() {
            b.write(0);
        }
        // SAFETY: every byte of `buf` was just initialised.
        let init = unsafe { &mut *(buf as *mut [MaybeUninit<u8>] as *mut [u8]) };
        file.read_at(init, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ranges_are_cut_at_the_end_and_past_the_end_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obj");
        std::fs::write(&path, b"0123456789").unwrap();
        let got = read_ranges(path.clone(), vec![2..5, 8..20, 10..12, 4..4, 0..10])
            .await
            .unwrap();
        assert_eq!(got.size, 10);
        let data: Vec<Option<&[u8]>> = got.data.iter().map(|d| d.as_deref()).collect();
        assert_eq!(
            data,
            vec![
                Some(&b"234"[..]),
                Some(&b"89"[..]),
                None,
                Some(&b""[..]),
                Some(&b"0123456789"[..])
            ]
        );
        let missing = read_ranges(dir.path().join("nope"), vec![0..1, 2..3]).await;
        assert_eq!(
            missing.err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        let a_dir = read_ranges(dir.path().to_path_buf(), vec![0..1, 2..3]).await;
        assert_eq!(a_dir.err().map(|e| e.kind()), Some(io::ErrorKind::NotFound));
    }

    /// Inline reads of a file the page cache holds (just written) give the bytes a blocking
    /// read gives; reads over [`INLINE_MAX`] and uncached reads still complete.
    #[tokio::test]
    async fn cached_reads_are_inline_and_equal_blocking_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obj");
        let body: Vec<u8> = (0..(INLINE_MAX as usize + 4096))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(&path, &body).unwrap();
        let ranges = vec![0..1000, 4095..70_000, 1_000_000..1_000_001, 5..5];
        let blocking = read_ranges_with(&path, &ranges, Read::Blocking)
            .unwrap()
            .unwrap();
        for (r, d) in ranges.iter().zip(&blocking.data) {
            assert_eq!(d.as_deref(), Some(&body[r.start as usize..r.end as usize]));
        }
        let inline = read_ranges_with(&path, &ranges, Read::CachedOnly).unwrap();
        if cfg!(target_os = "linux") {
            // Only a file system without RWF_NOWAIT may refuse a just-written file.
            let inline = inline.unwrap_or_else(|| {
                assert!(
                    !nowait::available(),
                    "a cached read went to the blocking pool"
                );
                read_ranges_with(&path, &ranges, Read::Blocking)
                    .unwrap()
                    .unwrap()
            });
            assert_eq!(inline.data, blocking.data);
            assert_eq!(inline.size, body.len() as u64);
        }
        // The whole file is past INLINE_MAX: the blocking pool reads it.
        let whole_file = std::iter::once(0..body.len() as u64 + 1).collect();
        let whole = read_ranges(path.clone(), whole_file).await.unwrap();
        assert_eq!(whole.data[0].as_deref(), Some(&body[..]));
        // A file that was evicted from the page cache may be refused inline; read_ranges
        // still reads it.
        let file = File::open(&path).unwrap();
        file.sync_all().unwrap();
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain advisory call on an open descriptor.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
        // (On ext4 this is refused: the fallback below is what reads it.)
        if let Some(inline) = read_ranges_with(&path, &ranges, Read::CachedOnly).unwrap() {
            assert_eq!(inline.data, blocking.data);
        }
        let cold = read_ranges(path.clone(), ranges.clone()).await.unwrap();
        assert_eq!(cold.data, blocking.data);
    }
}
