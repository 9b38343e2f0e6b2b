//! Flag parsing: defaults, spellings and errors, checked against Thanos' `--help` output.

use clap::{CommandFactory, Parser};
use strata_model::timestamp::{MAX_TIME_MS, MIN_TIME_MS};
use strata_model::{ByteSize, Duration, TimeOrDuration};

use super::common::{HashFunc, LogFormat, LogLevel, TlsVersion};
use super::tools::{BucketCommand, InspectColumn, InspectOutput, LsOutput, ToolsCommand};
use super::*;

fn parse(args: &[&str]) -> Cli {
    let argv = std::iter::once("strata").chain(args.iter().copied());
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn parse_err(args: &[&str]) -> String {
    let argv = std::iter::once("strata").chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
        Err(e) => e.to_string(),
    }
}

fn store(args: &[&str]) -> store::StoreArgs {
    let argv: Vec<&str> = std::iter::once("store")
        .chain(args.iter().copied())
        .collect();
    match parse(&argv).command {
        Command::Store(a) => *a,
        other => panic!("{other:?}"),
    }
}

fn compact(args: &[&str]) -> compact::CompactArgs {
    let argv: Vec<&str> = std::iter::once("compact")
        .chain(args.iter().copied())
        .collect();
    match parse(&argv).command {
        Command::Compact(a) => *a,
        other => panic!("{other:?}"),
    }
}

fn query(args: &[&str]) -> query::QueryArgs {
    let argv: Vec<&str> = std::iter::once("query")
        .chain(args.iter().copied())
        .collect();
    match parse(&argv).command {
        Command::Query(a) => *a,
        other => panic!("{other:?}"),
    }
}

fn sidecar(args: &[&str]) -> sidecar::SidecarArgs {
    let argv: Vec<&str> = std::iter::once("sidecar")
        .chain(args.iter().copied())
        .collect();
    match parse(&argv).command {
        Command::Sidecar(a) => *a,
        other => panic!("{other:?}"),
    }
}

fn rule(args: &[&str]) -> rule::RuleArgs {
    let argv: Vec<&str> = std::iter::once("rule")
        .chain(args.iter().copied())
        .collect();
    match parse(&argv).command {
        Command::Rule(a) => *a,
        other => panic!("{other:?}"),
    }
}

fn bucket(args: &[&str]) -> tools::BucketArgs {
    let argv: Vec<&str> = ["tools", "bucket"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    match parse(&argv).command {
        Command::Tools(tools::ToolsArgs {
            command: ToolsCommand::Bucket(b),
        }) => b,
        other => panic!("{other:?}"),
    }
}

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn global_defaults_and_placement() {
    let cli = parse(&["store"]);
    assert_eq!(cli.global.log_level, LogLevel::Info);
    assert_eq!(cli.global.log_format, LogFormat::Logfmt);
    assert!(!cli.global.tracing().is_set());
    assert!((cli.global.auto_gomemlimit_ratio - 0.9).abs() < f64::EPSILON);

    // Kingpin accepts app-level flags before or after the command.
    let before = parse(&["--log.level=debug", "store", "--log.format", "json"]);
    assert_eq!(before.global.log_level, LogLevel::Debug);
    assert_eq!(before.global.log_format, LogFormat::Json);
    let journald = parse(&["--log.format=journald", "store"]);
    assert_eq!(journald.global.log_format, LogFormat::Journald);
    let after = parse(&["tools", "bucket", "ls", "--log.level=warn"]);
    assert_eq!(after.global.log_level, LogLevel::Warn);

    assert!(parse_err(&["--log.level=trace", "store"]).contains("--log.level"));
    assert!(parse_err(&["--log.format=text", "store"]).contains("--log.format"));
    assert!(
        parse_err(&["store", "--tracing.config=a", "--tracing.config-file=b"])
            .contains("cannot be used with")
    );
    assert_eq!(
        parse(&["store", "--log.request.decision=LogFinishCall"])
            .global
            .log_request_decision
            .as_deref(),
        Some("LogFinishCall")
    );
    assert!(parse_err(&["query", "--log.request.decision=Sometimes"]).contains("Sometimes"));
    assert!(
        parse(&["store", "--enable-auto-gomemlimit"])
            .global
            .enable_auto_gomemlimit()
    );
}

#[test]
fn store_defaults() {
    let s = store(&[]);
    assert_eq!(s.http.http_address, "0.0.0.0:10902");
    assert_eq!(s.http.http_grace_period, Duration::from_mins(2));
    assert_eq!(s.http.http_config, "");
    assert_eq!(s.grpc.grpc_address, "0.0.0.0:10901");
    assert_eq!(s.grpc.grpc_grace_period, Duration::from_mins(2));
    assert_eq!(s.grpc.grpc_server_tls_cert, "");
    assert_eq!(s.grpc.grpc_server_tls_min_version, TlsVersion::V1_3);
    assert_eq!(
        s.grpc.grpc_server_max_connection_age,
        Duration::from_mins(60)
    );
    assert_eq!(s.data_dir, "./data");
    assert_eq!(s.index_cache_size, ByteSize::mib(250));
    assert_eq!(s.chunk_pool_size, ByteSize::gib(2));
    assert_eq!(s.downloaded_bytes_limit, ByteSize(0));
    assert_eq!(s.series_max_concurrency, 20);
    assert_eq!(s.sync_block_duration, Duration::from_mins(15));
    assert_eq!(s.block_sync_concurrency, 20);
    assert_eq!(s.block_meta_fetch_concurrency, 32);
    assert_eq!(
        s.block_discovery_strategy,
        common::BlockDiscoveryStrategy::Concurrent
    );
    assert_eq!(s.time_range.min_time, TimeOrDuration::Time(MIN_TIME_MS));
    assert_eq!(s.time_range.max_time, TimeOrDuration::Time(MAX_TIME_MS));
    assert_eq!(s.consistency_delay, Duration::ZERO);
    assert_eq!(s.ignore_deletion_marks_delay, Duration::from_hours(24));
    assert!(s.cache_index_header());
    assert!(!s.enable_index_header_lazy_reader());
    assert!(!s.block_viewer.web_disable());
    assert_eq!(s.store_limits.request_series, 0);
    assert_eq!(s.objstore.file, None);
    // Thanos' hidden tuning flags, with its defaults.
    assert_eq!(
        s.index_header_lazy_reader_idle_timeout,
        Duration::from_mins(5)
    );
    assert_eq!(s.index_header_posting_offsets_in_mem_sampling, 32);
    assert_eq!(s.estimated_max_series_size, 64 * 1024);
    assert_eq!(s.estimated_max_chunk_size, 16_000);
    assert_eq!(s.objstore_parquet.content, None);
    let s = store(&[
        "--store.index-header-lazy-reader-idle-timeout=0s",
        "--debug.estimated-max-series-size=1024",
        "--debug.estimated-max-chunk-size=512",
    ]);
    assert_eq!(s.index_header_lazy_reader_idle_timeout, Duration::ZERO);
    assert_eq!(
        (s.estimated_max_series_size, s.estimated_max_chunk_size),
        (1024, 512)
    );
}

#[test]
fn store_values() {
    let s = store(&[
        "--index-cache-size=500MB",
        "--chunk-pool-size",
        "1GiB",
        "--sync-block-duration=3m",
        "--min-time=-6w",
        "--max-time",
        "-2w",
        "--consistency-delay=30m",
        "--no-cache-index-header",
        "--objstore.config-file=/etc/bucket.yml",
        "--http-address=:19902",
    ]);
    assert_eq!(s.index_cache_size, ByteSize::mib(500));
    assert_eq!(s.chunk_pool_size, ByteSize::gib(1));
    assert_eq!(s.sync_block_duration, Duration::from_mins(3));
    assert_eq!(
        s.time_range.min_time,
        TimeOrDuration::Relative(-42 * 86_400_000)
    );
    assert_eq!(
        s.time_range.max_time,
        TimeOrDuration::Relative(-14 * 86_400_000)
    );
    assert_eq!(s.consistency_delay, Duration::from_mins(30));
    assert!(!s.cache_index_header());
    assert_eq!(
        s.objstore.file.as_deref(),
        Some(std::path::Path::new("/etc/bucket.yml"))
    );
    assert_eq!(s.http.http_address, ":19902");
}

#[test]
fn bad_values_name_the_flag() {
    let e = parse_err(&["store", "--index-cache-size=250mb"]);
    assert!(
        e.contains("--index-cache-size") && e.contains("unknown unit"),
        "{e}"
    );
    let e = parse_err(&["store", "--sync-block-duration=5x"]);
    assert!(
        e.contains("--sync-block-duration") && e.contains("5x"),
        "{e}"
    );
    let e = parse_err(&["store", "--min-time=2024-02-30T00:00:00Z"]);
    assert!(
        e.contains("--min-time") && e.contains("day out of range"),
        "{e}"
    );
    let e = parse_err(&["compact", "--retention.resolution-raw=-1d"]);
    assert!(e.contains("--retention.resolution-raw"), "{e}");
    let e = parse_err(&["store", "--block-discovery-strategy=bogus"]);
    assert!(e.contains("--block-discovery-strategy"), "{e}");
    let e = parse_err(&["sidecar", "--hash-func=md5"]);
    assert!(e.contains("--hash-func"), "{e}");
}

#[test]
fn unknown_flags_and_kingpin_bool_rules() {
    assert!(parse_err(&["store", "--no-such-flag"]).contains("--no-such-flag"));
    // Kingpin rejects values on boolean flags (`--wait=false` is "unexpected false").
    assert!(parse_err(&["compact", "--wait=false"]).contains("--wait"));
    // A non-repeatable flag given twice is an error, as in kingpin.
    assert!(parse_err(&["store", "--data-dir=a", "--data-dir=b"]).contains("--data-dir"));
}

#[test]
fn objstore_pair_is_mutually_exclusive() {
    let e = parse_err(&[
        "store",
        "--objstore.config=type: S3",
        "--objstore.config-file=b.yml",
    ]);
    assert!(
        e.contains("--objstore.config") && e.contains("cannot be used with"),
        "{e}"
    );
    let e = parse_err(&[
        "tools",
        "bucket",
        "ls",
        "--objstore.config=x",
        "--objstore.config-file=y",
    ]);
    assert!(e.contains("cannot be used with"), "{e}");
}

#[test]
fn compact_flags_become_the_compactor_config() {
    let cfg = compact(&[]).compactor_config().unwrap();
    assert_eq!(cfg.dedup, strata_dedup::Algorithm::Chain);
    assert!(!cfg.vertical_compaction);
    assert_eq!(cfg.ranges.len(), 5, "1h, 2h, 8h, 2d, 14d");
    assert_eq!(cfg.delete_delay_ms, 48 * 3_600_000);

    let cfg = compact(&[
        "--deduplication.replica-label=replica",
        "--deduplication.func=penalty",
        "--debug.max-compaction-level=2",
        "--compact.concurrency=4",
        "--retention.resolution-raw=30d",
    ])
    .compactor_config()
    .unwrap();
    assert_eq!(cfg.dedup, strata_dedup::Algorithm::Penalty);
    assert!(cfg.vertical_compaction, "implied by a replica label");
    assert_eq!(cfg.replica_labels, vec!["replica".to_string()]);
    assert_eq!(cfg.ranges.len(), 3);
    assert_eq!(cfg.compact_concurrency, 4);
    assert_eq!(cfg.retention_raw_ms, 30 * 24 * 3_600_000);

    let c = compact(&["--hash-func=SHA256"]).compactor_config().unwrap();
    assert_eq!(c.hash_func, strata_block::transfer::HashFunc::Sha256);
}

#[test]
fn compact_defaults_and_bools() {
    let c = compact(&[]);
    assert_eq!(c.data_dir, "./data");
    assert!(!c.wait());
    assert_eq!(c.wait_interval, Duration::from_mins(5));
    assert_eq!(c.retention_raw, Duration::ZERO);
    assert_eq!(c.retention_5m, Duration::ZERO);
    assert_eq!(c.retention_1h, Duration::ZERO);
    assert_eq!(c.delete_delay, Duration::from_hours(48));
    assert_eq!(c.consistency_delay, Duration::from_mins(30));
    assert!(!c.downsampling_disable());
    assert_eq!(c.dedup_func, compact::CompactDedupFunc::OneToOne);
    assert!(c.dedup_replica_labels().is_empty());
    assert!(c.halt_on_error());
    assert_eq!(c.max_compaction_level, 4);
    assert_eq!(c.block_max_index_size, ByteSize::gib(64));
    assert_eq!(c.hash_func, HashFunc::None);
    assert_eq!(c.concurrency, 1);
    assert_eq!(c.http.http_address, "0.0.0.0:10902");

    let c = compact(&[
        "-w",
        "--retention.resolution-raw=30d",
        "--retention.resolution-5m=90d",
        "--retention.resolution-1h=1y",
        "--downsampling.disable",
        "--deduplication.replica-label=replica,rule_replica",
        "--deduplication.replica-label=prometheus_replica",
        "--deduplication.func=penalty",
        "--no-debug.halt-on-error",
        "--hash-func=SHA256",
    ]);
    assert!(c.wait());
    assert_eq!(c.retention_raw, Duration::from_days(30));
    assert_eq!(c.retention_1h, Duration::from_days(365));
    assert!(c.downsampling_disable());
    assert_eq!(
        c.dedup_replica_labels(),
        ["prometheus_replica", "replica", "rule_replica"]
    );
    assert_eq!(c.dedup_func, compact::CompactDedupFunc::Penalty);
    assert!(!c.halt_on_error());
    assert_eq!(c.hash_func, HashFunc::Sha256);

    // --no-<flag> and last-one-wins.
    assert!(!compact(&["--wait", "--no-wait"]).wait());
    assert!(compact(&["--no-wait", "--wait"]).wait());
    assert!(
        !compact(&["--downsampling.disable", "--no-downsampling.disable"]).downsampling_disable()
    );
}

#[test]
fn query_defaults_and_repeatables() {
    let q = query(&[]);
    assert_eq!(q.query_timeout, Duration::from_mins(2));
    assert_eq!(q.max_concurrent, 20);
    assert_eq!(q.max_concurrent_select, 4);
    assert_eq!(q.lookback_delta, None);
    assert_eq!(q.dedup_func, query::QueryDedupFunc::Penalty);
    assert!(q.partial_response());
    assert!(!q.auto_downsampling());
    assert_eq!(q.default_step, Duration::from_secs(1));
    assert_eq!(q.store_response_timeout, Duration::ZERO);
    assert_eq!(q.tenant_header, "THANOS-TENANT");
    assert_eq!(q.conn_metric_labels, ["external_labels", "store_type"]);
    assert_eq!(q.grpc.grpc_address, "0.0.0.0:10901");
    assert_eq!(q.grpc_client.grpc_client_tls_min_version, TlsVersion::V1_3);
    assert_eq!(
        q.telemetry_duration_quantiles,
        [0.1, 0.25, 0.75, 1.25, 1.75, 2.5, 3.0, 5.0, 10.0]
    );
    assert_eq!(
        q.telemetry_samples_quantiles,
        [100.0, 1000.0, 10000.0, 100000.0, 1000000.0]
    );
    assert_eq!(
        q.telemetry_series_quantiles,
        [10.0, 100.0, 1000.0, 10000.0, 100000.0]
    );
    // A list given replaces the default, one value per flag, as kingpin's lists do.
    let q = query(&[
        "--query.telemetry.request-series-seconds-quantiles=5",
        "--query.telemetry.request-series-seconds-quantiles=50",
        "--grpc-client-tls-min-version=1.2",
    ]);
    assert_eq!(q.telemetry_series_quantiles, [5.0, 50.0]);
    assert_eq!(q.grpc_client.grpc_client_tls_min_version, TlsVersion::V1_2);

    let q = query(&[
        "--endpoint=dnssrv+_grpc._tcp.store",
        "--endpoint",
        "sidecar:10901",
        "--store=old:10901",
        "--store=old2:10901",
        "--query.replica-label=replica,prometheus_replica",
        "--query.replica-label=rule_replica",
        "--query.replica-label=replica",
        "--query.lookback-delta=15m",
        "--no-query.partial-response",
        "--query.auto-downsampling",
        "--selector-label=region=\"eu\"",
        "--rule=ruler:10901",
        "--metadata=m:10901",
        "--exemplar=e:10901",
        "--target=t:10901",
    ]);
    assert_eq!(q.rule_endpoints, ["ruler:10901"]);
    assert_eq!(q.metadata_endpoints, ["m:10901"]);
    assert_eq!(q.exemplar_endpoints, ["e:10901"]);
    assert_eq!(q.target_endpoints, ["t:10901"]);
    assert_eq!(q.endpoints, ["dnssrv+_grpc._tcp.store", "sidecar:10901"]);
    assert_eq!(q.stores, ["old:10901", "old2:10901"]);
    assert_eq!(
        q.replica_labels(),
        ["prometheus_replica", "replica", "rule_replica"]
    );
    assert_eq!(q.lookback_delta, Some(Duration::from_mins(15)));
    assert!(!q.partial_response());
    assert!(q.auto_downsampling());
    assert_eq!(q.selector_labels[0].value, "eu");
    // Thanos' hidden query flags, with its defaults.
    let q = query(&[]);
    assert!(q.dynamic_lookback_delta());
    assert_eq!(q.instant_default_max_source_resolution, Duration::ZERO);
    assert_eq!(q.endpoint_info_timeout, Duration::from_secs(5));
    assert!(q.hidden_switches_off_default().is_empty());
    let q = query(&[
        "--no-query.dynamic-lookback-delta",
        "--query.instant.default.max_source_resolution=1h",
        "--no-rule.partial-response",
        "--query.disable-fallback",
    ]);
    assert!(!q.dynamic_lookback_delta());
    assert_eq!(
        q.instant_default_max_source_resolution,
        Duration::from_hours(1)
    );
    assert_eq!(
        q.hidden_switches_off_default(),
        ["--query.disable-fallback"]
    );
    assert!(!q.api_partial().rules);
    assert!(q.api_partial().targets);
}

#[test]
fn sidecar_defaults() {
    let s = sidecar(&[]);
    assert_eq!(s.prometheus_url, "http://localhost:9090");
    assert_eq!(s.tsdb_path, "./data");
    assert_eq!(s.prometheus_ready_timeout, Duration::from_mins(10));
    assert_eq!(s.reloader_watch_interval, Duration::from_mins(3));
    assert_eq!(s.reloader_method, sidecar::ReloaderMethod::Http);
    assert_eq!(s.shipper.shipper_meta_file_name, "thanos.shipper.json");
    assert!(!s.shipper.upload_compacted());
    assert_eq!(s.min_time, TimeOrDuration::min_time());

    let s = sidecar(&[
        "--shipper.upload-compacted",
        "--min-time=-2d",
        "--reloader.rule-dir=a",
    ]);
    assert!(s.shipper.upload_compacted());
    assert_eq!(s.min_time, TimeOrDuration::Relative(-2 * 86_400_000));
    assert_eq!(s.reloader_rule_dirs, ["a"]);
    assert!(
        !sidecar(&[
            "--shipper.upload-compacted",
            "--no-shipper.upload-compacted"
        ])
        .shipper
        .upload_compacted()
    );
}

#[test]
fn rule_defaults_and_labels() {
    let r = rule(&[]);
    assert_eq!(r.data_dir, "data/");
    assert_eq!(r.rule_files, ["rules/"]);
    assert_eq!(r.eval_interval, Duration::from_mins(1));
    assert_eq!(r.tsdb_block_duration, Duration::from_hours(2));
    assert_eq!(r.tsdb_retention, Duration::from_hours(48));
    assert!(r.tsdb_wal_compression());
    assert_eq!(r.query_http_method, rule::HttpMethod::Post);
    assert!(r.labels.is_empty());

    let r = rule(&[
        "--label=replica=\"A\"",
        "--label",
        "cluster=\"eu\"",
        "--rule-file=/etc/rules/*.yaml",
        "--query=dnssrv+_http._tcp.query",
        "--alertmanagers.url=http://am:9093",
        "--no-tsdb.wal-compression",
    ]);
    assert_eq!(r.labels.len(), 2);
    assert_eq!(r.labels[1].name, "cluster");
    assert_eq!(r.rule_files, ["/etc/rules/*.yaml"]);
    assert!(!r.tsdb_wal_compression());
    let e = parse_err(&["rule", "--label=replica=A"]);
    assert!(e.contains("--label") && e.contains("double-quoted"), "{e}");
}

#[test]
fn tools_bucket_flags() {
    // The objstore flags belong to `bucket` and are accepted after the subcommand too.
    let b = bucket(&["--objstore.config-file=b.yml", "ls"]);
    assert_eq!(
        b.objstore.file.as_deref(),
        Some(std::path::Path::new("b.yml"))
    );
    let b = bucket(&["ls", "--objstore.config=type: FILESYSTEM", "-o", "json"]);
    assert_eq!(b.objstore.content.as_deref(), Some("type: FILESYSTEM"));
    match b.command {
        BucketCommand::Ls(ls) => {
            assert_eq!(ls.output, LsOutput::Json);
            assert!(!ls.exclude_delete());
            assert_eq!(ls.timeout, Duration::from_mins(5));
        }
        other => panic!("{other:?}"),
    }
    assert!(parse_err(&["tools", "bucket", "ls", "-o", "{{.ULID}}"]).contains("--output"));

    match bucket(&["inspect"]).command {
        BucketCommand::Inspect(i) => {
            assert_eq!(i.sort_by, [InspectColumn::From, InspectColumn::Until]);
            assert_eq!(i.output, InspectOutput::Table);
            assert!(i.selector.is_empty());
        }
        other => panic!("{other:?}"),
    }
    match bucket(&[
        "inspect",
        "-l",
        "env=\"prod\"",
        "--selector=a=\"b\"",
        "--sort-by=#SERIES",
        "--output=tsv",
    ])
    .command
    {
        BucketCommand::Inspect(i) => {
            assert_eq!(i.selector.len(), 2);
            assert_eq!(i.sort_by, [InspectColumn::Series]);
            assert_eq!(i.output, InspectOutput::Tsv);
        }
        other => panic!("{other:?}"),
    }

    match bucket(&["verify"]).command {
        BucketCommand::Verify(v) => {
            assert!(!v.repair());
            assert_eq!(
                v.issues,
                [
                    tools::VerifyIssue::IndexKnownIssues,
                    tools::VerifyIssue::OverlappedBlocks
                ]
            );
            assert_eq!(v.delete_delay, Duration::ZERO);
        }
        other => panic!("{other:?}"),
    }
    match bucket(&[
        "verify",
        "-r",
        "-i",
        "duplicated_compaction",
        "--id=01ARZ3NDEKTSV4RRFFQ69G5FAV",
    ])
    .command
    {
        BucketCommand::Verify(v) => {
            assert!(v.repair());
            assert_eq!(v.issues, [tools::VerifyIssue::DuplicatedCompaction]);
            assert_eq!(v.ids.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(parse_err(&["tools", "bucket", "verify", "--id=nope"]).contains("--id"));

    match bucket(&["upload-blocks"]).command {
        BucketCommand::UploadBlocks(u) => {
            assert_eq!(u.path, std::path::Path::new("./data"));
            assert!(u.labels.is_empty());
            assert!(!u.shipper_upload_compacted());
            assert_eq!(u.shipper_upload_concurrency, 5);
        }
        other => panic!("{other:?}"),
    }
    match bucket(&[
        "upload-blocks",
        "--path=/prom",
        "--label=cluster=\"eu\"",
        "--shipper.upload-compacted",
    ])
    .command
    {
        BucketCommand::UploadBlocks(u) => {
            assert_eq!(u.path, std::path::Path::new("/prom"));
            assert_eq!(u.labels[0].to_string(), "cluster=\"eu\"");
            assert!(u.shipper_upload_compacted());
        }
        other => panic!("{other:?}"),
    }
    let e = parse_err(&["tools", "bucket", "upload-blocks", "--label=cluster:eu"]);
    assert!(e.contains("--label") && e.contains("name=\"value\""), "{e}");
}

/// `--grpc-grace-period` and `--grpc-server-max-connection-age` reach the gRPC server (a
/// zero age means never, as in Thanos), with TLS's minimum version.
#[test]
fn grpc_server_options_come_from_the_flags() {
    let o = store(&[]).grpc.server_options().unwrap();
    assert_eq!(o.grace_period, Some(std::time::Duration::from_secs(120)));
    assert_eq!(
        o.max_connection_age,
        Some(std::time::Duration::from_secs(3600))
    );
    assert!(o.tls.is_none());
    let o = store(&[
        "--grpc-grace-period=10s",
        "--grpc-server-max-connection-age=0s",
    ])
    .grpc
    .server_options()
    .unwrap();
    assert_eq!(o.grace_period, Some(std::time::Duration::from_secs(10)));
    assert_eq!(o.max_connection_age, None);
}
