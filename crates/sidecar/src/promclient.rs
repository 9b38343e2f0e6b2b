//! The sidecar's HTTP client for its Prometheus: configuration (`--prometheus.http-client`),
//! and every Prometheus endpoint the sidecar uses.
//!
//! | endpoint | used for |
//! |---|---|
//! | `GET /api/v1/status/config` | external labels (`global.external_labels`), also the heartbeat |
//! | `GET /api/v1/status/flags` | `--storage.tsdb.{min,max}-block-duration` check before shipping |
//! | `GET /metrics` | `prometheus_tsdb_lowest_timestamp`, the advertised min time |
//! | `POST /api/v1/read` | Series (remote read, streamed chunks or samples) |
//! | `POST /api/v1/series` | Series with `skip_chunks` |
//! | `POST /api/v1/labels`, `GET /api/v1/label/<name>/values` | LabelNames, LabelValues |
//! | `GET /api/v1/metadata` | MetricMetadata (the Metadata API) |
//! | `GET /api/v1/rules` | Rules (the Rules API) |
//! | `POST /api/v1/query_exemplars` | Exemplars (the Exemplars API) |
//! | `GET /api/v1/targets` | Targets (the Targets API) |
//! | `POST /-/reload` | the reloader |
//!
//! Secrets given as files (`bearer_token_file`, `basic_auth.password_file`) are read on every
//! request, as Prometheus' own client does, so rotated credentials are picked up without a
//! restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use prost::Message;
use reqwest::Url;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use strata_model::{Label, Labels, MatchOp, Matcher};
use strata_runtime::client_tls::{ClientTls, ClientTlsError, apply_client_tls};

use crate::error::PromError;
use strata_prompb::{
    ChunkedReadResponse, FrameError, Query, ReadRequest, ReadResponse, ResponseType,
    decode_samples_response, take_frame,
};
use strata_storepb::thanos::{ExemplarData, RuleGroup, TargetDiscovery};

/// The User-Agent of every request.
pub const USER_AGENT: &str = concat!("Strata/", env!("CARGO_PKG_VERSION"));

/// Largest decompressed SAMPLES response accepted; the fallback holds it all in memory.
const MAX_SAMPLES_RESPONSE_BYTES: usize = 2 << 30;

/// How much of an error body is kept for the message.
const ERROR_BODY_BYTES: usize = 1024;

/// `--prometheus.http-client[-file]`: Thanos' `HTTPClientConfig` YAML.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpClientConfig {
    pub basic_auth: BasicAuth,
    pub bearer_token: String,
    pub bearer_token_file: String,
    pub proxy_url: String,
    pub tls_config: TlsConfig,
    pub transport_config: TransportConfig,
}

/// `basic_auth`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
    pub password_file: String,
}

/// `tls_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub server_name: String,
    pub insecure_skip_verify: bool,
}

/// `transport_config`: Go `http.Transport` settings. Durations are Go `time.Duration` values
/// in nanoseconds, as Thanos reads them. The ones with an equivalent here are applied
/// (`max_idle_conns_per_host`, `idle_conn_timeout`, `dialer_timeout`,
/// `response_header_timeout` as the read timeout); the others tune Go's transport and have no
/// effect.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    pub max_idle_conns: Option<i64>,
    pub max_idle_conns_per_host: Option<i64>,
    pub idle_conn_timeout: Option<i64>,
    pub response_header_timeout: Option<i64>,
    pub expect_continue_timeout: Option<i64>,
    pub max_conns_per_host: Option<i64>,
    pub disable_compression: Option<bool>,
    pub tls_handshake_timeout: Option<i64>,
    pub dialer_timeout: Option<i64>,
}

impl HttpClientConfig {
    /// Parses the YAML; unknown keys are errors naming the key.
    pub fn from_yaml(text: &str) -> Result<Self, PromError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| PromError::ClientConfig(e.to_string()))
    }
}

fn nanos(v: Option<i64>, key: &str) -> Result<Option<Duration>, PromError> {
    match v {
        None | Some(0) => Ok(None),
        Some(n) if n > 0 => Ok(Some(Duration::from_nanos(n as u64))),
        Some(n) => Err(PromError::ClientConfig(format!(
            "transport_config.{key} is {n}: a duration in nanoseconds cannot be negative"
        ))),
    }
}

fn read_file(what: &'static str, path: &str) -> Result<Vec<u8>, PromError> {
    std::fs::read(path).map_err(|source| PromError::ClientFile {
        what,
        path: PathBuf::from(path),
        source,
    })
}

/// How each request authenticates.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Bearer(String),
    BearerFile(String),
    Basic {
        username: String,
        password: String,
        password_file: String,
    },
}

/// A client for one Prometheus server.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    accepted: Vec<ResponseType>,
}

/// What a remote read answered: a stream of chunk frames (Prometheus ≥ 2.13), or every sample
/// at once.
#[derive(Debug)]
pub enum ReadAnswer {
    Streamed(ChunkedStream),
    Samples(ReadResponse),
}

/// The JSON envelope of Prometheus' HTTP API.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(rename = "errorType", default)]
    error_type: String,
    #[serde(default)]
    error: String,
}

/// One metadata entry of a metric, as `/api/v1/metadata` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MetricMeta {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub help: String,
    #[serde(default)]
    pub unit: String,
}

#[derive(Debug, Deserialize)]
struct ConfigData {
    yaml: String,
}

#[derive(Debug, Default, Deserialize)]
struct PromConfig {
    #[serde(default)]
    global: Option<PromGlobal>,
}

#[derive(Debug, Default, Deserialize)]
struct PromGlobal {
    #[serde(default)]
    external_labels: Option<BTreeMap<String, serde_yaml_ng::Value>>,
}

impl PrometheusClient {
    /// A client for the Prometheus at `url` (`--prometheus.url`) with `config`.
    pub fn new(url: &str, config: &HttpClientConfig) -> Result<Self, PromError> {
        let base = Url::parse(url).map_err(|e| PromError::BadUrl {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(PromError::BadUrl {
                url: url.to_string(),
                detail: "expected http://host:port or https://host:port".into(),
            });
        }
        let mut b = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .no_proxy()
            .connect_timeout(Duration::from_secs(5));
        let t = &config.transport_config;
        if let Some(n) = t.max_idle_conns_per_host.filter(|n| *n > 0) {
            b = b.pool_max_idle_per_host(n as usize);
        }
        if let Some(d) = nanos(t.idle_conn_timeout, "idle_conn_timeout")? {
            b = b.pool_idle_timeout(d);
        }
        if let Some(d) = nanos(t.dialer_timeout, "dialer_timeout")? {
            b = b.connect_timeout(d);
        }
        if let Some(d) = nanos(t.response_header_timeout, "response_header_timeout")? {
            b = b.read_timeout(d);
        }
        nanos(t.expect_continue_timeout, "expect_continue_timeout")?;
        nanos(t.tls_handshake_timeout, "tls_handshake_timeout")?;
        if !config.proxy_url.is_empty() {
            let proxy = reqwest::Proxy::all(&config.proxy_url).map_err(|e| {
                PromError::ClientConfig(format!("proxy_url {:?}: {e}", config.proxy_url))
            })?;
            b = b.proxy(proxy);
        }
        let tls = &config.tls_config;
        if !tls.server_name.is_empty() {
            return Err(PromError::ClientConfig(
                "tls_config.server_name is not supported yet: connect with the name the \
                 certificate is issued for in --prometheus.url"
                    .into(),
            ));
        }
        let ca = if tls.ca_file.is_empty() {
            None
        } else {
            Some(read_file("tls_config.ca_file", &tls.ca_file)?)
        };
        let (cert, key) = match (tls.cert_file.is_empty(), tls.key_file.is_empty()) {
            (true, true) => (None, None),
            (false, false) => (
                Some(read_file("tls_config.cert_file", &tls.cert_file)?),
                Some(read_file("tls_config.key_file", &tls.key_file)?),
            ),
            _ => {
                return Err(PromError::ClientConfig(
                    "tls_config.cert_file and tls_config.key_file must be given together".into(),
                ));
            }
        };
        let b = apply_client_tls(
            b,
            &ClientTls {
                ca_pem: ca.as_deref(),
                cert_pem: cert.as_deref(),
                key_pem: key.as_deref(),
                insecure_skip_verify: tls.insecure_skip_verify,
            },
        )
        .map_err(|e| {
            PromError::ClientConfig(match e {
                ClientTlsError::NoCa => {
                    format!(
                        "tls_config.ca_file {} holds no PEM certificate",
                        tls.ca_file
                    )
                }
                ClientTlsError::BadCa(e) => format!("tls_config.ca_file {}: {e}", tls.ca_file),
                e => format!(
                    "tls_config.cert_file {} / key_file {}: {e}",
                    tls.cert_file, tls.key_file
                ),
            })
        })?;
        let ba = &config.basic_auth;
        let has_basic =
            !ba.username.is_empty() || !ba.password.is_empty() || !ba.password_file.is_empty();
        let has_bearer = !config.bearer_token.is_empty() || !config.bearer_token_file.is_empty();
        if has_basic && has_bearer {
            return Err(PromError::ClientConfig(
                "at most one of basic_auth and bearer_token[_file] must be configured".into(),
            ));
        }
        if !config.bearer_token.is_empty() && !config.bearer_token_file.is_empty() {
            return Err(PromError::ClientConfig(
                "at most one of bearer_token and bearer_token_file must be configured".into(),
            ));
        }
        if !ba.password.is_empty() && !ba.password_file.is_empty() {
            return Err(PromError::ClientConfig(
                "at most one of basic_auth.password and basic_auth.password_file must be configured"
                    .into(),
            ));
        }
        let auth = if has_basic {
            Auth::Basic {
                username: ba.username.clone(),
                password: ba.password.clone(),
                password_file: ba.password_file.clone(),
            }
        } else if !config.bearer_token.is_empty() {
            Auth::Bearer(config.bearer_token.clone())
        } else if !config.bearer_token_file.is_empty() {
            // Fail at start-up, not on the first request, when the file is missing.
            read_file("bearer_token_file", &config.bearer_token_file)?;
            Auth::BearerFile(config.bearer_token_file.clone())
        } else {
            Auth::None
        };
        let http = b
            .build()
            .map_err(|e| PromError::ClientConfig(format!("building the HTTP client: {e}")))?;
        Ok(PrometheusClient {
            http,
            base,
            auth,
            accepted: vec![ResponseType::StreamedXorChunks, ResponseType::Samples],
        })
    }

    /// The remote read response types offered, most preferred first (default: streamed
    /// chunks, then samples). Offering only SAMPLES exercises the fallback a Prometheus older
    /// than 2.13 forces, and measures its cost.
    pub fn with_response_types(mut self, accepted: Vec<ResponseType>) -> Self {
        self.accepted = accepted;
        self
    }

    /// The Prometheus base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `<base>/<path>`, keeping a path prefix of the base (`http://h/prom` → `/prom/api/…`).
    pub fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        let joined = format!(
            "{}/{}",
            u.path().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        u.set_path(&joined);
        u.set_query(None);
        u
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: Url,
    ) -> Result<reqwest::RequestBuilder, PromError> {
        let rb = self.http.request(method, url);
        Ok(match &self.auth {
            Auth::None => rb,
            Auth::Bearer(t) => rb.bearer_auth(t),
            Auth::BearerFile(f) => {
                let token = read_file("bearer_token_file", f)?;
                rb.bearer_auth(String::from_utf8_lossy(&token).trim())
            }
            Auth::Basic {
                username,
                password,
                password_file,
            } => {
                let pw = if password_file.is_empty() {
                    password.clone()
                } else {
                    String::from_utf8_lossy(&read_file("basic_auth.password_file", password_file)?)
                        .trim()
                        .to_string()
                };
                rb.basic_auth(username, Some(pw))
            }
        })
    }

    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<reqwest::Response, PromError> {
        let resp = rb.send().await.map_err(|source| PromError::Request {
            url: url.to_string(),
            source,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        // Prometheus' API explains itself in a JSON envelope; other endpoints in plain text.
        if let Ok(env) = serde_json::from_slice::<Envelope<serde_json::Value>>(&body)
            && env.status == "error"
        {
            return Err(PromError::Api {
                url: url.to_string(),
                error_type: env.error_type,
                error: env.error,
            });
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES)])
            .trim()
            .to_string();
        Err(PromError::Status {
            url: url.to_string(),
            status,
            body: text,
        })
    }

    async fn api<T: serde::de::DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
        url: Url,
        what: &'static str,
    ) -> Result<T, PromError> {
        let resp = self.send(rb, &url).await?;
        let body = resp.bytes().await.map_err(|source| PromError::Request {
            url: url.to_string(),
            source,
        })?;
        let env: Envelope<T> = serde_json::from_slice(&body).map_err(|e| PromError::Decode {
            url: url.to_string(),
            what,
            detail: e.to_string(),
        })?;
        if env.status != "success" {
            return Err(PromError::Api {
                url: url.to_string(),
                error_type: env.error_type,
                error: env.error,
            });
        }
        env.data.ok_or_else(|| PromError::Decode {
            url: url.to_string(),
            what,
            detail: "no \"data\" in a successful answer".into(),
        })
    }

    /// Prometheus' external labels (`global.external_labels` of its loaded configuration).
    /// An empty set is returned as is; the caller decides what that means.
    pub async fn external_labels(&self, timeout: Duration) -> Result<Labels, PromError> {
        let url = self.url("/api/v1/status/config");
        let rb = self
            .request(reqwest::Method::GET, url.clone())?
            .timeout(timeout);
        let data: ConfigData = self.api(rb, url.clone(), "the configuration").await?;
        parse_external_labels(&data.yaml).map_err(|detail| PromError::Decode {
            url: url.to_string(),
            what: "global.external_labels of the configuration",
            detail,
        })
    }

    /// Prometheus' command-line flags.
    pub async fn flags(&self, timeout: Duration) -> Result<BTreeMap<String, String>, PromError> {
        let url = self.url("/api/v1/status/flags");
        let rb = self
            .request(reqwest::Method::GET, url.clone())?
            .timeout(timeout);
        self.api(rb, url, "the flags").await
    }

    /// The lowest timestamp Prometheus holds (`prometheus_tsdb_lowest_timestamp`), or `None`
    /// when its database is empty (Prometheus then reports `MaxInt64`).
    pub async fn lowest_timestamp(&self, timeout: Duration) -> Result<Option<i64>, PromError> {
        let url = self.url("/metrics");
        let rb = self
            .request(reqwest::Method::GET, url.clone())?
            .timeout(timeout);
        let resp = self.send(rb, &url).await?;
        let text = resp.text().await.map_err(|source| PromError::Request {
            url: url.to_string(),
            source,
        })?;
        parse_lowest_timestamp(&text).map_err(|detail| PromError::Decode {
            url: url.to_string(),
            what: "prometheus_tsdb_lowest_timestamp",
            detail,
        })
    }

    /// Sends one remote read query, accepting streamed chunks first and samples second.
    pub async fn remote_read(&self, query: Query) -> Result<ReadAnswer, PromError> {
        let url = self.url("/api/v1/read");
        let req = ReadRequest {
            queries: vec![query],
            accepted_response_types: self.accepted.iter().map(|t| *t as i32).collect(),
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .map_err(|e| PromError::Decode {
                url: url.to_string(),
                what: "the snappy-compressed read request",
                detail: e.to_string(),
            })?;
        let rb = self
            .request(reqwest::Method::POST, url.clone())?
            .header(CONTENT_ENCODING, "snappy")
            .header("Accept-Encoding", "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body);
        let resp = self.send(rb, &url).await?;
        let ctype = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if ctype
            .starts_with("application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse")
        {
            return Ok(ReadAnswer::Streamed(ChunkedStream {
                resp,
                buf: BytesMut::new(),
                url: url.to_string(),
                done: false,
            }));
        }
        if !ctype.starts_with("application/x-protobuf") {
            return Err(PromError::Decode {
                url: url.to_string(),
                what: "the remote read answer",
                detail: format!("unsupported Content-Type {ctype:?}"),
            });
        }
        let compressed = resp.bytes().await.map_err(|source| PromError::Request {
            url: url.to_string(),
            source,
        })?;
        let decode = |detail: String| PromError::Decode {
            url: url.to_string(),
            what: "the SAMPLES remote read answer",
            detail,
        };
        let answer =
            decode_samples_response(&compressed, MAX_SAMPLES_RESPONSE_BYTES).map_err(decode)?;
        if answer.results.len() != 1 {
            return Err(decode(format!(
                "{} results for 1 query",
                answer.results.len()
            )));
        }
        Ok(ReadAnswer::Samples(answer))
    }

    /// Series matching `selector` with data in `[start, end]` (ms), from `/api/v1/series`.
    pub async fn series(
        &self,
        selector: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, PromError> {
        let url = self.url("/api/v1/series");
        let body = form(&[
            ("match[]", selector),
            ("start", &format_time(start)),
            ("end", &format_time(end)),
        ]);
        let rb = self
            .request(reqwest::Method::POST, url.clone())?
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(body);
        let data: Vec<BTreeMap<String, String>> = self.api(rb, url, "the series").await?;
        Ok(data
            .into_iter()
            .map(|m| Labels::new(m.into_iter().map(|(n, v)| Label::new(n, v))))
            .collect())
    }

    /// Label names of the series matching `selector` (all series when `None`) in
    /// `[start, end]`.
    pub async fn label_names(
        &self,
        selector: Option<&str>,
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, PromError> {
        let url = self.url("/api/v1/labels");
        let (s, e) = (format_time(start), format_time(end));
        let mut pairs = vec![("start", s.as_str()), ("end", e.as_str())];
        if let Some(sel) = selector {
            pairs.push(("match[]", sel));
        }
        let rb = self
            .request(reqwest::Method::POST, url.clone())?
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(form(&pairs));
        self.api(rb, url, "the label names").await
    }

    /// The metric metadata Prometheus keeps from its scrapes (`/api/v1/metadata`): of
    /// `metric` only when it is not empty, of at most `limit` metrics when `limit` is not
    /// negative (Prometheus' own meaning of its `limit` parameter).
    pub async fn metric_metadata(
        &self,
        metric: &str,
        limit: i32,
    ) -> Result<BTreeMap<String, Vec<MetricMeta>>, PromError> {
        let mut url = self.url("/api/v1/metadata");
        {
            let mut q = url.query_pairs_mut();
            if !metric.is_empty() {
                q.append_pair("metric", metric);
            }
            if limit >= 0 {
                q.append_pair("limit", &limit.to_string());
            }
        }
        let rb = self.request(reqwest::Method::GET, url.clone())?;
        self.api(rb, url, "the metric metadata").await
    }

    /// Prometheus' rule groups (`/api/v1/rules`), of one type when `kind` is `alert` or
    /// `record`, as the Rules API carries them.
    pub async fn rules(&self, kind: Option<&str>) -> Result<Vec<RuleGroup>, PromError> {
        let mut url = self.url("/api/v1/rules");
        if let Some(k) = kind {
            url.query_pairs_mut().append_pair("type", k);
        }
        let rb = self.request(reqwest::Method::GET, url.clone())?;
        let data: crate::rules::RulesData = self.api(rb, url.clone(), "the rules").await?;
        data.into_groups().map_err(|detail| PromError::Decode {
            url: url.to_string(),
            what: "the rules",
            detail,
        })
    }

    /// The exemplars of the series `query` selects in `[start, end]` (ms), each series'
    /// labels extended with `ext`.
    pub async fn exemplars(
        &self,
        query: &str,
        start: i64,
        end: i64,
        ext: &Labels,
    ) -> Result<Vec<ExemplarData>, PromError> {
        let url = self.url("/api/v1/query_exemplars");
        let (s, e) = (format_time(start), format_time(end));
        let rb = self
            .request(reqwest::Method::POST, url.clone())?
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(form(&[("query", query), ("start", &s), ("end", &e)]));
        let data: Vec<crate::exemplars::SeriesExemplarsJson> =
            self.api(rb, url.clone(), "the exemplars").await?;
        crate::exemplars::convert(data, ext).map_err(|detail| PromError::Decode {
            url: url.to_string(),
            what: "the exemplars",
            detail,
        })
    }

    /// Prometheus' scrape targets (`/api/v1/targets`), of one state when `state` is `active`
    /// or `dropped`, label sets extended with `ext`.
    pub async fn targets(
        &self,
        state: Option<&str>,
        ext: &Labels,
    ) -> Result<TargetDiscovery, PromError> {
        let mut url = self.url("/api/v1/targets");
        if let Some(s) = state {
            url.query_pairs_mut().append_pair("state", s);
        }
        let rb = self.request(reqwest::Method::GET, url.clone())?;
        let data: crate::targets::TargetsData = self.api(rb, url.clone(), "the targets").await?;
        data.convert(ext).map_err(|detail| PromError::Decode {
            url: url.to_string(),
            what: "the targets",
            detail,
        })
    }

    /// Values of label `name` over the series matching `selector` (all when `None`) in
    /// `[start, end]`.
    pub async fn label_values(
        &self,
        name: &str,
        selector: Option<&str>,
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, PromError> {
        let mut url = self.url("/api/v1/label");
        url.path_segments_mut()
            .map_err(|()| PromError::BadUrl {
                url: self.base.to_string(),
                detail: "cannot be a base URL".into(),
            })?
            .push(name)
            .push("values");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("start", &format_time(start));
            q.append_pair("end", &format_time(end));
            if let Some(sel) = selector {
                q.append_pair("match[]", sel);
            }
        }
        let rb = self.request(reqwest::Method::GET, url.clone())?;
        self.api(rb, url, "the label values").await
    }

    /// `POST /-/reload`: Prometheus re-reads its configuration and rules. Needs Prometheus'
    /// `--web.enable-lifecycle`.
    pub async fn reload(&self, timeout: Duration) -> Result<(), PromError> {
        let url = self.url("/-/reload");
        let rb = self
            .request(reqwest::Method::POST, url.clone())?
            .timeout(timeout);
        match self.send(rb, &url).await {
            Ok(_) => Ok(()),
            Err(PromError::Status { url, status, body })
                if status == 403 || status == 404 || status == 405 =>
            {
                Err(PromError::Status {
                    url,
                    status,
                    body: format!("{body} (is Prometheus running with --web.enable-lifecycle?)"),
                })
            }
            Err(e) => Err(e),
        }
    }
}

/// A form body (`application/x-www-form-urlencoded`).
fn form(pairs: &[(&str, &str)]) -> String {
    let mut u = Url::parse("http://form.invalid/").expect("a constant URL parses");
    u.query_pairs_mut().extend_pairs(pairs.iter().copied());
    u.query().unwrap_or_default().to_string()
}

/// A millisecond timestamp as Prometheus' API parses it (float seconds, exact to the ms),
/// clamped to years 0–9999 so that Go's time conversions stay exact.
pub fn format_time(ms: i64) -> String {
    let ms = ms.clamp(
        strata_model::timestamp::MIN_TIME_MS,
        strata_model::timestamp::MAX_TIME_MS,
    );
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// `global.external_labels` from Prometheus' configuration YAML.
pub fn parse_external_labels(yaml: &str) -> Result<Labels, String> {
    let cfg: PromConfig = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
    let Some(map) = cfg.global.and_then(|g| g.external_labels) else {
        return Ok(Labels::empty());
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, v) in map {
        let value = match v {
            serde_yaml_ng::Value::String(s) => s,
            serde_yaml_ng::Value::Number(n) => n.to_string(),
            serde_yaml_ng::Value::Bool(b) => b.to_string(),
            serde_yaml_ng::Value::Null => String::new(),
            other => {
                return Err(format!(
                    "external label {name:?} has a non-scalar value {other:?}"
                ));
            }
        };
        out.push(Label::new(name, value));
    }
    Ok(Labels::new(out))
}

/// `prometheus_tsdb_lowest_timestamp` from Prometheus' `/metrics` text.
pub fn parse_lowest_timestamp(text: &str) -> Result<Option<i64>, String> {
    const NAME: &str = "prometheus_tsdb_lowest_timestamp";
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(NAME) else {
            continue;
        };
        if !rest.starts_with([' ', '{']) {
            continue;
        }
        let value = rest
            .rsplit_once('}')
            .map_or(rest, |(_, v)| v)
            .split_whitespace()
            .next()
            .ok_or_else(|| format!("no value in {line:?}"))?;
        let v: f64 = value
            .parse()
            .map_err(|_| format!("bad value {value:?} in {line:?}"))?;
        // An empty database reports MaxInt64 (or a value near it after float rounding).
        if !v.is_finite() || v >= 9.0e18 {
            return Ok(None);
        }
        return Ok(Some(v.round() as i64));
    }
    Err(format!("{NAME} not found in the metrics"))
}

/// A PromQL string literal: double-quoted, with `\`, `"` and control characters escaped.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A PromQL series selector (`{a="b",c=~"d"}`) for Prometheus' HTTP API. Prometheus refuses
/// selectors whose every matcher matches the empty string, so such a set (or an empty one)
/// gets `__name__=~".+"` added: every stored series has a name, so the answer is the same.
pub fn selector(matchers: &[Matcher]) -> String {
    let mut out = String::from("{");
    let mut first = true;
    for m in matchers {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(m.name());
        out.push_str(m.op().as_str());
        quote(m.value(), &mut out);
    }
    if matchers.iter().all(Matcher::matches_empty) {
        if !first {
            out.push(',');
        }
        out.push_str("__name__=~\".+\"");
    }
    out.push('}');
    out
}

/// The remote read matcher type of a matcher operator.
pub fn matcher_type(op: MatchOp) -> crate::prompb::MatcherType {
    match op {
        MatchOp::Equal => crate::prompb::MatcherType::Eq,
        MatchOp::NotEqual => crate::prompb::MatcherType::Neq,
        MatchOp::RegexMatch => crate::prompb::MatcherType::Re,
        MatchOp::RegexNoMatch => crate::prompb::MatcherType::Nre,
    }
}

/// The body of a STREAMED_XOR_CHUNKS answer, read frame by frame as it arrives.
#[derive(Debug)]
pub struct ChunkedStream {
    resp: reqwest::Response,
    buf: BytesMut,
    url: String,
    done: bool,
}

impl ChunkedStream {
    /// The next frame, or `None` at the end of the stream.
    pub async fn next_frame(&mut self) -> Result<Option<ChunkedReadResponse>, PromError> {
        let frame_err = |url: &str, e: FrameError| PromError::Decode {
            url: url.to_string(),
            what: "the streamed remote read answer",
            detail: e.to_string(),
        };
        loop {
            if let Some(msg) = take_frame(&mut self.buf).map_err(|e| frame_err(&self.url, e))? {
                return ChunkedReadResponse::decode(msg)
                    .map(Some)
                    .map_err(|e| PromError::Decode {
                        url: self.url.clone(),
                        what: "a ChunkedReadResponse frame",
                        detail: e.to_string(),
                    });
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(frame_err(&self.url, FrameError::Truncated(self.buf.len())));
            }
            match self.resp.chunk().await {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) => self.done = true,
                Err(source) => {
                    return Err(PromError::Request {
                        url: self.url.clone(),
                        source,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_labels_from_the_config_yaml() {
        let yaml = "global:\n  scrape_interval: 1m\n  external_labels:\n    cluster: eu1\n    replica: \"0\"\n    shard: 3\n";
        assert_eq!(
            parse_external_labels(yaml).unwrap(),
            Labels::from_pairs(&[("cluster", "eu1"), ("replica", "0"), ("shard", "3")])
        );
        assert!(
            parse_external_labels("global:\n  scrape_interval: 1m\n")
                .unwrap()
                .is_empty()
        );
        assert!(
            parse_external_labels("scrape_configs: []\n")
                .unwrap()
                .is_empty()
        );
        assert!(parse_external_labels("global:\n  external_labels:\n    a: [1]\n").is_err());
    }

    #[test]
    fn lowest_timestamp_from_metrics_text() {
        let text = "# HELP prometheus_tsdb_lowest_timestamp Lowest timestamp value.\n\
                    # TYPE prometheus_tsdb_lowest_timestamp gauge\n\
                    prometheus_tsdb_lowest_timestamp 1.700000123e+12\n\
                    prometheus_tsdb_lowest_timestamp_seconds 1.700000123e+09\n";
        assert_eq!(
            parse_lowest_timestamp(text).unwrap(),
            Some(1_700_000_123_000)
        );
        let empty = "prometheus_tsdb_lowest_timestamp_seconds 9.223372036854776e+15\n\
                     prometheus_tsdb_lowest_timestamp 9.223372036854776e+18\n";
        assert_eq!(parse_lowest_timestamp(empty).unwrap(), None);
        assert!(parse_lowest_timestamp("up 1\n").is_err());
    }

    #[test]
    fn selectors_escape_values_and_never_match_only_empty() {
        let ms = vec![
            Matcher::equal("job", "a\"b\\c"),
            Matcher::new(MatchOp::RegexMatch, "pod", "p.\\d+").unwrap(),
        ];
        assert_eq!(selector(&ms), r#"{job="a\"b\\c",pod=~"p.\\d+"}"#);
        assert_eq!(selector(&[]), r#"{__name__=~".+"}"#);
        assert_eq!(
            selector(&[Matcher::equal("x", "")]),
            r#"{x="",__name__=~".+"}"#
        );
    }

    #[test]
    fn times_are_float_seconds_exact_to_the_millisecond() {
        assert_eq!(format_time(1_700_000_123_004), "1700000123.004");
        assert_eq!(format_time(0), "0.000");
        assert_eq!(format_time(-1), "-0.001");
        assert_eq!(format_time(-1500), "-1.500");
        assert_eq!(format_time(i64::MAX), "253402300799.000");
    }

    #[test]
    fn client_config_is_validated() {
        let cfg =
            HttpClientConfig::from_yaml("bearer_token: t\nbasic_auth:\n  username: u\n").unwrap();
        let err = PrometheusClient::new("http://127.0.0.1:9090", &cfg).unwrap_err();
        assert!(
            err.to_string().contains("at most one of basic_auth"),
            "{err}"
        );
        let err = HttpClientConfig::from_yaml("bearer_tokn: t\n").unwrap_err();
        assert!(err.to_string().contains("bearer_tokn"), "{err}");
        let err =
            PrometheusClient::new("localhost:9090", &HttpClientConfig::default()).unwrap_err();
        assert!(err.to_string().contains("--prometheus.url"), "{err}");
        let c = PrometheusClient::new("http://h:9090/prom/", &HttpClientConfig::default()).unwrap();
        assert_eq!(
            c.url("/api/v1/read").as_str(),
            "http://h:9090/prom/api/v1/read"
        );
    }
}
