//! `strata tools bucket` end to end: the real binary against a FILESYSTEM bucket and an S3
//! bucket served by moto, with blocks made by Prometheus' own `promtool`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

use strata_testutil::moto::MotoServer;
use strata_testutil::prometheus;
use strata_tsdb::BlockMeta;

fn strata(objstore_yml: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["tools", "bucket"])
        .args(args)
        .arg("--objstore.config-file")
        .arg(objstore_yml)
        .output()
        .expect("run strata")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Three 2h blocks made by promtool from OpenMetrics text.
fn prometheus_blocks(dir: &Path) -> Vec<BlockMeta> {
    let mut om = String::from("# TYPE req counter\n");
    for i in 0..20 {
        for k in 0..(6 * 240) {
            let t = 1_700_000_000_000i64 + k * 15_000 + 321;
            writeln!(
                om,
                "req_total{{pod=\"p{i}\"}} {} {}.{:03}",
                k * (i + 1),
                t / 1000,
                t % 1000
            )
            .unwrap();
        }
    }
    om.push_str("# EOF\n");
    let blocks = prometheus::create_blocks_from_openmetrics(&om, dir).unwrap();
    assert!(blocks.len() >= 3, "{blocks:?}");
    blocks
        .iter()
        .map(|b| BlockMeta::read_from_dir(b).unwrap())
        .collect()
}

fn exercise(
    objstore: &Path,
    blocks_dir: &Path,
    bucket_block_file: impl Fn(&str) -> Option<std::path::PathBuf>,
) {
    let local = prometheus_blocks(blocks_dir);
    let ids: Vec<String> = local.iter().map(|m| m.ulid.to_string()).collect();
    let path = blocks_dir.to_str().unwrap();

    // Without external labels the upload is refused, and nothing is uploaded.
    let o = strata(objstore, &["upload-blocks", "--path", path]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("external labels"), "{}", stderr(&o));
    assert_eq!(ok(strata(objstore, &["ls"])).trim(), "");

    ok(strata(
        objstore,
        &[
            "upload-blocks",
            "--path",
            path,
            "--label",
            "cluster=\"eu1\"",
            "--label",
            "replica=\"a\"",
        ],
    ));
    // A second run finds them already there.
    let o = strata(
        objstore,
        &[
            "upload-blocks",
            "--path",
            path,
            "--label",
            "cluster=\"eu1\"",
            "--label",
            "replica=\"a\"",
        ],
    );
    assert!(
        stderr(&o).contains("already in the bucket"),
        "{}",
        stderr(&o)
    );

    // ls: one ULID per line, oldest first.
    let listed: Vec<String> = ok(strata(objstore, &["ls"]))
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(listed, ids);

    // ls -o json: each block's meta with the Thanos section filled in.
    let json = ok(strata(objstore, &["ls", "-o", "json"]));
    let metas: Vec<BlockMeta> = serde_json::Deserializer::from_str(&json)
        .into_iter::<BlockMeta>()
        .map(Result::unwrap)
        .collect();
    assert_eq!(metas.len(), local.len());
    for (m, l) in metas.iter().zip(&local) {
        assert_eq!(m.stats, l.stats);
        let t = m.thanos.as_ref().unwrap();
        assert_eq!(t.source, "bucket.upload");
        assert_eq!(t.labels.get("cluster").map(String::as_str), Some("eu1"));
        assert_eq!(t.downsample.resolution, 0);
        let paths: Vec<&str> = t.files.iter().map(|f| f.rel_path.as_str()).collect();
        assert_eq!(paths, vec!["chunks/000001", "index", "meta.json"]);
        if let Some(file) = bucket_block_file(&format!("{}/index", m.ulid)) {
            assert_eq!(
                t.files[1].size_bytes as u64,
                std::fs::metadata(file).unwrap().len()
            );
        }
    }

    // inspect: Thanos' columns; stats and labels per block; selector filters.
    let table = ok(strata(objstore, &["inspect"]));
    let header = table.lines().next().unwrap();
    for col in [
        "ULID",
        "FROM",
        "UNTIL",
        "RANGE",
        "#SERIES",
        "#SAMPLES",
        "#CHUNKS",
        "COMP-LEVEL",
        "RESOLUTION",
        "LABELS",
        "SOURCE",
    ] {
        assert!(header.contains(col), "{col} in {header}");
    }
    for id in &ids {
        assert!(table.contains(id.as_str()), "{id} in\n{table}");
    }
    assert!(table.contains("cluster=eu1,replica=a"), "{table}");
    let tsv = ok(strata(objstore, &["inspect", "--output", "tsv"]));
    assert_eq!(tsv.lines().count(), 1 + ids.len());
    let first = tsv.lines().nth(1).unwrap().split('\t').collect::<Vec<_>>();
    assert_eq!(first[0], ids[0]);
    assert_eq!(first[5], "20", "#SERIES");
    let inspect_json: Vec<BlockMeta> =
        serde_json::from_str(&ok(strata(objstore, &["inspect", "--output", "json"]))).unwrap();
    assert_eq!(
        inspect_json
            .iter()
            .map(|m| m.stats.num_samples)
            .sum::<u64>(),
        20 * 6 * 240
    );
    let none = ok(strata(
        objstore,
        &["inspect", "--output", "tsv", "-l", "cluster=\"us1\""],
    ));
    assert_eq!(none.lines().count(), 1, "header only: {none}");

    // verify: clean.
    let o = strata(objstore, &["verify"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o).trim(), "");
}

#[test]
fn filesystem_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let bucket_dir = dir.path().join("bucket");
    let yml = dir.path().join("objstore.yml");
    std::fs::write(
        &yml,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket_dir.display()
        ),
    )
    .unwrap();
    let blocks = dir.path().join("prom");
    exercise(&yml, &blocks, |key| Some(bucket_dir.join(key)));

    // Damage one block's index in the bucket: verify names that block and fails.
    let ids: Vec<String> = ok(strata(&yml, &["ls"]))
        .lines()
        .map(str::to_string)
        .collect();
    let index = bucket_dir.join(&ids[1]).join("index");
    let mut data = std::fs::read(&index).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x20;
    std::fs::write(&index, data).unwrap();
    let o = strata(&yml, &["verify"]);
    assert!(!o.status.success(), "verify must fail on a damaged block");
    let report = stdout(&o);
    assert!(report.lines().all(|l| l.contains(&ids[1])), "{report}");
    assert!(report.contains("error: block"), "{report}");
    // Restricted to another block, verify passes.
    ok(strata(&yml, &["verify", "--id", &ids[0]]));

    // An overlapping block of the same stream: copy a block under a new ULID.
    let copy = ulid::Ulid::generate().to_string();
    let src = bucket_dir.join(&ids[0]);
    let dst = bucket_dir.join(&copy);
    std::fs::create_dir_all(dst.join("chunks")).unwrap();
    std::fs::copy(src.join("chunks/000001"), dst.join("chunks/000001")).unwrap();
    std::fs::copy(src.join("index"), dst.join("index")).unwrap();
    let mut meta = BlockMeta::read_from_dir(&src).unwrap();
    meta.ulid = copy.parse().unwrap();
    meta.write_to_dir(&dst).unwrap();
    let o = strata(&yml, &["verify", "--issues", "overlapped_blocks"]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("overlap"), "{}", stdout(&o));
}

#[test]
fn s3_bucket_served_by_moto() {
    let moto = MotoServer::start().expect("moto_server (run scripts/test.sh to install it)");
    moto.create_bucket("strata").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("objstore.yml");
    std::fs::write(&yml, moto.objstore_yml("strata")).unwrap();
    exercise(&yml, &dir.path().join("prom"), |_| None);
}

#[test]
fn bad_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("objstore.yml");
    std::fs::write(
        &yml,
        "type: FILESYSTEM\nconfig:\n  directory: /tmp/x\n  bogus: 1\n",
    )
    .unwrap();
    let o = strata(&yml, &["ls"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bogus"), "{}", stderr(&o));
}
