//! Range reads of FILESYSTEM buckets, one blocking call per read.
//!
//! Why not `object_store`'s own: its `LocalFileSystem::get_range` opens the file and reads it
//! in two separate blocking-pool calls, and its `get_ranges` fails a range that reaches past
//! the end of the file instead of cutting it there as S3 does (the semantics of
//! [`crate::Bucket::get_range`]). The store gateway reads chunks in many small ranged reads,
//! each waiting for its blocking-pool hops; measured on the fan-out benchmark, a read of a
//! block's chunks for one batch took 0.21 ms on average from the page cache. Here one blocking
//! call opens the file once, reads every range with positioned reads, and cuts ranges at the
//! end of the file.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
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

/// Reads `ranges` of the file at `path` in one blocking-pool call. A missing file, or a
/// directory, is [`io::ErrorKind::NotFound`]; a file that shrinks while it is read is
/// [`io::ErrorKind::UnexpectedEof`].
pub(crate) async fn read_ranges(path: PathBuf, ranges: Vec<Range<u64>>) -> io::Result<Ranges> {
    tokio::task::spawn_blocking(move || read_ranges_blocking(&path, &ranges))
        .await
        .map_err(io::Error::other)?
}

fn read_ranges_blocking(path: &std::path::Path, ranges: &[Range<u64>]) -> io::Result<Ranges> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "is a directory"));
    }
    let size = meta.len();
    let data = ranges
        .iter()
        .map(|r| {
            if r.is_empty() {
                return Ok(Some(Bytes::new()));
            }
            if r.start >= size {
                return Ok(None);
            }
            let len = usize::try_from(r.end.min(size) - r.start).map_err(io::Error::other)?;
            // Zeroed by the allocator: large buffers come as fresh zero pages, not a memset.
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, r.start)?;
            Ok(Some(Bytes::from(buf)))
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok(Ranges { size, data })
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
}
