//! `strata tools bucket {mark, retention, cleanup, downsample}` end to end: the real binary on a
//! FILESYSTEM bucket holding blocks made by Prometheus' `promtool`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use strata_testutil::process::{ChildGuard, free_port, http_request, http_request_with_headers};
use strata_testutil::prometheus;
use strata_tsdb::BlockMeta;

/// 2023-11-13T00:00:00Z, a multiple of two days.
const T0: i64 = 1_699_833_600_000;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    objstore: PathBuf,
}

impl Env {
    /// A bucket with `hours` of data for a few series, in 2h promtool blocks uploaded with
    /// `strata tools bucket upload-blocks`.
    fn new(hours: i64) -> (Env, Vec<String>) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::create_dir_all(root.join("bucket")).unwrap();
        let objstore = root.join("objstore.yml");
        std::fs::write(
            &objstore,
            format!(
                "type: FILESYSTEM\nconfig:\n  directory: {}\n",
                root.join("bucket").display()
            ),
        )
        .unwrap();
        let mut om = String::from("# TYPE jobs counter\n");
        for i in 0..4 {
            for k in 0..(hours * 240) {
                let t = T0 + k * 15_000;
                writeln!(
                    om,
                    "jobs_total{{queue=\"q{i}\"}} {} {}.{:03}",
                    k * (i + 1),
                    t / 1000,
                    t % 1000
                )
                .unwrap();
            }
        }
        om.push_str("# EOF\n");
        let dirs = prometheus::create_blocks_from_openmetrics(&om, &root.join("local")).unwrap();
        let env = Env {
            _tmp: tmp,
            root,
            objstore,
        };
        let out = env.tools(&[
            "upload-blocks",
            "--path",
            env.root.join("local").to_str().unwrap(),
            "--label=cluster=\"eu1\"",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let ids = dirs
            .iter()
            .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        (env, ids)
    }

    fn tools_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.args(["tools", "bucket"])
            .arg(format!(
                "--objstore.config-file={}",
                self.objstore.display()
            ))
            .args(args);
        cmd
    }

    /// Starts `tools bucket <args>` serving HTTP on a free port and waits until it is ready;
    /// the guard kills it.
    fn serve(&self, args: &[&str]) -> (ChildGuard, u16) {
        let port = free_port();
        let address = format!("--http-address=127.0.0.1:{port}");
        let mut child = ChildGuard::spawn(
            format!("strata tools bucket {}", args[0]),
            self.tools_cmd(args)
                .arg(address)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
        child
            .wait_for_http(
                &format!("http://127.0.0.1:{port}/-/ready"),
                Duration::from_secs(30),
            )
            .unwrap();
        (child, port)
    }

    fn tools(&self, args: &[&str]) -> Output {
        self.tools_cmd(args).output().unwrap()
    }

    fn block(&self, id: &str) -> PathBuf {
        self.root.join("bucket").join(id)
    }

    fn metas(&self) -> Vec<BlockMeta> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.root.join("bucket")).unwrap() {
            let p = e.unwrap().path();
            if p.join("meta.json").exists() && !p.join("deletion-mark.json").exists() {
                out.push(BlockMeta::read_from_dir(&p).unwrap());
            }
        }
        out
    }
}

fn marker(dir: &Path, file: &str) -> Option<serde_json::Value> {
    let data = std::fs::read(dir.join(file)).ok()?;
    Some(serde_json::from_slice(&data).unwrap())
}

#[test]
fn mark_puts_and_removes_markers_and_refuses_unknown_blocks() {
    let (env, ids) = Env::new(4);
    let id = ids[0].as_str();

    // An unknown ID among known ones: nothing is marked at all.
    let out = env.tools(&[
        "mark",
        "--id",
        id,
        "--id",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "--marker=deletion-mark.json",
        "--details=test",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        "{}",
        text(&out.stderr)
    );
    assert!(marker(&env.block(id), "deletion-mark.json").is_none());

    // Details are required when marking.
    let out = env.tools(&["mark", "--id", id, "--marker=no-compact-mark.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--details"),
        "{}",
        text(&out.stderr)
    );

    for (file, time_key) in [
        ("no-compact-mark.json", "no_compact_time"),
        ("no-downsample-mark.json", "no_downsample_time"),
        ("deletion-mark.json", "deletion_time"),
    ] {
        let out = env.tools(&[
            "mark",
            "--id",
            id,
            &format!("--marker={file}"),
            "--details=bad scrape config",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let m = marker(&env.block(id), file).unwrap();
        assert_eq!(m["id"], id);
        assert_eq!(m["version"], 1);
        assert_eq!(m["details"], "bad scrape config");
        assert!(m[time_key].as_i64().unwrap() > 1_700_000_000, "{m}");
        if file != "deletion-mark.json" {
            assert_eq!(m["reason"], "manual");
        }

        let out = env.tools(&["mark", "--id", id, &format!("--marker={file}"), "--remove"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(marker(&env.block(id), file).is_none());
    }

    let out = env.tools(&["mark", "--id", id, "--marker=bogus.json", "--details=x"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[test]
fn retention_marks_and_cleanup_deletes() {
    let (env, ids) = Env::new(6);
    assert_eq!(ids.len(), 3);

    // Forever by default: nothing is marked.
    let out = env.tools(&["retention", "--consistency-delay=0s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(env.metas().len(), 3);

    // The blocks are from 2023: a 30-day raw retention marks all of them.
    let out = env.tools(&[
        "retention",
        "--consistency-delay=0s",
        "--retention.resolution-raw=30d",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(env.metas().is_empty());
    for id in &ids {
        assert!(marker(&env.block(id), "deletion-mark.json").is_some());
    }

    // Within the default 48h delete delay nothing goes; with 0s everything does.
    let out = env.tools(&["cleanup", "--consistency-delay=0s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        ids.iter()
            .all(|id| env.block(id).join("meta.json").exists())
    );
    let out = env.tools(&["cleanup", "--consistency-delay=0s", "--delete-delay=0s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for id in &ids {
        assert!(!env.block(id).exists(), "{id} deleted with all its files");
    }
}

#[test]
fn downsample_runs_until_sigterm() {
    let (env, _) = Env::new(52);
    // The compactor builds the 2d block, leaving downsampling to the tool.
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("compact")
        .arg(format!("--objstore.config-file={}", env.objstore.display()))
        .arg(format!("--data-dir={}", env.root.join("compact").display()))
        .args([
            "--consistency-delay=0s",
            "--downsampling.disable",
            "--http-address=127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(env.metas().iter().all(|m| m.resolution() == 0));

    let (mut child, _) = env.serve(&[
        "downsample",
        "--wait-interval=1s",
        &format!("--data-dir={}", env.root.join("ds").display()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env.metas().iter().any(|m| m.resolution() == 300_000) {
        assert!(Instant::now() < deadline, "no 5m block appeared");
        std::thread::sleep(Duration::from_millis(200));
    }
    let ds: Vec<BlockMeta> = env
        .metas()
        .into_iter()
        .filter(|m| m.resolution() == 300_000)
        .collect();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].compaction.sources.len(), 24);

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn web_serves_the_block_viewer_and_marks_blocks() {
    let (env, ids) = Env::new(6);
    let (_child, port) = env.serve(&["web", "--web.route-prefix=/bucket", "--label=cluster"]);
    let base = format!("http://127.0.0.1:{port}/bucket");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http_request("GET", &format!("{base}/api/v1/blocks"), &[]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        if v["data"]["blocks"].as_array().map_or(0, Vec::len) == ids.len() {
            assert_eq!(v["data"]["label"], "cluster");
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let html = text(
        &http_request("GET", &format!("{base}/blocks"), &[])
            .unwrap()
            .body,
    );
    assert!(html.contains("<h2>eu1</h2>"), "titled by --label: {html}");

    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let mark = |body: String| {
        http_request_with_headers(
            "POST",
            &format!("{base}/api/v1/blocks/mark"),
            &form,
            body.as_bytes(),
        )
        .unwrap()
    };
    let r = mark(format!(
        "id={}&action=NO_COMPACTION&detail=broken+scrape",
        ids[0]
    ));
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let m = marker(&env.block(&ids[0]), "no-compact-mark.json").unwrap();
    assert_eq!(m["details"], "broken scrape");
    let r = mark(format!("id={}&action=DELETION&detail=x", ids[1]));
    assert_eq!(r.status, 200, "{}", text(&r.body));
    assert!(marker(&env.block(&ids[1]), "deletion-mark.json").is_some());
    // Bad requests say what is wrong and change nothing.
    let r = mark(format!("id={}&action=EXPLODE", ids[2]));
    assert_eq!(r.status, 400);
    assert!(text(&r.body).contains("EXPLODE"));
    let r = mark("id=01ARZ3NDEKTSV4RRFFQ69G5FAV&action=DELETION".into());
    assert_eq!(r.status, 400);
    assert!(marker(&env.block(&ids[2]), "deletion-mark.json").is_none());
}

/// `--min-time`/`--max-time` limit the blocks `tools bucket web` shows to those overlapping
/// the range, and `--disable-admin-operations` refuses marking.
#[test]
fn web_shows_the_time_range_and_can_refuse_marking() {
    let (env, ids) = Env::new(6);
    let from = T0 + 4 * 3_600_000;
    // The blocks overlapping [from, end of time], from their metas.
    let mut want: Vec<String> = ids
        .iter()
        .filter(|id| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(env.block(id).join("meta.json")).unwrap())
                    .unwrap();
            meta["maxTime"].as_i64().unwrap() >= from
        })
        .cloned()
        .collect();
    want.sort();
    assert!(
        !want.is_empty() && want.len() < ids.len(),
        "{want:?} of {ids:?}"
    );
    let (_child, port) = env.serve(&[
        "web",
        &format!(
            "--min-time={}",
            strata_model::timestamp::format_rfc3339(from)
        ),
        "--disable-admin-operations",
    ]);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http_request("GET", &format!("{base}/api/v1/blocks"), &[]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let mut shown: Vec<String> = v["data"]["blocks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|b| b["ulid"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        shown.sort();
        if !shown.is_empty() {
            assert_eq!(shown, want, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = http_request_with_headers(
        "POST",
        &format!("{base}/api/v1/blocks/mark"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("id={}&action=DELETION&detail=x", want[0]).as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", text(&r.body));
    assert!(text(&r.body).contains("--disable-admin-operations"));
    assert!(marker(&env.block(&want[0]), "deletion-mark.json").is_none());
}

/// The files of block `id` under `bucket`, relative, with their bytes.
fn block_files(bucket: &Path, id: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let root = bucket.join(id);
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let rel = p.strip_prefix(&root).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `tools bucket replicate --single-run`: the chosen blocks end up in the target bucket with
/// every file equal to the source's; a second run copies nothing; a block left half copied
/// (no meta.json, a chunk segment missing) is completed; `--matcher`, `--id` and
/// `--ignore-marked-for-deletion` choose the blocks.
#[test]
fn replicate_copies_the_chosen_blocks() {
    let (env, ids) = Env::new(6);
    let target = |name: &str| {
        let dir = env.root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        (
            dir.clone(),
            format!(
                "--objstore-to.config=type: FILESYSTEM\nconfig: {{directory: {}}}",
                dir.display()
            ),
        )
    };
    let replicate = |to: &str, extra: &[&str]| {
        let mut args = vec![
            "replicate",
            "--single-run",
            "--http-address=127.0.0.1:0",
            to,
        ];
        args.extend_from_slice(extra);
        let out = env.tools(&args);
        assert!(out.status.success(), "{extra:?}: {}", text(&out.stderr));
        text(&out.stderr)
    };
    let in_target = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = ids
            .iter()
            .filter(|id| dir.join(id).join("meta.json").exists())
            .cloned()
            .collect();
        v.sort();
        v
    };
    let mut all = ids.clone();
    all.sort();

    let (dir, to) = target("replica");
    replicate(&to, &["--matcher=cluster=\"eu1\""]);
    assert_eq!(in_target(&dir), all);
    for id in &ids {
        assert_eq!(
            block_files(&dir, id),
            block_files(&env.root.join("bucket"), id),
            "{id}"
        );
    }
    // Nothing left to do.
    let log = replicate(&to, &[]);
    assert!(!log.contains("object replicated"), "{log}");
    // A half-copied block is completed.
    std::fs::remove_file(dir.join(&ids[0]).join("meta.json")).unwrap();
    std::fs::remove_file(dir.join(&ids[0]).join("chunks/000001")).unwrap();
    let log = replicate(&to, &[]);
    assert!(log.contains("chunks/000001"), "{log}");
    assert_eq!(
        block_files(&dir, &ids[0]),
        block_files(&env.root.join("bucket"), &ids[0])
    );

    let (dir, to) = target("other-cluster");
    replicate(&to, &["--matcher={cluster=\"us1\"}"]);
    assert!(in_target(&dir).is_empty());

    let (dir, to) = target("by-id");
    replicate(&to, &["--id", &ids[1]]);
    assert_eq!(in_target(&dir), [ids[1].clone()]);

    let out = env.tools(&[
        "mark",
        "--id",
        &ids[2],
        "--marker=deletion-mark.json",
        "--details=x",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (dir, to) = target("unmarked");
    replicate(&to, &["--ignore-marked-for-deletion"]);
    let want: Vec<String> = all.iter().filter(|id| **id != ids[2]).cloned().collect();
    assert_eq!(in_target(&dir), want);
    // The marker itself is not copied.
    let (dir, to) = target("with-marked");
    replicate(&to, &[]);
    assert_eq!(in_target(&dir), all);
    assert!(!dir.join(&ids[2]).join("deletion-mark.json").exists());
}
