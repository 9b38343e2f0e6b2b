//! `tools bucket replicate`: copies the blocks of one bucket into another, as Thanos'
//! `pkg/replicate` does, so that a second region or a backup bucket holds the same blocks.
//!
//! A block is chosen when its meta has Thanos' external labels that `--matcher` matches, its
//! resolution is one of `--resolution`, its compaction level is one of `--compaction` (else
//! within `--compaction-min`..`--compaction-max`), and it overlaps `--min-time`/`--max-time`;
//! `--id` picks blocks by ULID instead of all of these. With `--ignore-marked-for-deletion`,
//! blocks marked for deletion are left out.
//!
//! A block whose `meta.json` in the target is byte for byte the source's is already there.
//! Otherwise its chunk segments and index are copied (each skipped if the target has it:
//! an interrupted run resumes), and `meta.json` last, so the target never shows a block
//! whose files are not all there. Objects go through a temporary file, not memory: chunk
//! segments are up to 512 MiB. Deletion and no-compact marks are not copied.
//!
//! Without `--single-run` (or `--id`) it replicates every minute, as Thanos does, counting
//! runs in `thanos_replicate_replication_runs_total{result}`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use strata_block::fetch::{fetch_deletion_marks, fetch_metas};
use strata_model::{Labels, Matcher};
use strata_objstore::{Bucket, BucketMetrics};
use strata_runtime::http::{Listener, base_router};
use strata_runtime::{Prober, Shutdown};
use strata_tsdb::BlockMeta;
use ulid::Ulid;

use crate::cli::common::BlockId;
use crate::cli::tools::ReplicateArgs;

/// Time between runs without `--single-run` (Thanos' value).
const RUN_INTERVAL: Duration = Duration::from_secs(60);
/// Metas and marks read at once.
const FETCH_CONCURRENCY: usize = 32;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunResult {
    result: &'static str,
}

/// `thanos_replicate_*`.
#[derive(Debug, Default)]
struct Metrics {
    runs: Family<RunResult, Counter>,
    blocks_replicated: Counter,
    blocks_already_replicated: Counter,
    objects_replicated: Counter,
}

impl Metrics {
    fn register(r: &mut Registry) -> Arc<Self> {
        let m = Metrics::default();
        r.register(
            "thanos_replicate_replication_runs",
            "The number of replication runs split by success and error.",
            m.runs.clone(),
        );
        r.register(
            "thanos_replicate_blocks_replicated",
            "Total number of blocks replicated.",
            m.blocks_replicated.clone(),
        );
        r.register(
            "thanos_replicate_blocks_already_replicated",
            "Total number of blocks skipped due to already being replicated.",
            m.blocks_already_replicated.clone(),
        );
        r.register(
            "thanos_replicate_objects_replicated",
            "Total number of objects replicated.",
            m.objects_replicated.clone(),
        );
        for result in ["success", "error"] {
            let _ = m.runs.get_or_create(&RunResult { result });
        }
        Arc::new(m)
    }
}

/// Which blocks are replicated.
#[derive(Debug)]
struct Filter {
    ids: Vec<Ulid>,
    matchers: Vec<Matcher>,
    resolutions: Vec<i64>,
    levels: Vec<u32>,
    min_time: strata_model::TimeOrDuration,
    max_time: strata_model::TimeOrDuration,
}

impl Filter {
    fn from_args(args: &ReplicateArgs) -> Result<Filter> {
        let ids = args
            .ids
            .iter()
            .map(|s| s.parse::<BlockId>().map(|b| b.0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--id: {e}"))?;
        let levels = if args.compaction.is_empty() {
            if args.compaction_min > args.compaction_max {
                bail!(
                    "--compaction-min={} is above --compaction-max={}",
                    args.compaction_min,
                    args.compaction_max
                );
            }
            (args.compaction_min..=args.compaction_max).collect()
        } else {
            args.compaction.clone()
        };
        Ok(Filter {
            ids,
            matchers: parse_matchers(&args.matcher)?,
            resolutions: args.resolution.iter().map(|d| d.as_millis_i64()).collect(),
            levels,
            min_time: args.time_range.min_time,
            max_time: args.time_range.max_time,
        })
    }

    /// Whether `meta` is replicated, and if not, why (for the debug log).
    fn accepts(&self, meta: &BlockMeta, now_ms: i64) -> Result<(), &'static str> {
        let external = meta.external_labels();
        if external.is_empty() {
            return Err("no Thanos external labels in meta.json");
        }
        if !self.ids.is_empty() {
            return if self.ids.contains(&meta.ulid) {
                Ok(())
            } else {
                Err("not one of --id")
            };
        }
        let (min_t, max_t) = (self.min_time.resolve(now_ms), self.max_time.resolve(now_ms));
        if meta.max_time < min_t || meta.min_time > max_t {
            return Err("outside --min-time/--max-time");
        }
        let labels = Labels::from_pairs(&external.into_iter().collect::<Vec<_>>());
        if !self
            .matchers
            .iter()
            .all(|m| m.matches(labels.get(m.name()).unwrap_or("")))
        {
            return Err("external labels do not match --matcher");
        }
        if !self.resolutions.contains(&meta.resolution()) {
            return Err("resolution not in --resolution");
        }
        if !self.levels.contains(&meta.compaction.level) {
            return Err("compaction level not selected");
        }
        Ok(())
    }
}

/// `--matcher`: Alertmanager-style matchers, `name="value"` pairs separated by commas, with
/// or without braces (`{a="b", c=~"d.*"}`). Empty: every block.
pub(crate) fn parse_matchers(s: &str) -> Result<Vec<Matcher>> {
    let s = s.trim();
    let inner = s
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(s)
        .trim();
    if inner.is_empty() {
        return Ok(Vec::new());
    }
    // PromQL's parser wants one matcher that needs a non-empty value, which Alertmanager's
    // syntax does not (`cluster!="eu1"` alone is a valid --matcher): one is added, then
    // dropped.
    const ANCHOR: &str = "__strata_matcher_anchor__";
    let matchers = strata_promql::Engine::new(strata_promql::EngineOptions::default())
        .parse_selector(&format!("{{{ANCHOR}=\"x\", {inner}}}"))
        .map_err(|e| anyhow::anyhow!("--matcher {s:?}: {e}"))?;
    Ok(matchers
        .into_iter()
        .filter(|m| m.name() != ANCHOR)
        .collect())
}

/// One run: every chosen block of `from` made present in `to`.
async fn replicate_once(
    from: &Bucket,
    to: &Bucket,
    filter: &Filter,
    ignore_marked: bool,
    metrics: &Metrics,
) -> Result<()> {
    let fetched = fetch_metas(from, FETCH_CONCURRENCY)
        .await
        .context("listing the source bucket's blocks")?;
    for id in &fetched.partial {
        tracing::info!(block = %id, "block meta not uploaded yet; skipping");
    }
    for (id, why) in &fetched.corrupted {
        tracing::warn!(block = %id, reason = %why, "unreadable meta.json; skipping");
    }
    let marked = if ignore_marked {
        fetch_deletion_marks(from, fetched.metas.keys().copied(), FETCH_CONCURRENCY)
            .await
            .context("reading the source bucket's deletion marks")?
    } else {
        Default::default()
    };
    let now = now_ms();
    let mut chosen: Vec<&BlockMeta> = Vec::new();
    for meta in fetched.metas.values() {
        if marked.contains_key(&meta.ulid) {
            tracing::debug!(block = %meta.ulid, "marked for deletion; skipping");
            continue;
        }
        match filter.accepts(meta, now) {
            Ok(()) => chosen.push(meta),
            Err(why) => tracing::debug!(block = %meta.ulid, reason = why, "not replicated"),
        }
    }
    // Oldest first, as Thanos' compaction groups come.
    chosen.sort_by_key(|m| (m.min_time, m.ulid));
    let tmp = tempfile::tempdir().context("creating a temporary directory for copies")?;
    for meta in chosen {
        replicate_block(from, to, meta.ulid, tmp.path(), metrics)
            .await
            .with_context(|| format!("replicating block {}", meta.ulid))?;
    }
    Ok(())
}

/// Makes block `id` of `from` present in `to` (see the module docs).
async fn replicate_block(
    from: &Bucket,
    to: &Bucket,
    id: Ulid,
    tmp: &std::path::Path,
    metrics: &Metrics,
) -> Result<()> {
    let meta_key = format!("{id}/meta.json");
    let meta = from.get(&meta_key).await?;
    match to.get(&meta_key).await {
        Ok(existing) if existing == meta => {
            tracing::debug!(block = %id, "already replicated");
            metrics.blocks_already_replicated.inc();
            return Ok(());
        }
        Ok(_) => tracing::info!(block = %id, "meta.json differs in the target; replicating again"),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e).context("reading meta.json in the target bucket"),
    }
    let mut objects = from.iter(&format!("{id}/chunks/"), true).await?;
    objects.sort();
    objects.push(format!("{id}/index"));
    for key in objects {
        if to.exists(&key).await? {
            tracing::debug!(object = %key, "already replicated");
            continue;
        }
        let file = tmp.join("object");
        from.download_file(&key, &file)
            .await
            .with_context(|| format!("reading {key}"))?;
        to.upload_file(&key, &file)
            .await
            .with_context(|| format!("writing {key}"))?;
        let _ = std::fs::remove_file(&file);
        tracing::info!(object = %key, "object replicated");
        metrics.objects_replicated.inc();
    }
    to.upload(&meta_key, meta)
        .await
        .context("writing meta.json")?;
    metrics.blocks_replicated.inc();
    tracing::info!(block = %id, "block replicated");
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) async fn run(objstore_yaml: &str, args: &ReplicateArgs) -> Result<()> {
    let web_config = args.http.web_config()?;
    let filter = Filter::from_args(args)?;
    let to_yaml = args.objstore_to.source().load_required()?;
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let mut registry = Registry::default();
    let from = Bucket::from_yaml(
        objstore_yaml,
        &BucketMetrics::register(
            registry.sub_registry_with_label(("replicate".into(), "from".into())),
        ),
    )
    .context("opening the source bucket (--objstore.config)")?;
    let to = Bucket::from_yaml(
        &to_yaml,
        &BucketMetrics::register(
            registry.sub_registry_with_label(("replicate".into(), "to".into())),
        ),
    )
    .context("opening the target bucket (--objstore-to.config)")?;
    let metrics = Metrics::register(&mut registry);
    let prober = Prober::new();
    let listener = Listener::bind(&args.http.http_address, web_config)
        .await
        .context("binding --http-address")?;
    let server = tokio::spawn(listener.serve(
        base_router(prober.clone(), Arc::new(Mutex::new(registry))),
        shutdown.clone(),
        Some(args.http.http_grace_period.to_std()),
    ));
    prober.set_healthy();
    prober.set_ready();
    let once = args.single_run() || !filter.ids.is_empty();
    let result = loop {
        let started = Instant::now();
        tracing::info!("running replication attempt");
        let r = tokio::select! {
            r = replicate_once(&from, &to, &filter, args.ignore_marked_for_deletion(), &metrics) => r,
            () = shutdown.wait() => break Ok(()),
        };
        let result = if r.is_ok() { "success" } else { "error" };
        metrics.runs.get_or_create(&RunResult { result }).inc();
        match r {
            Ok(()) => tracing::info!(took = ?started.elapsed(), "ran replication successfully"),
            Err(e) if once => break Err(e),
            // As Thanos: a failed run is logged and the next one tried.
            Err(e) => tracing::error!(error = %format_args!("{e:#}"), "running replication failed"),
        }
        if once {
            break Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(RUN_INTERVAL) => {}
            () = shutdown.wait() => break Ok(()),
        }
    };
    shutdown.trigger();
    if let Ok(Err(e)) = server.await {
        tracing::error!(error = %e, "HTTP server failed");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_take_alertmanager_forms() {
        assert!(parse_matchers("").unwrap().is_empty());
        for s in [
            r#"cluster="eu1""#,
            r#"{cluster="eu1"}"#,
            r#"cluster="eu1", replica=~"a|b""#,
        ] {
            let m = parse_matchers(s).unwrap();
            assert_eq!(m[0], Matcher::equal("cluster", "eu1"), "{s}");
        }
        let m = parse_matchers(r#"cluster!="eu1",env!~"dev.*""#).unwrap();
        assert!(!m[0].matches("eu1") && m[0].matches("us1"));
        assert!(!m[1].matches("dev-a") && m[1].matches("prod"));
        let e = parse_matchers("cluster==eu1").unwrap_err().to_string();
        assert!(e.contains("--matcher"), "{e}");
    }
}
