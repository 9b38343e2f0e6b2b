//! `strata tools bucket rewrite` end to end: a block made by Prometheus' `promtool`, uploaded
//! to a FILESYSTEM bucket, rewritten by the real binary; the result read back by `promtool
//! tsdb dump` and compared with the original's dump transformed by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

use strata_block::transfer::{UploadOptions, upload_block};
use strata_objstore::{Bucket, BucketMetrics};
use strata_testutil::prometheus;
use strata_tsdb::BlockMeta;
use ulid::Ulid;

/// 2h-aligned, so that promtool writes one block.
const T0: i64 = 1_699_999_200_000;

fn openmetrics() -> String {
    let mut om = String::new();
    for k in 0..120 {
        let t = T0 + k * 60_000;
        let ts = format!("{}.{:03}", t / 1000, t % 1000);
        for inst in ["a", "b"] {
            let v = k * if inst == "a" { 1 } else { 2 };
            writeln!(om, "req_total{{job=\"api\",instance=\"{inst}\"}} {v} {ts}").unwrap();
        }
        writeln!(om, "secret_info{{user=\"alice\"}} 1 {ts}").unwrap();
        writeln!(om, "temp{{room=\"x\"}} {} {ts}", 20 + k % 7).unwrap();
    }
    om.push_str("# EOF\n");
    om
}

fn strata(yml: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["tools", "bucket", "rewrite"])
        .args(args)
        .arg("--objstore.config-file")
        .arg(yml)
        .output()
        .expect("run strata")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

type Dump = BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

/// `promtool tsdb dump` of one block directory, by series.
fn dump(block: &Path, work: &Path) -> Dump {
    let db = work.join(format!("db-{}", Ulid::generate()));
    std::fs::create_dir_all(&db).unwrap();
    let to = db.join(block.file_name().unwrap());
    std::fs::create_dir_all(to.join("chunks")).unwrap();
    for rel in ["meta.json", "index"] {
        std::fs::copy(block.join(rel), to.join(rel)).unwrap();
    }
    for e in std::fs::read_dir(block.join("chunks")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join("chunks").join(e.file_name())).unwrap();
    }
    let mut out = Dump::new();
    for s in prometheus::dump(&db).unwrap() {
        let mut l = s.labels.clone();
        l.sort();
        out.entry(l).or_default().push((s.t, s.value));
    }
    for v in out.values_mut() {
        v.sort_by_key(|p| p.0);
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn rewrite_deletes_trims_and_relabels_as_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks =
        prometheus::create_blocks_from_openmetrics(&openmetrics(), &tmp.path().join("prom"))
            .unwrap();
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let bucket_dir = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let yml = tmp.path().join("bucket.yml");
    std::fs::write(
        &yml,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket_dir.display()
        ),
    )
    .unwrap();
    let bucket = Bucket::from_yaml(
        &std::fs::read_to_string(&yml).unwrap(),
        &BucketMetrics::unregistered(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let src = rt
        .block_on(upload_block(
            &bucket,
            &blocks[0],
            &UploadOptions {
                labels: [("cluster".to_string(), "eu1".to_string())].into(),
                source: "sidecar".into(),
                require_labels: true,
                hash_func: Default::default(),
                file_concurrency: 0,
            },
        ))
        .unwrap();
    let id = src.ulid.to_string();
    let original = dump(&blocks[0], tmp.path());
    assert_eq!(original.len(), 4);

    let (cut_from, cut_to) = (T0 + 30 * 60_000, T0 + 59 * 60_000);
    let delete = format!(
        "- matchers: '{{__name__=\"secret_info\"}}'\n\
         - matchers: '{{room=\"x\"}}'\n  intervals:\n  - mint: {cut_from}\n    maxt: {cut_to}\n"
    );
    let relabel = "- action: labeldrop\n  regex: instance\n";
    let tmp_dir = tmp.path().join("work");
    let tmp_flag = format!("--tmp.dir={}", tmp_dir.display());
    let delete_flag = format!("--rewrite.to-delete-config={delete}");
    let relabel_flag = format!("--rewrite.to-relabel-config={relabel}");

    // Dry run by default: the changes printed, nothing written.
    let out = strata(
        &yml,
        &[
            &format!("--id={id}"),
            &tmp_flag,
            &delete_flag,
            &relabel_flag,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "Deleted {__name__=\"secret_info\", user=\"alice\"} \
             [{-9223372036854775808 9223372036854775807}]"
        ),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "Deleted {{__name__=\"temp\", room=\"x\"}} [{{{cut_from} {cut_to}}}]"
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "Relabelled {__name__=\"req_total\", instance=\"a\", job=\"api\"} \
             {__name__=\"req_total\", job=\"api\"}"
        ),
        "{err}"
    );
    let listed = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(listed(&bucket_dir), vec![id.clone()]);

    // For real, marking the source for deletion.
    let out = strata(
        &yml,
        &[
            &format!("--id={id}"),
            &tmp_flag,
            &delete_flag,
            &relabel_flag,
            "--no-dry-run",
            "--delete-blocks",
            "--hash-func=SHA256",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ids = listed(&bucket_dir);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let new_id = ids.iter().find(|i| **i != id).unwrap().clone();
    assert!(bucket_dir.join(&id).join("deletion-mark.json").is_file());
    let new_dir = bucket_dir.join(&new_id);
    let meta = BlockMeta::read_from_dir(&new_dir).unwrap();
    assert_eq!((meta.min_time, meta.max_time), (src.min_time, src.max_time));
    assert_eq!(meta.compaction.sources, vec![meta.ulid]);
    assert_eq!(meta.compaction.level, src.compaction.level);
    let thanos = meta.thanos.as_ref().unwrap();
    assert_eq!(thanos.source, "bucket.rewrite");
    assert_eq!(
        thanos.labels.get("cluster").map(String::as_str),
        Some("eu1")
    );
    assert_eq!(
        thanos.rewrites[0]["sources"],
        serde_json::json!(
            src.compaction
                .sources
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(
        thanos.rewrites[0]["deletions_applied"][1]["intervals"][0]["Mint"],
        cut_from
    );
    assert!(thanos.files.iter().any(|f| f.hash.is_some()));
    let log = std::fs::read_to_string(tmp_dir.join(&new_id).join("change.log")).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");

    // What promtool reads back is the original with the changes applied by hand.
    let mut want = Dump::new();
    for (l, samples) in &original {
        let name = &l.iter().find(|(n, _)| n == "__name__").unwrap().1;
        match name.as_str() {
            "secret_info" => {}
            "temp" => {
                want.insert(
                    l.clone(),
                    samples
                        .iter()
                        .copied()
                        .filter(|&(t, _)| t < cut_from || t > cut_to)
                        .collect(),
                );
            }
            _ => {
                // Instances a and b merge: equal timestamps keep the first series' (a's).
                let merged = labels(&[("__name__", "req_total"), ("job", "api")]);
                let e = want.entry(merged).or_default();
                for &(t, v) in samples {
                    if !e.iter().any(|&(t2, _)| t2 == t) {
                        e.push((t, v));
                    }
                }
                e.sort_by_key(|p| p.0);
            }
        }
    }
    let got = dump(&new_dir, tmp.path());
    assert_eq!(got, want);
    let a = &original[&labels(&[("__name__", "req_total"), ("instance", "a"), ("job", "api")])];
    assert_eq!(
        got[&labels(&[("__name__", "req_total"), ("job", "api")])],
        *a
    );

    // Refusals: no rewrite asked for; an unknown block (nothing written).
    let out = strata(&yml, &[&format!("--id={id}"), &tmp_flag]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--rewrite.to-delete-config"),
        "{}",
        text(&out.stderr)
    );
    let unknown = Ulid::generate().to_string();
    let out = strata(
        &yml,
        &[
            &format!("--id={unknown}"),
            &tmp_flag,
            &delete_flag,
            "--no-dry-run",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&unknown),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(listed(&bucket_dir).len(), 2);
    let out = strata(
        &yml,
        &[
            &format!("--id={id}"),
            &tmp_flag,
            "--rewrite.to-delete-config=- matchers: '{__name__=~'",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--rewrite.to-delete-config"),
        "{}",
        text(&out.stderr)
    );
}
