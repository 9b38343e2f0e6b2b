//! `--remote-write.config[-file]`: the remote write part of a Prometheus configuration file.
//!
//! Thanos' stateless ruler (`cmd/thanos/rule.go`) unmarshals this text into a struct holding
//! only Prometheus' `remote_write` list (`[]*config.RemoteWriteConfig`) and hands that list,
//! with the ruler's external labels as `global.external_labels`, to Prometheus' remote storage.
//! So the document is a top-level `remote_write:` list of Prometheus `remote_write` entries.
//!
//! Strictness differs on purpose: Thanos' YAML decoding is not strict, so a misspelt key is
//! silently ignored there and the setting quietly not applied. Here an unknown key inside an
//! entry, or an unknown top-level key, is an error naming it. The top-level sections of a
//! Prometheus configuration (`global`, `scrape_configs`, `rule_files`, …) are accepted and
//! ignored, so a full `prometheus.yml` still loads as it does with Thanos.
//!
//! Defaults are Prometheus 2.42's (read back from `/api/v1/status/config` of a 2.42 server):
//! `remote_timeout: 30s`, `follow_redirects: true`, `enable_http2: true`, and
//! `queue_config` `capacity: 2500`, `max_shards: 200`, `min_shards: 1`,
//! `max_samples_per_send: 500`, `batch_send_deadline: 5s`, `min_backoff: 30ms`,
//! `max_backoff: 5s`, `retry_on_http_429: false`; `metadata_config` `send: true`,
//! `send_interval: 1m`, `max_samples_per_send: 500`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde::de::IgnoredAny;
use strata_block::relabel::{RelabelConfig, parse_relabel_configs};

use super::RemoteWriteError;

/// The parsed `--remote-write.config`: one entry per remote write endpoint.
#[derive(Debug, Clone, Default)]
pub struct RemoteWriteConfig {
    pub remotes: Vec<RemoteConfig>,
}

/// One `remote_write` entry.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The endpoint samples are `POST`ed to.
    pub url: Url,
    /// `name`, as configured (may be empty).
    pub name: String,
    /// The `remote_name` metric label: `name`, or for an unnamed remote a short hash of its URL
    /// (Prometheus hashes the whole entry; the value differs from Prometheus' but is stable).
    pub remote_name: String,
    pub remote_timeout: Duration,
    /// Extra request headers, in configuration order.
    pub headers: Vec<(String, String)>,
    pub write_relabel_configs: Vec<RelabelConfig>,
    /// Accepted for compatibility; recorded series carry no exemplars, so there is nothing to
    /// send either way.
    pub send_exemplars: bool,
    /// Accepted for compatibility; recording rules produce float samples only here.
    pub send_native_histograms: bool,
    pub auth: Auth,
    pub tls: TlsConfig,
    pub proxy_url: Option<String>,
    pub follow_redirects: bool,
    /// Accepted; requests go over HTTP/1.1 (the remote write protocol does not need HTTP/2).
    pub enable_http2: bool,
    pub queue: QueueConfig,
    pub metadata: MetadataConfig,
}

/// How requests authenticate. Secrets given as files are read on every request, as
/// Prometheus' client does, so a rotated credential is used without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic {
        username: String,
        password: Secret,
    },
    /// `authorization` (type defaults to `Bearer`), or the older `bearer_token[_file]`.
    Header {
        kind: String,
        credentials: Secret,
    },
}

/// A secret given inline or as a file path.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    File(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("<secret>"),
            Secret::File(p) => write!(f, "File({p:?})"),
        }
    }
}

/// `tls_config`. PEM material is given as a file or inline (`ca`, `cert`, `key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca: Option<Pem>,
    pub cert: Option<Pem>,
    pub key: Option<Pem>,
    pub insecure_skip_verify: bool,
    /// `min_version`: `TLS12` or `TLS13` (rustls speaks nothing older).
    pub min_version: Option<String>,
}

/// PEM text, or the file holding it.
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    Inline(String),
    File(String),
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::Inline(_) => f.write_str("<inline PEM>"),
            Pem::File(p) => write!(f, "File({p:?})"),
        }
    }
}

/// `queue_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Samples buffered per shard, as in Prometheus. The whole in-memory queue of a remote
    /// holds at most `capacity × max_shards` samples, Prometheus' own ceiling of pending
    /// samples.
    pub capacity: usize,
    /// Bounds the queue (see `capacity`); shards are not added dynamically.
    pub max_shards: usize,
    /// The number of concurrent senders (shards) for this remote.
    pub min_shards: usize,
    pub max_samples_per_send: usize,
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_on_http_429: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 2500,
            max_shards: 200,
            min_shards: 1,
            max_samples_per_send: 500,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: false,
        }
    }
}

/// `metadata_config`. Accepted and checked, never used: like Thanos' stateless ruler, which has
/// no scrape manager to take metadata from, Strata sends no metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataConfig {
    pub send: bool,
    pub send_interval: Duration,
    pub max_samples_per_send: usize,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            send: true,
            send_interval: Duration::from_secs(60),
            max_samples_per_send: 500,
        }
    }
}

/// The top level of a Prometheus configuration file. Only `remote_write` is used; the other
/// sections Prometheus 2.42 knows are accepted and ignored, as Thanos does.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "the other sections are parsed only to be accepted"
)]
struct RawTop {
    #[serde(default)]
    remote_write: Option<Vec<RawRemote>>,
    global: Option<IgnoredAny>,
    rule_files: Option<IgnoredAny>,
    scrape_configs: Option<IgnoredAny>,
    scrape_config_files: Option<IgnoredAny>,
    alerting: Option<IgnoredAny>,
    remote_read: Option<IgnoredAny>,
    storage: Option<IgnoredAny>,
    tracing: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    url: Option<String>,
    #[serde(default)]
    name: String,
    remote_timeout: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    write_relabel_configs: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    send_exemplars: bool,
    #[serde(default)]
    send_native_histograms: bool,
    basic_auth: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
    #[serde(default)]
    bearer_token: String,
    #[serde(default)]
    bearer_token_file: String,
    tls_config: Option<RawTls>,
    #[serde(default)]
    proxy_url: String,
    follow_redirects: Option<bool>,
    enable_http2: Option<bool>,
    queue_config: Option<RawQueue>,
    metadata_config: Option<RawMetadata>,
    // Known to Prometheus 2.42 but not implemented: refused by name below.
    sigv4: Option<serde_yaml_ng::Value>,
    oauth2: Option<serde_yaml_ng::Value>,
    azuread: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorization {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    credentials: String,
    #[serde(default)]
    credentials_file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ca: String,
    #[serde(default)]
    ca_file: String,
    #[serde(default)]
    cert: String,
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    server_name: String,
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(default)]
    min_version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    capacity: Option<i64>,
    max_shards: Option<i64>,
    min_shards: Option<i64>,
    max_samples_per_send: Option<i64>,
    batch_send_deadline: Option<String>,
    min_backoff: Option<String>,
    max_backoff: Option<String>,
    retry_on_http_429: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadata {
    send: Option<bool>,
    send_interval: Option<String>,
    max_samples_per_send: Option<i64>,
}

/// Headers the client sets itself; Prometheus refuses them in `headers` too.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
    "x-prometheus-scrape-timeout-seconds",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

impl RemoteWriteConfig {
    /// Parses the `--remote-write.config` YAML. Empty text, or a document without
    /// `remote_write`, configures no remote.
    pub fn from_yaml(text: &str) -> Result<Self, RemoteWriteError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let top: Option<RawTop> =
            serde_yaml_ng::from_str(text).map_err(|e| RemoteWriteError::Yaml(e.to_string()))?;
        let raws = top.and_then(|t| t.remote_write).unwrap_or_default();
        let mut remotes = Vec::with_capacity(raws.len());
        let mut names = HashSet::new();
        for (index, raw) in raws.into_iter().enumerate() {
            let remote = remote(index, raw)?;
            if !remote.name.is_empty() && !names.insert(remote.name.clone()) {
                return Err(RemoteWriteError::Invalid {
                    index,
                    key: "name",
                    detail: format!(
                        "found multiple remote write configs named {:?}: names must be unique",
                        remote.name
                    ),
                });
            }
            remotes.push(remote);
        }
        Ok(RemoteWriteConfig { remotes })
    }
}

fn remote(index: usize, raw: RawRemote) -> Result<RemoteConfig, RemoteWriteError> {
    let invalid =
        |key: &'static str, detail: String| RemoteWriteError::Invalid { index, key, detail };
    for (key, v) in [
        ("sigv4", &raw.sigv4),
        ("oauth2", &raw.oauth2),
        ("azuread", &raw.azuread),
    ] {
        if v.is_some() {
            return Err(RemoteWriteError::Unsupported { index, key });
        }
    }
    let url_text = raw.url.filter(|u| !u.is_empty()).ok_or_else(|| {
        invalid(
            "url",
            "url for remote_write is empty: it is required".into(),
        )
    })?;
    let url = Url::parse(&url_text)
        .map_err(|e| invalid("url", format!("{url_text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            "url",
            format!("{url_text:?}: expected http(s)://host[:port]/path"),
        ));
    }
    let remote_timeout = duration_or(
        raw.remote_timeout.as_deref(),
        Duration::from_secs(30),
        "remote_timeout",
        index,
    )?;
    if remote_timeout.is_zero() {
        return Err(invalid(
            "remote_timeout",
            "must be positive: a zero timeout fails every request".into(),
        ));
    }
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, value) in raw.headers {
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                "headers",
                format!("{name} is a reserved header: it must not be changed"),
            ));
        }
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(&value).is_err()
        {
            return Err(invalid(
                "headers",
                format!("{name:?}: not a valid HTTP header name and value"),
            ));
        }
        headers.push((name, value));
    }
    let write_relabel_configs = match raw.write_relabel_configs {
        None | Some(serde_yaml_ng::Value::Null) => Vec::new(),
        Some(v) => {
            let text = serde_yaml_ng::to_string(&v)
                .map_err(|e| invalid("write_relabel_configs", e.to_string()))?;
            parse_relabel_configs(&text)
                .map_err(|e| invalid("write_relabel_configs", e.to_string()))?
        }
    };
    let auth = auth(
        index,
        raw.basic_auth,
        raw.authorization,
        raw.bearer_token,
        raw.bearer_token_file,
    )?;
    let tls = tls(index, raw.tls_config)?;
    let proxy_url = (!raw.proxy_url.is_empty()).then_some(raw.proxy_url);
    if let Some(p) = &proxy_url {
        reqwest::Proxy::all(p.as_str()).map_err(|e| invalid("proxy_url", format!("{p:?}: {e}")))?;
    }
    let queue = queue(index, raw.queue_config)?;
    let metadata = metadata(index, raw.metadata_config)?;
    let remote_name = if raw.name.is_empty() {
        short_hash(url.as_str())
    } else {
        raw.name.clone()
    };
    Ok(RemoteConfig {
        url,
        name: raw.name,
        remote_name,
        remote_timeout,
        headers,
        write_relabel_configs,
        send_exemplars: raw.send_exemplars,
        send_native_histograms: raw.send_native_histograms,
        auth,
        tls,
        proxy_url,
        follow_redirects: raw.follow_redirects.unwrap_or(true),
        enable_http2: raw.enable_http2.unwrap_or(true),
        queue,
        metadata,
    })
}

/// The checks of Prometheus' `HTTPClientConfig.Validate` that apply to the keys supported.
fn auth(
    index: usize,
    basic: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
    bearer_token: String,
    bearer_token_file: String,
) -> Result<Auth, RemoteWriteError> {
    let invalid = |key: &'static str, detail: &str| RemoteWriteError::Invalid {
        index,
        key,
        detail: detail.to_string(),
    };
    let has_bearer = !bearer_token.is_empty() || !bearer_token_file.is_empty();
    if !bearer_token.is_empty() && !bearer_token_file.is_empty() {
        return Err(invalid(
            "bearer_token",
            "at most one of bearer_token and bearer_token_file must be configured",
        ));
    }
    if basic.is_some() && has_bearer {
        return Err(invalid(
            "basic_auth",
            "at most one of basic_auth and bearer_token[_file] must be configured",
        ));
    }
    if authorization.is_some() && has_bearer {
        return Err(invalid(
            "authorization",
            "authorization is not compatible with bearer_token and bearer_token_file: use one",
        ));
    }
    if authorization.is_some() && basic.is_some() {
        return Err(invalid(
            "authorization",
            "at most one of basic_auth and authorization must be configured",
        ));
    }
    if let Some(b) = basic {
        if !b.password.is_empty() && !b.password_file.is_empty() {
            return Err(invalid(
                "basic_auth",
                "at most one of basic_auth.password and basic_auth.password_file must be configured",
            ));
        }
        let password = if b.password_file.is_empty() {
            Secret::Inline(b.password)
        } else {
            Secret::File(b.password_file)
        };
        return Ok(Auth::Basic {
            username: b.username,
            password,
        });
    }
    if let Some(a) = authorization {
        if a.kind.eq_ignore_ascii_case("basic") {
            return Err(invalid(
                "authorization",
                "authorization type cannot be set to \"basic\": use basic_auth instead",
            ));
        }
        if !a.credentials.is_empty() && !a.credentials_file.is_empty() {
            return Err(invalid(
                "authorization",
                "at most one of authorization.credentials and authorization.credentials_file must be configured",
            ));
        }
        let kind = if a.kind.is_empty() {
            "Bearer".to_string()
        } else {
            a.kind
        };
        let credentials = if a.credentials_file.is_empty() {
            Secret::Inline(a.credentials)
        } else {
            Secret::File(a.credentials_file)
        };
        return Ok(Auth::Header { kind, credentials });
    }
    if !bearer_token.is_empty() {
        return Ok(Auth::Header {
            kind: "Bearer".into(),
            credentials: Secret::Inline(bearer_token),
        });
    }
    if !bearer_token_file.is_empty() {
        return Ok(Auth::Header {
            kind: "Bearer".into(),
            credentials: Secret::File(bearer_token_file),
        });
    }
    Ok(Auth::None)
}

fn tls(index: usize, raw: Option<RawTls>) -> Result<TlsConfig, RemoteWriteError> {
    let Some(raw) = raw else {
        return Ok(TlsConfig::default());
    };
    let invalid =
        |key: &'static str, detail: String| RemoteWriteError::Invalid { index, key, detail };
    let pem = |inline: String, file: String, what: &str| match (inline.is_empty(), file.is_empty())
    {
        (true, true) => Ok(None),
        (false, true) => Ok(Some(Pem::Inline(inline))),
        (true, false) => Ok(Some(Pem::File(file))),
        (false, false) => Err(invalid(
            "tls_config",
            format!("at most one of {what} and {what}_file must be configured"),
        )),
    };
    let ca = pem(raw.ca, raw.ca_file, "ca")?;
    let cert = pem(raw.cert, raw.cert_file, "cert")?;
    let key = pem(raw.key, raw.key_file, "key")?;
    if cert.is_some() != key.is_some() {
        return Err(invalid(
            "tls_config",
            "a client certificate and its key must be given together (cert[_file] and key[_file])"
                .into(),
        ));
    }
    if !raw.server_name.is_empty() {
        return Err(RemoteWriteError::Unsupported {
            index,
            key: "tls_config.server_name",
        });
    }
    let min_version = match raw.min_version.as_str() {
        "" => None,
        "TLS12" | "TLS13" => Some(raw.min_version),
        "TLS10" | "TLS11" => {
            return Err(invalid(
                "tls_config",
                format!(
                    "min_version {}: Strata speaks TLS 1.2 and 1.3 only; use TLS12 or TLS13",
                    raw.min_version
                ),
            ));
        }
        other => {
            return Err(invalid(
                "tls_config",
                format!("unknown min_version {other:?}: expected TLS12 or TLS13"),
            ));
        }
    };
    Ok(TlsConfig {
        ca,
        cert,
        key,
        insecure_skip_verify: raw.insecure_skip_verify,
        min_version,
    })
}

fn queue(index: usize, raw: Option<RawQueue>) -> Result<QueueConfig, RemoteWriteError> {
    let d = QueueConfig::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let count = |v: Option<i64>, default: usize, key: &'static str| match v {
        None | Some(0) => Ok(default),
        Some(n) if n > 0 => Ok(n as usize),
        Some(n) => Err(RemoteWriteError::Invalid {
            index,
            key,
            detail: format!("{n} is negative: give a positive number or leave it out"),
        }),
    };
    let q = QueueConfig {
        capacity: count(raw.capacity, d.capacity, "queue_config.capacity")?,
        max_shards: count(raw.max_shards, d.max_shards, "queue_config.max_shards")?,
        min_shards: count(raw.min_shards, d.min_shards, "queue_config.min_shards")?,
        max_samples_per_send: count(
            raw.max_samples_per_send,
            d.max_samples_per_send,
            "queue_config.max_samples_per_send",
        )?,
        batch_send_deadline: duration_or(
            raw.batch_send_deadline.as_deref(),
            d.batch_send_deadline,
            "queue_config.batch_send_deadline",
            index,
        )?,
        min_backoff: duration_or(
            raw.min_backoff.as_deref(),
            d.min_backoff,
            "queue_config.min_backoff",
            index,
        )?,
        max_backoff: duration_or(
            raw.max_backoff.as_deref(),
            d.max_backoff,
            "queue_config.max_backoff",
            index,
        )?,
        retry_on_http_429: raw.retry_on_http_429.unwrap_or(false),
    };
    let invalid =
        |key: &'static str, detail: String| RemoteWriteError::Invalid { index, key, detail };
    if q.min_shards > q.max_shards {
        return Err(invalid(
            "queue_config.min_shards",
            format!(
                "min_shards {} is more than max_shards {}",
                q.min_shards, q.max_shards
            ),
        ));
    }
    if q.batch_send_deadline.is_zero() {
        return Err(invalid(
            "queue_config.batch_send_deadline",
            "must be positive".into(),
        ));
    }
    if q.min_backoff > q.max_backoff {
        return Err(invalid(
            "queue_config.min_backoff",
            format!(
                "min_backoff {:?} is more than max_backoff {:?}",
                q.min_backoff, q.max_backoff
            ),
        ));
    }
    Ok(q)
}

fn metadata(index: usize, raw: Option<RawMetadata>) -> Result<MetadataConfig, RemoteWriteError> {
    let d = MetadataConfig::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let max = match raw.max_samples_per_send {
        None | Some(0) => d.max_samples_per_send,
        Some(n) if n > 0 => n as usize,
        Some(n) => {
            return Err(RemoteWriteError::Invalid {
                index,
                key: "metadata_config.max_samples_per_send",
                detail: format!("{n} is negative"),
            });
        }
    };
    Ok(MetadataConfig {
        send: raw.send.unwrap_or(d.send),
        send_interval: duration_or(
            raw.send_interval.as_deref(),
            d.send_interval,
            "metadata_config.send_interval",
            index,
        )?,
        max_samples_per_send: max,
    })
}

fn duration_or(
    text: Option<&str>,
    default: Duration,
    key: &'static str,
    index: usize,
) -> Result<Duration, RemoteWriteError> {
    match text {
        None => Ok(default),
        Some(t) => parse_duration(t).ok_or_else(|| RemoteWriteError::Invalid {
            index,
            key,
            detail: format!(
                "{t:?} is not a duration: use Prometheus' form, units y w d h m s ms in that order, like 30s or 1m30s"
            ),
        }),
    }
}

/// Parses a Prometheus duration (`model.ParseDuration`): `0`, or one or more `<int><unit>`
/// with units `y w d h m s ms`, each at most once and largest first.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3600 * 1000),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ];
    let mut rest = text;
    let mut next_unit = 0;
    let mut total_ms: u64 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let pos = UNITS[next_unit..].iter().position(|(u, _)| *u == unit)? + next_unit;
        next_unit = pos + 1;
        total_ms = total_ms.checked_add(n.checked_mul(UNITS[pos].1)?)?;
    }
    Some(Duration::from_millis(total_ms))
}

/// Six hex digits of FNV-1a over `text`: the `remote_name` of an unnamed remote.
fn short_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:06x}", h & 0x00ff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> RemoteConfig {
        let mut c = RemoteWriteConfig::from_yaml(yaml).unwrap();
        assert_eq!(c.remotes.len(), 1);
        c.remotes.remove(0)
    }

    fn err(yaml: &str) -> String {
        RemoteWriteConfig::from_yaml(yaml).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_prometheus_2_42s() {
        let r = one("remote_write:\n  - url: http://127.0.0.1:9090/api/v1/write\n");
        assert_eq!(r.remote_timeout, Duration::from_secs(30));
        assert_eq!(r.queue, QueueConfig::default());
        assert_eq!(r.queue.capacity, 2500);
        assert_eq!(r.queue.max_shards, 200);
        assert_eq!(r.queue.min_shards, 1);
        assert_eq!(r.queue.max_samples_per_send, 500);
        assert_eq!(r.queue.batch_send_deadline, Duration::from_secs(5));
        assert_eq!(r.queue.min_backoff, Duration::from_millis(30));
        assert_eq!(r.queue.max_backoff, Duration::from_secs(5));
        assert!(!r.queue.retry_on_http_429);
        assert_eq!(r.metadata, MetadataConfig::default());
        assert!(r.follow_redirects && r.enable_http2);
        assert_eq!(r.auth, Auth::None);
        assert!(r.write_relabel_configs.is_empty());
        assert_eq!(r.remote_name.len(), 6);
        assert!(r.name.is_empty());
    }

    #[test]
    fn every_supported_key_is_read() {
        let r = one(r#"
global:
  scrape_interval: 15s
remote_write:
  - url: https://receiver.example:19291/api/v1/receive
    name: thanos-receiver
    remote_timeout: 1m30s
    headers:
      X-Scope-OrgID: tenant-a
    write_relabel_configs:
      - source_labels: [__name__]
        regex: "drop_.*"
        action: drop
    send_exemplars: true
    send_native_histograms: true
    basic_auth:
      username: u
      password_file: /etc/pw
    tls_config:
      ca: "-----BEGIN CERTIFICATE-----"
      insecure_skip_verify: true
      min_version: TLS13
    proxy_url: http://proxy:3128
    follow_redirects: false
    enable_http2: false
    queue_config:
      capacity: 100
      max_shards: 4
      min_shards: 2
      max_samples_per_send: 10
      batch_send_deadline: 250ms
      min_backoff: 10ms
      max_backoff: 1s
      retry_on_http_429: true
    metadata_config:
      send: false
      send_interval: 2m
      max_samples_per_send: 7
"#);
        assert_eq!(r.name, "thanos-receiver");
        assert_eq!(r.remote_name, "thanos-receiver");
        assert_eq!(r.remote_timeout, Duration::from_secs(90));
        assert_eq!(
            r.headers,
            vec![("X-Scope-OrgID".to_string(), "tenant-a".to_string())]
        );
        assert_eq!(r.write_relabel_configs.len(), 1);
        assert!(r.send_exemplars && r.send_native_histograms);
        assert_eq!(
            r.auth,
            Auth::Basic {
                username: "u".into(),
                password: Secret::File("/etc/pw".into())
            }
        );
        assert!(matches!(r.tls.ca, Some(Pem::Inline(_))));
        assert!(r.tls.insecure_skip_verify);
        assert_eq!(r.tls.min_version.as_deref(), Some("TLS13"));
        assert_eq!(r.proxy_url.as_deref(), Some("http://proxy:3128"));
        assert!(!r.follow_redirects && !r.enable_http2);
        assert_eq!(
            r.queue,
            QueueConfig {
                capacity: 100,
                max_shards: 4,
                min_shards: 2,
                max_samples_per_send: 10,
                batch_send_deadline: Duration::from_millis(250),
                min_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_secs(1),
                retry_on_http_429: true,
            }
        );
        assert_eq!(
            r.metadata,
            MetadataConfig {
                send: false,
                send_interval: Duration::from_secs(120),
                max_samples_per_send: 7
            }
        );
    }

    #[test]
    fn authorization_and_bearer_tokens() {
        let r = one("remote_write:\n- url: http://a/\n  authorization:\n    credentials: t\n");
        assert_eq!(
            r.auth,
            Auth::Header {
                kind: "Bearer".into(),
                credentials: Secret::Inline("t".into())
            }
        );
        let r = one(
            "remote_write:\n- url: http://a/\n  authorization:\n    type: Token\n    credentials_file: /f\n",
        );
        assert_eq!(
            r.auth,
            Auth::Header {
                kind: "Token".into(),
                credentials: Secret::File("/f".into())
            }
        );
        let r = one("remote_write:\n- url: http://a/\n  bearer_token_file: /t\n");
        assert_eq!(
            r.auth,
            Auth::Header {
                kind: "Bearer".into(),
                credentials: Secret::File("/t".into())
            }
        );
        let e = err(
            "remote_write:\n- url: http://a/\n  bearer_token: x\n  basic_auth:\n    username: u\n",
        );
        assert!(e.contains("basic_auth") && e.contains("at most one"), "{e}");
        let e = err("remote_write:\n- url: http://a/\n  authorization:\n    type: Basic\n");
        assert!(e.contains("use basic_auth"), "{e}");
    }

    #[test]
    fn unknown_and_unsupported_keys_are_named() {
        let e = err("remote_write:\n- url: http://a/\n  urll: x\n");
        assert!(e.contains("urll"), "{e}");
        let e = err("remote_write:\n- url: http://a/\n  queue_config:\n    capacityy: 1\n");
        assert!(e.contains("capacityy"), "{e}");
        let e = err("remote_writes:\n- url: http://a/\n");
        assert!(e.contains("remote_writes"), "{e}");
        for key in ["sigv4", "oauth2", "azuread"] {
            let e = err(&format!(
                "remote_write:\n- url: http://a/\n  {key}:\n    region: x\n"
            ));
            assert!(
                e.contains(&format!("remote_write[0].{key} is not supported")),
                "{e}"
            );
        }
        let e = err("remote_write:\n- url: http://a/\n  tls_config:\n    server_name: x\n");
        assert!(e.contains("tls_config.server_name"), "{e}");
    }

    #[test]
    fn bad_values_say_which_key() {
        let cases = [
            ("remote_write:\n- name: x\n", "url"),
            ("remote_write:\n- url: ftp://a/\n", "url"),
            (
                "remote_write:\n- url: http://a/\n  remote_timeout: 30\n",
                "remote_timeout",
            ),
            (
                "remote_write:\n- url: http://a/\n  remote_timeout: 1x\n",
                "remote_timeout",
            ),
            (
                "remote_write:\n- url: http://a/\n  queue_config:\n    min_shards: 5\n    max_shards: 2\n",
                "queue_config.min_shards",
            ),
            (
                "remote_write:\n- url: http://a/\n  queue_config:\n    capacity: -1\n",
                "queue_config.capacity",
            ),
            (
                "remote_write:\n- url: http://a/\n  queue_config:\n    min_backoff: 10s\n    max_backoff: 1s\n",
                "queue_config.min_backoff",
            ),
            (
                "remote_write:\n- url: http://a/\n  headers:\n    Authorization: x\n",
                "reserved header",
            ),
            (
                "remote_write:\n- url: http://a/\n  write_relabel_configs:\n  - action: explode\n",
                "write_relabel_configs",
            ),
            (
                "remote_write:\n- url: http://a/\n  tls_config:\n    cert_file: /c\n",
                "tls_config",
            ),
            (
                "remote_write:\n- url: http://a/\n  name: x\n- url: http://b/\n  name: x\n",
                "multiple remote write configs",
            ),
            ("remote_write: [", "--remote-write.config"),
        ];
        for (yaml, want) in cases {
            let e = err(yaml);
            assert!(e.contains(want), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn empty_documents_configure_nothing() {
        assert!(RemoteWriteConfig::from_yaml("").unwrap().remotes.is_empty());
        assert!(
            RemoteWriteConfig::from_yaml("global: {}\n")
                .unwrap()
                .remotes
                .is_empty()
        );
        assert!(
            RemoteWriteConfig::from_yaml("remote_write: []\n")
                .unwrap()
                .remotes
                .is_empty()
        );
    }

    #[test]
    fn durations_parse_like_prometheus() {
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("1d2h"), Some(Duration::from_secs(26 * 3600)));
        for bad in ["", "s", "30", "1s1m", "1s1s", "-1s", "1.5s", "1 s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
