//! End-to-end checks of the `strata` binary's command line: what a user swapping the `thanos`
//! image for Strata sees at startup.

use std::process::{Command, Output};

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("running the strata binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const BUCKET: &str =
    "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: /tmp/strata-cli-test";

#[test]
fn help_lists_every_subcommand() {
    let out = strata(&["--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for cmd in ["sidecar", "store", "query", "compact", "rule", "tools"] {
        assert!(
            help.contains(&format!("\n  {cmd} ")),
            "{cmd} missing from:\n{help}"
        );
    }
    assert!(
        help.contains("--log.level") && help.contains("--log.format"),
        "{help}"
    );

    let out = strata(&["tools", "bucket", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for cmd in ["ls", "inspect", "verify", "upload-blocks"] {
        assert!(
            help.contains(&format!("\n  {cmd} ")),
            "{cmd} missing from:\n{help}"
        );
    }
}

#[test]
fn component_help_shows_thanos_defaults() {
    let out = strata(&["store", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for needle in [
        "--http-address",
        "0.0.0.0:10902",
        "--grpc-address",
        "0.0.0.0:10901",
        "--index-cache-size",
        "250MB",
        "--chunk-pool-size",
        "2GB",
        "--sync-block-duration",
        "15m",
        "--objstore.config-file",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ] {
        assert!(help.contains(needle), "{needle} missing from store --help");
    }
}

#[test]
fn version_works_on_subcommands_too() {
    for args in [&["--version"][..], &["store", "--version"][..]] {
        let out = strata(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.starts_with("strata"), "{text}");
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    }
}

#[test]
fn unknown_flag_is_a_startup_error_naming_the_flag() {
    let out = strata(&["store", "--store.no-such-flag=1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--store.no-such-flag"),
        "{}",
        stderr(&out)
    );

    let out = strata(&["--log.levl=debug", "query"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--log.levl"), "{}", stderr(&out));

    let out = strata(&["receive"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("receive"), "{}", stderr(&out));
}

/// `--log.format=journald` as Thanos takes it: the journal where there is one, else logfmt
/// on stderr after a warning.
#[test]
fn journald_log_format_falls_back_to_logfmt_without_a_journal() {
    let out = strata(&["--log.format=journald", "rule"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    if std::path::Path::new("/run/systemd/journal/socket").exists() {
        // The events went to the journal.
        assert!(!err.contains("no --query parameter was given"), "{err}");
    } else {
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            lines[0].starts_with("level=warn ")
                && lines[0].contains("journald format requested but not available"),
            "{err}"
        );
        assert!(
            lines[1].starts_with("level=error ")
                && lines[1].contains("no --query parameter was given"),
            "{err}"
        );
    }
}

/// A start-up error is logged once, in Thanos' logfmt shape, and the exit status is 1.
#[test]
fn start_up_errors_fail_clearly() {
    let cases: &[(&[&str], &str)] = &[(&["rule"], "no --query parameter was given")];
    for (args, want) in cases {
        let out = strata(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.matches(want).count(), 1, "{err}");
        assert!(err.starts_with("level=error ts="), "{err}");
        assert!(err.contains(" caller=") && err.contains(" msg="), "{err}");
    }
}

#[test]
fn json_logging() {
    let out = strata(&["--log.format=json", "rule"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let line = err.lines().next().unwrap_or_default();
    assert!(
        line.starts_with('{') && line.contains("\"level\":\"error\""),
        "{err}"
    );
    assert!(line.contains("no --query parameter was given"), "{err}");
}

#[test]
fn objstore_config_is_required_and_exclusive() {
    let out = strata(&["store"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--objstore.config-file or --objstore.config is required"),
        "{}",
        stderr(&out)
    );

    let out = strata(&["store", BUCKET, "--objstore.config-file=bucket.yml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("--objstore.config") && err.contains("cannot be used with"),
        "{err}"
    );

    let out = strata(&[
        "tools",
        "bucket",
        "--objstore.config-file=/nonexistent/bucket.yml",
        "ls",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("/nonexistent/bucket.yml") && err.contains("--objstore.config-file"),
        "{err}"
    );

    // A readable file satisfies the requirement: the command runs on that (empty) bucket.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bucket.yml");
    std::fs::create_dir(dir.path().join("bucket")).unwrap();
    std::fs::write(
        &file,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            dir.path().join("bucket").display()
        ),
    )
    .unwrap();
    let flag = format!("--objstore.config-file={}", file.display());
    let out = strata(&["tools", "bucket", &flag, "ls"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn no_forms_of_boolean_flags() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = format!("--data-dir={}", data.path().display());
    let http = "--http-address=127.0.0.1:0";
    for args in [
        &["compact", "--no-wait", BUCKET, &data_dir, http][..],
        &[
            "compact",
            "-w",
            "--no-wait",
            "--no-downsampling.disable",
            BUCKET,
            &data_dir,
            http,
        ][..],
        &[
            "store",
            "--no-cache-index-header",
            "--no-web.disable",
            BUCKET,
            // Implemented and long-running: an address that cannot be bound makes it exit
            // once the flags are parsed.
            "--http-address=256.0.0.1:1",
        ][..],
        &[
            "query",
            "--no-query.partial-response",
            "--no-query.auto-downsampling",
            "--http-address=256.0.0.1:1",
        ][..],
        &[
            "sidecar",
            "--no-shipper.upload-compacted",
            // Implemented and long-running: an address that cannot be bound makes it exit
            // once the flags are parsed.
            "--http-address=256.0.0.1:1",
        ][..],
        &["rule", "--no-tsdb.wal-compression"][..],
        &["tools", "bucket", "ls", "--no-exclude-delete", BUCKET][..],
        &[
            "tools",
            "bucket",
            "upload-blocks",
            "--no-shipper.upload-compacted",
            BUCKET,
        ][..],
        &[
            "--no-enable-auto-gomemlimit",
            "query",
            "--http-address=256.0.0.1:1",
        ][..],
    ] {
        let out = strata(args);
        // Parsed fine: exit 2 would be a usage error.
        assert_ne!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        if args.contains(&"tools") || args.contains(&"compact") {
            // Implemented: runs (upload-blocks fails only because ./data does not exist; the
            // compactor finishes one iteration over an empty bucket).
            assert!(
                !stderr(&out).contains("not implemented"),
                "{args:?}: {}",
                stderr(&out)
            );
        } else if ["store", "sidecar", "query"]
            .iter()
            .any(|c| args.contains(c))
        {
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("--http-address"),
                "{args:?}: {}",
                stderr(&out)
            );
        } else {
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("no --query parameter was given"),
                "{args:?}: {}",
                stderr(&out)
            );
        }
    }
    // Kingpin does not accept a value on a boolean flag; neither do we.
    let out = strata(&["compact", "--wait=true"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_durations_and_sizes_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["store", "--index-cache-size=250mb"], "--index-cache-size"),
        (&["store", "--chunk-pool-size=2"], "--chunk-pool-size"),
        (
            &["store", "--sync-block-duration=15"],
            "--sync-block-duration",
        ),
        (&["store", "--consistency-delay=1x"], "--consistency-delay"),
        (&["store", "--min-time=yesterday"], "--min-time"),
        (&["compact", "--delete-delay=-48h"], "--delete-delay"),
        (
            &["compact", "--retention.resolution-raw=30days"],
            "--retention.resolution-raw",
        ),
        (&["query", "--query.timeout=2 minutes"], "--query.timeout"),
        (
            &["sidecar", "--min-time=2024-13-01T00:00:00Z"],
            "--min-time",
        ),
    ];
    for (args, flag) in cases {
        let out = strata(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn durations_in_both_syntaxes_and_relative_times_parse() {
    let out = strata(&[
        "store",
        BUCKET,
        "--sync-block-duration=1.5h",
        "--consistency-delay=30m",
        "--ignore-deletion-marks-delay=1d12h",
        "--min-time=-6w",
        "--max-time",
        "-2w",
        "--index-cache-size=1GiB",
        "--chunk-pool-size=512MB",
        // Parsed: the store then stops at the address it cannot bind.
        "--http-address=256.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--http-address"), "{}", stderr(&out));
}

#[test]
fn bad_label_flags_are_rejected() {
    let out = strata(&[
        "tools",
        "bucket",
        "upload-blocks",
        BUCKET,
        "--label=cluster=eu",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("--label") && err.contains("double-quoted"),
        "{err}"
    );

    let out = strata(&["tools", "bucket", "verify", BUCKET, "--repair"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--objstore-backup.config"),
        "{}",
        stderr(&out)
    );
}

/// A FILESYSTEM bucket in `dir`, as an `--objstore.config` flag.
fn filesystem_bucket(dir: &std::path::Path) -> String {
    format!(
        "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}",
        dir.display()
    )
}

/// Tuning flags Strata does not act on are accepted but logged at start-up with the reason,
/// only when given a value other than their default.
#[test]
fn tuning_flags_without_effect_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = filesystem_bucket(&dir.path().join("bucket"));
    std::fs::create_dir(dir.path().join("bucket")).unwrap();
    std::fs::create_dir(dir.path().join("blocks")).unwrap();
    let path = format!("--path={}", dir.path().join("blocks").display());
    let data_dir = format!("--data-dir={}", dir.path().join("data").display());

    // Runs to completion over an empty directory and an empty bucket.
    let upload = |concurrency: &str| {
        strata(&[
            "tools",
            "bucket",
            "upload-blocks",
            &bucket,
            &path,
            &format!("--shipper.upload-concurrency={concurrency}"),
        ])
    };
    // --shipper.upload-concurrency takes effect now: nothing to say about it.
    for concurrency in ["4", "5"] {
        let out = upload(concurrency);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(!stderr(&out).contains("has no effect"), "{}", stderr(&out));
    }

    // One run of the compactor over the empty bucket.
    let out = strata(&[
        "compact",
        &bucket,
        &data_dir,
        "--http-address=127.0.0.1:0",
        "--compact.block-max-index-size=10GB",
        "--compact.progress-interval=1m",
        "--compact.skip-block-with-out-of-order-chunks",
        "--web.disable-cors",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for flag in [
        "--compact.block-max-index-size",
        "--compact.progress-interval",
        "--compact.skip-block-with-out-of-order-chunks",
        "--web.disable-cors",
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(flag) && l.contains("has no effect")),
            "{flag}: {err}"
        );
    }

    // Long-running commands: logged before they stop at an address they cannot bind.
    let http = "--http-address=256.0.0.1:1";
    let grpc = "--grpc-address=127.0.0.1:0";
    let cases: &[(&[&str], &[&str])] = &[(
        &[
            "store",
            &bucket,
            &data_dir,
            http,
            grpc,
            "--no-cache-index-header",
            "--block-discovery-strategy=recursive",
            "--store.enable-lazy-expanded-postings",
        ],
        &[
            "--no-cache-index-header",
            "--block-discovery-strategy",
            "--store.enable-lazy-expanded-postings",
        ],
    )];
    for (args, flags) in cases {
        let out = strata(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("--http-address"), "{args:?}: {err}");
        for flag in *flags {
            assert!(
                err.lines()
                    .any(|l| l.contains(flag) && l.contains("has no effect")),
                "{flag}: {err}"
            );
        }
    }
}

/// `compact --wait --compact.cleanup-interval`: blocks whose deletion mark is past
/// `--delete-delay` are deleted between iterations, not only at the end of the next one.
#[test]
fn compact_cleans_up_between_iterations_every_cleanup_interval() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    std::fs::create_dir(&root).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .args([
            "compact",
            &filesystem_bucket(&root),
            &format!("--data-dir={}", dir.path().join("data").display()),
            "--http-address=127.0.0.1:0",
            "--wait",
            // The next iteration (and its own cleanup) is an hour away.
            "--wait-interval=1h",
            "--compact.cleanup-interval=1s",
            "--delete-delay=1s",
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = strata_testutil::process::ChildGuard::spawn("strata compact", &mut command)
        .expect("starting strata compact");
    let lines = BufReader::new(child.child_mut().stderr.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let mut wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    log.push_str(&line);
                    log.push('\n');
                    if line.contains(needle) {
                        return;
                    }
                }
                Err(_) => panic!("no {needle:?} in:\n{log}"),
            }
        }
    };
    wait_for("compaction iteration done");

    // A block marked for deletion a minute ago, after the iteration.
    let id = "01J0000000000000000000000A";
    let block = root.join(id);
    std::fs::create_dir(&block).unwrap();
    let meta = format!(
        r#"{{"ulid":"{id}","minTime":0,"maxTime":7200000,"stats":{{"numSamples":1,"numSeries":1,"numChunks":1}},"compaction":{{"level":1,"sources":["{id}"]}},"version":1,"thanos":{{"labels":{{"a":"b"}},"downsample":{{"resolution":0}},"source":"sidecar"}}}}"#
    );
    std::fs::write(block.join("index"), b"index").unwrap();
    std::fs::write(block.join("meta.json"), meta).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(
        block.join("deletion-mark.json"),
        format!(
            r#"{{"id":"{id}","deletion_time":{},"version":1}}"#,
            now - 60
        ),
    )
    .unwrap();

    wait_for("cleanup between iterations done");
    assert!(log.contains(&format!("block={id}")), "{log}");
    assert!(!block.join("meta.json").exists() && !block.join("index").exists());
    drop(child);
}

/// `--tracing.config`: a bad configuration stops start-up naming the flag and the field; a
/// type whose protocol Strata lacks is logged as without effect; OTLP says where spans go
/// (and a process that stops at once does not hang flushing them).
#[test]
fn tracing_configurations_are_checked_at_startup() {
    let out = strata(&[
        "--tracing.config=type: OTLP\nconfig: {client_type: udp}",
        "rule",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--tracing.config") && err.contains("client_type"),
        "{err}"
    );
    assert!(
        !err.contains("no --query parameter was given"),
        "stopped before: {err}"
    );

    let out = strata(&[
        "--tracing.config=type: JAEGER\nconfig: {service_name: q}",
        "rule",
    ]);
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l.contains("--tracing.config")
            && l.contains("has no effect")
            && l.contains("JAEGER")),
        "{err}"
    );

    let started = std::time::Instant::now();
    let out = strata(&[
        "--tracing.config=type: OTLP\nconfig: {client_type: grpc, endpoint: 127.0.0.1:9, insecure: true, sampler_type: sometimes}",
        "rule",
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("tracing enabled: spans exported as OTLP over gRPC to 127.0.0.1:9"),
        "{err}"
    );
    // Said in the log, not silently taken (the configuration is read before the logger).
    assert!(
        err.lines().any(|l| l.starts_with("level=warn")
            && l.contains("--tracing.config: sampler_type \\\"sometimes\\\" is unknown")),
        "{err}"
    );
    assert!(err.contains("no --query parameter was given"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
