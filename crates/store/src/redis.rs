//! A Redis client for the store gateway's caches, configured as Thanos' Redis client is
//! (`type: REDIS` in `--index-cache.config` and `--store.caching-bucket.config`): `MGET` in
//! batches for lookups, pipelined `SET … PX` for stores, over one multiplexed connection per
//! server (the `redis` crate's, which pipelines every request sent on it).
//!
//! It fails soft and bounded, as the memcached client does ([`crate::memcached`]): every
//! operation is bounded by the configured timeouts and a failed one is a miss
//! (`strata_redis_operation_failures_total`), never an error of the query; sets are queued
//! and written by `max_async_concurrency` background workers in pipelines of
//! `set_multi_batch_size`, and a full queue drops the set rather than slowing the query. A
//! connection that failed is dropped and dialled again on next use, after [`REDIAL_AFTER`]
//! and then backing off to [`MAX_REDIAL_AFTER`], so a Redis that is down costs queries a
//! failed call each and a dial (at most `dial_timeout`) only now and then.
//!
//! `tls_enabled: true` speaks TLS to the server with `tls_config` (a CA file, else the
//! system's trust store; a client certificate for servers that ask for one; `server_name` to
//! verify and send as SNI, else the address' host; `insecure_skip_verify`), as Thanos' client
//! does: the TCP connection is dialled and wrapped here (rustls, as every other TLS client of
//! Strata), then handed to the `redis` crate.
//!
//! `master_name` is Redis Sentinel: `addr` lists the sentinels, and every dial asks them
//! for the master's address, so a failover costs the cache one broken connection. Without
//! it, `addr` (one address or several, comma-separated) may also name members of a Redis
//! Cluster: every dial asks the first that answers for `CLUSTER SLOTS`, as Thanos' client
//! does, and then talks to each master about its own keys (`redis/cluster.rs`).
//!
//! `cache_size` (client-side caching) is accepted and has no effect.

mod cluster;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, ServerErrorKind};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};

use crate::memcached::{
    CircuitBreaker, ClientMetrics, Metrics, SetOp, config_count, config_duration,
};

/// How long after a failed dial the client waits before dialling again (operations in
/// between fail at once); doubled after each further failure, up to [`MAX_REDIAL_AFTER`].
pub const REDIAL_AFTER: Duration = Duration::from_secs(1);
/// The longest wait between dials of a Redis that keeps failing: queries wait for a dial
/// (at most `dial_timeout`), so an unreachable server must not be dialled often.
pub const MAX_REDIAL_AFTER: Duration = Duration::from_secs(30);

/// Thanos' Redis client configuration (the `config:` of a `REDIS` cache), with its defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `addr`: `host:port` of the server.
    pub addr: String,
    pub username: String,
    pub password: String,
    /// `db`: the database selected on connecting.
    pub db: i64,
    /// `dial_timeout` (5s).
    pub dial_timeout: Duration,
    /// `read_timeout` (3s): with `write_timeout`, bounds each operation.
    pub read_timeout: Duration,
    /// `write_timeout` (3s).
    pub write_timeout: Duration,
    /// `max_get_multi_concurrency` (100; 0: unbounded): `MGET`s in flight at once.
    pub max_get_multi_concurrency: usize,
    /// `get_multi_batch_size` (100; 0: unbounded): keys per `MGET`.
    pub get_multi_batch_size: usize,
    /// `max_set_multi_concurrency` (100): with `max_async_concurrency`, pipelines in flight.
    pub max_set_multi_concurrency: usize,
    /// `set_multi_batch_size` (100): sets per pipeline.
    pub set_multi_batch_size: usize,
    /// `max_async_concurrency` (20): background set workers.
    pub max_async_concurrency: usize,
    /// `max_async_buffer_size` (10000): queued sets.
    pub max_async_buffer_size: usize,
    /// `tls_config`, when `tls_enabled` is true (boxed: most configurations have none).
    pub tls: Option<Box<RedisTlsConfig>>,
    /// `master_name`: Redis Sentinel. `addr` then lists the sentinels (comma-separated),
    /// which are asked for this master's address at each dial.
    pub master_name: String,
}

/// `tls_config` of a Redis client with `tls_enabled: true` (Thanos' TLS client settings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedisTlsConfig {
    /// `ca_file`: the CAs trusted; empty: the system's trust store.
    pub ca_file: String,
    /// `cert_file` and `key_file`: a client certificate, for servers that require one.
    pub cert_file: String,
    pub key_file: String,
    /// `server_name`: the name the server's certificate is verified for (and the SNI);
    /// empty: the host of `addr`.
    pub server_name: String,
    /// `insecure_skip_verify`: accept any certificate (the connection stays encrypted).
    pub insecure_skip_verify: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            addr: String::new(),
            username: String::new(),
            password: String::new(),
            db: 0,
            dial_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(3),
            max_get_multi_concurrency: 100,
            get_multi_batch_size: 100,
            max_set_multi_concurrency: 100,
            set_multi_batch_size: 100,
            max_async_concurrency: 20,
            max_async_buffer_size: 10_000,
            tls: None,
            master_name: String::new(),
        }
    }
}

impl RedisConfig {
    /// Reads the `config:` mapping. Every field Thanos documents is accepted (the pool
    /// settings of its older go-redis client are checked and have no use: the connection
    /// is multiplexed); unknown keys are refused, as Thanos refuses them.
    pub fn from_value(v: serde_yaml_ng::Value) -> Result<Self, String> {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            addr: String,
            #[serde(default)]
            username: String,
            #[serde(default)]
            password: String,
            #[serde(default)]
            db: i64,
            dial_timeout: Option<String>,
            read_timeout: Option<String>,
            write_timeout: Option<String>,
            pool_size: Option<i64>,
            min_idle_conns: Option<i64>,
            idle_timeout: Option<String>,
            max_conn_age: Option<String>,
            max_get_multi_concurrency: Option<i64>,
            get_multi_batch_size: Option<i64>,
            max_set_multi_concurrency: Option<i64>,
            set_multi_batch_size: Option<i64>,
            #[serde(default)]
            tls_enabled: bool,
            tls_config: Option<Tls>,
            cache_size: Option<i64>,
            #[serde(default)]
            master_name: String,
            max_async_buffer_size: Option<i64>,
            max_async_concurrency: Option<i64>,
            set_async_circuit_breaker_config: Option<CircuitBreaker>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tls {
            ca_file: Option<String>,
            cert_file: Option<String>,
            key_file: Option<String>,
            server_name: Option<String>,
            insecure_skip_verify: Option<bool>,
        }
        let raw: Raw = match v {
            serde_yaml_ng::Value::Null => Raw::default(),
            v => serde_yaml_ng::from_value(v).map_err(|e| format!("config: {e}"))?,
        };
        let d = RedisConfig::default();
        let addr = raw.addr.trim().to_string();
        if addr.is_empty() {
            return Err("config: no Redis address: set config.addr (host:port)".into());
        }
        let master_name = raw.master_name.trim().to_string();
        for a in addr.split(',').map(str::trim) {
            if !a.contains(':') {
                return Err(format!("config.addr: {a:?} is not host:port"));
            }
        }
        // As Thanos: `tls_config` counts only with `tls_enabled`.
        let tls = raw.tls_enabled.then(|| {
            let t = raw.tls_config.unwrap_or(Tls {
                ca_file: None,
                cert_file: None,
                key_file: None,
                server_name: None,
                insecure_skip_verify: None,
            });
            Box::new(RedisTlsConfig {
                ca_file: t.ca_file.unwrap_or_default(),
                cert_file: t.cert_file.unwrap_or_default(),
                key_file: t.key_file.unwrap_or_default(),
                server_name: t.server_name.unwrap_or_default(),
                insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
            })
        });
        if let Some(t) = &tls
            && t.cert_file.is_empty() != t.key_file.is_empty()
        {
            return Err(
                "config.tls_config: cert_file and key_file must be given together (a client \
                 certificate and its key)"
                    .into(),
            );
        }
        CircuitBreaker::warn_if_enabled(raw.set_async_circuit_breaker_config.as_ref());
        if raw.cache_size.is_some_and(|c| c > 0) {
            tracing::warn!(
                "config.cache_size: Redis client-side caching is not supported and has no \
                 effect; use an IN-MEMORY cache in front of nothing, or leave it 0"
            );
        }
        let duration = config_duration;
        for (what, v) in [
            ("config.idle_timeout", raw.idle_timeout),
            ("config.max_conn_age", raw.max_conn_age),
        ] {
            duration(what, v, Duration::ZERO)?;
        }
        for (what, v) in [
            ("pool_size", raw.pool_size),
            ("min_idle_conns", raw.min_idle_conns),
        ] {
            if v.is_some_and(|n| n < 0) {
                return Err(format!("config.{what} must not be negative"));
            }
        }
        let count = config_count;
        Ok(RedisConfig {
            addr,
            username: raw.username,
            password: raw.password,
            db: raw.db,
            dial_timeout: duration("config.dial_timeout", raw.dial_timeout, d.dial_timeout)?,
            read_timeout: duration("config.read_timeout", raw.read_timeout, d.read_timeout)?,
            write_timeout: duration("config.write_timeout", raw.write_timeout, d.write_timeout)?,
            max_get_multi_concurrency: match raw.max_get_multi_concurrency {
                None => d.max_get_multi_concurrency,
                Some(n) => n.max(0) as usize,
            },
            get_multi_batch_size: match raw.get_multi_batch_size {
                None => d.get_multi_batch_size,
                Some(n) => n.max(0) as usize,
            },
            max_set_multi_concurrency: count(
                raw.max_set_multi_concurrency,
                d.max_set_multi_concurrency,
            ),
            set_multi_batch_size: count(raw.set_multi_batch_size, d.set_multi_batch_size),
            max_async_concurrency: count(raw.max_async_concurrency, d.max_async_concurrency),
            max_async_buffer_size: count(raw.max_async_buffer_size, d.max_async_buffer_size),
            tls,
            master_name,
        })
    }

    /// The connection URL (`redis://[user:password@]host:port/db`), credentials
    /// percent-encoded.
    fn url(&self) -> String {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        let auth = match (self.username.is_empty(), self.password.is_empty()) {
            (true, true) => String::new(),
            (true, false) => format!(":{}@", enc(&self.password)),
            (false, true) => format!("{}@", enc(&self.username)),
            (false, false) => format!("{}:{}@", enc(&self.username), enc(&self.password)),
        };
        // With Sentinel the address is only a placeholder: connections are dialled by hand
        // and take only the handshake settings (credentials, db) from the URL.
        let host = self.addr.split(',').next().unwrap_or_default().trim();
        format!("redis://{auth}{host}/{}", self.db)
    }
}

/// Why one operation failed; the query goes on with a miss.
#[derive(Debug, thiserror::Error)]
enum OpError {
    #[error("timed out")]
    Timeout,
    #[error("not connected (the last dial failed lately; waiting before the next)")]
    Unavailable,
    #[error("{0}")]
    Redis(#[from] RedisError),
}

impl OpError {
    /// The `reason` label values, as the memcached client's.
    fn reason(&self) -> &'static str {
        match self {
            OpError::Timeout => "timeout",
            OpError::Unavailable => "unavailable",
            OpError::Redis(e) if e.is_timeout() => "timeout",
            OpError::Redis(e) if e.is_io_error() || e.is_connection_dropped() => "other",
            OpError::Redis(_) => "server-error",
        }
    }

    /// Whether the connection is to be dropped: anything but an error reply the server
    /// sent whole (the connection may be in any state).
    fn breaks_connection(&self) -> bool {
        match self {
            OpError::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    // The topology changed under us: a reshard or failover of a cluster, or
                    // a Sentinel's old master that is a replica now.
                    || e.is_cluster_error()
                    || matches!(
                        e.kind(),
                        ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
                    )
            }
            OpError::Timeout => true,
            OpError::Unavailable => false,
        }
    }
}

/// What the client talks to: one server (alone, or the master Sentinel named), or a Redis
/// Cluster's masters.
#[derive(Clone)]
enum Topology {
    Single(MultiplexedConnection),
    Cluster(cluster::Cluster),
}

/// The connection, when one is up, or when the last dial failed.
#[derive(Default)]
struct ConnState {
    conn: Option<Topology>,
    failed_at: Option<Instant>,
    /// Dials failed in a row.
    failures: u32,
}

impl ConnState {
    /// Whether the last dial failed too lately to dial again.
    fn backing_off(&self) -> bool {
        let wait = REDIAL_AFTER
            .saturating_mul(1 << self.failures.saturating_sub(1).min(5))
            .min(MAX_REDIAL_AFTER);
        self.failed_at.is_some_and(|t| t.elapsed() < wait)
    }

    fn dial_failed(&mut self) {
        self.failed_at = Some(Instant::now());
        self.failures = self.failures.saturating_add(1);
    }
}

/// What a TLS dial needs: the client settings and the name to verify (`server_name`, else
/// the host dialled).
struct TlsDial {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl TlsDial {
    /// The rustls client for `t`; errors name the setting and the file.
    fn new(t: &RedisTlsConfig) -> Result<TlsDial, String> {
        let read = |key: &str, path: &str| {
            std::fs::read(path).map_err(|e| format!("config.tls_config.{key} {path}: {e}"))
        };
        let builder = rustls::ClientConfig::builder_with_provider(strata_runtime::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("config.tls_config: {e}"))?;
        let builder = if t.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(strata_runtime::tls::SkipServerVerification::new())
        } else if t.ca_file.is_empty() {
            let roots = strata_runtime::tls::system_roots().map_err(|e| {
                format!("config.tls_config: {e}; set ca_file to the CA of the Redis server")
            })?;
            builder.with_root_certificates(roots)
        } else {
            let roots = strata_runtime::tls::pem_roots(&read("ca_file", &t.ca_file)?)
                .map_err(|e| format!("config.tls_config.ca_file {}: {e}", t.ca_file))?;
            builder.with_root_certificates(roots)
        };
        let config = if t.cert_file.is_empty() {
            builder.with_no_client_auth()
        } else {
            let certs = strata_runtime::tls::pem_certificates(&read("cert_file", &t.cert_file)?)
                .map_err(|e| format!("config.tls_config.cert_file {}: {e}", t.cert_file))?;
            let key = PrivateKeyDer::from_pem_slice(&read("key_file", &t.key_file)?)
                .map_err(|e| format!("config.tls_config.key_file {}: {e}", t.key_file))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("config.tls_config: the client certificate: {e}"))?
        };
        let server_name = if t.server_name.is_empty() {
            None
        } else {
            let name = t.server_name.clone();
            Some(
                ServerName::try_from(name.clone())
                    .map_err(|e| format!("config.tls_config.server_name {name:?}: {e}"))?,
            )
        };
        Ok(TlsDial {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

struct Inner {
    config: RedisConfig,
    /// With `tls_enabled`: how to dial.
    tls: Option<TlsDial>,
    /// The handshake settings (credentials, db); connections are dialled by `dial`.
    client: Client,
    /// Dials are serialized, so that a burst of queries opens one connection.
    state: tokio::sync::Mutex<ConnState>,
    gets: Option<Semaphore>,
    metrics: Metrics,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("addr", &self.config.addr)
            .field("db", &self.config.db)
            .finish()
    }
}

/// The client. Cheap to share (`Arc` inside); its set workers end when the last clone is
/// dropped.
#[derive(Debug, Clone)]
pub struct Redis {
    inner: Arc<Inner>,
    sets: mpsc::Sender<SetOp>,
}

impl Redis {
    /// A client for `config`, its metrics labelled `name` in `metrics`
    /// ([`ClientMetrics::redis`]). Needs a Tokio runtime (it starts the set workers). No
    /// connection is made here: the first operation dials.
    pub fn new(
        config: RedisConfig,
        name: &'static str,
        metrics: &ClientMetrics,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the Redis client needs a Tokio runtime".to_string())?;
        let client = Client::open(config.url())
            .map_err(|e| format!("config.addr {:?}: {e}", config.addr))?;
        let tls = config.tls.as_deref().map(TlsDial::new).transpose()?;
        let inner = Arc::new(Inner {
            tls,
            gets: (config.max_get_multi_concurrency > 0)
                .then(|| Semaphore::new(config.max_get_multi_concurrency)),
            client,
            state: tokio::sync::Mutex::new(ConnState::default()),
            metrics: Metrics::new(name, metrics, &["getmulti", "setmulti"]),
            config,
        });
        let (tx, rx) = mpsc::channel(inner.config.max_async_buffer_size);
        runtime.spawn(write_sets(Arc::downgrade(&inner), rx));
        Ok(Redis { inner, sets: tx })
    }

    /// Looks `keys` up; the result is in their order, `None` for a miss or a failure.
    pub async fn get_multi(&self, keys: &[String]) -> Vec<Option<Bytes>> {
        let mut out: Vec<Option<Bytes>> = vec![None; keys.len()];
        if keys.is_empty() {
            return out;
        }
        let batch = match self.inner.config.get_multi_batch_size {
            0 => keys.len(),
            n => n,
        };
        let results = futures::future::join_all(keys.chunks(batch).enumerate().map(
            |(b, chunk)| async move {
                let _permit = match &self.inner.gets {
                    Some(g) => Some(g.acquire().await.expect("never closed")),
                    None => None,
                };
                let started = Instant::now();
                let r = self.inner.mget(chunk).await;
                self.inner
                    .metrics
                    .done("getmulti", started, r.as_ref().err().map(OpError::reason));
                if let Err(e) = &r {
                    tracing::debug!(addr = %self.inner.config.addr, err = %e, "redis get failed; treated as misses");
                }
                (b * batch, r.unwrap_or_default())
            },
        ))
        .await;
        for (at, found) in results {
            for (i, v) in found.into_iter().enumerate() {
                out[at + i] = v.map(Bytes::from);
            }
        }
        out
    }

    /// Queues a set of `key` to `value`, expiring after `ttl`. Dropped, and counted as
    /// skipped, when the queue is full.
    pub fn set_async(&self, key: String, value: Bytes, ttl: Duration) {
        if self.sets.try_send(SetOp { key, value, ttl }).is_err() {
            self.inner.metrics.skipped("setmulti", "async-buffer-full");
        }
    }
}

/// The `redis` crate's multiplexed connection over `stream`; its driver runs as a task for as
/// long as the connection is used.
async fn connect_over<S>(
    stream: S,
    settings: &redis::RedisConnectionInfo,
    cfg: AsyncConnectionConfig,
) -> Result<MultiplexedConnection, RedisError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (conn, driver) = MultiplexedConnection::new_with_config(settings, stream, cfg).await?;
    tokio::spawn(driver);
    Ok(conn)
}

impl Inner {
    /// Every operation's bound: Thanos' read and write timeouts together.
    fn op_timeout(&self) -> Duration {
        self.config.read_timeout + self.config.write_timeout
    }

    /// The connection, dialled if there is none (unless the last dial failed lately).
    async fn connection(&self) -> Result<Topology, OpError> {
        let mut st = self.state.lock().await;
        if let Some(c) = &st.conn {
            return Ok(c.clone());
        }
        if st.backing_off() {
            return Err(OpError::Unavailable);
        }
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.dial_timeout))
            .set_response_timeout(Some(self.op_timeout()));
        let dial = async {
            if self.config.master_name.is_empty() {
                self.discover(cfg).await
            } else {
                let addr = self.ask_sentinels().await?;
                Ok(Topology::Single(self.dial(&addr, cfg).await?))
            }
        };
        // The handshake (AUTH, SELECT) is part of the dial: `dial_timeout` bounds it all,
        // since every query waiting for this connection waits for it.
        match tokio::time::timeout(self.config.dial_timeout, dial).await {
            Ok(Ok(c)) => {
                st.conn = Some(c.clone());
                st.failed_at = None;
                st.failures = 0;
                Ok(c)
            }
            Ok(Err(e)) => {
                tracing::warn!(addr = %self.config.addr, err = %e, "connecting to redis failed; the cache misses until it is back");
                st.dial_failed();
                Err(e.into())
            }
            Err(_) => {
                tracing::warn!(addr = %self.config.addr, "connecting to redis timed out; the cache misses until it is back");
                st.dial_failed();
                Err(OpError::Timeout)
            }
        }
    }

    /// A TCP connection to `addr` (wrapped in TLS with `tls_enabled`), then the `redis`
    /// crate's handshake (AUTH, SELECT) over it.
    async fn dial(
        &self,
        addr: &str,
        cfg: AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, RedisError> {
        let settings = self.client.get_connection_info().redis_settings();
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            return connect_over(tcp, settings, cfg).await;
        };
        let name = match &tls.server_name {
            Some(n) => n.clone(),
            None => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(host.to_owned()).map_err(|e| {
                    std::io::Error::other(format!("{host:?} is not a TLS server name: {e}"))
                })?
            }
        };
        let stream = tls.connector.connect(name, tcp).await?;
        connect_over(stream, settings, cfg).await
    }

    /// The server or cluster behind `addr`: the first address that answers is asked for
    /// `CLUSTER SLOTS`, as Thanos' client does. A server with cluster support disabled (or
    /// that refuses the command) is used alone; a cluster member leads to every master
    /// serving slots, each dialled.
    async fn discover(&self, cfg: AsyncConnectionConfig) -> Result<Topology, RedisError> {
        let mut last = None;
        for addr in self.config.addr.split(',').map(str::trim) {
            let mut conn = match self.dial(addr, cfg.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(%addr, err = %e, "dialling a redis seed address failed");
                    last = Some(e);
                    continue;
                }
            };
            let slots = match redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<redis::Value>(&mut conn)
                .await
            {
                Ok(v) => v,
                // "ERR This instance has cluster support disabled", or no permission.
                Err(e) if matches!(e.kind(), ErrorKind::Server(_)) => {
                    return Ok(Topology::Single(conn));
                }
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let map = cluster::SlotMap::parse(&slots, host)
                .map_err(|e| RedisError::from(std::io::Error::other(e)))?;
            let mut conns = Vec::with_capacity(map.masters.len());
            for master in &map.masters {
                conns.push(if master == addr {
                    conn.clone()
                } else {
                    self.dial(master, cfg.clone()).await?
                });
            }
            tracing::debug!(seed = %addr, masters = ?map.masters, "redis cluster slot map read");
            return Ok(Topology::Cluster(cluster::Cluster::new(map, conns)));
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no redis address").into()))
    }

    /// Redis Sentinel: the master's `host:port` from the first sentinel in `addr` that
    /// knows `master_name` (sentinels are asked over plain TCP, without credentials, as
    /// Thanos' client asks them). Asked at every dial, so after a failover the next dial
    /// goes to the new master.
    async fn ask_sentinels(&self) -> Result<String, RedisError> {
        let mut last = None;
        for sentinel in self.config.addr.split(',').map(str::trim) {
            let ask = async {
                let tcp = tokio::net::TcpStream::connect(sentinel).await?;
                tcp.set_nodelay(true)?;
                let mut conn =
                    connect_over(tcp, &Default::default(), AsyncConnectionConfig::new()).await?;
                let master: Option<(String, String)> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.config.master_name)
                    .query_async(&mut conn)
                    .await?;
                Ok::<_, RedisError>(master)
            };
            match ask.await {
                Ok(Some((host, port))) => {
                    let addr = if host.contains(':') {
                        format!("[{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    };
                    tracing::debug!(%sentinel, master = %self.config.master_name, %addr, "redis master found");
                    return Ok(addr);
                }
                Ok(None) => {
                    last = Some(RedisError::from(std::io::Error::other(format!(
                        "sentinel {sentinel} knows no master named {:?}",
                        self.config.master_name
                    ))));
                }
                Err(e) => {
                    tracing::debug!(%sentinel, err = %e, "asking a redis sentinel failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no sentinel address").into()))
    }

    /// Runs `op` on the connection within the operation timeout; an error that may have
    /// left the connection in any state drops it.
    async fn run<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, OpError> {
        let r = match tokio::time::timeout(self.op_timeout(), op).await {
            Ok(r) => r.map_err(OpError::from),
            Err(_) => Err(OpError::Timeout),
        };
        if let Err(e) = &r
            && e.breaks_connection()
        {
            self.state.lock().await.conn = None;
        }
        r
    }

    /// [`Inner::mget_once`], tried once more when a cluster redirected it (`MOVED`, `ASK`):
    /// the first try dropped the topology, so the second reads the slot map again.
    async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, OpError> {
        match self.mget_once(keys).await {
            Err(OpError::Redis(e)) if e.is_cluster_error() => self.mget_once(keys).await,
            r => r,
        }
    }

    async fn mget_once(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, OpError> {
        let mut conn = match self.connection().await? {
            Topology::Single(c) => c,
            Topology::Cluster(c) => return self.run(c.get(keys)).await,
        };
        let mut cmd = redis::cmd("MGET");
        cmd.arg(keys);
        let v = self
            .run(cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn))
            .await?;
        if v.len() != keys.len() {
            return Err(OpError::Redis(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "MGET answered a different number of values",
                format!("{} for {} keys", v.len(), keys.len()),
            ))));
        }
        Ok(v)
    }

    /// [`Inner::set_many_once`], tried once more when a cluster redirected it (see
    /// [`Inner::mget`]).
    async fn set_many(&self, ops: &[SetOp]) -> Result<(), OpError> {
        match self.set_many_once(ops).await {
            Err(OpError::Redis(e)) if e.is_cluster_error() => self.set_many_once(ops).await,
            r => r,
        }
    }

    /// Writes `ops` in one pipeline of `SET key value PX ttl` (one per master of a cluster).
    async fn set_many_once(&self, ops: &[SetOp]) -> Result<(), OpError> {
        let ms = |op: &SetOp| op.ttl.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        let mut conn = match self.connection().await? {
            Topology::Single(c) => c,
            Topology::Cluster(c) => {
                let ops: Vec<(&str, &[u8], u64)> = ops
                    .iter()
                    .map(|op| (op.key.as_str(), op.value.as_ref(), ms(op)))
                    .collect();
                return self.run(c.set(&ops)).await;
            }
        };
        let mut pipe = redis::pipe();
        for op in ops {
            pipe.cmd("SET")
                .arg(&op.key)
                .arg(op.value.as_ref())
                .arg("PX")
                .arg(ms(op))
                .ignore();
        }
        self.run(pipe.query_async::<()>(&mut conn)).await
    }
}

/// Takes queued sets as they come and writes them in pipelines of up to
/// `set_multi_batch_size`, at most `min(max_async_concurrency, max_set_multi_concurrency)`
/// at once, until the client is dropped.
async fn write_sets(inner: std::sync::Weak<Inner>, mut rx: mpsc::Receiver<SetOp>) {
    let Some((limit, batch)) = inner.upgrade().map(|i| {
        (
            i.config
                .max_async_concurrency
                .min(i.config.max_set_multi_concurrency)
                .max(1),
            i.config.set_multi_batch_size.max(1),
        )
    }) else {
        return;
    };
    let slots = Arc::new(Semaphore::new(limit));
    let mut ops = Vec::with_capacity(batch);
    while rx.recv_many(&mut ops, batch).await > 0 {
        let Some(i) = inner.upgrade() else { return };
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let mine = std::mem::replace(&mut ops, Vec::with_capacity(batch));
        tokio::spawn(async move {
            let started = Instant::now();
            let r = i.set_many(&mine).await;
            if let Err(e) = &r {
                tracing::debug!(addr = %i.config.addr, sets = mine.len(), err = %e, "redis sets failed");
            }
            i.metrics
                .done("setmulti", started, r.as_ref().err().map(OpError::reason));
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<RedisConfig, String> {
        RedisConfig::from_value(serde_yaml_ng::from_str(yaml).unwrap())
    }

    #[test]
    fn thanos_documented_config_is_read_with_its_defaults() {
        // Thanos' documented example, every field, zeroes and empties.
        let c = parse(
            "addr: redis:6379\nusername: \"\"\npassword: \"\"\ndb: 0\ndial_timeout: 5s\n\
             read_timeout: 3s\nwrite_timeout: 3s\npool_size: 100\nmin_idle_conns: 10\n\
             idle_timeout: 5m0s\nmax_conn_age: 0s\nmax_get_multi_concurrency: 100\n\
             get_multi_batch_size: 100\nmax_set_multi_concurrency: 100\n\
             set_multi_batch_size: 100\ntls_enabled: false\ntls_config:\n  ca_file: \"\"\n  \
             cert_file: \"\"\n  key_file: \"\"\n  server_name: \"\"\n  \
             insecure_skip_verify: false\ncache_size: 0\nmaster_name: \"\"\n",
        )
        .unwrap();
        assert_eq!(
            c,
            RedisConfig {
                addr: "redis:6379".into(),
                ..RedisConfig::default()
            }
        );
        let c = parse(
            "addr: r:1\nusername: u\npassword: \"p@ss word\"\ndb: 3\nread_timeout: 0s\n\
             get_multi_batch_size: 0\nmax_async_concurrency: 2\n",
        )
        .unwrap();
        assert_eq!(
            c.read_timeout,
            Duration::from_secs(3),
            "0 means the default"
        );
        assert_eq!(c.get_multi_batch_size, 0, "0 means unbatched");
        assert_eq!(c.max_async_concurrency, 2);
        assert_eq!(c.url(), "redis://u:p%40ss%20word@r:1/3");
        assert_eq!(
            RedisConfig {
                addr: "r:1".into(),
                password: "x".into(),
                ..RedisConfig::default()
            }
            .url(),
            "redis://:x@r:1/0"
        );
    }

    #[test]
    fn failed_dials_back_off_up_to_the_limit() {
        let mut st = ConnState::default();
        assert!(!st.backing_off(), "never dialled");
        st.dial_failed();
        assert!(st.backing_off());
        // Six failures in a row: 32 s, capped at 30 s; just after the cap, dial again.
        for _ in 0..5 {
            st.dial_failed();
        }
        st.failed_at = Some(Instant::now() - Duration::from_secs(29));
        assert!(st.backing_off());
        st.failed_at = Some(Instant::now() - MAX_REDIAL_AFTER);
        assert!(!st.backing_off());
        // After one failure, 1 s.
        st.failures = 1;
        st.failed_at = Some(Instant::now() - Duration::from_millis(1100));
        assert!(!st.backing_off());
    }

    #[test]
    fn what_is_not_supported_is_refused_with_what_to_do() {
        for (yaml, says) in [
            ("{}", "set config.addr"),
            ("addr: a:1,b\nmaster_name: m", "\"b\" is not host:port"),
            ("addr: nohost", "host:port"),
            (
                "addr: a:1\ntls_enabled: true\ntls_config:\n  cert_file: c.pem",
                "cert_file and key_file",
            ),
            ("addr: a:1\naddress: a:1", "address"),
            ("addr: a:1\ndial_timeout: soon", "dial_timeout"),
            ("addr: a:1\npool_size: -1", "pool_size"),
            ("addr: a:1\ntls_config:\n  cafile: x", "cafile"),
        ] {
            let e = parse(yaml).unwrap_err();
            assert!(e.contains(says), "{yaml}: {e}");
        }
    }
}
