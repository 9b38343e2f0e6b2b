//! A memcached client for the store gateway's caches, configured as Thanos' memcached
//! client is (`type: MEMCACHED` in `--index-cache.config` and
//! `--store.caching-bucket.config`), speaking memcached's text protocol (`get` with many
//! keys, `set` with an expiry) over pooled TCP connections.
//!
//! Why its own: the cache is an optimisation, so the client is built to fail soft and
//! bounded. Every operation has the configured timeout; a failed or timed-out operation is a
//! miss (counted in `thanos_memcached_operation_failures_total`), never an error of the
//! query; a connection that saw an error is dropped, never reused half-read; sets are queued
//! and written by `max_async_concurrency` background workers, and a full queue drops the set
//! (`thanos_memcached_operation_skipped_total`) rather than slowing the query that made it.
//! Values a server returns are bounded by `max_item_size` before anything is allocated.
//!
//! Keys are spread over the servers with a jump consistent hash of a fixed hash of the key,
//! over the sorted resolved addresses, so every gateway sharing the servers puts a key on the
//! same one, and a server added or lost moves only its share of keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use strata_model::ByteSize;
use strata_runtime::dns::{AddressSpec, Resolver};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

/// Thanos' memcached client configuration (the `config:` of a `MEMCACHED` cache), with its
/// defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct MemcachedConfig {
    /// `addresses`: `host:port`, `dns+host:port`, `dnssrv+name` or `dnssrvnoa+name`.
    pub addresses: Vec<String>,
    /// `timeout`: each operation's deadline (500ms).
    pub timeout: Duration,
    /// `max_idle_connections`: idle connections kept per server (100).
    pub max_idle_connections: usize,
    /// `max_async_concurrency`: sets written at once (20).
    pub max_async_concurrency: usize,
    /// `max_async_buffer_size`: sets queued before new ones are dropped (10000).
    pub max_async_buffer_size: usize,
    /// `max_get_multi_concurrency`: `get` operations in flight at once (100; 0: unlimited).
    pub max_get_multi_concurrency: usize,
    /// `max_get_multi_batch_size`: keys per `get` operation (0: all of a server's keys).
    pub max_get_multi_batch_size: usize,
    /// `max_item_size`: larger values are neither stored nor accepted (1MiB; 0: unlimited).
    pub max_item_size: u64,
    /// `dns_provider_update_interval`: how often `addresses` are resolved again, or with
    /// `auto_discovery` the cluster's nodes asked for again (10s).
    pub dns_provider_update_interval: Duration,
    /// `auto_discovery`: `addresses` are configuration endpoints (ElastiCache's), asked
    /// with `config get cluster` for the nodes to use.
    pub auto_discovery: bool,
}

impl Default for MemcachedConfig {
    fn default() -> Self {
        MemcachedConfig {
            addresses: Vec::new(),
            timeout: Duration::from_millis(500),
            max_idle_connections: 100,
            max_async_concurrency: 20,
            max_async_buffer_size: 10_000,
            max_get_multi_concurrency: 100,
            max_get_multi_batch_size: 0,
            max_item_size: 1 << 20,
            dns_provider_update_interval: Duration::from_secs(10),
            auto_discovery: false,
        }
    }
}

/// The largest value accepted from a server when `max_item_size` is 0 (unlimited): a bound
/// on what one bad reply can make the gateway allocate.
const UNBOUNDED_ITEM: u64 = 1 << 30;

/// memcached's limit on key length.
pub const MAX_KEY_LEN: usize = 250;

impl MemcachedConfig {
    /// Reads the `config:` mapping. Unknown keys are refused, as Thanos refuses them; the
    /// error names the key and says what to do.
    pub fn from_value(v: serde_yaml_ng::Value) -> Result<Self, String> {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            addresses: Vec<String>,
            timeout: Option<String>,
            max_idle_connections: Option<i64>,
            max_async_concurrency: Option<i64>,
            max_async_buffer_size: Option<i64>,
            max_get_multi_concurrency: Option<i64>,
            max_get_multi_batch_size: Option<i64>,
            max_item_size: Option<SizeValue>,
            dns_provider_update_interval: Option<String>,
            #[serde(default)]
            auto_discovery: bool,
            set_async_circuit_breaker_config: Option<CircuitBreaker>,
        }
        /// Thanos reads sizes as a number of bytes or a string with a unit.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum SizeValue {
            Bytes(u64),
            Text(String),
        }
        let raw: Raw = match v {
            serde_yaml_ng::Value::Null => Raw::default(),
            v => serde_yaml_ng::from_value(v).map_err(|e| format!("config: {e}"))?,
        };
        let d = MemcachedConfig::default();
        if raw.addresses.is_empty() {
            return Err("config: no memcached addresses: set config.addresses".into());
        }
        for a in &raw.addresses {
            AddressSpec::parse(a).map_err(|e| format!("config.addresses: {e}"))?;
        }
        CircuitBreaker::warn_if_enabled(raw.set_async_circuit_breaker_config.as_ref());
        let count = config_count;
        Ok(MemcachedConfig {
            addresses: raw.addresses,
            timeout: config_duration("config.timeout", raw.timeout, d.timeout)?,
            max_idle_connections: count(raw.max_idle_connections, d.max_idle_connections),
            max_async_concurrency: count(raw.max_async_concurrency, d.max_async_concurrency),
            max_async_buffer_size: count(raw.max_async_buffer_size, d.max_async_buffer_size),
            max_get_multi_concurrency: match raw.max_get_multi_concurrency {
                None => d.max_get_multi_concurrency,
                Some(n) => n.max(0) as usize,
            },
            max_get_multi_batch_size: raw.max_get_multi_batch_size.unwrap_or(0).max(0) as usize,
            max_item_size: match raw.max_item_size {
                None => d.max_item_size,
                Some(SizeValue::Bytes(n)) => n,
                Some(SizeValue::Text(s)) => {
                    s.parse::<ByteSize>()
                        .map_err(|e| format!("config.max_item_size: {e}"))?
                        .0
                }
            },
            dns_provider_update_interval: config_duration(
                "config.dns_provider_update_interval",
                raw.dns_provider_update_interval,
                d.dns_provider_update_interval,
            )?,
            auto_discovery: raw.auto_discovery,
        })
    }
}

/// Thanos' `set_async_circuit_breaker_config` (memcached and Redis clients). Its keys are
/// checked; it has no effect here: a set that fails is dropped, and a full queue drops new
/// sets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read so that its keys are checked
pub(crate) struct CircuitBreaker {
    #[serde(default)]
    enabled: bool,
    half_open_max_requests: Option<u32>,
    open_duration: Option<String>,
    min_requests: Option<u32>,
    consecutive_failures: Option<u32>,
    failure_percent: Option<f64>,
}

impl CircuitBreaker {
    /// Logs that an enabled breaker has no effect.
    pub(crate) fn warn_if_enabled(config: Option<&CircuitBreaker>) {
        if config.is_some_and(|c| c.enabled) {
            tracing::warn!(
                "set_async_circuit_breaker_config is accepted but has no effect: a set that \
                 fails is dropped, and a full queue drops new sets"
            );
        }
    }
}

/// A cache config duration at `key` (Go or Prometheus syntax); absent or 0 is `default`,
/// as Thanos reads its cache durations.
pub(crate) fn config_duration(
    key: &str,
    v: Option<String>,
    default: Duration,
) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(s) => strata_model::Duration::parse_go(&s)
            .or_else(|_| strata_model::Duration::parse_prometheus(&s))
            .map(|d| d.to_std())
            .map(|d| if d.is_zero() { default } else { d })
            .map_err(|e| format!("{key}: {e}")),
    }
}

/// A client config count; absent, 0 or negative is `default`, as Thanos reads them.
pub(crate) fn config_count(v: Option<i64>, default: usize) -> usize {
    match v {
        Some(n) if n > 0 => n as usize,
        _ => default,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    name: &'static str,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    name: &'static str,
    operation: &'static str,
    reason: &'static str,
}

/// A cache client's metrics: `<prefix>_operations_total`, `_operation_failures_total`,
/// `_operation_skipped_total` and `_operation_duration_seconds`, by `name` and `operation`
/// (memcached: Thanos' `thanos_memcached_*`). Registered once per registry and shared by
/// every client of that kind in a process (the index cache's and the caching bucket's), which
/// tell themselves apart by the `name` label: a metric family registered twice would be
/// exposed twice, which scrapers reject.
#[derive(Debug, Clone)]
pub struct ClientMetrics {
    operations: Family<OpLabels, Counter>,
    failures: Family<ReasonLabels, Counter>,
    skipped: Family<ReasonLabels, Counter>,
    duration: Family<OpLabels, Histogram>,
}

impl ClientMetrics {
    /// The memcached client's families (`thanos_memcached_*`), registered in `registry`
    /// when given.
    pub fn memcached(registry: Option<&mut Registry>) -> Self {
        Self::new("thanos_memcached", "memcached", registry)
    }

    /// The Redis client's families (`strata_redis_*`), registered in `registry` when given.
    pub fn redis(registry: Option<&mut Registry>) -> Self {
        Self::new("strata_redis", "redis", registry)
    }

    fn new(prefix: &str, server: &str, registry: Option<&mut Registry>) -> Self {
        let m = ClientMetrics {
            operations: Family::default(),
            failures: Family::default(),
            skipped: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 3.0, 6.0, 10.0,
                ])
            }),
        };
        if let Some(r) = registry {
            r.register(
                format!("{prefix}_operations"),
                format!("Total number of operations against {server}."),
                m.operations.clone(),
            );
            r.register(
                format!("{prefix}_operation_failures"),
                format!("Total number of operations against {server} that failed."),
                m.failures.clone(),
            );
            r.register(
                format!("{prefix}_operation_skipped"),
                format!("Total number of operations against {server} that have been skipped."),
                m.skipped.clone(),
            );
            r.register(
                format!("{prefix}_operation_duration_seconds"),
                format!("Duration of operations against {server}."),
                m.duration.clone(),
            );
        }
        m
    }
}

/// One client's view of the shared metrics: its `name` label.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    name: &'static str,
    operations: Family<OpLabels, Counter>,
    failures: Family<ReasonLabels, Counter>,
    skipped: Family<ReasonLabels, Counter>,
    duration: Family<OpLabels, Histogram>,
}

impl Metrics {
    /// A client's metrics, labelled `name`, with a series for each of `operations` from
    /// the start.
    pub(crate) fn new(
        name: &'static str,
        shared: &ClientMetrics,
        operations: &[&'static str],
    ) -> Self {
        let m = Metrics {
            name,
            operations: shared.operations.clone(),
            failures: shared.failures.clone(),
            skipped: shared.skipped.clone(),
            duration: shared.duration.clone(),
        };
        for op in operations {
            let _ = m.operations.get_or_create(&m.op(op));
        }
        m
    }

    fn op(&self, operation: &'static str) -> OpLabels {
        OpLabels {
            name: self.name,
            operation,
        }
    }

    fn reason(&self, operation: &'static str, reason: &'static str) -> ReasonLabels {
        ReasonLabels {
            name: self.name,
            operation,
            reason,
        }
    }

    /// One `operation` done, begun at `started`; `failure` is the reason it failed.
    pub(crate) fn done(
        &self,
        operation: &'static str,
        started: Instant,
        failure: Option<&'static str>,
    ) {
        self.operations.get_or_create(&self.op(operation)).inc();
        self.duration
            .get_or_create(&self.op(operation))
            .observe(started.elapsed().as_secs_f64());
        if let Some(reason) = failure {
            self.failures
                .get_or_create(&self.reason(operation, reason))
                .inc();
        }
    }

    /// One `operation` not attempted, for `reason`.
    pub(crate) fn skipped(&self, operation: &'static str, reason: &'static str) {
        self.skipped
            .get_or_create(&self.reason(operation, reason))
            .inc();
    }
}

/// Why one operation failed; the query goes on with a miss.
#[derive(Debug, thiserror::Error)]
enum OpError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("server said {0:?}")]
    Server(String),
    #[error("malformed reply: {0}")]
    Malformed(String),
}

impl OpError {
    /// Thanos' `reason` label values.
    fn reason(&self) -> &'static str {
        match self {
            OpError::Timeout => "timeout",
            OpError::Io(_) => "other",
            OpError::Server(_) => "server-error",
            OpError::Malformed(_) => "malformed",
        }
    }
}

/// One connection: a buffered reader over the socket, written through `get_mut`.
type Conn = BufReader<TcpStream>;

struct Inner {
    config: MemcachedConfig,
    /// The resolved server addresses, sorted (the hash's buckets).
    servers: RwLock<Arc<Vec<String>>>,
    idle: Mutex<HashMap<String, Vec<Conn>>>,
    gets: Option<Semaphore>,
    metrics: Metrics,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memcached")
            .field("addresses", &self.config.addresses)
            .field("servers", &self.servers.read().map(|s| s.len()).ok())
            .finish()
    }
}

/// A queued set (both clients queue them).
pub(crate) struct SetOp {
    pub(crate) key: String,
    pub(crate) value: Bytes,
    pub(crate) ttl: Duration,
}

/// Queued sets a set worker takes at once, and the most bytes of values it sends to one
/// server in one pipeline: sets are written pipelined, one round trip for many, so that a
/// query that misses thousands of items does not overflow the queue with one round trip
/// per item.
const SET_BATCH: usize = 128;
const SET_BATCH_BYTES: usize = 1 << 20;

/// The client. Cheap to share (`Arc` inside); its background tasks (address resolution,
/// queued sets) end when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Memcached {
    inner: Arc<Inner>,
    sets: mpsc::Sender<SetOp>,
}

impl Memcached {
    /// A client for `config`, its metrics labelled `name` (Thanos: `index-cache`,
    /// `caching-bucket`) in `metrics` ([`ClientMetrics::memcached`]). Needs a Tokio runtime: it starts the tasks that resolve the
    /// addresses and write queued sets. Static addresses are used at once; DNS ones once
    /// resolved (until then every get is a miss).
    pub fn new(
        config: MemcachedConfig,
        name: &'static str,
        metrics: &ClientMetrics,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the memcached client needs a Tokio runtime".to_string())?;
        let specs: Vec<AddressSpec> = config
            .addresses
            .iter()
            .map(|a| AddressSpec::parse(a).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        // With auto-discovery the addresses are configuration endpoints, not nodes: none is
        // used until the cluster has been asked.
        let mut initial: Vec<String> = specs
            .iter()
            .filter_map(|s| match s {
                AddressSpec::Static(a) if !config.auto_discovery => Some(a.clone()),
                _ => None,
            })
            .collect();
        initial.sort();
        initial.dedup();
        let inner = Arc::new(Inner {
            gets: (config.max_get_multi_concurrency > 0)
                .then(|| Semaphore::new(config.max_get_multi_concurrency)),
            servers: RwLock::new(Arc::new(initial)),
            idle: Mutex::new(HashMap::new()),
            metrics: Metrics::new(name, metrics, &["getmulti", "set"]),
            config,
        });
        let (tx, rx) = mpsc::channel(inner.config.max_async_buffer_size);
        runtime.spawn(write_sets(Arc::downgrade(&inner), rx));
        if inner.config.auto_discovery || specs.iter().any(|s| !matches!(s, AddressSpec::Static(_)))
        {
            runtime.spawn(resolve_addresses(Arc::downgrade(&inner), specs));
        }
        Ok(Memcached { inner, sets: tx })
    }

    /// The servers keys are spread over now.
    pub fn servers(&self) -> Arc<Vec<String>> {
        self.inner.servers.read().expect("servers lock").clone()
    }

    /// Looks `keys` up; the result is in their order, `None` for a miss, a failure or a
    /// value over `max_item_size`. Keys must be valid memcached keys ([`valid_key`]).
    pub async fn get_multi(&self, keys: &[String]) -> Vec<Option<Bytes>> {
        let mut out: Vec<Option<Bytes>> = vec![None; keys.len()];
        let servers = self.servers();
        if servers.is_empty() || keys.is_empty() {
            return out;
        }
        // Positions of the keys per server, in batches.
        let mut per_server: Vec<Vec<usize>> = vec![Vec::new(); servers.len()];
        for (i, k) in keys.iter().enumerate() {
            per_server[pick_server(k, servers.len())].push(i);
        }
        let batch = match self.inner.config.max_get_multi_batch_size {
            0 => usize::MAX,
            n => n,
        };
        let calls = per_server
            .iter()
            .enumerate()
            .flat_map(|(s, idx)| idx.chunks(batch).map(move |c| (s, c)));
        let results = futures::future::join_all(calls.map(|(s, idx)| {
            let addr = servers[s].clone();
            async move {
                let _permit = match &self.inner.gets {
                    Some(g) => Some(g.acquire().await.expect("never closed")),
                    None => None,
                };
                let wanted: Vec<&str> = idx.iter().map(|&i| keys[i].as_str()).collect();
                let started = Instant::now();
                let r = self.inner.get_from(&addr, &wanted).await;
                self.inner.metrics.done(
                    "getmulti",
                    started,
                    r.as_ref().err().map(OpError::reason),
                );
                if let Err(e) = &r {
                    tracing::debug!(server = %addr, err = %e, "memcached get failed; treated as misses");
                }
                (idx, r.unwrap_or_default())
            }
        }))
        .await;
        for (idx, mut found) in results {
            for &i in idx {
                out[i] = found.remove(keys[i].as_str());
            }
        }
        out
    }

    /// Queues a set of `key` to `value`, expiring after `ttl`. Dropped, and counted as
    /// skipped, when the value is over `max_item_size` or the queue is full.
    pub fn set_async(&self, key: String, value: Bytes, ttl: Duration) {
        let m = &self.inner.metrics;
        let max = self.inner.config.max_item_size;
        if max > 0 && value.len() as u64 > max {
            m.skipped("set", "max-item-size");
            return;
        }
        if self.sets.try_send(SetOp { key, value, ttl }).is_err() {
            m.skipped("set", "async-buffer-full");
        }
    }
}

/// Whether memcached accepts `key`: 1 to 250 bytes, no spaces or control characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b > b' ' && b != 0x7f)
}

/// Which of `n` servers holds `key`: Lamping and Veach's jump consistent hash of the key's
/// 64-bit FNV-1a hash (fixed, so that every process agrees).
fn pick_server(key: &str, n: usize) -> usize {
    let mut h = fnv1a(key.bytes());
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < n as i64 {
        b = j;
        h = h.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((h >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as usize
}

/// 64-bit FNV-1a: a fixed hash, the same in every process and build.
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The expiry memcached takes: seconds up to 30 days, otherwise an absolute Unix time.
fn exptime(ttl: Duration) -> u64 {
    const THIRTY_DAYS: u64 = 30 * 24 * 3600;
    let s = ttl.as_secs().max(1);
    if s <= THIRTY_DAYS {
        s
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + s
    }
}

impl Inner {
    async fn connection(&self, addr: &str) -> Result<Conn, OpError> {
        if let Some(c) = self
            .idle
            .lock()
            .expect("idle lock")
            .get_mut(addr)
            .and_then(Vec::pop)
        {
            return Ok(c);
        }
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(BufReader::new(s))
    }

    fn give_back(&self, addr: &str, c: Conn) {
        let mut idle = self.idle.lock().expect("idle lock");
        let list = idle.entry(addr.to_string()).or_default();
        if list.len() < self.config.max_idle_connections {
            list.push(c);
        }
    }

    /// One `get` of `keys` on `addr`, within the timeout. The connection goes back to the
    /// pool only after a complete reply.
    async fn get_from(&self, addr: &str, keys: &[&str]) -> Result<HashMap<String, Bytes>, OpError> {
        let max = match self.config.max_item_size {
            0 => UNBOUNDED_ITEM,
            n => n,
        };
        let work = async {
            let mut c = self.connection(addr).await?;
            let mut req =
                Vec::with_capacity(4 + keys.iter().map(|k| k.len() + 1).sum::<usize>() + 2);
            req.extend_from_slice(b"get");
            for k in keys {
                req.push(b' ');
                req.extend_from_slice(k.as_bytes());
            }
            req.extend_from_slice(b"\r\n");
            c.get_mut().write_all(&req).await?;
            let found = read_values(&mut c, max).await?;
            Ok::<_, OpError>((c, found))
        };
        let (c, found) = tokio::time::timeout(self.config.timeout, work)
            .await
            .map_err(|_| OpError::Timeout)??;
        self.give_back(addr, c);
        Ok(found)
    }

    /// Writes `ops` to `addr` pipelined: every `set` sent in one write, then their replies
    /// read. A server answers a pipeline in order, so one round trip stores them all.
    async fn set_on(&self, addr: &str, ops: &[SetOp]) -> Result<(), OpError> {
        let work = async {
            let mut c = self.connection(addr).await?;
            let size: usize = ops
                .iter()
                .map(|op| op.key.len() + op.value.len() + 48)
                .sum();
            let mut buf = Vec::with_capacity(size);
            for op in ops {
                buf.extend_from_slice(
                    format!(
                        "set {} 0 {} {}\r\n",
                        op.key,
                        exptime(op.ttl),
                        op.value.len()
                    )
                    .as_bytes(),
                );
                buf.extend_from_slice(&op.value);
                buf.extend_from_slice(b"\r\n");
            }
            c.get_mut().write_all(&buf).await?;
            // Every reply is read, even after a refusal, so the connection stays in step.
            let mut refused = None;
            for _ in ops {
                let line = read_line(&mut c).await?;
                if line != "STORED" && refused.is_none() {
                    refused = Some(line);
                }
            }
            Ok::<_, OpError>((c, refused))
        };
        let (c, refused) = tokio::time::timeout(self.config.timeout, work)
            .await
            .map_err(|_| OpError::Timeout)??;
        self.give_back(addr, c);
        match refused {
            Some(line) => Err(OpError::Server(line)),
            None => Ok(()),
        }
    }
}

/// Reads one reply line without its `\r\n`; at most 2 KiB (a `VALUE` line holds a key of
/// at most 250 bytes).
async fn read_line(c: &mut Conn) -> Result<String, OpError> {
    let mut line = Vec::with_capacity(64);
    let n = (&mut *c).take(2048).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(OpError::Malformed("connection closed".into()));
    }
    if !line.ends_with(b"\r\n") {
        return Err(OpError::Malformed("reply line too long or cut".into()));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| OpError::Malformed("reply line not UTF-8".into()))
}

/// Reads `VALUE <key> <flags> <bytes> [<cas>]` blocks up to `END`.
async fn read_values(c: &mut Conn, max: u64) -> Result<HashMap<String, Bytes>, OpError> {
    let mut found = HashMap::new();
    loop {
        let line = read_line(c).await?;
        if line == "END" {
            return Ok(found);
        }
        let mut parts = line.split(' ');
        match parts.next() {
            Some("VALUE") => {}
            Some("ERROR" | "CLIENT_ERROR" | "SERVER_ERROR") => return Err(OpError::Server(line)),
            _ => return Err(OpError::Malformed(format!("unexpected line {line:?}"))),
        }
        let key = parts
            .next()
            .ok_or_else(|| OpError::Malformed(format!("no key in {line:?}")))?
            .to_string();
        let _flags = parts.next();
        let len: u64 = parts
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| OpError::Malformed(format!("no length in {line:?}")))?;
        if len > max {
            return Err(OpError::Malformed(format!(
                "value of {len} bytes for {key} is over the {max}-byte item limit"
            )));
        }
        let mut data = vec![0u8; len as usize + 2];
        c.read_exact(&mut data).await?;
        if !data.ends_with(b"\r\n") {
            return Err(OpError::Malformed(format!(
                "value of {key} not ended by CRLF"
            )));
        }
        data.truncate(len as usize);
        found.insert(key, Bytes::from(data));
    }
}

/// Writes queued sets, `max_async_concurrency` at a time, until the client is dropped.
async fn write_sets(inner: std::sync::Weak<Inner>, mut rx: mpsc::Receiver<SetOp>) {
    let Some(limit) = inner.upgrade().map(|i| i.config.max_async_concurrency) else {
        return;
    };
    let slots = Arc::new(Semaphore::new(limit));
    let mut ops = Vec::with_capacity(SET_BATCH);
    while rx.recv_many(&mut ops, SET_BATCH).await > 0 {
        let Some(i) = inner.upgrade() else { return };
        let servers = i.servers.read().expect("servers lock").clone();
        if servers.is_empty() {
            ops.clear();
            continue;
        }
        // The sets taken, by server, in pipelines of at most SET_BATCH_BYTES.
        let mut per_server: Vec<Vec<SetOp>> = (0..servers.len()).map(|_| Vec::new()).collect();
        for op in ops.drain(..) {
            per_server[pick_server(&op.key, servers.len())].push(op);
        }
        for (s, mine) in per_server.into_iter().enumerate() {
            for pipeline in pipelines(mine, SET_BATCH_BYTES) {
                let permit = slots.clone().acquire_owned().await.expect("never closed");
                let (i, addr) = (i.clone(), servers[s].clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let r = i.set_on(&addr, &pipeline).await;
                    if let Err(e) = &r {
                        tracing::debug!(server = %addr, sets = pipeline.len(), err = %e, "memcached sets failed");
                    }
                    for _ in &pipeline {
                        i.metrics
                            .done("set", started, r.as_ref().err().map(OpError::reason));
                    }
                    drop(permit);
                });
            }
        }
    }
}

/// `ops` cut, in order, into runs whose values add up to at most `max_bytes` (a larger
/// value alone).
fn pipelines(ops: Vec<SetOp>, max_bytes: usize) -> Vec<Vec<SetOp>> {
    let mut out: Vec<Vec<SetOp>> = Vec::new();
    let mut bytes = 0;
    for op in ops {
        match out.last_mut() {
            Some(run) if bytes + op.value.len() <= max_bytes => {
                bytes += op.value.len();
                run.push(op);
            }
            _ => {
                bytes = op.value.len();
                out.push(vec![op]);
            }
        }
    }
    out
}

/// Resolves the addresses now and every `dns_provider_update_interval`, until the client
/// is dropped; with `auto_discovery`, asks each resolved configuration endpoint for the
/// cluster's nodes. A round that finds nothing keeps the servers found before, so a DNS or
/// endpoint outage does not empty the cache.
async fn resolve_addresses(inner: std::sync::Weak<Inner>, specs: Vec<AddressSpec>) {
    let resolver = Resolver::system();
    loop {
        let mut found = std::collections::BTreeSet::new();
        for s in &specs {
            found.extend(resolver.resolve(s).await);
        }
        let Some(i) = inner.upgrade() else { return };
        let (timeout, discover) = (i.config.timeout, i.config.auto_discovery);
        drop(i);
        if discover {
            let endpoints = std::mem::take(&mut found);
            for e in endpoints {
                match cluster_nodes(&e, timeout).await {
                    Ok(nodes) => found.extend(nodes),
                    Err(err) => {
                        tracing::warn!(endpoint = %e, err = %err, "memcached auto-discovery failed")
                    }
                }
            }
        }
        let Some(i) = inner.upgrade() else { return };
        if !found.is_empty() {
            let list: Vec<String> = found.into_iter().collect();
            let mut servers = i.servers.write().expect("servers lock");
            if **servers != list {
                tracing::info!(servers = ?list, "memcached servers");
                *servers = Arc::new(list);
            }
        } else {
            tracing::warn!(addresses = ?i.config.addresses, "memcached addresses gave no servers; keeping the servers found before");
        }
        let every = i.config.dns_provider_update_interval;
        drop(i);
        tokio::time::sleep(every).await;
    }
}

/// The most bytes of a `config get cluster` answer read (a node line is under 300 bytes).
const MAX_CLUSTER_CONFIG: usize = 1 << 20;

/// Asks the configuration endpoint `addr` for its cluster's nodes (ElastiCache's
/// `config get cluster`), within `timeout`.
async fn cluster_nodes(addr: &str, timeout: Duration) -> Result<Vec<String>, OpError> {
    let work = async {
        let mut c = BufReader::new(TcpStream::connect(addr).await?);
        c.get_mut().write_all(b"config get cluster\r\n").await?;
        let head = read_line(&mut c).await?;
        let len = head
            .strip_prefix("CONFIG cluster ")
            .and_then(|rest| rest.split(' ').nth(1))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n <= MAX_CLUSTER_CONFIG)
            .ok_or_else(|| {
                OpError::Malformed(format!(
                    "{head:?} is not an answer to `config get cluster` (is this an \
                     ElastiCache configuration endpoint?)"
                ))
            })?;
        let mut body = vec![0; len];
        c.read_exact(&mut body).await?;
        loop {
            let line = read_line(&mut c).await?;
            if line == "END" {
                break;
            }
            if !line.is_empty() {
                return Err(OpError::Malformed(format!(
                    "{line:?} after the cluster config"
                )));
            }
        }
        parse_cluster_config(&body)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| OpError::Timeout)?
}

/// The nodes of a cluster config: a version line, then `host|ip|port` entries separated
/// by spaces. A node is reached at its IP when it has one (no lookup), else at its host.
fn parse_cluster_config(body: &[u8]) -> Result<Vec<String>, OpError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| OpError::Malformed("cluster config not UTF-8".into()))?;
    let mut lines = text.lines();
    lines
        .next()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| OpError::Malformed("cluster config without a version line".into()))?;
    let nodes_line = lines.next().unwrap_or("");
    let mut nodes = Vec::new();
    for node in nodes_line.split_whitespace() {
        let parts: Vec<&str> = node.split('|').collect();
        let [host, ip, port] = parts[..] else {
            return Err(OpError::Malformed(format!(
                "cluster node {node:?} is not host|ip|port"
            )));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| OpError::Malformed(format!("cluster node {node:?}: bad port")))?;
        let at = if ip.is_empty() { host } else { ip };
        if at.is_empty() {
            return Err(OpError::Malformed(format!(
                "cluster node {node:?} has neither host nor IP"
            )));
        }
        nodes.push(if at.contains(':') {
            format!("[{at}]:{port}")
        } else {
            format!("{at}:{port}")
        });
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<MemcachedConfig, String> {
        MemcachedConfig::from_value(serde_yaml_ng::from_str(yaml).unwrap())
    }

    #[test]
    fn cluster_configs_give_the_nodes_to_use() {
        let nodes = parse_cluster_config(
            b"12\nn1.cache.amazonaws.com|10.0.0.1|11211 n2.cache.amazonaws.com||11212 \
              n3||11213 h6|fd00::1|11211\n",
        )
        .unwrap();
        assert_eq!(
            nodes,
            [
                "10.0.0.1:11211",
                "n2.cache.amazonaws.com:11212",
                "n3:11213",
                "[fd00::1]:11211"
            ]
        );
        assert!(parse_cluster_config(b"1\n").unwrap().is_empty());
        for bad in [
            &b""[..],
            b"version\nh|i|1\n",
            b"1\nh|1\n",
            b"1\nh|i|port\n",
            b"1\n||1\n",
            b"\xff\n",
        ] {
            assert!(parse_cluster_config(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// A configuration endpoint's answer is untrusted: any bytes parse or fail, never
        /// panic, and every node parsed is a `host:port` to connect to.
        #[test]
        fn cluster_configs_of_any_bytes_never_panic(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            nodes in proptest::collection::vec(("[a-z.]{0,8}", "[0-9.:]{0,8}", "[0-9]{0,6}"), 0..5),
        ) {
            let _ = parse_cluster_config(&body);
            let line: Vec<String> = nodes.iter().map(|(h, i, p)| format!("{h}|{i}|{p}")).collect();
            let text = format!("1\n{}\n", line.join(" "));
            if let Ok(found) = parse_cluster_config(text.as_bytes()) {
                for n in found {
                    proptest::prop_assert!(n.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()), "{n}");
                }
            }
        }
    }

    #[test]
    fn sets_are_cut_into_pipelines_by_bytes() {
        let op = |n: usize| SetOp {
            key: format!("k{n}"),
            value: Bytes::from(vec![0; n]),
            ttl: Duration::ZERO,
        };
        let sizes = |runs: Vec<Vec<SetOp>>| -> Vec<Vec<usize>> {
            runs.iter()
                .map(|r| r.iter().map(|o| o.value.len()).collect())
                .collect()
        };
        assert_eq!(
            sizes(pipelines(vec![op(4), op(5), op(2), op(30), op(1)], 10)),
            [vec![4, 5], vec![2], vec![30], vec![1]]
        );
        assert!(pipelines(Vec::new(), 10).is_empty());
    }

    #[test]
    fn configuration_reads_thanos_fields_and_defaults() {
        let c = parse("addresses: [a:11211, 'dnssrv+_memcache._tcp.m']").unwrap();
        assert_eq!(c.addresses.len(), 2);
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(c.max_item_size, 1 << 20);
        let c = parse(
            "addresses: [a:1]\ntimeout: 2s\nmax_idle_connections: 3\nmax_async_concurrency: 4\n\
             max_async_buffer_size: 5\nmax_get_multi_concurrency: 0\nmax_get_multi_batch_size: 7\n\
             max_item_size: 2MiB\ndns_provider_update_interval: 1m\nauto_discovery: false\n\
             set_async_circuit_breaker_config: {enabled: false}",
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(
            (
                c.max_idle_connections,
                c.max_async_concurrency,
                c.max_async_buffer_size
            ),
            (3, 4, 5)
        );
        assert_eq!(
            (c.max_get_multi_concurrency, c.max_get_multi_batch_size),
            (0, 7)
        );
        assert_eq!(c.max_item_size, 2 << 20);
        assert_eq!(c.dns_provider_update_interval, Duration::from_secs(60));
        // Thanos' generated example has zeroes everywhere: they mean the defaults.
        let c = parse(
            "addresses: [a:1]\ntimeout: 0s\nmax_idle_connections: 0\nmax_item_size: 0\n\
             dns_provider_update_interval: 0s",
        )
        .unwrap();
        assert_eq!(c.max_item_size, 0);
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(c.max_idle_connections, 100);
    }

    #[test]
    fn bad_configurations_are_refused_naming_the_key() {
        for (yaml, want) in [
            ("addresses: []", "addresses"),
            ("{}", "addresses"),
            ("addresses: [a:1]\nbogus: 1", "bogus"),
            ("addresses: ['http://a:1']", "config.addresses"),
            ("addresses: [a:1]\ntimeout: soon", "config.timeout"),
            (
                "addresses: [a:1]\nmax_item_size: lots",
                "config.max_item_size",
            ),
        ] {
            let e = parse(yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }

    #[test]
    fn keys_spread_stably_and_move_little_when_a_server_is_added() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
        let on3: Vec<usize> = keys.iter().map(|k| pick_server(k, 3)).collect();
        for s in 0..3 {
            let n = on3.iter().filter(|&&x| x == s).count();
            assert!((2_800..3_900).contains(&n), "server {s} has {n}");
        }
        let moved = keys
            .iter()
            .zip(&on3)
            .filter(|(k, s)| pick_server(k, 4) != **s)
            .count();
        // A fourth server takes about a quarter of the keys, and only those move.
        assert!((2_000..3_000).contains(&moved), "{moved} moved");
        assert!(keys.iter().zip(&on3).all(|(k, &s)| {
            let t = pick_server(k, 4);
            t == s || t == 3
        }));
        assert_eq!(pick_server("anything", 1), 0);
    }

    #[test]
    fn keys_are_checked_and_expiry_follows_memcached_rules() {
        assert!(valid_key("strata1:S:01ABC:12"));
        assert!(!valid_key("has space"));
        assert!(!valid_key(""));
        assert!(!valid_key(&"x".repeat(251)));
        assert_eq!(exptime(Duration::from_secs(3600)), 3600);
        assert!(exptime(Duration::from_secs(60 * 24 * 3600)) > 1_700_000_000);
        assert_eq!(exptime(Duration::ZERO), 1);
    }
}
