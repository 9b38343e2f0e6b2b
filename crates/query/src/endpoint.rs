//! The endpoint set: which Store API servers exist (static addresses, DNS, file SD, the
//! endpoint SD config), whether they answer, and what they hold (Info API: component type,
//! external label sets, time range).
//!
//! Thanos keeps two loops: discovery (DNS every `--store.sd-dns-interval`, files every
//! `--store.sd-interval`, the endpoint SD config every `--endpoint.sd-config-reload-interval`)
//! and health (Info every 5 s). Only endpoints whose last Info call succeeded are queried,
//! except strict ones (`--endpoint-strict`, `--endpoint-group-strict`, `strict: true`), which
//! are always queried (with an unbounded time range until they first answer). An endpoint
//! that stays unhealthy for `--store.unhealthy-timeout` is forgotten (it leaves
//! `/api/v1/stores`).
//!
//! An endpoint *group* (`--endpoint-group`, `group: true`) is one logical store whose address
//! resolves to interchangeable replicas: it is queried as one store, each call going to the
//! next healthy member in turn (round robin), as Thanos dials groups with gRPC's
//! `round_robin` balancer. See [`GroupChannel`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use futures::TryFutureExt;
use futures::future::{BoxFuture, Either};
use strata_model::Labels;
use strata_runtime::dns::Resolver;
use strata_storepb::convert::labels_to_model;
use strata_storepb::snappy::SnappyChannel;
use strata_storepb::thanos::exemplars_client::ExemplarsClient;
use strata_storepb::thanos::info::InfoRequest;
use strata_storepb::thanos::info::info_client::InfoClient;
use strata_storepb::thanos::metadata_client::MetadataClient;
use strata_storepb::thanos::rules_client::RulesClient;
use strata_storepb::thanos::store_client::StoreClient;
use strata_storepb::thanos::targets_client::TargetsClient;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{Service, StdError};
use tonic::transport::Channel;

use crate::client::{
    Client, ClientConfig, Compression, EndpointClient, SD_CONFIG_NAMES, TlsMinVersion,
};
use crate::error::QueryError;

/// Largest Series frame accepted from a store (a batch of series with their chunks).
pub(crate) const MAX_FRAME_BYTES: usize = 256 << 20;
/// The HTTP/2 frame size the querier accepts (`SETTINGS_MAX_FRAME_SIZE`). The protocol's
/// default of 16 KiB makes a store send a 35 MB Series answer as 2,200 DATA frames, each its
/// own `writev` over the socket; at 256 KiB the same answer takes a tenth of the system calls
/// and wake-ups (measured in the fan-out benchmark: the gateway's CPU per query and the
/// latency of small queries both dropped, see docs/benchmarks.md). At 4 MiB a Series frame
/// (a gRPC message, 1 MB at most for 64 series over 7 blocks) usually arrives within one DATA
/// frame, and the querier then takes it without a copy
/// (`strata_storepb::frame::call_series`): 227 M → 171 M instructions to take in 5,000 series
/// over 7 blocks. Servers that keep to smaller frames, as grpc-go does, are unaffected.
pub const MAX_H2_FRAME: u32 = 4 << 20;

/// The channel every endpoint client uses: one endpoint's tonic channel or a group's
/// round-robin channel, wrapped so that `--grpc-compression=snappy` (which tonic lacks) can
/// compress calls; with any other setting the wrapper passes calls straight through.
pub type StoreChannel = SnappyChannel<EndpointChannel>;

/// The transport under a [`StoreChannel`]: a single endpoint, or an endpoint group.
///
/// One type for both, so the fan-out holds the same `StoreClient` whichever it queries.
#[derive(Debug, Clone)]
pub enum EndpointChannel {
    /// One address.
    Single(Channel),
    /// Several replicas behind one name, called in turn.
    Group(GroupChannel),
}

impl Service<Request<Body>> for EndpointChannel {
    type Response = Response<Body>;
    type Error = StdError;
    type Future = Either<
        futures::future::ErrInto<tonic::transport::channel::ResponseFuture, StdError>,
        BoxFuture<'static, Result<Response<Body>, StdError>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StdError>> {
        match self {
            EndpointChannel::Single(c) => c.poll_ready(cx).map_err(Into::into),
            // Readiness is awaited per call, on the member the call goes to.
            EndpointChannel::Group(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // The caller's trace context (`--tracing.config`), so the store's spans join the
        // query's trace; nothing without tracing.
        strata_runtime::otel::inject_current(req.headers_mut());
        match self {
            EndpointChannel::Single(c) => Either::Left(c.call(req).err_into()),
            EndpointChannel::Group(g) => Either::Right(g.call(req)),
        }
    }
}

/// One member of an endpoint group.
#[derive(Debug, Clone)]
struct Member {
    addr: String,
    channel: Channel,
    /// Set by the Info probes; cleared as soon as a call to the member fails in transport
    /// (connection refused, reset), so the next calls skip it without waiting for a probe.
    healthy: Arc<AtomicBool>,
}

/// An endpoint group's channel: each call goes to the next healthy member (round robin).
///
/// Thanos dials a group as one gRPC connection with the `round_robin` load-balancing policy
/// over the addresses its resolver returns; `round_robin` only picks members whose
/// connection is ready. Here a member counts as ready when its last Info probe succeeded and
/// no call to it has failed in transport since. When no member is known healthy (before the
/// first probe, or all down) members are still tried in turn, so a strict group keeps
/// answering with the transport's error rather than with one of its own.
#[derive(Debug, Clone)]
pub struct GroupChannel {
    inner: Arc<GroupInner>,
}

#[derive(Debug)]
struct GroupInner {
    /// The group's name (`thanos:///<address>`), for errors.
    name: String,
    members: RwLock<Vec<Member>>,
    next: AtomicUsize,
}

impl GroupChannel {
    fn new(name: String) -> Self {
        GroupChannel {
            inner: Arc::new(GroupInner {
                name,
                members: RwLock::new(Vec::new()),
                next: AtomicUsize::new(0),
            }),
        }
    }

    /// The member addresses, in the order calls rotate through them.
    pub fn members(&self) -> Vec<String> {
        let m = self.inner.members.read().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|m| m.addr.clone()).collect()
    }

    fn snapshot(&self) -> Vec<Member> {
        self.inner
            .members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the member list with `addrs`, keeping the channel and health of members that
    /// stay (a re-resolution must not drop their connections).
    fn set_members(&self, addrs: &BTreeSet<String>, client: &Client) {
        let mut m = self
            .inner
            .members
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let mut kept: BTreeMap<String, Member> =
            m.drain(..).map(|mm| (mm.addr.clone(), mm)).collect();
        for a in addrs {
            if let Some(old) = kept.remove(a) {
                m.push(old);
                continue;
            }
            match client.raw_channel(a) {
                Ok(channel) => m.push(Member {
                    addr: a.clone(),
                    channel,
                    healthy: Arc::new(AtomicBool::new(false)),
                }),
                Err(e) => tracing::warn!(
                    group = %self.inner.name, member = %a, err = %e,
                    "bad endpoint group member address"
                ),
            }
        }
    }

    /// The member the next call goes to: the first healthy one from the rotation's position,
    /// or, with none healthy, simply the next one.
    fn pick(&self) -> Option<Member> {
        let m = self.inner.members.read().unwrap_or_else(|e| e.into_inner());
        if m.is_empty() {
            return None;
        }
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let n = m.len();
        let chosen = (0..n)
            .map(|i| start.wrapping_add(i) % n)
            .find(|&i| m[i].healthy.load(Ordering::Relaxed))
            .unwrap_or(start % n);
        // Continue the rotation after the chosen member, so skipping a dead member does not
        // send two calls in a row to the same live one.
        if chosen != start % n {
            self.inner
                .next
                .store(chosen.wrapping_add(1), Ordering::Relaxed);
        }
        Some(m[chosen].clone())
    }

    fn call(&self, req: Request<Body>) -> BoxFuture<'static, Result<Response<Body>, StdError>> {
        let Some(member) = self.pick() else {
            let name = self.inner.name.clone();
            return Box::pin(async move {
                Err(format!(
                    "endpoint group {name}: its address resolved to no members; check the \
                     group's DNS name"
                )
                .into())
            });
        };
        Box::pin(async move {
            let mut ch = member.channel;
            let r = match futures::future::poll_fn(|cx| ch.poll_ready(cx)).await {
                Ok(()) => ch.call(req).await,
                Err(e) => Err(e),
            };
            if r.is_err() {
                // Transport failure: skip this member until a probe finds it again.
                member.healthy.store(false, Ordering::Relaxed);
            }
            // The transport's own error, so tonic still maps it to `Unavailable`.
            r.map_err(Into::into)
        })
    }
}

/// One `--endpoint`/`--store` value: Thanos' address syntax, shared with the store gateway's
/// memcached addresses. Its parse errors become [`QueryError::BadEndpoint`].
pub use strata_runtime::dns::AddressSpec as EndpointSpec;

/// One endpoint to discover and probe, from a flag or from the endpoint SD config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointEntry {
    /// The address as written (it names the entry in errors).
    pub address: String,
    pub spec: EndpointSpec,
    /// Kept and queried even while unhealthy.
    pub strict: bool,
    /// An endpoint group: one store over the addresses `spec` resolves to.
    pub group: bool,
    /// How to call it (the endpoint SD config's `grpc_client_config`; the flags' settings
    /// for endpoints given by flags).
    pub client: EndpointClient,
}

impl EndpointEntry {
    /// Checks one entry as Thanos' `validateEndpointConfig` does: a strict endpoint that is
    /// not a group must be a static `host:port` (DNS names resolve to a changing set, which
    /// strict mode cannot pin). Group addresses take the `--endpoint` forms, which Thanos
    /// resolves for groups with the same DNS provider (its `thanos:///` gRPC resolver): a
    /// plain `host:port` is one member, `dns+host:port` every A/AAAA address. gRPC's own
    /// target syntax `dns:///host:port`, which group manifests may carry, is read as
    /// `dns+host:port`.
    pub fn new(address: &str, strict: bool, group: bool) -> Result<Self, String> {
        let spec = if group {
            match address.strip_prefix("dns:///") {
                Some(rest) => EndpointSpec::parse(&format!("dns+{rest}")),
                None => EndpointSpec::parse(address),
            }
        } else {
            EndpointSpec::parse(address)
        }
        .map_err(|e| QueryError::from(e).to_string())?;
        if strict && !group && !matches!(spec, EndpointSpec::Static(_)) {
            return Err(format!(
                "{address:?} uses DNS discovery, which strict mode does not allow; give a \
                 static host:port, or make it a group"
            ));
        }
        Ok(EndpointEntry {
            address: address.to_string(),
            spec,
            strict,
            group,
            client: EndpointClient::default(),
        })
    }

    /// The name the endpoint set knows a group by, in `/api/v1/stores`, `storeMatch[]` and
    /// errors: Thanos dials groups as `thanos:///<address>` and shows that name.
    fn group_name(&self) -> String {
        format!("thanos:///{}", self.address)
    }
}

/// Where `--endpoint.sd-config-file` / `--endpoint.sd-config` come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdConfigSource {
    /// `--endpoint.sd-config-file`: re-read every `--endpoint.sd-config-reload-interval`.
    File(PathBuf),
    /// `--endpoint.sd-config`: read once.
    Inline(String),
}

impl SdConfigSource {
    /// The flag (and file), to start error messages with.
    fn origin(&self) -> String {
        match self {
            SdConfigSource::File(p) => format!("--endpoint.sd-config-file {}", p.display()),
            SdConfigSource::Inline(_) => "--endpoint.sd-config".to_string(),
        }
    }

    /// Reads and parses the configuration.
    pub fn load(&self) -> Result<SdConfig, SdConfigError> {
        let origin = self.origin();
        match self {
            SdConfigSource::File(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| SdConfigError::Read {
                    origin: origin.clone(),
                    source,
                })?;
                parse_sd_config(&origin, &text)
            }
            SdConfigSource::Inline(text) => parse_sd_config(&origin, text),
        }
    }
}

/// Why an endpoint SD configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SdConfigError {
    /// The file could not be read.
    #[error("{origin}: cannot read the file: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or not the expected structure (unknown fields included).
    #[error(
        "{origin}: malformed endpoint configuration: {message}; expected a YAML document \
         `endpoints:` listing entries with `address` and optional `strict`, `group`"
    )]
    Yaml { origin: String, message: String },
    /// An entry that is well-formed YAML but cannot be used.
    #[error("{origin}: endpoint {address:?}: {reason}")]
    Endpoint {
        origin: String,
        address: String,
        reason: String,
    },
    /// `default_client_config` is well-formed YAML but cannot be used.
    #[error("{origin}: default_client_config: {reason}")]
    DefaultClient { origin: String, reason: String },
}

/// The endpoint SD configuration, in the format of Thanos' `EndpointConfig`
/// (`cmd/thanos/endpointset.go`; the flags came in Thanos v0.37, thanos-io/thanos#7890,
/// `service_config` and `grpc_client_config` later, and `client_config` with
/// `default_client_config` in thanos-io/thanos#8594; how the client settings are read:
/// [`EndpointClient`]):
///
/// ```yaml
/// default_client_config:      # every endpoint's settings, on top of the --grpc-client-* flags
///   tls_config: {enabled: true, ca_file: /certs/ca.pem, min_version: "1.3"}
///   compression: snappy
/// endpoints:
///   - address: store-0:10901
///   - address: dns+prometheus-headless:10901
///     group: true
///     strict: false
///     service_config: ""        # gRPC service config for a group: refused if set
///     client_config:            # this endpoint's changes to the settings above
///       tls_config: {enabled: true, insecure_skip_verify: false, cert_file: "", key_file: "", ca_file: "", min_version: "1.3"}
///       server_name: ""
///       compression: none       # or snappy
///   - address: old-style:10901
///     grpc_client_config:       # the older form (instead of client_config)
///       tls_config: {enabled: true, ca_file: /certs/ca.pem}
///       compression_type: snappy
/// ```
///
/// Unknown fields are refused (Thanos' YAML decoding would ignore them): a misspelled
/// `strict` or `group` would otherwise change what is queried without a word.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSdConfig {
    #[serde(default)]
    endpoints: Option<Vec<RawEndpoint>>,
    #[serde(default)]
    default_client_config: Option<RawClientConfig>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    address: String,
    #[serde(default)]
    strict: bool,
    #[serde(default)]
    group: bool,
    #[serde(default)]
    service_config: String,
    #[serde(default)]
    client_config: Option<RawClientConfig>,
    #[serde(default)]
    grpc_client_config: Option<RawLegacyClientConfig>,
}

/// `client_config` and `default_client_config`: every field optional, a field left out
/// inheriting.
#[derive(Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientConfig {
    #[serde(default)]
    tls_config: RawTlsConfig,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    compression: Option<String>,
}

#[derive(Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsConfig {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    insecure_skip_verify: Option<bool>,
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
}

/// The older `grpc_client_config`.
#[derive(Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLegacyClientConfig {
    #[serde(default)]
    tls_config: RawLegacyTlsConfig,
    #[serde(default)]
    server_name: String,
    #[serde(default)]
    compression_type: String,
}

#[derive(Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLegacyTlsConfig {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    ca_file: String,
}

fn some_path(p: &str) -> Option<PathBuf> {
    (!p.is_empty()).then(|| PathBuf::from(p))
}

/// A `client_config` or `default_client_config` (`field` names it in errors), read as
/// [`EndpointClient`] says.
fn endpoint_client(field: &str, raw: &RawClientConfig) -> Result<EndpointClient, String> {
    let compression = match raw.compression.as_deref() {
        None => None,
        Some("" | "none") => Some(Compression::None),
        Some("snappy") => Some(Compression::Snappy),
        Some(other) => {
            return Err(format!(
                "{field}.compression {other:?} is invalid: must be 'none' or 'snappy'"
            ));
        }
    };
    let t = &raw.tls_config;
    let min_version = t
        .min_version
        .as_deref()
        .map(|v| {
            v.parse::<TlsMinVersion>()
                .map_err(|e| format!("{field}.tls_config.min_version: {e}"))
        })
        .transpose()?;
    let implies_tls = t.cert_file.is_some()
        || t.key_file.is_some()
        || t.ca_file.is_some()
        || t.insecure_skip_verify.is_some();
    Ok(EndpointClient {
        tls: t.enabled.or(implies_tls.then_some(true)),
        skip_verify: t.insecure_skip_verify,
        cert: t.cert_file.as_deref().map(some_path),
        key: t.key_file.as_deref().map(some_path),
        ca: t.ca_file.as_deref().map(some_path),
        server_name: raw
            .server_name
            .as_ref()
            .map(|n| (!n.is_empty()).then(|| n.clone())),
        min_version,
        compression,
    })
}

/// An entry's older `grpc_client_config`, read as [`EndpointClient`] says; and whether
/// its TLS settings are there but switched off (which is worth a warning).
fn legacy_endpoint_client(raw: &RawLegacyClientConfig) -> Result<(EndpointClient, bool), String> {
    let compression = match raw.compression_type.as_str() {
        "" | "none" => None,
        "snappy" => Some(Compression::Snappy),
        other => {
            return Err(format!(
                "grpc_client_config.compression_type {other:?} is invalid: must be 'none' or \
                 'snappy'"
            ));
        }
    };
    let t = &raw.tls_config;
    let server_name = some_server_name(&raw.server_name);
    let untouched = !t.enabled
        && t.cert_file.is_empty()
        && t.key_file.is_empty()
        && t.ca_file.is_empty()
        && server_name.is_none();
    let client = if untouched {
        EndpointClient {
            compression,
            ..EndpointClient::default()
        }
    } else if t.enabled {
        EndpointClient {
            tls: Some(true),
            skip_verify: Some(t.insecure_skip_verify),
            cert: Some(some_path(&t.cert_file)),
            key: Some(some_path(&t.key_file)),
            ca: Some(some_path(&t.ca_file)),
            server_name: Some(server_name),
            min_version: None,
            compression,
        }
    } else {
        EndpointClient {
            tls: Some(false),
            skip_verify: Some(false),
            cert: Some(None),
            key: Some(None),
            ca: Some(None),
            server_name: Some(None),
            min_version: None,
            compression,
        }
    };
    Ok((client, !untouched && !t.enabled))
}

fn some_server_name(n: &str) -> Option<String> {
    (!n.is_empty()).then(|| n.to_string())
}

/// A parsed endpoint SD configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SdConfig {
    /// `default_client_config`: the changes to the flags' client settings for every
    /// endpoint the querier calls (its own entries, the `--endpoint*` flags' and file SD's).
    pub default_client: EndpointClient,
    /// The entries, an address listed twice keeping its last.
    pub entries: Vec<EndpointEntry>,
    /// Entries whose `grpc_client_config` names TLS files or a server name with TLS
    /// switched off, which Thanos then calls in clear text: warned of when taken.
    clear_text_with_tls_settings: Vec<String>,
}

impl SdConfig {
    /// The flags' settings with `default_client_config`'s changes: what an endpoint without
    /// settings of its own is called with.
    pub fn base_client(&self, flags: &ClientConfig) -> ClientConfig {
        self.default_client.apply(flags)
    }

    /// Checks that every setting can be used (its TLS files read), so that a bad file fails
    /// start-up or a reload naming the endpoint (or `default_client_config`) and the field.
    fn check_clients(&self, origin: &str, flags: &ClientConfig) -> Result<(), SdConfigError> {
        let base = self.base_client(flags);
        if !self.default_client.is_flags() {
            Client::with_names(&base, &SD_CONFIG_NAMES).map_err(|err| {
                SdConfigError::DefaultClient {
                    origin: origin.to_string(),
                    reason: err.to_string(),
                }
            })?;
        }
        for e in self.entries.iter().filter(|e| !e.client.is_flags()) {
            Client::with_names(&e.client.apply(&base), &SD_CONFIG_NAMES).map_err(|err| {
                SdConfigError::Endpoint {
                    origin: origin.to_string(),
                    address: e.address.clone(),
                    reason: err.to_string(),
                }
            })?;
        }
        Ok(())
    }

    /// Warns of entries whose TLS settings are there but disabled; once per configuration
    /// taken, not at every re-read.
    fn warn(&self, origin: &str) {
        for address in &self.clear_text_with_tls_settings {
            tracing::warn!(
                endpoint = %address,
                "{origin}: the endpoint's grpc_client_config has TLS files or a server name but \
                 tls_config.enabled is false: it is called in clear text"
            );
        }
    }
}

/// Parses an endpoint SD configuration (see `RawSdConfig` for the format). `origin`
/// (the flag, and the file) starts every error message. An empty document lists no
/// endpoints, as in Thanos. An address listed twice keeps its last entry, as Thanos does.
pub fn parse_sd_config(origin: &str, text: &str) -> Result<SdConfig, SdConfigError> {
    let raw: Option<RawSdConfig> =
        serde_yaml_ng::from_str(text).map_err(|e| SdConfigError::Yaml {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
    let mut out = SdConfig::default();
    let Some(raw) = raw else {
        return Ok(out);
    };
    if let Some(d) = &raw.default_client_config {
        out.default_client = endpoint_client("default_client_config", d).map_err(|reason| {
            SdConfigError::DefaultClient {
                origin: origin.to_string(),
                reason,
            }
        })?;
    }
    for e in raw.endpoints.unwrap_or_default() {
        let refuse = |reason: String| SdConfigError::Endpoint {
            origin: origin.to_string(),
            address: e.address.clone(),
            reason,
        };
        if !e.service_config.is_empty() {
            return Err(refuse(if e.group {
                "service_config is not supported: Strata's endpoint groups always balance \
                 round robin over healthy members; remove the field"
                    .into()
            } else {
                "service_config is only valid for endpoint groups (group: true)".into()
            }));
        }
        let (client, clear_text) = match (&e.client_config, &e.grpc_client_config) {
            (Some(_), Some(_)) => {
                return Err(refuse(
                    "client_config and grpc_client_config are two forms of the same settings \
                     (newer and older Thanos); give one"
                        .into(),
                ));
            }
            (Some(c), None) => (endpoint_client("client_config", c).map_err(refuse)?, false),
            (None, Some(c)) => legacy_endpoint_client(c).map_err(refuse)?,
            (None, None) => (EndpointClient::default(), false),
        };
        let mut entry = EndpointEntry::new(&e.address, e.strict, e.group).map_err(refuse)?;
        entry.client = client;
        out.entries.retain(|o| o.address != entry.address);
        out.clear_text_with_tls_settings
            .retain(|a| *a != entry.address);
        if clear_text {
            out.clear_text_with_tls_settings.push(entry.address.clone());
        }
        out.entries.push(entry);
    }
    Ok(out)
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
    /// Whether it offers the Metadata API (`InfoResponse.metric_metadata`: sidecars,
    /// queriers over such endpoints).
    pub has_metadata: bool,
    /// Whether it offers the Rules API (`InfoResponse.rules`).
    pub has_rules: bool,
    /// The time range of its exemplars, when it offers the Exemplars API
    /// (`InfoResponse.exemplars`).
    pub exemplars: Option<(i64, i64)>,
    /// Whether it offers the Targets API (`InfoResponse.targets`).
    pub has_targets: bool,
    /// Whether its Series calls strip the labels named in `without_replica_labels` and
    /// still send series sorted (`StoreInfo.supports_without_replica_labels`).
    pub strips_replica_labels: bool,
}

/// An endpoint the fan-out may query.
#[derive(Debug, Clone)]
pub struct StoreEndpoint {
    /// The address, which names the store in warnings and errors.
    pub addr: String,
    /// The Store API (label names and values).
    pub client: StoreClient<StoreChannel>,
    /// The Series method, decoding frames straight into label sets
    /// ([`strata_storepb::frame`]).
    pub series: crate::fanout::SeriesClient,
    pub label_sets: Vec<Labels>,
    pub min_time: i64,
    pub max_time: i64,
    /// See [`EndpointInfo::strips_replica_labels`] (false until the endpoint has said).
    pub strips_replica_labels: bool,
}

/// An endpoint to ask one of the Info API's other services (metadata, rules, exemplars,
/// targets).
#[derive(Debug, Clone)]
pub struct ApiEndpoint<C> {
    /// The address, which names the endpoint in warnings and errors.
    pub addr: String,
    pub client: C,
    /// What it said of itself (external label sets, exemplars' time range, …).
    pub info: EndpointInfo,
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
    /// The settings `channel` was opened with; an endpoint whose settings change (a
    /// reloaded SD config) gets a new channel.
    client_cfg: ClientConfig,
    client: Arc<Client>,
    channel: StoreChannel,
    /// For an endpoint group: its members, probed one by one.
    group: Option<GroupChannel>,
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
    /// `--endpoint-group`.
    pub groups: Vec<String>,
    /// `--endpoint-group-strict`.
    pub groups_strict: Vec<String>,
    /// `--endpoint.sd-config-file` or `--endpoint.sd-config`.
    pub sd_config: Option<SdConfigSource>,
    /// `--endpoint.sd-config-reload-interval` (files only).
    pub sd_config_interval: Duration,
    /// `--store.sd-files` (globs allowed).
    pub sd_files: Vec<String>,
    pub sd_interval: Duration,
    pub dns_interval: Duration,
    pub unhealthy_timeout: Duration,
    /// How often endpoints are probed with Info (Thanos: 5 s).
    pub probe_interval: Duration,
    /// `--endpoint.info-timeout`: how long one Info call may take (Thanos: 5 s).
    pub info_timeout: Duration,
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
            groups: Vec::new(),
            groups_strict: Vec::new(),
            sd_config: None,
            sd_config_interval: Duration::from_secs(300),
            sd_files: Vec::new(),
            sd_interval: Duration::from_secs(300),
            dns_interval: Duration::from_secs(30),
            unhealthy_timeout: Duration::from_secs(300),
            probe_interval: Duration::from_secs(5),
            info_timeout: Duration::from_secs(5),
            client: ClientConfig::default(),
            dns_server: None,
        }
    }
}

/// The endpoints and their health, updated by [`EndpointSet::run`].
#[derive(Debug)]
pub struct EndpointSet {
    cfg: EndpointSetConfig,
    /// The endpoints given by flags, which never change.
    flag_entries: Vec<EndpointEntry>,
    /// The flags' client settings, ready (endpoints without settings of their own).
    client: Arc<Client>,
    /// DNS discovery; SRV lookups only when configured (see [`EndpointSet::new`]).
    resolver: Resolver,
    state: RwLock<BTreeMap<String, State>>,
    /// Addresses found by the last discovery (DNS and files), re-used between discoveries.
    discovered: RwLock<Discovered>,
    /// The endpoint SD config's entries as last read successfully.
    sd_config: RwLock<SdConfigState>,
}

#[derive(Debug, Default)]
struct Discovered {
    /// Addresses from DNS (and static non-strict entries), with their entry's client settings.
    dns: BTreeMap<String, EndpointClient>,
    files: BTreeSet<String>,
    /// Each group's members, by group name.
    groups: BTreeMap<String, BTreeSet<String>>,
    dns_at: Option<Instant>,
    files_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct SdConfigState {
    config: SdConfig,
    read_at: Option<Instant>,
}

/// One Info call: what the endpoint holds, or why it did not say.
async fn probe(ch: StoreChannel, timeout: Duration) -> Result<EndpointInfo, String> {
    let mut c = InfoClient::new(ch);
    match tokio::time::timeout(timeout, c.info(InfoRequest {})).await {
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
                has_metadata: i.metric_metadata.is_some(),
                has_rules: i.rules.is_some(),
                exemplars: i.exemplars.map(|e| (e.min_time, e.max_time)),
                has_targets: i.targets.is_some(),
                strips_replica_labels: store
                    .as_ref()
                    .is_some_and(|s| s.supports_without_replica_labels),
            })
        }
        Ok(Err(status)) => Err(format!("Info call: {}", status.message())),
        Err(_) => Err("Info call: timed out after 5s".to_string()),
    }
}

/// A group's info from its members' answers. A query goes to one member, any of them, so
/// the group claims what any healthy member holds: the union of their label sets and the
/// widest time range (a narrower claim could skip the group for data a member has).
fn merge_group_info(
    name: &str,
    answers: &[(String, Result<EndpointInfo, String>)],
) -> Result<EndpointInfo, String> {
    let ok: Vec<&EndpointInfo> = answers
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let Some(first) = ok.first() else {
        if answers.is_empty() {
            return Err(format!(
                "endpoint group {name}: its address resolved to no members"
            ));
        }
        let errs: Vec<String> = answers
            .iter()
            .filter_map(|(a, r)| r.as_ref().err().map(|e| format!("{a}: {e}")))
            .collect();
        return Err(format!(
            "no member of the group answered ({})",
            errs.join("; ")
        ));
    };
    let mut label_sets: Vec<Labels> = Vec::new();
    for i in &ok {
        for l in &i.label_sets {
            if !label_sets.contains(l) {
                label_sets.push(l.clone());
            }
        }
    }
    Ok(EndpointInfo {
        component_type: first.component_type.clone(),
        label_sets,
        min_time: ok.iter().map(|i| i.min_time).min().unwrap_or(i64::MIN),
        max_time: ok.iter().map(|i| i.max_time).max().unwrap_or(i64::MAX),
        has_store: ok.iter().any(|i| i.has_store),
        // A call goes to any one member.
        has_metadata: ok.iter().all(|i| i.has_metadata),
        has_rules: ok.iter().all(|i| i.has_rules),
        exemplars: if ok.iter().all(|i| i.exemplars.is_some()) {
            let ranges = ok.iter().filter_map(|i| i.exemplars);
            let min = ranges.clone().map(|r| r.0).min().unwrap_or(i64::MIN);
            let max = ranges.map(|r| r.1).max().unwrap_or(i64::MAX);
            Some((min, max))
        } else {
            None
        },
        has_targets: ok.iter().all(|i| i.has_targets),
        strips_replica_labels: ok.iter().all(|i| i.strips_replica_labels),
    })
}

/// What one update probes: an endpoint's channel, or each member of a group.
enum ProbeTarget {
    Single(StoreChannel),
    Group(Vec<(String, StoreChannel, Arc<AtomicBool>)>),
}

impl EndpointSet {
    /// Checks the configuration (endpoint syntax, client options, the endpoint SD config)
    /// without connecting.
    pub fn new(cfg: EndpointSetConfig) -> Result<Arc<Self>, QueryError> {
        let mut flag_entries = Vec::new();
        for (flag, list, strict, group) in [
            ("--endpoint", &cfg.endpoints, false, false),
            ("--endpoint-strict", &cfg.strict, true, false),
            ("--endpoint-group", &cfg.groups, false, true),
            ("--endpoint-group-strict", &cfg.groups_strict, true, true),
        ] {
            for s in list {
                flag_entries.push(
                    EndpointEntry::new(s, strict, group)
                        .map_err(|e| QueryError::ClientConfig(format!("{flag} {s:?}: {e}")))?,
                );
            }
        }
        let sd = match &cfg.sd_config {
            Some(src) => {
                let sd = src.load()?;
                sd.check_clients(&src.origin(), &cfg.client)?;
                sd.warn(&src.origin());
                sd
            }
            None => SdConfig::default(),
        };
        let client = Arc::new(Client::new(&cfg.client)?);
        let needs_srv = flag_entries
            .iter()
            .chain(&sd.entries)
            .any(|e| e.spec.uses_srv());
        let reloads = matches!(cfg.sd_config, Some(SdConfigSource::File(_)));
        let resolver = if needs_srv {
            Resolver::try_new(cfg.dns_server)
                .map_err(|e| QueryError::ClientConfig(e.to_string()))?
        } else if reloads {
            // A reload may bring SRV names; without a usable DNS configuration they are
            // reported when they come, not now.
            match cfg.dns_server {
                Some(server) => Resolver::with_server(server),
                None => Resolver::system(),
            }
        } else {
            Resolver::without_srv()
        };
        Ok(Arc::new(EndpointSet {
            cfg,
            flag_entries,
            client,
            resolver,
            state: RwLock::new(BTreeMap::new()),
            discovered: RwLock::new(Discovered::default()),
            sd_config: RwLock::new(SdConfigState {
                config: sd,
                read_at: Some(Instant::now()),
            }),
        }))
    }

    /// Every endpoint entry in force: the SD config's, then the flags'. Where two entries
    /// stand for one address, the later one's client settings win: the flags', as in
    /// Thanos, which appends the flags' endpoints to the file's.
    fn entries(&self) -> Vec<EndpointEntry> {
        let sd = self.sd_config.read().unwrap_or_else(|e| e.into_inner());
        sd.config
            .entries
            .iter()
            .chain(&self.flag_entries)
            .cloned()
            .collect()
    }

    /// What an endpoint without settings of its own is called with: the flags', with the
    /// SD config's `default_client_config`.
    fn base_client(&self) -> ClientConfig {
        let sd = self.sd_config.read().unwrap_or_else(|e| e.into_inner());
        sd.config.base_client(&self.cfg.client)
    }

    /// Re-reads `--endpoint.sd-config-file` when due. A file that cannot be read or parsed
    /// is logged and the previous entries stay, as Thanos does: a typo must not drop every
    /// endpoint. Returns whether the entries changed.
    fn reload_sd_config(&self, now: Instant) -> bool {
        let Some(src @ SdConfigSource::File(_)) = &self.cfg.sd_config else {
            return false;
        };
        {
            let sd = self.sd_config.read().unwrap_or_else(|e| e.into_inner());
            if sd
                .read_at
                .is_some_and(|t| now.duration_since(t) < self.cfg.sd_config_interval)
            {
                return false;
            }
        }
        let loaded = src.load().and_then(|config| {
            config.check_clients(&src.origin(), &self.cfg.client)?;
            Ok(config)
        });
        let mut sd = self.sd_config.write().unwrap_or_else(|e| e.into_inner());
        sd.read_at = Some(now);
        match loaded {
            Ok(config) if config != sd.config => {
                tracing::info!(
                    endpoints = config.entries.len(),
                    "endpoint SD config reloaded with changes"
                );
                config.warn(&src.origin());
                sd.config = config;
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(
                    err = %e,
                    "reloading the endpoint SD config failed; keeping the previous endpoints"
                );
                false
            }
        }
    }

    /// Resolves the non-strict single endpoints (each address with its entry's client
    /// settings, a later entry's winning), and each group's members by group name.
    async fn resolve_dns(
        &self,
        entries: &[EndpointEntry],
    ) -> (
        BTreeMap<String, EndpointClient>,
        BTreeMap<String, BTreeSet<String>>,
    ) {
        let mut singles = BTreeMap::new();
        let mut groups = BTreeMap::new();
        for e in entries {
            if e.group {
                groups.insert(e.group_name(), self.resolver.resolve(&e.spec).await);
            } else if !e.strict {
                for a in self.resolver.resolve(&e.spec).await {
                    singles.insert(a, e.client.clone());
                }
            }
        }
        (singles, groups)
    }

    /// The client for settings `cfg`: the flags' (shared) or one of its own. Its TLS files
    /// are read again for each new channel, so renewed certificates are picked up.
    fn client_for(&self, cfg: &ClientConfig) -> Result<Arc<Client>, QueryError> {
        if *cfg == self.cfg.client {
            Ok(self.client.clone())
        } else {
            Client::with_names(cfg, &SD_CONFIG_NAMES).map(Arc::new)
        }
    }

    fn read_sd_files(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (path, targets) in strata_runtime::file_sd::read_patterns(&self.cfg.sd_files) {
            match targets {
                Ok(targets) => {
                    for t in targets {
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
                Err(e) => tracing::warn!(path = %path.display(), err = %e, "reading file SD"),
            }
        }
        out
    }

    /// Discovery (when due) and one probe of every endpoint. The first call does everything.
    pub async fn update(&self) {
        let now = Instant::now();
        // New SD config entries are resolved at once, not at the next DNS round.
        let sd_changed = self.reload_sd_config(now);
        let (dns_due, files_due) = {
            let d = self.discovered.read().unwrap_or_else(|e| e.into_inner());
            (
                sd_changed
                    || d.dns_at
                        .is_none_or(|t| now.duration_since(t) >= self.cfg.dns_interval),
                d.files_at
                    .is_none_or(|t| now.duration_since(t) >= self.cfg.sd_interval),
            )
        };
        let entries = self.entries();
        if dns_due {
            let (dns, groups) = self.resolve_dns(&entries).await;
            let mut d = self.discovered.write().unwrap_or_else(|e| e.into_inner());
            d.dns = dns;
            // A group whose name resolves to nothing (a failed lookup) keeps its members,
            // as Thanos' resolver keeps the last addresses on error.
            let mut merged = BTreeMap::new();
            for (name, members) in groups {
                let members = match (members.is_empty(), d.groups.remove(&name)) {
                    (true, Some(old)) => old,
                    _ => members,
                };
                merged.insert(name, members);
            }
            d.groups = merged;
            d.dns_at = Some(now);
        }
        if files_due {
            let files = self.read_sd_files();
            let mut d = self.discovered.write().unwrap_or_else(|e| e.into_inner());
            d.files = files;
            d.files_at = Some(now);
        }
        // Each address's client settings: file SD targets take the flags', DNS results
        // their entry's, strict addresses and groups their entry's.
        let (wanted, group_members, mut clients) = {
            let d = self.discovered.read().unwrap_or_else(|e| e.into_inner());
            let mut clients: BTreeMap<String, EndpointClient> = d
                .files
                .iter()
                .map(|a| (a.clone(), EndpointClient::default()))
                .collect();
            clients.extend(d.dns.iter().map(|(a, c)| (a.clone(), c.clone())));
            let wanted: BTreeSet<String> = clients.keys().cloned().collect();
            (wanted, d.groups.clone(), clients)
        };
        for e in &entries {
            if e.group {
                clients.insert(e.group_name(), e.client.clone());
            } else if e.strict {
                clients.insert(e.address.clone(), e.client.clone());
            }
        }
        let strict: BTreeSet<String> = entries
            .iter()
            .filter(|e| e.strict)
            .map(|e| {
                if e.group {
                    e.group_name()
                } else {
                    e.address.clone()
                }
            })
            .collect();
        let groups: BTreeSet<String> = entries
            .iter()
            .filter(|e| e.group)
            .map(EndpointEntry::group_name)
            .collect();

        let base = self.base_client();
        // New endpoints get a channel; endpoints no longer discovered go away.
        let to_probe: Vec<(String, ProbeTarget)> = {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            st.retain(|a, _| wanted.contains(a) || strict.contains(a) || groups.contains(a));
            for a in wanted.iter().chain(&strict).chain(&groups) {
                let is_group = groups.contains(a);
                let client_cfg = clients
                    .get(a)
                    .map_or_else(|| base.clone(), |c| c.apply(&base));
                if let Some(s) = st.get_mut(a) {
                    if s.client_cfg == client_cfg {
                        // A reload may have changed an entry's strictness.
                        s.strict = strict.contains(a);
                        continue;
                    }
                    tracing::info!(endpoint = %a, "client settings changed; reconnecting");
                    st.remove(a);
                }
                let client = match self.client_for(&client_cfg) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(endpoint = %a, err = %e, "endpoint not added");
                        continue;
                    }
                };
                let (channel, group) = if is_group {
                    let g = GroupChannel::new(a.clone());
                    (client.wrap(EndpointChannel::Group(g.clone())), Some(g))
                } else {
                    match client.channel(a) {
                        Ok(c) => (c, None),
                        Err(e) => {
                            tracing::warn!(endpoint = %a, err = %e, "bad endpoint address");
                            continue;
                        }
                    }
                };
                st.insert(
                    a.clone(),
                    State {
                        addr: a.clone(),
                        strict: strict.contains(a),
                        client_cfg,
                        client,
                        channel,
                        group,
                        info: None,
                        healthy: false,
                        last_check: None,
                        last_error: None,
                        unhealthy_since: Some(now),
                    },
                );
            }
            for (name, members) in &group_members {
                if let Some(s) = st.get(name)
                    && let Some(g) = &s.group
                {
                    g.set_members(members, &s.client);
                }
            }
            st.values()
                .map(|s| {
                    let target = match &s.group {
                        None => ProbeTarget::Single(s.channel.clone()),
                        Some(g) => ProbeTarget::Group(
                            g.snapshot()
                                .into_iter()
                                .map(|m| {
                                    let ch = s.client.wrap(EndpointChannel::Single(m.channel));
                                    (m.addr, ch, m.healthy)
                                })
                                .collect(),
                        ),
                    };
                    (s.addr.clone(), target)
                })
                .collect()
        };

        let timeout = self.cfg.info_timeout;
        let probes = to_probe.into_iter().map(|(addr, target)| async move {
            let r = match target {
                ProbeTarget::Single(ch) => probe(ch, timeout).await,
                ProbeTarget::Group(members) => {
                    let answers = futures::future::join_all(members.into_iter().map(
                        |(m, ch, healthy)| async move {
                            let r = probe(ch, timeout).await;
                            healthy.store(r.is_ok(), Ordering::Relaxed);
                            (m, r)
                        },
                    ))
                    .await;
                    merge_group_info(&addr, &answers)
                }
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

    /// The members an endpoint group's calls rotate through (`name` is `thanos:///<address>`),
    /// or `None` if `name` is not a known group.
    pub fn group_members(&self, name: &str) -> Option<Vec<String>> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.get(name)
            .and_then(|s| s.group.as_ref())
            .map(GroupChannel::members)
    }

    /// Healthy endpoints by component type and external label sets (as Thanos writes them:
    /// each set as Prometheus prints labels, sorted, joined by commas), for
    /// `thanos_store_nodes_grpc_connections`.
    pub fn connection_counts(&self) -> BTreeMap<(String, String), i64> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        for s in st.values().filter(|s| s.healthy) {
            let Some(info) = &s.info else { continue };
            let mut sets: Vec<String> = info.label_sets.iter().map(ToString::to_string).collect();
            sets.sort();
            *out.entry((info.component_type.clone(), sets.join(",")))
                .or_insert(0) += 1;
        }
        out
    }

    /// The endpoints to query: healthy ones offering the Store API, and strict ones.
    pub fn stores(&self) -> Vec<StoreEndpoint> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.values()
            .filter(|s| s.strict || (s.healthy && s.info.as_ref().is_some_and(|i| i.has_store)))
            .map(|s| {
                let (label_sets, min_time, max_time, strips_replica_labels) = match &s.info {
                    Some(i) => (
                        i.label_sets.clone(),
                        i.min_time,
                        i.max_time,
                        i.strips_replica_labels,
                    ),
                    None => (Vec::new(), i64::MIN, i64::MAX, false),
                };
                StoreEndpoint {
                    addr: s.addr.clone(),
                    client: s.client.store_client(s.channel.clone()),
                    series: s.client.series_client(s.channel.clone()),
                    label_sets,
                    min_time,
                    max_time,
                    strips_replica_labels,
                }
            })
            .collect()
    }

    /// The healthy endpoints whose Info says `offers` (a strict endpoint that is down is left
    /// out: unlike a store, it has not said what it offers), each with a client made by
    /// `client`.
    fn offering<C>(
        &self,
        offers: impl Fn(&EndpointInfo) -> bool,
        client: impl Fn(&Client, StoreChannel) -> C,
    ) -> Vec<ApiEndpoint<C>> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.values()
            .filter(|s| s.healthy)
            .filter_map(|s| {
                let info = s.info.as_ref().filter(|i| offers(i))?;
                Some(ApiEndpoint {
                    addr: s.addr.clone(),
                    client: client(&s.client, s.channel.clone()),
                    info: info.clone(),
                })
            })
            .collect()
    }

    /// The endpoints offering the Metadata API.
    pub fn metadata_endpoints(&self) -> Vec<ApiEndpoint<MetadataClient<StoreChannel>>> {
        self.offering(|i| i.has_metadata, Client::metadata_client)
    }

    /// The endpoints offering the Rules API.
    pub fn rules_endpoints(&self) -> Vec<ApiEndpoint<RulesClient<StoreChannel>>> {
        self.offering(|i| i.has_rules, Client::rules_client)
    }

    /// The endpoints offering the Exemplars API (`info.exemplars` holds their time range).
    pub fn exemplar_endpoints(&self) -> Vec<ApiEndpoint<ExemplarsClient<StoreChannel>>> {
        self.offering(|i| i.exemplars.is_some(), Client::exemplars_client)
    }

    /// The endpoints offering the Targets API.
    pub fn targets_endpoints(&self) -> Vec<ApiEndpoint<TargetsClient<StoreChannel>>> {
        self.offering(|i| i.has_targets, Client::targets_client)
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

pub use strata_runtime::glob::expand_glob;

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsing is `strata_runtime::dns`'s (tested there); the querier words its errors as
    /// Thanos' querier does.
    #[test]
    fn bad_endpoints_are_named_as_endpoints() {
        for bad in ["localhost", "dns+host", "foo+bar:1", "http://x:1"] {
            let e = QueryError::from(EndpointSpec::parse(bad).unwrap_err()).to_string();
            assert!(
                e.starts_with(&format!("invalid endpoint {bad:?}: want host:port")),
                "{e}"
            );
        }
    }

    #[test]
    fn sd_config_parses_thanos_format() {
        let text = "
endpoints:
  - address: store-0:10901
  - address: dns+prometheus-headless:10901
    group: true
    strict: true
  - address: dnssrv+_grpc._tcp.stores.svc
    grpc_client_config:
      compression_type: none
  - address: sidecar:10901
    strict: true
  - address: old-group:10901
    group: true
  - address: old-group:10901
    group: false
";
        let got = parse_sd_config("--endpoint.sd-config", text)
            .unwrap()
            .entries;
        let summary: Vec<(&str, EndpointSpec, bool, bool)> = got
            .iter()
            .map(|e| (e.address.as_str(), e.spec.clone(), e.strict, e.group))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "store-0:10901",
                    EndpointSpec::Static("store-0:10901".into()),
                    false,
                    false
                ),
                (
                    "dns+prometheus-headless:10901",
                    EndpointSpec::Dns {
                        host: "prometheus-headless".into(),
                        port: 10901
                    },
                    true,
                    true
                ),
                (
                    "dnssrv+_grpc._tcp.stores.svc",
                    EndpointSpec::DnsSrv("_grpc._tcp.stores.svc".into()),
                    false,
                    false
                ),
                (
                    "sidecar:10901",
                    EndpointSpec::Static("sidecar:10901".into()),
                    true,
                    false
                ),
                // Listed twice: the last entry wins.
                (
                    "old-group:10901",
                    EndpointSpec::Static("old-group:10901".into()),
                    false,
                    false
                ),
            ]
        );
        assert_eq!(
            got[1].group_name(),
            "thanos:///dns+prometheus-headless:10901"
        );
        // Empty documents list nothing, as in Thanos.
        for empty in ["", "# nothing yet\n", "endpoints: []", "endpoints:"] {
            assert_eq!(
                parse_sd_config("x", empty).unwrap(),
                SdConfig::default(),
                "{empty:?}"
            );
        }
        // gRPC's dns:/// form for groups (older Thanos documentation) means dns+.
        let g = parse_sd_config(
            "x",
            "endpoints: [{address: 'dns:///g.svc:10901', group: true}]",
        )
        .unwrap()
        .entries;
        assert_eq!(
            g[0].spec,
            EndpointSpec::Dns {
                host: "g.svc".into(),
                port: 10901
            }
        );
    }

    /// Each entry's older `grpc_client_config` is read as Thanos reads it (see
    /// `EndpointClient`).
    #[test]
    fn sd_config_reads_each_endpoints_older_client_settings() {
        let text = "
endpoints:
  - address: flags:1
  - address: none:1
    grpc_client_config: {compression_type: none, tls_config: {insecure_skip_verify: true}}
  - address: tls:1
    grpc_client_config:
      tls_config: {enabled: true, ca_file: /c/ca.pem, cert_file: /c/cert.pem, key_file: /c/key.pem}
      server_name: store.example
      compression_type: snappy
  - address: skip:1
    grpc_client_config: {tls_config: {enabled: true, insecure_skip_verify: true}}
  - address: off:1
    grpc_client_config: {server_name: store.example}
";
        let got = parse_sd_config("x", text).unwrap();
        assert!(got.default_client.is_flags());
        assert_eq!(got.clear_text_with_tls_settings, ["off:1"]);
        // What each endpoint is called with, when the flags say TLS with their own CA,
        // server name and gzip.
        let flags = ClientConfig {
            tls: true,
            ca: Some("/flags/ca.pem".into()),
            server_name: Some("flags.example".into()),
            compression: Compression::Gzip,
            ..Default::default()
        };
        let called: Vec<(&str, ClientConfig)> = got
            .entries
            .iter()
            .map(|e| (e.address.as_str(), e.client.apply(&flags)))
            .collect();
        let own_tls =
            |skip_verify, files: bool, server_name: Option<&str>, compression| ClientConfig {
                tls: true,
                tls_skip_verify: skip_verify,
                cert: files.then(|| "/c/cert.pem".into()),
                key: files.then(|| "/c/key.pem".into()),
                ca: files.then(|| "/c/ca.pem".into()),
                server_name: server_name.map(String::from),
                min_version: TlsMinVersion::V1_3,
                compression,
            };
        assert_eq!(
            called,
            [
                ("flags:1", flags.clone()),
                // `none` and a lone insecure_skip_verify leave it to the flags, as in Thanos.
                ("none:1", flags.clone()),
                (
                    "tls:1",
                    own_tls(false, true, Some("store.example"), Compression::Snappy)
                ),
                // TLS enabled: nothing inherited from the flags, no CA among them.
                ("skip:1", own_tls(true, false, None, Compression::Gzip)),
                (
                    "off:1",
                    ClientConfig {
                        compression: Compression::Gzip,
                        ..Default::default()
                    }
                ),
            ]
        );
    }

    /// The newer `default_client_config` and `client_config` (thanos-io/thanos#8594): each
    /// setting given replaces the one below it (flags, then the default), each left out is
    /// inherited, naming a TLS file or `insecure_skip_verify` turns TLS on unless `enabled`
    /// says otherwise, and an empty string clears.
    #[test]
    fn sd_config_layers_the_newer_client_settings() {
        let text = "
default_client_config:
  tls_config: {ca_file: /d/ca.pem, min_version: '1.2'}
  server_name: store.example
  compression: snappy
endpoints:
  - address: inherits:1
  - address: identity:1
    client_config: {tls_config: {cert_file: /e/cert.pem, key_file: /e/key.pem}}
  - address: plain:1
    client_config: {tls_config: {enabled: false}, compression: none}
  - address: cleared:1
    client_config: {server_name: '', tls_config: {ca_file: '', insecure_skip_verify: true}}
  - address: name-only:1
    client_config: {server_name: other.example}
";
        let got = parse_sd_config("x", text).unwrap();
        // The flags say clear text, gzip and TLS 1.3 at least.
        let flags = ClientConfig {
            compression: Compression::Gzip,
            ..Default::default()
        };
        let base = got.base_client(&flags);
        let default = ClientConfig {
            tls: true,
            ca: Some("/d/ca.pem".into()),
            server_name: Some("store.example".into()),
            min_version: TlsMinVersion::V1_2,
            compression: Compression::Snappy,
            ..Default::default()
        };
        assert_eq!(base, default);
        let called: Vec<(&str, ClientConfig)> = got
            .entries
            .iter()
            .map(|e| (e.address.as_str(), e.client.apply(&base)))
            .collect();
        assert_eq!(
            called,
            [
                ("inherits:1", default.clone()),
                (
                    "identity:1",
                    ClientConfig {
                        cert: Some("/e/cert.pem".into()),
                        key: Some("/e/key.pem".into()),
                        ..default.clone()
                    }
                ),
                (
                    "plain:1",
                    ClientConfig {
                        tls: false,
                        compression: Compression::None,
                        ..default.clone()
                    }
                ),
                (
                    "cleared:1",
                    ClientConfig {
                        tls_skip_verify: true,
                        ca: None,
                        server_name: None,
                        ..default.clone()
                    }
                ),
                (
                    "name-only:1",
                    ClientConfig {
                        server_name: Some("other.example".into()),
                        ..default.clone()
                    }
                ),
            ]
        );
        // Without a default, a server name alone does not turn TLS on; a CA does.
        let got = parse_sd_config(
            "x",
            "endpoints: [{address: 'a:1', client_config: {server_name: s}}, \
             {address: 'b:1', client_config: {tls_config: {ca_file: /b/ca.pem}}}]",
        )
        .unwrap();
        let tls: Vec<bool> = got
            .entries
            .iter()
            .map(|e| e.client.apply(&flags).tls)
            .collect();
        assert_eq!(tls, [false, true]);
    }

    #[test]
    fn sd_config_errors_name_the_origin_and_the_problem() {
        let origin = "--endpoint.sd-config-file /etc/thanos/endpoints.yml";
        for (text, want) in [
            ("endpoints: [", "malformed endpoint configuration"),
            ("endpoints:\n  - address: a:1\n    stirct: true\n", "stirct"),
            ("endpoint:\n  - address: a:1\n", "endpoint"),
            ("endpoints:\n  - strict: true\n", "address"),
            (
                "endpoints: [{address: 'a:1', strict: yes-please}]",
                "strict",
            ),
            ("- a:1\n", "malformed"),
            (
                "endpoints: [{address: 'dns+a:1', strict: true}]",
                "strict mode does not allow",
            ),
            (
                "endpoints: [{address: 'nohost'}]",
                "invalid endpoint \"nohost\"",
            ),
            (
                "endpoints: [{address: 'a:1', service_config: '{}'}]",
                "only valid for endpoint groups",
            ),
            (
                "endpoints: [{address: 'a:1', group: true, service_config: '{}'}]",
                "service_config is not supported",
            ),
            (
                "endpoints: [{address: 'a:1', grpc_client_config: {compression_type: gzip}}]",
                "\"gzip\" is invalid: must be 'none' or 'snappy'",
            ),
            (
                "endpoints: [{address: 'a:1', grpc_client_config: {tls: true}}]",
                "unknown field `tls`",
            ),
            (
                "endpoints: [{address: 'a:1', client_config: {compression: gzip}}]",
                "client_config.compression \"gzip\" is invalid",
            ),
            (
                "endpoints: [{address: 'a:1', client_config: {tls_config: {min_version: '1.4'}}}]",
                "client_config.tls_config.min_version: TLS version \"1.4\" is invalid",
            ),
            (
                "default_client_config: {compression: zstd}",
                "default_client_config: default_client_config.compression \"zstd\"",
            ),
            (
                "endpoints: [{address: 'a:1', client_config: {}, grpc_client_config: {}}]",
                "give one",
            ),
        ] {
            let e = parse_sd_config(origin, text).unwrap_err().to_string();
            assert!(e.starts_with(origin), "{text:?}: {e}");
            assert!(e.contains(want), "{text:?}: want {want:?} in {e}");
        }
        let e = SdConfigSource::File("/nonexistent/endpoints.yml".into())
            .load()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--endpoint.sd-config-file /nonexistent/endpoints.yml"),
            "{e}"
        );
    }

    #[test]
    fn group_rotates_over_healthy_members() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = Client::new(&ClientConfig::default()).unwrap();
        let g = GroupChannel::new("thanos:///g:1".into());
        let addrs: BTreeSet<String> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .into_iter()
            .map(String::from)
            .collect();
        rt.block_on(async { g.set_members(&addrs, &client) });
        let picks = |n: usize| -> Vec<String> { (0..n).map(|_| g.pick().unwrap().addr).collect() };
        // Nobody probed yet: plain rotation.
        assert_eq!(
            picks(4),
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:1"]
        );
        let set_health = |h: [bool; 3]| {
            for (m, h) in g.snapshot().iter().zip(h) {
                m.healthy.store(h, Ordering::Relaxed);
            }
        };
        // The second member is down: calls alternate between the other two.
        set_health([true, false, true]);
        assert_eq!(
            picks(4),
            ["127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:1"]
        );
        // Only one left: every call goes to it.
        set_health([false, false, true]);
        assert_eq!(picks(3), ["127.0.0.1:3"; 3]);
        // Re-resolution keeps surviving members' health and channels.
        let fewer: BTreeSet<String> = ["127.0.0.1:3", "127.0.0.1:4"]
            .into_iter()
            .map(String::from)
            .collect();
        rt.block_on(async { g.set_members(&fewer, &client) });
        assert_eq!(g.members(), ["127.0.0.1:3", "127.0.0.1:4"]);
        assert!(g.snapshot()[0].healthy.load(Ordering::Relaxed));
        assert!(!g.snapshot()[1].healthy.load(Ordering::Relaxed));
        // No members: an error naming the group, not a panic.
        rt.block_on(async {
            g.set_members(&BTreeSet::new(), &client);
            let e = g
                .call(Request::new(Body::empty()))
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("thanos:///g:1") && e.contains("no members"),
                "{e}"
            );
        });
    }

    /// A bad value of any endpoint flag fails start-up naming the flag and the value.
    #[test]
    fn endpoint_flag_errors_name_the_flag() {
        /// A flag's list in the configuration.
        type Field = fn(&mut EndpointSetConfig) -> &mut Vec<String>;
        let cases: [(&str, Field, &str, &str); 4] = [
            (
                "--endpoint",
                |c| &mut c.endpoints,
                "nohost",
                "invalid endpoint",
            ),
            (
                "--endpoint-strict",
                |c| &mut c.strict,
                "dns+store:10901",
                "strict mode does not allow",
            ),
            (
                "--endpoint-group",
                |c| &mut c.groups,
                "a:b:c",
                "invalid endpoint",
            ),
            (
                "--endpoint-group-strict",
                |c| &mut c.groups_strict,
                "dnssrv+",
                "invalid endpoint",
            ),
        ];
        for (flag, field, value, why) in cases {
            let mut cfg = EndpointSetConfig::default();
            field(&mut cfg).push(value.to_string());
            let e = EndpointSet::new(cfg).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{flag} {value:?}: ")), "{e}");
            assert!(e.contains(why), "{e}");
        }
        // Valid values of every flag are accepted.
        let cfg = EndpointSetConfig {
            endpoints: vec!["dns+store:10901".into()],
            strict: vec!["store:10901".into()],
            groups: vec!["dns:///store:10901".into()],
            groups_strict: vec!["dns+store:10901".into()],
            ..Default::default()
        };
        assert_eq!(EndpointSet::new(cfg).unwrap().flag_entries.len(), 4);
    }

    /// Every address gets its own entry's client settings: static, strict and group entries
    /// of the SD config, the flags' where the flags list the same address, and new settings
    /// (a new channel) when a reload changes an entry's.
    #[test]
    fn each_address_is_called_with_its_entrys_client_settings() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("endpoints.yml");
        let write = |snappy_on: &[u8]| {
            let mut y = String::from("endpoints:\n");
            for (port, extra) in [
                (1, ""),
                (2, ""),
                (3, "strict: true, "),
                (4, "group: true, "),
                (5, ""),
            ] {
                let c = if snappy_on.contains(&port) {
                    "snappy"
                } else {
                    "none"
                };
                y.push_str(&format!(
                    "  - {{address: '127.0.0.1:{port}', {extra}grpc_client_config: {{compression_type: {c}}}}}\n"
                ));
            }
            std::fs::write(&file, y).unwrap();
        };
        write(&[1, 3, 4, 5]);
        let set = EndpointSet::new(EndpointSetConfig {
            // Also a flag: the flags' settings win, as in Thanos.
            endpoints: vec!["127.0.0.1:5".into()],
            sd_config: Some(SdConfigSource::File(file.clone())),
            sd_config_interval: Duration::ZERO,
            ..Default::default()
        })
        .unwrap();
        let snappy = |set: &EndpointSet| -> Vec<(String, bool)> {
            let st = set.state.read().unwrap();
            st.values()
                .map(|s| (s.addr.clone(), s.channel.is_snappy()))
                .collect()
        };
        rt.block_on(set.update());
        let want = |on: [bool; 5]| -> Vec<(String, bool)> {
            vec![
                ("127.0.0.1:1".into(), on[0]),
                ("127.0.0.1:2".into(), on[1]),
                ("127.0.0.1:3".into(), on[2]),
                ("127.0.0.1:5".into(), on[4]),
                ("thanos:///127.0.0.1:4".into(), on[3]),
            ]
        };
        assert_eq!(snappy(&set), want([true, false, true, true, false]));
        // A reload that turns snappy over: new channels with the new settings.
        write(&[2]);
        rt.block_on(set.update());
        assert_eq!(snappy(&set), want([false, true, false, false, false]));
        // A rewrite naming a TLS file that cannot be read is refused as a whole (the error
        // names the endpoint and the field); the endpoints keep their settings.
        std::fs::write(
            &file,
            "endpoints: [{address: '127.0.0.1:1', grpc_client_config: {tls_config: \
             {enabled: true, ca_file: /nonexistent/ca.pem}}}]",
        )
        .unwrap();
        let e = SdConfigSource::File(file.clone()).load().unwrap();
        let err = e
            .check_clients("x", &ClientConfig::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"127.0.0.1:1\"")
                && err.contains("tls_config.ca_file (or --grpc-client-tls-ca) /nonexistent/ca.pem"),
            "{err}"
        );
        rt.block_on(set.update());
        assert_eq!(snappy(&set), want([false, true, false, false, false]));
        assert!(
            set.state
                .read()
                .unwrap()
                .values()
                .all(|s| !s.client_cfg.tls)
        );
    }
}
