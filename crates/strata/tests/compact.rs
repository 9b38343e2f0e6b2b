//! `strata compact` end to end: the real binary on a FILESYSTEM bucket holding blocks made by
//! Prometheus' `promtool`, including runs killed with SIGKILL at arbitrary moments.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use strata_block::fetch::fetch_metas;
use strata_block::markers::read_deletion_mark;
use strata_block::transfer::{SOURCE_SIDECAR, UploadOptions, download_block, upload_block};
use strata_block::verify::{find_duplicated_compactions, find_overlaps};
use strata_objstore::{Bucket, BucketMetrics};
use strata_testutil::process::{ChildGuard, free_port, http_request};
use strata_testutil::prometheus::{self, DumpSample};
use strata_tsdb::BlockMeta;
use ulid::Ulid;

/// 2023-11-13T00:00:00Z, a multiple of two days (2d compaction windows start here).
const T0: i64 = 1_699_833_600_000;

type Series = BTreeMap<Vec<(String, String)>, Vec<(i64, u64)>>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn as_series(dump: Vec<DumpSample>) -> Series {
    let mut out = Series::new();
    for s in dump {
        out.entry(s.labels)
            .or_default()
            .push((s.t, s.value.to_bits()));
    }
    out
}

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    objstore: PathBuf,
    bucket: Bucket,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::create_dir_all(root.join("bucket")).unwrap();
        let yml = format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            root.join("bucket").display()
        );
        let objstore = root.join("objstore.yml");
        std::fs::write(&objstore, &yml).unwrap();
        let bucket = Bucket::from_yaml(&yml, &BucketMetrics::unregistered()).unwrap();
        Env {
            _tmp: tmp,
            root,
            objstore,
            bucket,
        }
    }

    /// `hours` of 15s data for `series` series, cut by promtool into 2h blocks and uploaded
    /// with external labels `cluster=<cluster>`. Returns the block IDs in time order.
    fn upload(
        &self,
        name: &str,
        series: usize,
        hours: i64,
        jitter: i64,
        cluster: &str,
    ) -> Vec<Ulid> {
        let mut om = String::from("# TYPE http_requests counter\n");
        for i in 0..series {
            let mut v = 0.0f64;
            for k in 0..(hours * 240) {
                v += ((k as usize + i) % 9) as f64;
                let t = T0 + k * 15_000 + jitter;
                writeln!(
                    om,
                    "http_requests_total{{path=\"/{i}\",method=\"GET\"}} {v:?} {}.{:03}",
                    t / 1000,
                    t % 1000
                )
                .unwrap();
            }
        }
        om.push_str("# EOF\n");
        let dirs = prometheus::create_blocks_from_openmetrics(&om, &self.root.join(name)).unwrap();
        let opts = UploadOptions {
            labels: [("cluster".to_string(), cluster.to_string())].into(),
            source: SOURCE_SIDECAR.into(),
            require_labels: true,
            hash_func: Default::default(),
            file_concurrency: 0,
        };
        rt().block_on(async {
            let mut ids = Vec::new();
            for d in &dirs {
                ids.push(upload_block(&self.bucket, d, &opts).await.unwrap().ulid);
            }
            ids
        })
    }

    fn compact(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("compact")
            .arg(format!(
                "--objstore.config-file={}",
                self.objstore.display()
            ))
            .arg(format!("--data-dir={}", self.root.join("data").display()))
            .arg("--consistency-delay=0s")
            .args(extra);
        cmd
    }

    fn run(&self, extra: &[&str]) -> Output {
        let mut cmd = self.compact(extra);
        cmd.arg("--http-address=127.0.0.1:0");
        cmd.output().unwrap()
    }

    /// Metas of blocks without a deletion mark.
    fn live(&self) -> BTreeMap<Ulid, BlockMeta> {
        rt().block_on(async {
            let metas = fetch_metas(&self.bucket, 8).await.unwrap().metas;
            let mut out = BTreeMap::new();
            for (id, m) in metas {
                if read_deletion_mark(&self.bucket, id)
                    .await
                    .unwrap()
                    .is_none()
                {
                    out.insert(id, m);
                }
            }
            out
        })
    }

    fn dump(&self, ids: &[Ulid], name: &str) -> Series {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        rt().block_on(async {
            for id in ids {
                download_block(&self.bucket, *id, &dir).await.unwrap();
            }
        });
        as_series(prometheus::dump(&dir).unwrap())
    }

    /// Directories in the bucket that are neither a complete block nor marked.
    fn partial_uploads(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.root.join("bucket")).unwrap() {
            let p = e.unwrap().path();
            if !p.join("meta.json").exists() {
                out.push(p.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        out
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn one_run_compacts_and_deletes_replaced_blocks() {
    let env = Env::new();
    let ids = env.upload("gen", 8, 12, 0, "eu1");
    let want = env.dump(&ids[..4], "want");

    // --hash-func=SHA256 (was refused): the compacted block's meta records its files' hashes.
    // Inputs fetched three at a time, each with four files at once.
    let out = env.run(&[
        "--delete-delay=0s",
        "--hash-func=SHA256",
        "--compact.blocks-fetch-concurrency=3",
        "--block-files-concurrency=4",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("compaction iteration done"),
        "{}",
        text(&out.stderr)
    );
    let live = env.live();
    assert_eq!(live.len(), 3, "{live:?}");
    let new: Vec<Ulid> = live
        .keys()
        .filter(|id| !ids.contains(id))
        .copied()
        .collect();
    assert_eq!(new.len(), 1);
    let block_dir = env.root.join("bucket").join(new[0].to_string());
    let files = &live[&new[0]].thanos.as_ref().unwrap().files;
    for f in files.iter().filter(|f| f.rel_path != "meta.json") {
        let h = f
            .hash
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no hash", f.rel_path));
        assert_eq!(
            h.value,
            strata_block::transfer::sha256_file(&block_dir.join(&f.rel_path)).unwrap(),
            "{}",
            f.rel_path
        );
    }
    // With --delete-delay=0s the replaced blocks are gone after a single run.
    for id in &ids[..4] {
        assert!(
            !env.root.join("bucket").join(id.to_string()).exists(),
            "{id}"
        );
    }
    assert_eq!(env.dump(&new, "got"), want);
}

#[test]
fn overlapping_blocks_halt_the_group_and_fail_a_single_run() {
    let env = Env::new();
    env.upload("a", 2, 2, 0, "dup");
    env.upload("b", 2, 2, 7_000, "dup");
    let out = env.run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("critical") && err.contains("overlapping"),
        "{err}"
    );
    assert!(err.contains("--deduplication.replica-label"), "{err}");
    // Nothing was touched.
    assert_eq!(env.live().len(), 2);
}

#[test]
fn wait_mode_serves_metrics_and_stops_on_sigterm() {
    let env = Env::new();
    env.upload("gen", 4, 12, 0, "eu1");
    let port = free_port();
    let mut child = ChildGuard::spawn(
        "strata compact",
        env.compact(&[
            "--wait",
            "--wait-interval=1s",
            "--block-viewer.global.sync-block-interval=1s",
            &format!("--http-address=127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null()),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    child
        .wait_for_http(&format!("{base}/-/ready"), Duration::from_secs(30))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let m = text(
            &http_request("GET", &format!("{base}/metrics"), &[])
                .unwrap()
                .body,
        );
        if m.contains("thanos_compact_iterations_total 2") {
            break m;
        }
        assert!(Instant::now() < deadline, "no second iteration: {m}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(metrics.contains("thanos_compact_halted 0"), "{metrics}");
    assert!(
        metrics.contains("thanos_compact_group_compactions_total{group=\"0@"),
        "{metrics}"
    );
    assert!(
        metrics.contains("thanos_objstore_bucket_operations_total"),
        "{metrics}"
    );
    assert_eq!(env.live().len(), 3);

    // The block viewer: Thanos' JSON API and the page, refreshed every --block-viewer
    // interval (set to 1s above).
    let deadline = Instant::now() + Duration::from_secs(30);
    let api = loop {
        let body = http_request("GET", &format!("{base}/api/v1/blocks"), &[]).unwrap();
        assert_eq!(body.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body.body).unwrap();
        // Three live blocks plus the four compacted sources (marked, not yet deleted).
        if v["data"]["blocks"].as_array().unwrap().len() == 7 {
            break v;
        }
        assert!(Instant::now() < deadline, "viewer never caught up: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(api["status"], "success");
    assert!(api["data"]["err"].is_null(), "{api}");
    assert!(api["data"]["refreshedAt"].as_str().unwrap().ends_with('Z'));
    let first = &api["data"]["blocks"][0];
    assert!(first["ulid"].is_string() && first["thanos"]["labels"]["cluster"] == "eu1");
    let page = http_request("GET", &format!("{base}/blocks"), &[]).unwrap();
    assert_eq!(page.status, 200);
    let html = text(&page.body);
    for id in env.live().keys() {
        assert!(html.contains(&id.to_string()), "{id} on the page");
    }
    assert!(
        html.contains("<svg") && html.contains("cluster=&quot;eu1&quot;"),
        "{html}"
    );

    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

/// SIGKILL at arbitrary moments of compaction, downsampling and cleanup, then runs to the
/// end: the bucket holds every sample exactly once, with no overlap, no duplicate block and no
/// block missing files. Every trial starts from the same bucket, so each kill lands at a
/// different point of the same work.
#[test]
fn sigkill_at_any_moment_loses_and_duplicates_nothing() {
    let env = Env::new();
    let ids = env.upload("gen", 20, 52, 0, "eu1");
    let want = env.dump(&ids, "want");
    let bucket = env.root.join("bucket");
    let initial = env.root.join("bucket-initial");
    let cp = |from: &std::path::Path, to: &std::path::Path| {
        let _ = std::fs::remove_dir_all(to);
        let st = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(st.success());
    };
    cp(&bucket, &initial);

    // Time one whole run, then spread the kills evenly over that time; the time each
    // recovery run takes shows where its kill landed. On a busy machine runs vary in length:
    // a run that finishes before its kill shortens the time the next kills are spread over,
    // and trials go on until enough kills landed inside a run.
    let t = Instant::now();
    let out = env.run(&["--delete-delay=0s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut whole = t.elapsed();
    const TRIALS: u32 = 10;
    eprintln!("an uninterrupted run takes {whole:?}");
    let mut killed = 0;
    let mut trial = 0;
    while killed < TRIALS {
        assert!(
            trial < 3 * TRIALS,
            "only {killed} of {trial} runs were interrupted; the trials prove little"
        );
        let delay = whole * (2 * killed + 1) / (2 * TRIALS);
        cp(&initial, &bucket);
        let started = Instant::now();
        let mut child = ChildGuard::spawn(
            format!("strata compact trial {trial}"),
            env.compact(&["--delete-delay=0s", "--http-address=127.0.0.1:0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        } else {
            whole = whole * 3 / 4;
        }
        child.kill();
        let killed_at = started.elapsed();
        let t = Instant::now();
        let out = env.run(&["--delete-delay=0s"]);
        eprintln!(
            "trial {trial}: killed after {:?}; the recovery run took {:?}",
            killed_at,
            t.elapsed()
        );
        assert!(out.status.success(), "trial {trial}: {}", text(&out.stderr));

        // A second run confirms that nothing is left to do.
        let out = env.run(&["--delete-delay=0s"]);
        assert!(out.status.success(), "trial {trial}: {}", text(&out.stderr));
        let live = env.live();
        let metas: Vec<&BlockMeta> = live.values().collect();
        assert!(
            find_overlaps(metas.iter().copied()).is_empty(),
            "trial {trial}: {live:?}"
        );
        assert!(
            find_duplicated_compactions(metas.iter().copied()).is_empty(),
            "trial {trial}: {live:?}"
        );
        let raw: Vec<Ulid> = live
            .values()
            .filter(|m| m.resolution() == 0)
            .map(|m| m.ulid)
            .collect();
        assert_eq!(
            raw.len(),
            3,
            "trial {trial}: the 2d block and the last two 2h blocks: {live:?}"
        );
        assert_eq!(
            live.values().filter(|m| m.resolution() == 300_000).count(),
            1,
            "trial {trial}: one 5m block: {live:?}"
        );
        // Downloading checks every file a meta lists; dump checks every sample.
        assert_eq!(
            env.dump(&raw, &format!("got-{trial}")),
            want,
            "trial {trial}: every sample, exactly once"
        );
        // An interrupted upload leaves at most a directory without meta.json: invisible to
        // readers, removed by the compactor once older than two days.
        for p in env.partial_uploads() {
            assert!(
                p.parse::<Ulid>().is_ok(),
                "trial {trial}: unexpected object {p}"
            );
        }
        trial += 1;
    }
    eprintln!("{killed} of {trial} runs were killed before they finished");
}
