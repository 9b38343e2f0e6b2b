//! The endpoint set: which Store API servers exist (static addresses, DNS, file SD), whether
//! they answer, and what they hold (Info API: component type, external label sets, time
//! range).
//!
//! Thanos keeps two loops: discovery (DNS every `--store.sd-dns-interval`, files every
//! `--store.sd-interval`) and health (Info every 5 s). Only endpoints whose last Info call
//! succeeded are queried, except `--endpoint-strict` ones, which are always queried (with an
//! unbounded time range until they first answer). An endpoint that stays unhealthy for
//! `--store.unhealthy-timeout` is forgotten (it leaves `/api/v1/stores`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use strata_model::Labels;
use strata_storepb::convert::labels_to_model;
use strata_storepb::snappy::SnappyChannel;
use strata_storepb::thanos::info::InfoRequest;
use strata_storepb::thanos::info::info_client::InfoClient;
use strata_storepb::thanos::store_client::StoreClient;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::QueryError;

/// Largest Series frame accepted from a store (a batch of series with their chunks).
const MAX_FRAME_BYTES: usize = 256 << 20;
/// The HTTP/2 frame size the querier accepts (`SETTINGS_MAX_FRAME_SIZE`). The protocol's
/// default of 16 KiB makes a store send a 35 MB Series answer as 2,200 DATA frames, each its
/// own `writev` over the socket; at 256 KiB the same answer takes a tenth of the system calls
/// and wake-ups (measured in the fan-out benchmark: the gateway's CPU per query and the
/// latency of small queries both dropped, see docs/benchmarks.md). Servers that keep to
/// smaller frames, as grpc-go does, are unaffected.
const MAX_H2_FRAME: u32 = 256 << 10;

/// The channel every endpoint client uses: tonic's, wrapped so that `--grpc-compression=snappy`
/// (which tonic lacks) can compress calls; with any other setting the wrapper passes calls
/// straight through.
pub type StoreChannel = SnappyChannel<Channel>;

/// One `--endpoint`/`--store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSpec {
    /// `host:port`, used as given.
    Static(String),
    /// `dns+host:port`: every A/AAAA address of `host`, with `port`.
    Dns { host: String, port: u16 },
    /// `dnssrv+name`: SRV records, each target resolved to its addresses.
    DnsSrv(String),
    /// `dnssrvnoa+name`: SRV records, targets used as host names.
    DnsSrvNoA(String),
}

impl EndpointSpec {
    /// Parses Thanos' endpoint syntax.
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        let bad = || QueryError::BadEndpoint(s.to_string());
        let host_port = |hp: &str| -> Result<(String, u16), QueryError> {
            let (h, p) = hp.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = p.parse().map_err(|_| bad())?;
            let h = h.trim_start_matches('[').trim_end_matches(']');
            if h.is_empty() {
                return Err(bad());
            }
            Ok((h.to_string(), port))
        };
        if let Some(rest) = s.strip_prefix("dns+") {
            let (host, port) = host_port(rest)?;
            Ok(EndpointSpec::Dns { host, port })
        } else if let Some(rest) = s.strip_prefix("dnssrv+") {
            if rest.is_empty() {
                return Err(bad());
            }
            Ok(EndpointSpec::DnsSrv(rest.to_string()))
        } else if let Some(rest) = s.strip_prefix("dnssrvnoa+") {
            if rest.is_empty() {
                return Err(bad());
            }
            Ok(EndpointSpec::DnsSrvNoA(rest.to_string()))
        } else if s.contains('+') || s.contains("://") {
            Err(bad())
        } else {
            host_port(s)?;
            Ok(EndpointSpec::Static(s.to_string()))
        }
    }
}

/// `--grpc-compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    /// Thanos' only other choice: every message compressed in the Snappy framing format,
    /// as Thanos' (grpc-go's) `snappy` compressor does, for calls to Thanos and Strata
    /// endpoints alike. tonic has no snappy codec; [`strata_storepb::snappy`] wraps the
    /// channel instead.
    Snappy,
    /// gzip (not a Thanos value; offered for Strata-to-Strata links).
    Gzip,
}

/// How to reach the endpoints (`--grpc-client-*`, `--grpc-compression`).
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    pub tls: bool,
    /// With `tls`: accept any server certificate (the connection is encrypted but not
    /// authenticated); `ca` is then not used. Without `tls`: no effect, as in Thanos.
    pub tls_skip_verify: bool,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub server_name: Option<String>,
    pub compression: Compression,
}

/// A `ClientConfig` checked and with its files read, ready to open channels.
#[derive(Debug, Clone)]
struct Client {
    tls: Option<ClientTlsConfig>,
    /// `--grpc-client-tls-skip-verify`: replaces certificate verification.
    skip_verify: Option<Arc<crate::tls::SkipServerVerification>>,
    /// tonic's own compression (gzip).
    compression: Option<CompressionEncoding>,
    /// `--grpc-compression=snappy`, done by the channel wrapper instead of tonic.
    snappy: bool,
}

fn read_tls(flag: &'static str, p: &PathBuf) -> Result<Vec<u8>, QueryError> {
    std::fs::read(p).map_err(|source| QueryError::ReadTls {
        flag,
        path: p.display().to_string(),
        source,
    })
}

impl Client {
    fn new(c: &ClientConfig) -> Result<Self, QueryError> {
        let compression = match c.compression {
            Compression::None => None,
            Compression::Gzip => Some(CompressionEncoding::Gzip),
            Compression::Snappy => None,
        };
        let snappy = c.compression == Compression::Snappy;
        let skip_verify =
            (c.tls && c.tls_skip_verify).then(crate::tls::SkipServerVerification::new);
        let tls = if c.tls {
            let mut t = ClientTlsConfig::new();
            match &c.ca {
                // Nothing is verified, so there is nothing to verify against (as Go's
                // InsecureSkipVerify ignores RootCAs).
                Some(ca) if skip_verify.is_some() => tracing::warn!(
                    ca = %ca.display(),
                    "--grpc-client-tls-skip-verify: server certificates are not verified; \
                     --grpc-client-tls-ca is not used"
                ),
                Some(ca) => {
                    t = t.ca_certificate(Certificate::from_pem(read_tls(
                        "--grpc-client-tls-ca",
                        ca,
                    )?));
                }
                None => {}
            }
            match (&c.cert, &c.key) {
                (Some(cert), Some(key)) => {
                    t = t.identity(Identity::from_pem(
                        read_tls("--grpc-client-tls-cert", cert)?,
                        read_tls("--grpc-client-tls-key", key)?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(QueryError::ClientConfig(
                        "--grpc-client-tls-cert and --grpc-client-tls-key go together".into(),
                    ));
                }
            }
            if let Some(n) = &c.server_name {
                t = t.domain_name(n.clone());
            }
            Some(t)
        } else {
            None
        };
        Ok(Client {
            tls,
            skip_verify,
            compression,
            snappy,
        })
    }

    /// A lazily connected channel to `addr`. Snappy applies to every call on it, Info
    /// included, as grpc-go's default call options do in Thanos.
    fn channel(&self, addr: &str) -> Result<StoreChannel, QueryError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|_| QueryError::BadEndpoint(addr.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .max_frame_size(MAX_H2_FRAME);
        if let Some(t) = &self.tls {
            ep = match &self.skip_verify {
                Some(v) => ep.tls_config_with_verifier(t.clone(), v.clone()),
                None => ep.tls_config(t.clone()),
            }
            .map_err(|e| QueryError::ClientConfig(format!("TLS for {addr}: {e}")))?;
        }
        let ch = ep.connect_lazy();
        Ok(if self.snappy {
            SnappyChannel::snappy(ch, MAX_FRAME_BYTES)
        } else {
            SnappyChannel::passthrough(ch)
        })
    }

    fn store_client(&self, ch: StoreChannel) -> StoreClient<StoreChannel> {
        let mut c = StoreClient::new(ch).max_decoding_message_size(MAX_FRAME_BYTES);
        if let Some(e) = self.compression {
            c = c.send_compressed(e).accept_compressed(e);
        }
        c
    }
}

/// What an endpoint told us through the Info API.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointInfo {
    /// `ComponentType` (`sidecar`, `store`, `query`, …).
    pub component_type: String,
    /// External label sets.
    pub label_sets: Vec<Labels>,
    /// Advertised time range (ms, inclusive).
    pub min_time: i64,
    pub max_time: i64,
    /// Whether it offers the Store API at all.
    pub has_store: bool,
}

/// An endpoint the fan-out may query.
#[derive(Debug, Clone)]
pub struct StoreEndpoint {
    /// The address, which names the store in warnings and errors.
    pub addr: String,
    pub client: StoreClient<StoreChannel>,
    pub label_sets: Vec<Labels>,
    pub min_time: i64,
    pub max_time: i64,
}

/// One endpoint's state, for queries and `/api/v1/stores`.
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    pub addr: String,
    pub strict: bool,
    pub info: Option<EndpointInfo>,
    pub last_check: Option<SystemTime>,
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct State {
    addr: String,
    strict: bool,
    channel: StoreChannel,
    info: Option<EndpointInfo>,
    healthy: bool,
    last_check: Option<SystemTime>,
    last_error: Option<String>,
    /// Since when the endpoint has failed its probes without a success (`None` if healthy).
    unhealthy_since: Option<Instant>,
}

/// Configuration of an [`EndpointSet`].
#[derive(Debug, Clone)]
pub struct EndpointSetConfig {
    /// `--endpoint` and `--store`.
    pub endpoints: Vec<String>,
    /// `--endpoint-strict` and `--store-strict`.
    pub strict: Vec<String>,
    /// `--store.sd-files` (globs allowed).
    pub sd_files: Vec<String>,
    pub sd_interval: Duration,
    pub dns_interval: Duration,
    pub unhealthy_timeout: Duration,
    /// How often endpoints are probed with Info (Thanos: 5 s).
    pub probe_interval: Duration,
    pub client: ClientConfig,
    /// The DNS server for SRV lookups; `None` reads the system's (`/etc/resolv.conf`). Set by
    /// tests, which run their own server.
    pub dns_server: Option<std::net::SocketAddr>,
}

impl Default for EndpointSetConfig {
    fn default() -> Self {
        EndpointSetConfig {
            endpoints: Vec::new(),
            strict: Vec::new(),
            sd_files: Vec::new(),
            sd_interval: Duration::from_secs(300),
            dns_interval: Duration::from_secs(30),
            unhealthy_timeout: Duration::from_secs(300),
            probe_interval: Duration::from_secs(5),
            client: ClientConfig::default(),
            dns_server: None,
        }
    }
}

/// The endpoints and their health, updated by [`EndpointSet::run`].
#[derive(Debug)]
pub struct EndpointSet {
    cfg: EndpointSetConfig,
    specs: Vec<EndpointSpec>,
    strict: Vec<String>,
    client: Client,
    resolver: Option<hickory_resolver::TokioResolver>,
    state: RwLock<BTreeMap<String, State>>,
    /// Addresses found by the last discovery (DNS and files), re-used between discoveries.
    discovered: RwLock<Discovered>,
}

#[derive(Debug, Default)]
struct Discovered {
    dns: BTreeSet<String>,
    files: BTreeSet<String>,
    dns_at: Option<Instant>,
    files_at: Option<Instant>,
}

/// Prometheus file SD: a list of target groups, YAML or JSON.
#[derive(Debug, serde::Deserialize)]
struct TargetGroup {
    #[serde(default)]
    targets: Vec<String>,
}

impl EndpointSet {
    /// Checks the configuration (endpoint syntax, client options) without connecting.
    pub fn new(cfg: EndpointSetConfig) -> Result<Arc<Self>, QueryError> {
        let specs = cfg
            .endpoints
            .iter()
            .map(|s| EndpointSpec::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        for s in &cfg.strict {
            match EndpointSpec::parse(s)? {
                EndpointSpec::Static(_) => {}
                _ => {
                    return Err(QueryError::ClientConfig(format!(
                        "--endpoint-strict {s:?}: strict endpoints must be static host:port"
                    )));
                }
            }
        }
        let client = Client::new(&cfg.client)?;
        let needs_srv = specs
            .iter()
            .any(|s| matches!(s, EndpointSpec::DnsSrv(_) | EndpointSpec::DnsSrvNoA(_)));
        let resolver = if needs_srv {
            let built = match cfg.dns_server {
                None => hickory_resolver::TokioResolver::builder_tokio().and_then(|b| b.build()),
                Some(addr) => {
                    use hickory_resolver::config::{
                        ConnectionConfig, NameServerConfig, ResolverConfig,
                    };
                    let mut conn = ConnectionConfig::udp();
                    conn.port = addr.port();
                    let ns = NameServerConfig::new(addr.ip(), true, vec![conn]);
                    hickory_resolver::TokioResolver::builder_with_config(
                        ResolverConfig::from_name_servers(vec![ns]),
                        hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
                    )
                    .build()
                }
            };
            Some(
                built.map_err(|e| {
                    QueryError::ClientConfig(format!("system DNS configuration: {e}"))
                })?,
            )
        } else {
            None
        };
        Ok(Arc::new(EndpointSet {
            strict: cfg.strict.clone(),
            cfg,
            specs,
            client,
            resolver,
            state: RwLock::new(BTreeMap::new()),
            discovered: RwLock::new(Discovered::default()),
        }))
    }

    async fn resolve_dns(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for spec in &self.specs {
            match spec {
                EndpointSpec::Static(a) => {
                    out.insert(a.clone());
                }
                EndpointSpec::Dns { host, port } => {
                    match tokio::net::lookup_host((host.as_str(), *port)).await {
                        Ok(addrs) => out.extend(addrs.map(|a| a.to_string())),
                        Err(e) => tracing::warn!(%host, err = %e, "DNS lookup failed"),
                    }
                }
                EndpointSpec::DnsSrv(name) | EndpointSpec::DnsSrvNoA(name) => {
                    let Some(r) = &self.resolver else { continue };
                    let targets = match r.srv_lookup(name.as_str()).await {
                        Ok(l) => l
                            .answers()
                            .iter()
                            .filter_map(|rec| match &rec.data {
                                hickory_resolver::proto::rr::RData::SRV(srv) => Some((
                                    srv.target.to_utf8().trim_end_matches('.').to_string(),
                                    srv.port,
                                )),
                                _ => None,
                            })
                            .collect::<Vec<_>>(),
                        Err(e) => {
                            tracing::warn!(%name, err = %e, "DNS SRV lookup failed");
                            continue;
                        }
                    };
                    for (target, port) in targets {
                        if matches!(spec, EndpointSpec::DnsSrvNoA(_)) {
                            out.insert(format!("{target}:{port}"));
                            continue;
                        }
                        match tokio::net::lookup_host((target.as_str(), port)).await {
                            Ok(addrs) => out.extend(addrs.map(|a| a.to_string())),
                            Err(e) => tracing::warn!(%target, err = %e, "DNS lookup failed"),
                        }
                    }
                }
            }
        }
        out
    }

    fn read_sd_files(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for pattern in &self.cfg.sd_files {
            for path in expand_glob(pattern) {
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), err = %e, "reading file SD");
                        continue;
                    }
                };
                let is_json = path.extension().is_some_and(|e| e == "json");
                let groups: Result<Vec<TargetGroup>, String> = if is_json {
                    serde_json::from_str(&text).map_err(|e| e.to_string())
                } else {
                    serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())
                };
                match groups {
                    Ok(gs) => {
                        for g in gs {
                            for t in g.targets {
                                match EndpointSpec::parse(&t) {
                                    Ok(EndpointSpec::Static(a)) => {
                                        out.insert(a);
                                    }
                                    _ => tracing::warn!(
                                        path = %path.display(), target = %t,
                                        "file SD target is not host:port; ignored"
                                    ),
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(path = %path.display(), err = %e, "parsing file SD"),
                }
            }
        }
        out
    }

    /// Discovery (when due) and one probe of every endpoint. The first call does everything.
    pub async fn update(&self) {
        let now = Instant::now();
        let (dns_due, files_due) = {
            let d = self.discovered.read().unwrap_or_else(|e| e.into_inner());
            (
                d.dns_at
                    .is_none_or(|t| now.duration_since(t) >= self.cfg.dns_interval),
                d.files_at
                    .is_none_or(|t| now.duration_since(t) >= self.cfg.sd_interval),
            )
        };
        if dns_due {
            let dns = self.resolve_dns().await;
            let mut d = self.discovered.write().unwrap_or_else(|e| e.into_inner());
            d.dns = dns;
            d.dns_at = Some(now);
        }
        if files_due {
            let files = self.read_sd_files();
            let mut d = self.discovered.write().unwrap_or_else(|e| e.into_inner());
            d.files = files;
            d.files_at = Some(now);
        }
        let wanted: BTreeSet<String> = {
            let d = self.discovered.read().unwrap_or_else(|e| e.into_inner());
            d.dns.iter().chain(&d.files).cloned().collect()
        };
        let strict: BTreeSet<String> = self.strict.iter().cloned().collect();

        // New endpoints get a channel; endpoints no longer discovered go away.
        let to_probe: Vec<(String, StoreChannel)> = {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            st.retain(|a, _| wanted.contains(a) || strict.contains(a));
            for a in wanted.iter().chain(&strict) {
                if st.contains_key(a) {
                    continue;
                }
                match self.client.channel(a) {
                    Ok(channel) => {
                        st.insert(
                            a.clone(),
                            State {
                                addr: a.clone(),
                                strict: strict.contains(a),
                                channel,
                                info: None,
                                healthy: false,
                                last_check: None,
                                last_error: None,
                                unhealthy_since: Some(now),
                            },
                        );
                    }
                    Err(e) => tracing::warn!(endpoint = %a, err = %e, "bad endpoint address"),
                }
            }
            st.values()
                .map(|s| (s.addr.clone(), s.channel.clone()))
                .collect()
        };

        let probes = to_probe.into_iter().map(|(addr, ch)| async move {
            let mut c = InfoClient::new(ch);
            let r = tokio::time::timeout(Duration::from_secs(5), c.info(InfoRequest {})).await;
            let r = match r {
                Ok(Ok(resp)) => {
                    let i = resp.into_inner();
                    let store = i.store;
                    Ok(EndpointInfo {
                        component_type: i.component_type,
                        label_sets: i
                            .label_sets
                            .into_iter()
                            .map(|l| labels_to_model(l.labels))
                            .collect(),
                        min_time: store.as_ref().map_or(i64::MIN, |s| s.min_time),
                        max_time: store.as_ref().map_or(i64::MAX, |s| s.max_time),
                        has_store: store.is_some(),
                    })
                }
                Ok(Err(status)) => Err(format!("Info call: {}", status.message())),
                Err(_) => Err("Info call: timed out after 5s".to_string()),
            };
            (addr, r)
        });
        let results = futures::future::join_all(probes).await;

        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let checked = SystemTime::now();
        for (addr, r) in results {
            let Some(s) = st.get_mut(&addr) else { continue };
            s.last_check = Some(checked);
            match r {
                Ok(info) => {
                    if !s.healthy {
                        tracing::info!(endpoint = %addr, kind = %info.component_type, "endpoint up");
                    }
                    s.info = Some(info);
                    s.healthy = true;
                    s.last_error = None;
                    s.unhealthy_since = None;
                }
                Err(e) => {
                    if s.healthy {
                        tracing::warn!(endpoint = %addr, err = %e, "endpoint down");
                    }
                    s.healthy = false;
                    s.last_error = Some(e);
                    s.unhealthy_since.get_or_insert(now);
                }
            }
        }
        let timeout = self.cfg.unhealthy_timeout;
        st.retain(|_, s| {
            s.strict
                || s.unhealthy_since
                    .is_none_or(|t| now.duration_since(t) < timeout)
        });
    }

    /// Probes and re-discovers forever (until the future is dropped).
    pub async fn run(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.cfg.probe_interval).await;
            self.update().await;
        }
    }

    /// The endpoints to query: healthy ones offering the Store API, and strict ones.
    pub fn stores(&self) -> Vec<StoreEndpoint> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.values()
            .filter(|s| s.strict || (s.healthy && s.info.as_ref().is_some_and(|i| i.has_store)))
            .map(|s| {
                let (label_sets, min_time, max_time) = match &s.info {
                    Some(i) => (i.label_sets.clone(), i.min_time, i.max_time),
                    None => (Vec::new(), i64::MIN, i64::MAX),
                };
                StoreEndpoint {
                    addr: s.addr.clone(),
                    client: self.client.store_client(s.channel.clone()),
                    label_sets,
                    min_time,
                    max_time,
                }
            })
            .collect()
    }

    /// Every known endpoint, for `/api/v1/stores` and the UI.
    pub fn status(&self) -> Vec<EndpointStatus> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.values()
            .map(|s| EndpointStatus {
                addr: s.addr.clone(),
                strict: s.strict,
                info: s.info.clone(),
                last_check: s.last_check,
                last_error: s.last_error.clone(),
            })
            .collect()
    }
}

/// Expands a `--store.sd-files` value: a path, or a glob with `*`/`?` in its file name.
fn expand_glob(pattern: &str) -> Vec<PathBuf> {
    let path = PathBuf::from(pattern);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![path];
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| glob_match(&name, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// `*` and `?` wildcard match (the subset of Go's `filepath.Match` file SD users rely on).
fn glob_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            EndpointSpec::parse("localhost:10901").unwrap(),
            EndpointSpec::Static("localhost:10901".into())
        );
        assert_eq!(
            EndpointSpec::parse("dns+store.svc:10901").unwrap(),
            EndpointSpec::Dns {
                host: "store.svc".into(),
                port: 10901
            }
        );
        assert_eq!(
            EndpointSpec::parse("dnssrv+_grpc._tcp.store.svc").unwrap(),
            EndpointSpec::DnsSrv("_grpc._tcp.store.svc".into())
        );
        assert_eq!(
            EndpointSpec::parse("dnssrvnoa+_grpc._tcp.store.svc").unwrap(),
            EndpointSpec::DnsSrvNoA("_grpc._tcp.store.svc".into())
        );
        for bad in [
            "localhost",
            "dns+host",
            "foo+bar:1",
            "http://x:1",
            ":1",
            "h:99999",
        ] {
            let e = EndpointSpec::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.yml", "a.yml"));
        assert!(glob_match("sd-?.json", "sd-1.json"));
        assert!(!glob_match("*.yml", "a.yaml"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn snappy_is_accepted_and_wraps_channels() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = Client::new(&ClientConfig {
            compression: Compression::Snappy,
            ..Default::default()
        })
        .unwrap();
        // Snappy is the channel wrapper's job; tonic must not also compress.
        assert!(c.snappy && c.compression.is_none());
        rt.block_on(async { assert!(c.channel("127.0.0.1:1").unwrap().is_snappy()) });
        for (compression, tonic) in [
            (Compression::None, None),
            (Compression::Gzip, Some(CompressionEncoding::Gzip)),
        ] {
            let c = Client::new(&ClientConfig {
                compression,
                ..Default::default()
            })
            .unwrap();
            assert_eq!(c.compression, tonic);
            rt.block_on(async { assert!(!c.channel("127.0.0.1:1").unwrap().is_snappy()) });
        }
    }

    #[test]
    fn client_options_refused_clearly() {
        let e = Client::new(&ClientConfig {
            tls: true,
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn skip_verify_needs_tls_and_replaces_the_ca() {
        // With TLS: a verifier, and the CA (not needed) is not even read.
        let c = Client::new(&ClientConfig {
            tls: true,
            tls_skip_verify: true,
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(c.tls.is_some() && c.skip_verify.is_some());
        // Channels open (lazily) with the custom verifier.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { c.channel("127.0.0.1:1").unwrap() });
        // Without TLS it changes nothing, as in Thanos.
        let c = Client::new(&ClientConfig {
            tls_skip_verify: true,
            ..Default::default()
        })
        .unwrap();
        assert!(c.tls.is_none() && c.skip_verify.is_none());
    }
}
