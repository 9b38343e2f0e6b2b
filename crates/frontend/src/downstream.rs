//! Requests to the downstream querier (`--query-frontend.downstream-url`), with retries.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};

/// Headers that belong to one connection or that the frontend sets itself, never passed on
/// (RFC 9110 7.6.1, plus the body's framing and encoding, which change on the way).
const NOT_FORWARDED: &[HeaderName] = &[
    header::CONNECTION,
    header::HOST,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::ACCEPT_ENCODING,
];

/// Whether a request header is passed on to the querier.
pub fn forwarded(name: &HeaderName) -> bool {
    !NOT_FORWARDED.contains(name) && name.as_str() != "keep-alive"
}

/// A form body at most this long goes in the URL of a GET, as Thanos' frontend sends its
/// parts; longer ones are POSTed (a URL of many kilobytes is refused by some proxies).
const MAX_GET_FORM: usize = 4096;

/// The querier, as the frontend calls it.
#[derive(Debug, Clone)]
pub struct Downstream {
    client: reqwest::Client,
    /// The URL without a trailing `/`.
    base: String,
    /// Attempts per request beyond the first (`--query-range.max-retries-per-request` less
    /// one, at least 0).
    pub retries: u32,
}

/// The querier's answer: status, the headers the frontend uses and the body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    /// Whether the querier said not to cache it (`Cache-Control: no-store`).
    pub no_store: bool,
    pub body: Bytes,
}

/// A request that could not reach the querier or got no answer from it. The message names
/// the URL and every cause (`connection refused`, a TLS failure), which `reqwest` keeps
/// behind its own error.
#[derive(Debug)]
pub struct DownstreamError {
    pub url: String,
    pub source: reqwest::Error,
}

impl std::fmt::Display for DownstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "querying the downstream querier {}: {}",
            self.url, self.source
        )?;
        let mut cause = std::error::Error::source(&self.source);
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl std::error::Error for DownstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Checks `--query-frontend.downstream-url`: an absolute http(s) URL.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?}: the scheme must be http or https"));
    }
    Ok(())
}

impl Downstream {
    pub fn new(client: reqwest::Client, base: &str) -> Downstream {
        Downstream {
            client,
            base: base.trim_end_matches('/').to_string(),
            retries: 0,
        }
    }

    /// The URL of `path` (starting with `/`) at the querier.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The HTTP client (for proxying).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `form` to `path`: as a GET with the form in the URL when it is short or when
    /// `get_only` says the path takes nothing else (label values), as a POST otherwise.
    /// Answers 5xx and failed connections are retried up to `retries` times; the last 5xx
    /// answer is returned as it is (the client sees the querier's error).
    pub async fn call(
        &self,
        path: &str,
        form: &str,
        headers: &HeaderMap,
        get_only: bool,
    ) -> Result<Answer, DownstreamError> {
        let url = self.url(path);
        let mut attempt = 0;
        loop {
            let result = self.send(&url, form, headers, get_only).await;
            let retry = match &result {
                Ok(a) => a.status.is_server_error(),
                Err(_) => true,
            };
            if !retry || attempt >= self.retries {
                return result;
            }
            attempt += 1;
            tracing::debug!(url, attempt, "retrying a downstream request");
            // A short pause: a querier restarting or overloaded gets a moment.
            tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
        }
    }

    async fn send(
        &self,
        url: &str,
        form: &str,
        headers: &HeaderMap,
        get_only: bool,
    ) -> Result<Answer, DownstreamError> {
        let post = !get_only && form.len() > MAX_GET_FORM;
        let mut req = if post {
            self.client
                .request(Method::POST, url)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.to_string())
        } else {
            let sep = if url.contains('?') { '&' } else { '?' };
            let full = if form.is_empty() {
                url.to_string()
            } else {
                format!("{url}{sep}{form}")
            };
            self.client.request(Method::GET, full)
        };
        for (name, value) in headers {
            if forwarded(name) {
                req = req.header(name, value);
            }
        }
        let err = |source| DownstreamError {
            url: url.to_string(),
            source,
        };
        let resp = req.send().await.map_err(err)?;
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let no_store = resp
            .headers()
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| d.trim().eq_ignore_ascii_case("no-store"));
        let body = resp.bytes().await.map_err(err)?;
        Ok(Answer {
            status,
            content_type,
            no_store,
            body,
        })
    }
}

/// `--query-frontend.downstream-tripper-config`: the HTTP transport to the querier.
/// Durations are Prometheus duration strings (`90s`, `5m`), as Thanos reads this file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TripperConfig {
    pub idle_conn_timeout: Option<String>,
    pub response_header_timeout: Option<String>,
    pub tls_handshake_timeout: Option<String>,
    pub expect_continue_timeout: Option<String>,
    pub max_idle_conns: Option<i64>,
    pub max_idle_conns_per_host: Option<i64>,
    pub max_conns_per_host: Option<i64>,
    pub tls_config: strata_runtime::http_client::TlsConfig,
}

impl TripperConfig {
    /// Reads the YAML strictly (an unknown key is an error naming it). Empty text: defaults.
    pub fn from_yaml(text: &str) -> Result<TripperConfig, String> {
        if text.trim().is_empty() {
            return Ok(TripperConfig::default());
        }
        serde_yaml_ng::from_str(text)
            .map_err(|e| format!("parsing downstream tripper config YAML file: {e}"))
    }

    /// The client to the querier. Settings with an equivalent here take effect: idle
    /// connections per host and their timeout, the time to the answer's headers (as a read
    /// timeout), TLS; the rest tune Go's transport.
    pub fn client(&self) -> Result<reqwest::Client, String> {
        let nanos = |name: &str, v: &Option<String>| -> Result<Option<i64>, String> {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    strata_model::Duration::parse_prometheus(s)
                        .map(|d| d.as_millis_i64().saturating_mul(1_000_000))
                        .map_err(|e| format!("{name}: {e}"))
                })
                .transpose()
        };
        let config = strata_runtime::http_client::HttpClientConfig {
            tls_config: self.tls_config.clone(),
            transport_config: strata_runtime::http_client::TransportConfig {
                max_idle_conns: self.max_idle_conns,
                max_idle_conns_per_host: self.max_idle_conns_per_host,
                idle_conn_timeout: nanos("idle_conn_timeout", &self.idle_conn_timeout)?,
                response_header_timeout: nanos(
                    "response_header_timeout",
                    &self.response_header_timeout,
                )?,
                expect_continue_timeout: nanos(
                    "expect_continue_timeout",
                    &self.expect_continue_timeout,
                )?,
                max_conns_per_host: self.max_conns_per_host,
                disable_compression: None,
                tls_handshake_timeout: nanos("tls_handshake_timeout", &self.tls_handshake_timeout)?,
                dialer_timeout: None,
            },
            ..Default::default()
        };
        config
            .build(concat!("strata-query-frontend/", env!("CARGO_PKG_VERSION")))
            .map(|(client, _)| client)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tripper_configs_are_read_strictly() {
        let c = TripperConfig::from_yaml(
            "idle_conn_timeout: 2m\nresponse_header_timeout: 30s\nmax_idle_conns_per_host: 100\n",
        )
        .unwrap();
        assert_eq!(c.max_idle_conns_per_host, Some(100));
        assert!(c.client().is_ok());
        assert!(TripperConfig::from_yaml("bogus: 1\n").is_err());
        let bad = TripperConfig::from_yaml("idle_conn_timeout: soon\n").unwrap();
        assert!(bad.client().unwrap_err().contains("idle_conn_timeout"));
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        assert!(!forwarded(&header::CONNECTION));
        assert!(!forwarded(&header::ACCEPT_ENCODING));
        assert!(forwarded(&header::AUTHORIZATION));
        assert!(forwarded(&HeaderName::from_static("x-grafana-org-id")));
    }
}
