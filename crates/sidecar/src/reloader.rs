//! The config reloader: keeps Prometheus' configuration and rules current (Thanos'
//! `pkg/reloader`).
//!
//! It watches `--reloader.config-file` and every file under the `--reloader.rule-dir`s. When
//! `--reloader.config-envsubst-file` is set, the config file is a template: each `$(VAR)`
//! (letters, digits, `_`) is replaced by the environment variable's value, an unset variable
//! is an error (nothing is written, Prometheus keeps its configuration), and the result is
//! written atomically to the output file that Prometheus reads. When the config or rules
//! changed since the last successful reload, Prometheus is asked to reload (`POST /-/reload`,
//! which needs `--web.enable-lifecycle`; or SIGHUP with `--reloader.method=signal`), retried
//! every `--reloader.retry-interval` for up to `--reloader.watch-interval`.
//!
//! Change detection: a cheap check every second (size and modification time of every watched
//! file, which also catches Kubernetes' symlink swaps of mounted ConfigMaps) and a full content
//! hash every `--reloader.watch-interval`. Polling rather than inotify keeps it working on every
//! file system and volume type; a second of delay is immaterial for a configuration change.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::error::{PromError, ReloaderError};
use crate::promclient::PrometheusClient;

/// How often the cheap change check runs.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// gzip's magic bytes: a compressed template is refused with a clear error.
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// How Prometheus is told to reload.
#[derive(Debug, Clone)]
pub enum ReloadMethod {
    /// `POST <prometheus>/-/reload`.
    Http,
    /// SIGHUP to the process whose name is given (the sidecar must share Prometheus' process
    /// namespace), then a check of `/api/v1/status/runtimeinfo`.
    Signal { process_name: String },
}

/// The reloader's settings.
#[derive(Debug, Clone)]
pub struct ReloaderConfig {
    pub config_file: Option<PathBuf>,
    pub output_file: Option<PathBuf>,
    pub rule_dirs: Vec<PathBuf>,
    pub watch_interval: Duration,
    pub retry_interval: Duration,
    pub method: ReloadMethod,
}

impl ReloaderConfig {
    /// Whether anything is watched at all.
    pub fn is_enabled(&self) -> bool {
        self.config_file.is_some() || !self.rule_dirs.is_empty()
    }
}

/// `thanos_sidecar_reloader_*`.
#[derive(Debug, Clone, Default)]
pub struct ReloaderMetrics {
    pub reloads: Counter,
    pub reloads_failed: Counter,
    pub last_reload_successful: Gauge,
    pub last_reload_success_timestamp: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub config_apply: Counter,
    pub config_apply_failed: Counter,
    pub watches: Gauge,
    pub watch_events: Counter,
    pub watch_errors: Counter,
}

impl ReloaderMetrics {
    /// Registers the metrics with Thanos' names (prefix `thanos_sidecar_`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = ReloaderMetrics::default();
        let p = "thanos_sidecar_reloader_";
        registry.register(
            format!("{p}reloads"),
            "Total number of reload requests.",
            m.reloads.clone(),
        );
        registry.register(
            format!("{p}reloads_failed"),
            "Total number of reload requests that failed.",
            m.reloads_failed.clone(),
        );
        registry.register(
            format!("{p}last_reload_successful"),
            "Whether the last reload attempt was successful",
            m.last_reload_successful.clone(),
        );
        registry.register(
            format!("{p}last_reload_success_timestamp_seconds"),
            "Timestamp of the last successful reload",
            m.last_reload_success_timestamp.clone(),
        );
        registry.register(
            format!("{p}config_apply_operations"),
            "Total number of config apply operations.",
            m.config_apply.clone(),
        );
        registry.register(
            format!("{p}config_apply_operations_failed"),
            "Total number of config apply operations that failed.",
            m.config_apply_failed.clone(),
        );
        registry.register(
            format!("{p}watches"),
            "Number of resources watched by the reloader.",
            m.watches.clone(),
        );
        registry.register(
            format!("{p}watch_events"),
            "Total number of events received by the reloader from the watcher.",
            m.watch_events.clone(),
        );
        registry.register(
            format!("{p}watch_errors"),
            "Total number of errors received by the reloader from the watcher.",
            m.watch_errors.clone(),
        );
        m
    }
}

/// Replaces every `$(NAME)` (`NAME` of ASCII letters, digits and `_`) with the value of the
/// environment variable `NAME`, looked up with `lookup`. Anything else, `$NAME` and `${NAME}`
/// included, is left alone, as Thanos does.
pub fn expand_env(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find("$(") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if name_len > 0 && after.as_bytes().get(name_len) == Some(&b')') {
            let name = &after[..name_len];
            let value = lookup(name).ok_or_else(|| name.to_string())?;
            out.push_str(&value);
            rest = &after[name_len + 1..];
        } else {
            out.push_str("$(");
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Size and modification time of every watched file: the cheap change check.
type Stamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// Every regular file under `dir`, recursively, following symbolic links, sorted.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        let md = std::fs::metadata(&p)?;
        if md.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Watches the files and reloads Prometheus.
#[derive(Debug)]
pub struct Reloader {
    config: ReloaderConfig,
    client: PrometheusClient,
    metrics: ReloaderMetrics,
    last_config_hash: Option<Vec<u8>>,
    last_rules_hash: Option<Vec<u8>>,
    last_stamp: Option<Stamp>,
}

impl Reloader {
    pub fn new(config: ReloaderConfig, client: PrometheusClient, metrics: ReloaderMetrics) -> Self {
        Reloader {
            config,
            client,
            metrics,
            last_config_hash: None,
            last_rules_hash: None,
            last_stamp: None,
        }
    }

    fn watched_files(&self) -> Result<Vec<PathBuf>, ReloaderError> {
        let mut files: Vec<PathBuf> = self.config.config_file.iter().cloned().collect();
        for d in &self.config.rule_dirs {
            walk(d, &mut files).map_err(|source| ReloaderError::Io {
                op: "listing rule directory",
                path: d.clone(),
                source,
            })?;
        }
        Ok(files)
    }

    fn stamp(&self) -> Result<Stamp, ReloaderError> {
        self.watched_files()?
            .into_iter()
            .map(|p| {
                let md = std::fs::metadata(&p).map_err(|source| ReloaderError::Io {
                    op: "reading",
                    path: p.clone(),
                    source,
                })?;
                Ok((p, md.len(), md.modified().ok()))
            })
            .collect()
    }

    fn hash_file(h: &mut Sha256, path: &Path) -> Result<Vec<u8>, ReloaderError> {
        let data = std::fs::read(path).map_err(|source| ReloaderError::Io {
            op: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        h.update([0xff]);
        h.update(path.as_os_str().as_encoded_bytes());
        h.update([0xff]);
        h.update(&data);
        Ok(data)
    }

    /// Renders the template into the output file (when configured). Returns the config hash.
    fn apply_config(&self) -> Result<Option<Vec<u8>>, ReloaderError> {
        let Some(input) = &self.config.config_file else {
            return Ok(None);
        };
        let mut h = Sha256::new();
        let data = Self::hash_file(&mut h, input)?;
        if let Some(output) = &self.config.output_file {
            if data.starts_with(&GZIP_MAGIC) {
                return Err(ReloaderError::Compressed {
                    path: input.clone(),
                });
            }
            let text = String::from_utf8_lossy(&data);
            let expanded = expand_env(&text, |name| std::env::var(name).ok()).map_err(|var| {
                ReloaderError::UnsetVariable {
                    path: input.clone(),
                    var,
                }
            })?;
            let current = std::fs::read(output).ok();
            if current.as_deref() != Some(expanded.as_bytes()) {
                let tmp = output.with_extension("tmp-strata-reloader");
                let io = |op, source| ReloaderError::Io {
                    op,
                    path: output.clone(),
                    source,
                };
                std::fs::write(&tmp, expanded.as_bytes()).map_err(|e| io("writing", e))?;
                std::fs::rename(&tmp, output).map_err(|e| io("renaming into place", e))?;
            }
        }
        Ok(Some(h.finalize().to_vec()))
    }

    fn rules_hash(&self) -> Result<Option<Vec<u8>>, ReloaderError> {
        if self.config.rule_dirs.is_empty() {
            return Ok(None);
        }
        let mut h = Sha256::new();
        let mut files = Vec::new();
        for d in &self.config.rule_dirs {
            walk(d, &mut files).map_err(|source| ReloaderError::Io {
                op: "listing rule directory",
                path: d.clone(),
                source,
            })?;
        }
        for f in files {
            Self::hash_file(&mut h, &f)?;
        }
        Ok(Some(h.finalize().to_vec()))
    }

    /// Applies the configuration and, if it or the rules changed since the last successful
    /// reload, reloads Prometheus (retrying until `watch_interval` has passed). Returns
    /// whether Prometheus was reloaded.
    pub async fn apply(&mut self, cancel: &CancellationToken) -> Result<bool, ReloaderError> {
        let config_hash = if self.config.config_file.is_some() {
            self.metrics.config_apply.inc();
            match self.apply_config() {
                Ok(h) => h,
                Err(e) => {
                    self.metrics.config_apply_failed.inc();
                    return Err(e);
                }
            }
        } else {
            None
        };
        let rules_hash = self.rules_hash()?;
        if self.last_config_hash.is_some() == config_hash.is_some()
            && config_hash == self.last_config_hash
            && rules_hash == self.last_rules_hash
            && (config_hash.is_some() || rules_hash.is_some())
        {
            return Ok(false);
        }
        let deadline = Instant::now() + self.config.watch_interval;
        loop {
            self.metrics.reloads.inc();
            match self.trigger().await {
                Ok(()) => {
                    self.metrics.last_reload_successful.set(1);
                    self.metrics
                        .last_reload_success_timestamp
                        .set(crate::prometheus::now_ms() as f64 / 1000.0);
                    self.last_config_hash = config_hash;
                    self.last_rules_hash = rules_hash;
                    tracing::info!(
                        cfg_in = ?self.config.config_file,
                        cfg_out = ?self.config.output_file,
                        rule_dirs = ?self.config.rule_dirs,
                        "Prometheus reload triggered"
                    );
                    return Ok(true);
                }
                Err(e) => {
                    self.metrics.reloads_failed.inc();
                    self.metrics.last_reload_successful.set(0);
                    if Instant::now() + self.config.retry_interval > deadline {
                        return Err(ReloaderError::Reload(e));
                    }
                    tracing::warn!(error = %e, "failed to trigger reload; retrying in {:?}", self.config.retry_interval);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.retry_interval) => {}
                () = cancel.cancelled() => return Ok(false),
            }
        }
    }

    async fn trigger(&self) -> Result<(), PromError> {
        match &self.config.method {
            ReloadMethod::Http => self.client.reload(Duration::from_secs(30)).await,
            ReloadMethod::Signal { process_name } => signal_reload(process_name),
        }
    }

    /// Watches until cancelled: applies at start, then on every detected change and every
    /// `watch_interval`.
    pub async fn run(mut self, cancel: CancellationToken) {
        tracing::info!(
            cfg_in = ?self.config.config_file,
            cfg_out = ?self.config.output_file,
            rule_dirs = ?self.config.rule_dirs,
            "started watching config file and rule directories for changes"
        );
        let mut full = tokio::time::interval(self.config.watch_interval);
        full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let full_check = tokio::select! {
                _ = full.tick() => true,
                _ = poll.tick() => false,
                () = cancel.cancelled() => return,
            };
            match self.stamp() {
                Ok(stamp) => {
                    self.metrics.watches.set(stamp.len() as i64);
                    let changed = self.last_stamp.as_ref() != Some(&stamp);
                    if changed && self.last_stamp.is_some() {
                        self.metrics.watch_events.inc();
                    }
                    self.last_stamp = Some(stamp);
                    if !changed && !full_check {
                        continue;
                    }
                }
                Err(e) => {
                    self.metrics.watch_errors.inc();
                    tracing::error!(error = %e, "watching the reloader's files failed");
                    continue;
                }
            }
            if let Err(e) = self.apply(&cancel).await {
                tracing::error!(error = %e, "applying the configuration failed; Prometheus keeps its current configuration");
            }
        }
    }
}

/// Sends SIGHUP to the one process named `name` (its `/proc/<pid>/comm`, which the kernel
/// truncates to 15 bytes).
fn signal_reload(name: &str) -> Result<(), PromError> {
    let want: String = name.chars().take(15).collect();
    let mut pids = Vec::new();
    let entries = std::fs::read_dir("/proc").map_err(|source| PromError::ClientFile {
        what: "process list",
        path: PathBuf::from("/proc"),
        source,
    })?;
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(e.path().join("comm"))
            && comm.trim_end() == want
        {
            pids.push(pid);
        }
    }
    match pids.as_slice() {
        [pid] => {
            // SAFETY: kill(2) with a pid read from /proc and a valid signal number has no
            // memory-safety preconditions.
            let rc = unsafe { libc::kill(*pid, libc::SIGHUP) };
            if rc == 0 {
                Ok(())
            } else {
                Err(PromError::ClientConfig(format!(
                    "sending SIGHUP to process {pid} ({name}): {}",
                    std::io::Error::last_os_error()
                )))
            }
        }
        [] => Err(PromError::ClientConfig(format!(
            "--reloader.method=signal: no process named {name:?} is visible; the sidecar must \
             share the process namespace with Prometheus (--reloader.process-name)"
        ))),
        many => Err(PromError::ClientConfig(format!(
            "--reloader.method=signal: {} processes are named {name:?} ({many:?}); cannot tell \
             which one to reload",
            many.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "POD_NAME" => Some("prom-0".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_only_parenthesised_names_and_refuses_unset_ones() {
        assert_eq!(
            expand_env("replica: $(POD_NAME)\nx: $(EMPTY)y", env).unwrap(),
            "replica: prom-0\nx: y"
        );
        // Other shapes stay as they are.
        for s in [
            "$POD_NAME",
            "${POD_NAME}",
            "$(POD-NAME)",
            "$()",
            "$(POD_NAME",
            "cost: $5",
        ] {
            assert_eq!(expand_env(s, env).unwrap(), s);
        }
        assert_eq!(expand_env("a $(UNSET_X) b", env).unwrap_err(), "UNSET_X");
        assert_eq!(expand_env("$($(POD_NAME))", env).unwrap(), "$(prom-0)");
    }

    #[test]
    fn rule_directories_are_walked_recursively_and_sorted() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("b/c")).unwrap();
        std::fs::write(tmp.path().join("b/c/z.yml"), "z").unwrap();
        std::fs::write(tmp.path().join("a.yml"), "a").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("a.yml"), tmp.path().join("link.yml")).unwrap();
        let mut files = Vec::new();
        walk(tmp.path(), &mut files).unwrap();
        let rel: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(tmp.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(rel, vec!["a.yml", "b/c/z.yml", "link.yml"]);
    }
}
