//! `--tracing.config`: spans of every component exported over OTLP, with the trace context
//! carried from component to component, so that one Grafana query is one trace from the
//! querier's HTTP handler down to the store gateway's block reads.
//!
//! **Configuration.** Thanos' YAML, read strictly: `type: OTLP` with its `config` block
//! (`client_type: grpc|http`, required as in Thanos; `endpoint`, default `localhost:4317` or
//! `localhost:4318`; `insecure`, `url_path`, `timeout`, `compression: gzip`, `headers`,
//! `tls_config`, `retry_config`, `reconnection_period`, `service_name`,
//! `resource_attributes`, `sampler_type`, `sampler_param`). Other types (`JAEGER`, `GOOGLE_CLOUD`/`STACKDRIVER`,
//! `ELASTIC_APM`, `LIGHTSTEP`) speak protocols Strata does not implement: they are checked for
//! being YAML and reported at start-up as not exported (Jaeger and most vendors take OTLP).
//!
//! **Spans.** `tracing` spans become OpenTelemetry spans through `tracing-opentelemetry`
//! (the logging set-up adds the layer [`Tracing::layer`] gives). The servers open one span per
//! HTTP request ([`http_span`]) and per gRPC call (`strata-storepb`), whose parent is the
//! caller's, read from `traceparent` (W3C trace context, what Thanos' OTLP tracer propagates)
//! or `uber-trace-id` (Jaeger's, what Thanos' Jaeger tracer propagated); clients write
//! `traceparent` into every call ([`inject_current`]).
//!
//! **Sampling.** `sampler_type` as Thanos reads it: `alwayssample`, `neversample`,
//! `traceidratiobased` (`sampler_param` the ratio), each following a sampled parent; empty,
//! unknown or unparsable settings sample everything (logged). An HTTP request with the
//! header `X-Thanos-Force-Tracing` is sampled whatever the sampler says, and a sampled HTTP
//! request's response carries `X-Thanos-Trace-Id`.
//!
//! Differences from Thanos, none of which changes a working configuration: `tls_config`
//! applies to `client_type: grpc` too (Thanos uses it for HTTP only), and `retry_config` is
//! checked but the exporter's own retries apply (Thanos' never switched retries on).
//!
//! Without the flag nothing of this is installed: no layer, and [`inject_current`] and
//! [`http_span`] return at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, Sampler, SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample,
};
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The request header that forces a request's trace to be sampled.
pub const FORCE_TRACING_HEADER: &str = "x-thanos-force-tracing";
/// The response header carrying a sampled request's trace id.
pub const TRACE_ID_HEADER: &str = "x-thanos-trace-id";
/// The span attribute by which [`ThanosSampler`] recognises a forced trace.
const FORCE_ATTRIBUTE: &str = "thanos.force_tracing";

/// Set once spans are exported: the propagation helpers are no-ops until then.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported (`--tracing.config` with a supported type).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Why a tracing configuration was refused or tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("not a tracing configuration: {0} (expected Thanos' format: type, config)")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error(
        "tracing type {0:?} is unknown: expected OTLP, JAEGER, GOOGLE_CLOUD, STACKDRIVER, ELASTIC_APM or LIGHTSTEP"
    )]
    UnknownType(String),
    #[error("{field}: {why}")]
    Bad { field: &'static str, why: String },
    #[error("reading {field} {path}: {source}")]
    Read {
        field: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the OTLP exporter: {0}")]
    Exporter(String),
}

fn bad(field: &'static str, why: impl Into<String>) -> TracingError {
    TracingError::Bad {
        field,
        why: why.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracing {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: serde_yaml_ng::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOtlp {
    client_type: String,
    service_name: String,
    reconnection_period: Option<serde_yaml_ng::Value>,
    compression: String,
    insecure: bool,
    endpoint: String,
    url_path: String,
    timeout: Option<serde_yaml_ng::Value>,
    retry_config: RawRetry,
    headers: BTreeMap<String, String>,
    tls_config: TlsSettings,
    sampler_type: String,
    sampler_param: Option<serde_yaml_ng::Value>,
    resource_attributes: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetry {
    retry_enabled: bool,
    retry_initial_interval: Option<serde_yaml_ng::Value>,
    retry_max_interval: Option<serde_yaml_ng::Value>,
    retry_max_elapsed_time: Option<serde_yaml_ng::Value>,
}

/// `tls_config` (Thanos' `exthttp.TLSConfig`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub server_name: String,
    pub insecure_skip_verify: bool,
}

/// How spans leave the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientType {
    /// OTLP over gRPC (the default; port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318, `url_path` `/v1/traces`).
    Http,
}

/// Which traces are kept: a span with a parent follows the parent's decision, a root is
/// sampled with this ratio (1: all, 0: none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerChoice {
    Ratio(f64),
}

/// A checked `type: OTLP` configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    pub client_type: ClientType,
    /// `host:port`, or a URL.
    pub endpoint: String,
    pub insecure: bool,
    pub url_path: String,
    pub timeout: Option<Duration>,
    pub gzip: bool,
    pub headers: BTreeMap<String, String>,
    pub tls: TlsSettings,
    pub service_name: Option<String>,
    pub resource_attributes: BTreeMap<String, String>,
    pub sampler: SamplerChoice,
    /// What the configuration asked that is taken otherwise (for the start-up log, which
    /// does not exist yet when the configuration is read).
    pub notes: Vec<String>,
}

/// A parsed `--tracing.config`.
#[derive(Debug, Clone, PartialEq)]
pub enum TracingConfig {
    Otlp(Box<OtlpConfig>),
    /// A Thanos type whose protocol is not implemented (its name).
    NotExported(String),
}

/// A Go duration (`5s`, `1m30s`) or a plain number of nanoseconds, as yaml.v2 reads a Go
/// `time.Duration`; zero and absent are `None`.
fn go_duration(
    field: &'static str,
    v: Option<&serde_yaml_ng::Value>,
) -> Result<Option<Duration>, TracingError> {
    let d = match v {
        None | Some(serde_yaml_ng::Value::Null) => return Ok(None),
        Some(serde_yaml_ng::Value::Number(n)) => {
            let nanos = n
                .as_u64()
                .ok_or_else(|| bad(field, format!("{n} is not a duration")))?;
            Duration::from_nanos(nanos)
        }
        Some(serde_yaml_ng::Value::String(s)) => s
            .parse::<strata_model::Duration>()
            .map_err(|e| bad(field, e.to_string()))?
            .to_std(),
        Some(other) => return Err(bad(field, format!("{other:?} is not a duration"))),
    };
    Ok((!d.is_zero()).then_some(d))
}

/// `sampler_param`: a number, or a string holding one (Thanos declares it a string).
fn ratio(v: Option<&serde_yaml_ng::Value>) -> Option<f64> {
    let r = match v? {
        serde_yaml_ng::Value::Number(n) => n.as_f64(),
        serde_yaml_ng::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    (0.0..=1.0).contains(&r).then_some(r)
}

/// `sampler_type` and `sampler_param` as Thanos reads them: every choice follows a sampled
/// parent; an empty or unknown type, or a ratio that does not parse, samples every trace
/// (Thanos starts with those too). The second value says why in that case, for the
/// start-up log (Thanos is silent about it).
fn sampler_choice(
    kind: &str,
    param: Option<&serde_yaml_ng::Value>,
) -> (SamplerChoice, Option<String>) {
    match kind.to_ascii_lowercase().as_str() {
        "alwayssample" => (SamplerChoice::Ratio(1.0), None),
        "neversample" => (SamplerChoice::Ratio(0.0), None),
        "traceidratiobased" => match ratio(param) {
            Some(r) => (SamplerChoice::Ratio(r), None),
            None => (
                SamplerChoice::Ratio(1.0),
                Some(format!(
                    "sampler_param {param:?} is not a ratio between 0 and 1; every trace is \
                     sampled"
                )),
            ),
        },
        "" => (SamplerChoice::Ratio(1.0), None),
        other => (
            SamplerChoice::Ratio(1.0),
            Some(format!(
                "sampler_type {other:?} is unknown (alwayssample, neversample, \
                 traceidratiobased); every trace is sampled"
            )),
        ),
    }
}

impl TracingConfig {
    /// Parses Thanos' YAML. Empty text is `None` (no tracing).
    pub fn from_yaml(text: &str) -> Result<Option<TracingConfig>, TracingError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let raw: RawTracing = serde_yaml_ng::from_str(text)?;
        match raw.kind.to_ascii_uppercase().as_str() {
            "OTLP" => {}
            "JAEGER" | "GOOGLE_CLOUD" | "STACKDRIVER" | "ELASTIC_APM" | "LIGHTSTEP" => {
                return Ok(Some(TracingConfig::NotExported(raw.kind)));
            }
            _ => return Err(TracingError::UnknownType(raw.kind)),
        }
        let o: RawOtlp = if raw.config.is_null() {
            RawOtlp::default()
        } else {
            serde_yaml_ng::from_value(raw.config)?
        };
        let client_type = match o.client_type.to_ascii_lowercase().as_str() {
            "grpc" => ClientType::Grpc,
            "http" => ClientType::Http,
            other => {
                return Err(bad(
                    "client_type",
                    format!("{other:?} is invalid: only 'http' and 'grpc' are accepted"),
                ));
            }
        };
        let gzip = match o.compression.as_str() {
            "" | "none" => false,
            "gzip" => true,
            other => {
                return Err(bad(
                    "compression",
                    format!("{other:?} is invalid: only gzip is supported"),
                ));
            }
        };
        for (field, v) in [
            ("reconnection_period", &o.reconnection_period),
            (
                "retry_config.retry_initial_interval",
                &o.retry_config.retry_initial_interval,
            ),
            (
                "retry_config.retry_max_interval",
                &o.retry_config.retry_max_interval,
            ),
            (
                "retry_config.retry_max_elapsed_time",
                &o.retry_config.retry_max_elapsed_time,
            ),
        ] {
            go_duration(field, v.as_ref())?;
        }
        let (sampler, sampler_note) = sampler_choice(&o.sampler_type, o.sampler_param.as_ref());
        if o.tls_config.cert_file.is_empty() != o.tls_config.key_file.is_empty() {
            return Err(bad("tls_config", "cert_file and key_file go together"));
        }
        Ok(Some(TracingConfig::Otlp(Box::new(OtlpConfig {
            client_type,
            endpoint: o.endpoint,
            insecure: o.insecure,
            url_path: o.url_path,
            timeout: go_duration("timeout", o.timeout.as_ref())?,
            gzip,
            headers: o.headers,
            tls: o.tls_config,
            service_name: Some(o.service_name).filter(|s| !s.is_empty()),
            resource_attributes: o.resource_attributes,
            sampler,
            notes: sampler_note.into_iter().collect(),
        }))))
    }
}

/// Samples as configured, except that a span carrying the force attribute (a request with
/// `X-Thanos-Force-Tracing`) is always sampled.
#[derive(Debug, Clone)]
struct ThanosSampler(Sampler);

impl ShouldSample for ThanosSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &opentelemetry::trace::SpanKind,
        attributes: &[KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        let forced = attributes
            .iter()
            .any(|kv| kv.key.as_str() == FORCE_ATTRIBUTE && kv.value.as_str() == "true");
        if forced {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: parent_context
                    .map(|c| c.span().span_context().trace_state().clone())
                    .unwrap_or_default(),
            };
        }
        self.0
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

impl SamplerChoice {
    fn sampler(self) -> Sampler {
        let SamplerChoice::Ratio(r) = self;
        let root = if r >= 1.0 {
            Sampler::AlwaysOn
        } else if r <= 0.0 {
            Sampler::AlwaysOff
        } else {
            Sampler::TraceIdRatioBased(r)
        };
        Sampler::ParentBased(Box::new(root))
    }
}

/// Exporting spans: the provider, flushed and stopped by [`Tracing::shutdown`].
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

fn read_file(field: &'static str, path: &str) -> Result<Vec<u8>, TracingError> {
    std::fs::read(path).map_err(|source| TracingError::Read {
        field,
        path: path.to_string(),
        source,
    })
}

impl OtlpConfig {
    /// The gRPC channel to the collector, with `tls_config` unless `insecure`.
    fn grpc_channel(&self) -> Result<tonic::transport::Channel, TracingError> {
        let endpoint = if self.endpoint.is_empty() {
            "localhost:4317"
        } else {
            self.endpoint.as_str()
        };
        let url = if endpoint.contains("://") {
            endpoint.to_string()
        } else if self.insecure {
            format!("http://{endpoint}")
        } else {
            format!("https://{endpoint}")
        };
        let mut ep = tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|e| bad("endpoint", format!("{url:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5));
        if let Some(t) = self.timeout {
            ep = ep.timeout(t);
        }
        if url.starts_with("https://") {
            let provider = crate::tls::provider();
            let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if self
                .tls
                .insecure_skip_verify
            {
                crate::tls::SkipServerVerification::new()
            } else {
                let roots = if self.tls.ca_file.is_empty() {
                    crate::tls::system_roots().map_err(|e| {
                        bad(
                            "tls_config.ca_file",
                            format!("not given, and the system's roots: {e}"),
                        )
                    })?
                } else {
                    Arc::new(
                        crate::tls::pem_roots(&read_file("tls_config.ca_file", &self.tls.ca_file)?)
                            .map_err(|e| bad("tls_config.ca_file", e))?,
                    )
                };
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| bad("tls_config.ca_file", e.to_string()))?
            };
            let mut t = tonic::transport::ClientTlsConfig::new();
            if !self.tls.cert_file.is_empty() {
                t = t.identity(tonic::transport::Identity::from_pem(
                    read_file("tls_config.cert_file", &self.tls.cert_file)?,
                    read_file("tls_config.key_file", &self.tls.key_file)?,
                ));
            }
            if !self.tls.server_name.is_empty() {
                t = t.domain_name(self.tls.server_name.clone());
            }
            ep = ep
                .tls_config_with_verifier(t, verifier)
                .map_err(|e| bad("tls_config", e.to_string()))?;
        }
        Ok(ep.connect_lazy())
    }

    /// The HTTP client and URL for `client_type: http`.
    fn http_client(&self) -> Result<(reqwest::Client, String), TracingError> {
        let endpoint = if self.endpoint.is_empty() {
            "localhost:4318"
        } else {
            self.endpoint.as_str()
        };
        let path = if self.url_path.is_empty() {
            "/v1/traces"
        } else {
            self.url_path.as_str()
        };
        let base = if endpoint.contains("://") {
            endpoint.trim_end_matches('/').to_string()
        } else if self.insecure {
            format!("http://{endpoint}")
        } else {
            format!("https://{endpoint}")
        };
        let mut b = reqwest::Client::builder();
        if let Some(t) = self.timeout {
            b = b.timeout(t);
        }
        if !self.insecure {
            if self.tls.insecure_skip_verify {
                b = b.danger_accept_invalid_certs(true);
            }
            if !self.tls.ca_file.is_empty() {
                let pem = read_file("tls_config.ca_file", &self.tls.ca_file)?;
                for cert in reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| bad("tls_config.ca_file", e.to_string()))?
                {
                    b = b.add_root_certificate(cert);
                }
            }
            if !self.tls.cert_file.is_empty() {
                let mut pem = read_file("tls_config.cert_file", &self.tls.cert_file)?;
                pem.extend(read_file("tls_config.key_file", &self.tls.key_file)?);
                b = b.identity(
                    reqwest::Identity::from_pem(&pem)
                        .map_err(|e| bad("tls_config.cert_file", e.to_string()))?,
                );
            }
        }
        let client = b
            .build()
            .map_err(|e| TracingError::Exporter(e.to_string()))?;
        Ok((client, format!("{base}{path}")))
    }

    /// Starts exporting: the span exporter, a batch processor on the current tokio runtime,
    /// the sampler.
    ///
    /// Must be called within a tokio runtime.
    pub fn start(&self) -> Result<Tracing, TracingError> {
        let exporter = match self.client_type {
            ClientType::Grpc => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_channel(self.grpc_channel()?);
                if let Some(t) = self.timeout {
                    b = b.with_timeout(t);
                }
                if self.gzip {
                    b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                }
                if !self.headers.is_empty() {
                    let mut md = tonic::metadata::MetadataMap::new();
                    for (k, v) in &self.headers {
                        let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes())
                            .map_err(|e| bad("headers", format!("{k:?}: {e}")))?;
                        let value = v
                            .parse()
                            .map_err(|e| bad("headers", format!("{k:?}: {e}")))?;
                        md.insert(key, value);
                    }
                    b = b.with_metadata(md);
                }
                b.build()
            }
            ClientType::Http => {
                let (client, url) = self.http_client()?;
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_http_client(client)
                    .with_endpoint(url)
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
                if let Some(t) = self.timeout {
                    b = b.with_timeout(t);
                }
                if self.gzip {
                    b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                }
                if !self.headers.is_empty() {
                    b = b.with_headers(self.headers.clone().into_iter().collect());
                }
                b.build()
            }
        }
        .map_err(|e| TracingError::Exporter(e.to_string()))?;
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_secs(5))
                    .build(),
            )
            .build();
        // As Thanos: `service.name` only when configured (else `OTEL_SERVICE_NAME`, else the
        // SDK's `unknown_service`), `OTEL_RESOURCE_ATTRIBUTES` merged in.
        let mut resource = opentelemetry_sdk::Resource::builder().with_attributes(
            self.resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        );
        if let Some(name) = &self.service_name {
            resource = resource.with_service_name(name.clone());
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(ThanosSampler(self.sampler.sampler()))
            .with_resource(resource.build())
            .build();
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Tracing { provider })
    }
}

impl Tracing {
    /// The `tracing` layer that turns spans into exported spans.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("strata"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
    }

    /// Exports what is still buffered and stops. Call outside the runtime's tasks (it
    /// blocks) while the runtime still runs.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(err = %e, "flushing the last spans to the tracing collector failed");
        }
    }
}

/// Header maps as OpenTelemetry's propagators read and write them.
struct Headers<'a>(&'a axum::http::HeaderMap);
struct HeadersMut<'a>(&'a mut axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(key.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Jaeger's `uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}` (hex).
fn jaeger_context(value: &str) -> Option<SpanContext> {
    let value = percent_decode_colons(value);
    let mut parts = value.split(':');
    let trace = parts.next()?;
    let span = parts.next()?;
    let _parent = parts.next()?;
    let flags = parts.next()?;
    if parts.next().is_some() || trace.is_empty() || trace.len() > 32 || span.len() > 16 {
        return None;
    }
    let trace_id = TraceId::from_hex(&format!("{trace:0>32}")).ok()?;
    let span_id = SpanId::from_hex(&format!("{span:0>16}")).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        if flags & 1 == 1 {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

/// Jaeger clients may percent-encode the colons of `uber-trace-id`.
fn percent_decode_colons(v: &str) -> String {
    v.replace("%3A", ":").replace("%3a", ":")
}

/// The caller's trace context in request headers: W3C `traceparent`, else Jaeger's
/// `uber-trace-id`.
pub fn extract(headers: &axum::http::HeaderMap) -> Context {
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    if cx.span().span_context().is_valid() {
        return cx;
    }
    match headers
        .get("uber-trace-id")
        .and_then(|v| v.to_str().ok())
        .and_then(jaeger_context)
    {
        Some(sc) => Context::new().with_remote_span_context(sc),
        None => Context::new(),
    }
}

/// Writes the current span's context into an outgoing call's headers (`traceparent`), so
/// that the callee's spans join the trace. A no-op without tracing.
pub fn inject_current(headers: &mut axum::http::HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(headers));
    }
}

/// Makes `span` a child of the caller whose context `headers` carry (a server's request
/// span), marked as forced when the request asks for it.
pub fn adopt_remote_parent(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !enabled() {
        return;
    }
    let parent = extract(headers);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    if headers.contains_key(FORCE_TRACING_HEADER) {
        span.set_attribute(FORCE_ATTRIBUTE, "true");
    }
}

/// The trace id of `span` if it is sampled (for `X-Thanos-Trace-Id`).
pub fn sampled_trace_id(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
}

/// The span of one HTTP request, named as Thanos names it (`/query_range HTTP[server]` for
/// `/api/v1/query_range`), a child of the caller's trace context if the request carries one;
/// disabled (and free) without tracing.
pub fn http_span(
    method: &axum::http::Method,
    route: &str,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let name = route
        .strip_prefix("/api/v1")
        .filter(|n| !n.is_empty())
        .unwrap_or(route);
    let span = tracing::info_span!(
        "http_request",
        otel.name = %format!("{name} HTTP[server]"),
        otel.kind = "server",
        http.method = %method,
        http.url = %uri,
        http.status_code = tracing::field::Empty,
    );
    adopt_remote_parent(&span, headers);
    span
}

/// One span per HTTP request (`axum::middleware::from_fn`), the handler running in it; a
/// sampled request's response names its trace in `X-Thanos-Trace-Id`.
pub(crate) async fn http_middleware(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument as _;
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let span = http_span(req.method(), &route, req.uri(), req.headers());
    let mut response = next.run(req).instrument(span.clone()).await;
    span.record("http.status_code", response.status().as_u16());
    if let Some(id) = sampled_trace_id(&span)
        && let Ok(v) = axum::http::HeaderValue::from_str(&id)
    {
        response.headers_mut().insert(TRACE_ID_HEADER, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otlp(yaml: &str) -> OtlpConfig {
        match TracingConfig::from_yaml(yaml).unwrap().unwrap() {
            TracingConfig::Otlp(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    fn refused(yaml: &str) -> String {
        TracingConfig::from_yaml(yaml).unwrap_err().to_string()
    }

    #[test]
    fn otlp_configurations_are_read_as_thanos_reads_them() {
        assert!(TracingConfig::from_yaml(" \n").unwrap().is_none());
        let c = otlp("type: OTLP\nconfig: {client_type: grpc}");
        assert_eq!(c.client_type, ClientType::Grpc);
        assert_eq!(c.sampler, SamplerChoice::Ratio(1.0));
        let c = otlp(
            "type: otlp\nconfig:\n  client_type: http\n  endpoint: collector:4318\n  \
             insecure: true\n  timeout: 10s\n  compression: gzip\n  service_name: edge\n  \
             headers: {x-scope-orgid: team-a}\n  sampler_type: traceidratiobased\n  \
             sampler_param: \"0.25\"\n  retry_config: {retry_enabled: true, retry_max_interval: 30s}\n  \
             reconnection_period: 1m\n  tls_config: {insecure_skip_verify: false}",
        );
        assert_eq!(c.client_type, ClientType::Http);
        assert_eq!(c.timeout, Some(Duration::from_secs(10)));
        assert!(c.gzip && c.insecure);
        assert_eq!(c.service_name.as_deref(), Some("edge"));
        assert_eq!(c.sampler, SamplerChoice::Ratio(0.25));
        assert_eq!(c.headers["x-scope-orgid"], "team-a");
        let sampler =
            |s: &str| otlp(&format!("type: OTLP\nconfig: {{client_type: grpc, {s}}}")).sampler;
        assert_eq!(
            sampler("sampler_type: NeverSample"),
            SamplerChoice::Ratio(0.0)
        );
        assert_eq!(
            sampler("sampler_type: alwayssample"),
            SamplerChoice::Ratio(1.0)
        );
        // As Thanos: a bad ratio or an unknown type samples everything (and is logged).
        assert_eq!(
            sampler("sampler_type: traceidratiobased, sampler_param: 2"),
            SamplerChoice::Ratio(1.0)
        );
        assert_eq!(
            sampler("sampler_type: sometimes"),
            SamplerChoice::Ratio(1.0)
        );
        assert_eq!(
            TracingConfig::from_yaml("type: JAEGER\nconfig: {service_name: q}").unwrap(),
            Some(TracingConfig::NotExported("JAEGER".into()))
        );
    }

    #[test]
    fn bad_tracing_configurations_are_refused() {
        assert!(refused("type: ZIPKIN").contains("unknown"));
        assert!(refused("type: OTLP").contains("client_type"));
        assert!(refused("type: OTLP\nconfig: {client_type: udp}").contains("client_type"));
        let g = |s: &str| refused(&format!("type: OTLP\nconfig: {{client_type: grpc, {s}}}"));
        assert!(g("compression: zstd").contains("compression"));
        assert!(g("timeout: soon").contains("timeout"));
        assert!(g("endpint: x").contains("endpint"));
        assert!(g("tls_config: {cert_file: a.pem}").contains("key_file"));
        assert!(refused("config: {}").contains("type"));
    }

    #[test]
    fn caller_contexts_are_read_from_either_header() {
        let mut h = axum::http::HeaderMap::new();
        assert!(!extract(&h).span().span_context().is_valid());
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let cx = extract(&h);
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_sampled() && sc.is_remote());
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "uber-trace-id",
            "131da78f02aa3525:ab12:0:1".parse().unwrap(),
        );
        let cx = extract(&h);
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "0000000000000000131da78f02aa3525"
        );
        assert_eq!(sc.span_id().to_string(), "000000000000ab12");
        assert!(sc.is_sampled());
        assert!(
            jaeger_context("0:1:0:1").is_none(),
            "a zero trace id is invalid"
        );
        assert!(jaeger_context("xyz:1:0:1").is_none());
        assert!(jaeger_context("1:2:3").is_none());
    }

    #[test]
    fn forced_spans_are_sampled_whatever_the_sampler() {
        let s = ThanosSampler(Sampler::AlwaysOff);
        let kind = opentelemetry::trace::SpanKind::Server;
        let id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let plain = s.should_sample(None, id, "x", &kind, &[], &[]);
        assert_eq!(plain.decision, SamplingDecision::Drop);
        let forced = s.should_sample(
            None,
            id,
            "x",
            &kind,
            &[KeyValue::new(FORCE_ATTRIBUTE, "true")],
            &[],
        );
        assert_eq!(forced.decision, SamplingDecision::RecordAndSample);
    }
}
