//! The active query log (`--query.active-query-path`): every PromQL query being evaluated is
//! written to `<dir>/queries.active` while it runs, so that after a crash (the querier killed
//! for memory, say) the next start can log the queries that were running, which is usually
//! how the query that killed it is found.
//!
//! The file has Prometheus' layout, which Thanos uses: `[`, then one slot of 1,000 bytes per
//! query that may run at once (`--query.max-concurrent`), each holding
//! `{"query":"…","timestamp_sec":…}` padded with NUL bytes and ending in `,`, or only NULs
//! when free. Removing the NULs and turning the last `,` into `]` gives the JSON array of
//! the queries in flight. Slots are written in place with positioned writes, which land in
//! the page cache at once: a killed process leaves them behind, as Prometheus' memory-mapped
//! file does.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Bytes per query slot, as in Prometheus.
const ENTRY_SIZE: usize = 1000;

/// The file's name in the directory.
pub(crate) const FILE_NAME: &str = "queries.active";

/// The active query log of one process.
#[derive(Debug)]
pub struct ActiveQueryTracker {
    file: std::fs::File,
    path: PathBuf,
    free: Mutex<Vec<u64>>,
}

/// A query's slot, freed when dropped (the query finished, failed or was cancelled).
#[derive(Debug)]
pub struct ActiveQuery {
    tracker: Arc<ActiveQueryTracker>,
    at: u64,
}

impl ActiveQueryTracker {
    /// Opens `<dir>/queries.active` with room for `slots` queries, creating `dir` if needed.
    /// Also returns what a previous run left in the file: the JSON array of the queries that
    /// did not finish, when there were any.
    pub fn open(dir: &Path, slots: usize) -> io::Result<(Arc<Self>, Option<String>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let unfinished = match std::fs::read(&path) {
            Ok(b) => unfinished_queries(&b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let slots = slots.max(1);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.set_len((1 + slots * ENTRY_SIZE) as u64)?;
        file.write_all_at(b"[", 0)?;
        let free = (0..slots)
            .rev()
            .map(|i| (1 + i * ENTRY_SIZE) as u64)
            .collect();
        Ok((
            Arc::new(ActiveQueryTracker {
                file,
                path,
                free: Mutex::new(free),
            }),
            unfinished,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `query` as running. `None` when every slot is taken (the API's own gate keeps
    /// that from happening) or the write fails: tracking never fails a query.
    pub fn insert(self: &Arc<Self>, query: &str) -> Option<ActiveQuery> {
        let at = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        let mut slot = entry(query, now_secs());
        slot.resize(ENTRY_SIZE, 0);
        slot[ENTRY_SIZE - 1] = b',';
        let q = ActiveQuery {
            tracker: self.clone(),
            at,
        };
        if let Err(e) = self.file.write_all_at(&slot, at) {
            tracing::warn!(file = %self.path.display(), error = %e, "writing the active query log failed");
        }
        Some(q)
    }
}

impl Drop for ActiveQuery {
    fn drop(&mut self) {
        let t = &self.tracker;
        if let Err(e) = t.file.write_all_at(&[0u8; ENTRY_SIZE], self.at) {
            tracing::warn!(file = %t.path.display(), error = %e, "clearing the active query log failed");
        }
        t.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.at);
    }
}

/// `{"query":"…","timestamp_sec":…}`, the query cut (at a character boundary, as long as
/// it fits) so that the entry and its closing `,` fit a slot.
fn entry(query: &str, secs: i64) -> Vec<u8> {
    let json = |q: &str| serde_json::json!({ "query": q, "timestamp_sec": secs }).to_string();
    let whole = json(query);
    if whole.len() < ENTRY_SIZE {
        return whole.into_bytes();
    }
    // The longest prefix whose JSON fits (escapes make the JSON longer than the text).
    let cuts: Vec<usize> = query.char_indices().map(|(i, _)| i).collect();
    let (mut lo, mut hi) = (0, cuts.len() - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if json(&query[..cuts[mid]]).len() < ENTRY_SIZE {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    json(&query[..cuts[lo]]).into_bytes()
}

/// The JSON array of the queries a file holds, or `None` when it holds none.
fn unfinished_queries(file: &[u8]) -> Option<String> {
    let mut s: String = String::from_utf8_lossy(file).replace('\0', "");
    if s.len() <= 1 {
        return None;
    }
    s.pop();
    s.push(']');
    Some(s)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_queries_are_in_the_file_and_reported_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (t, none) = ActiveQueryTracker::open(dir.path(), 3).unwrap();
        assert_eq!(none, None);
        let read = || std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(read().len(), 1 + 3 * ENTRY_SIZE);
        assert_eq!(unfinished_queries(&read()), None);
        let a = t.insert("up").unwrap();
        let b = t.insert("sum(rate(x{a=\"\\\"\"}[5m]))").unwrap();
        let c = t.insert("c").unwrap();
        assert!(t.insert("d").is_none(), "three slots");
        drop(a);
        let json: serde_json::Value =
            serde_json::from_str(&unfinished_queries(&read()).unwrap()).unwrap();
        let qs: Vec<&str> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["query"].as_str().unwrap())
            .collect();
        assert_eq!(qs, ["sum(rate(x{a=\"\\\"\"}[5m]))", "c"]);
        assert!(json[0]["timestamp_sec"].as_i64().unwrap() > 1_700_000_000);
        // The process dies with b and c running (the file stays as it is); the next start
        // reports them and starts from an empty file.
        std::mem::forget(b);
        std::mem::forget(c);
        drop(t);
        let (t2, left) = ActiveQueryTracker::open(dir.path(), 3).unwrap();
        let left: serde_json::Value = serde_json::from_str(&left.unwrap()).unwrap();
        assert_eq!(left.as_array().unwrap().len(), 2);
        assert_eq!(unfinished_queries(&read()), None);
        drop(t2);
    }

    #[test]
    fn long_queries_are_cut_to_fit_their_slot() {
        for q in ["x".repeat(5000), "\"".repeat(3000), "é".repeat(2000)] {
            let e = entry(&q, 1_700_000_000);
            assert!(e.len() < ENTRY_SIZE, "{}", e.len());
            let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
            let got = v["query"].as_str().unwrap();
            assert!(q.starts_with(got) && got.len() > 450, "{}", got.len());
        }
    }
}
