//! One remote write endpoint over HTTP: the client built from a [`RemoteConfig`], one `POST`
//! per batch, and the classification of its answer into sent / retry / give up.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use reqwest::{StatusCode, Url};
use strata_runtime::client_tls::{ClientTls, apply_client_tls};

use super::RemoteWriteError;
use super::config::{Auth, Pem, RemoteConfig, Secret};

/// The User-Agent of every remote write request.
pub(crate) const USER_AGENT: &str = concat!("Strata/", env!("CARGO_PKG_VERSION"));

/// The remote write protocol version sent in `X-Prometheus-Remote-Write-Version`.
const PROTOCOL_VERSION: &str = "0.1.0";

/// How much of an error answer's body is kept for the log, as Prometheus keeps its first
/// line up to 1 KiB.
const ERROR_BODY_BYTES: usize = 1024;

/// What to do with a batch after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Sent,
    /// Recoverable: 5xx, 429 with `retry_on_http_429`, or no answer at all.
    Retry,
    /// Not recoverable: any other status. Sending the same samples again would be refused
    /// again (out of order, too old, bad labels, unauthorized), so they are dropped.
    GiveUp,
}

/// Prometheus' rule (`storage/remote/client.go`): 2xx is success; 5xx, and 429 when
/// `retry_on_http_429` is set, are retried; every other status is final.
pub(crate) fn classify(status: StatusCode, retry_on_http_429: bool) -> Verdict {
    if status.is_success() {
        Verdict::Sent
    } else if status.is_server_error()
        || (retry_on_http_429 && status == StatusCode::TOO_MANY_REQUESTS)
    {
        Verdict::Retry
    } else {
        Verdict::GiveUp
    }
}

/// A failed attempt.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) verdict: Verdict,
    /// What went wrong, with the status and the start of the answer's body when there was one.
    pub(crate) detail: String,
    /// The server's `Retry-After` (seconds form), honoured instead of the backoff step.
    pub(crate) retry_after: Option<Duration>,
}

/// The HTTP side of one remote.
#[derive(Debug)]
pub(crate) struct Sender {
    http: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    auth: Auth,
    timeout: Duration,
    retry_on_http_429: bool,
}

impl Sender {
    /// Builds the client; files named by the configuration are read now so that a typo fails
    /// at start-up rather than on the first send.
    pub(crate) fn new(cfg: &RemoteConfig) -> Result<Sender, RemoteWriteError> {
        let remote = cfg.remote_name.as_str();
        let client_err = |detail: String| RemoteWriteError::Client {
            remote: remote.to_string(),
            detail,
        };
        let mut b = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(cfg.remote_timeout)
            .http1_only();
        b = match &cfg.proxy_url {
            Some(p) => b.proxy(
                reqwest::Proxy::all(p.as_str())
                    .map_err(|e| client_err(format!("proxy_url {p:?}: {e}")))?,
            ),
            None => b.no_proxy(),
        };
        b = b.redirect(if cfg.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        });
        let tls = &cfg.tls;
        let ca = tls
            .ca
            .as_ref()
            .map(|p| pem_bytes(remote, "tls_config.ca", p))
            .transpose()?;
        let cert = tls
            .cert
            .as_ref()
            .map(|p| pem_bytes(remote, "tls_config.cert", p))
            .transpose()?;
        let key = tls
            .key
            .as_ref()
            .map(|p| pem_bytes(remote, "tls_config.key", p))
            .transpose()?;
        b = apply_client_tls(
            b,
            &ClientTls {
                ca_pem: ca.as_deref(),
                cert_pem: cert.as_deref(),
                key_pem: key.as_deref(),
                insecure_skip_verify: tls.insecure_skip_verify,
            },
        )
        .map_err(|e| client_err(format!("tls_config: {e}")))?;
        match tls.min_version.as_deref() {
            Some("TLS13") => b = b.min_tls_version(reqwest::tls::Version::TLS_1_3),
            Some(_) => b = b.min_tls_version(reqwest::tls::Version::TLS_1_2),
            None => {}
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            // Both were checked when the configuration was parsed.
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| client_err(format!("headers: {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| client_err(format!("headers: {name}: {e}")))?;
            headers.insert(name, value);
        }
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(
            "X-Prometheus-Remote-Write-Version",
            HeaderValue::from_static(PROTOCOL_VERSION),
        );
        match &cfg.auth {
            Auth::Basic {
                password: Secret::File(path),
                ..
            } => {
                read_secret(remote, "basic_auth.password_file", path)?;
            }
            Auth::Header {
                credentials: Secret::File(path),
                ..
            } => {
                read_secret(remote, "credentials file", path)?;
            }
            _ => {}
        }
        let http = b
            .build()
            .map_err(|e| client_err(format!("building the HTTP client: {e}")))?;
        Ok(Sender {
            http,
            url: cfg.url.clone(),
            headers,
            auth: cfg.auth.clone(),
            timeout: cfg.remote_timeout,
            retry_on_http_429: cfg.queue.retry_on_http_429,
        })
    }

    /// Adds `Authorization`; secret files are read on every request so that rotated
    /// credentials are picked up.
    fn authorize(&self, req: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, String> {
        Ok(match &self.auth {
            Auth::None => req,
            Auth::Basic { username, password } => req.basic_auth(username, Some(secret(password)?)),
            Auth::Header { kind, credentials } => {
                let mut v = HeaderValue::from_str(&format!("{kind} {}", secret(credentials)?))
                    .map_err(|_| "the credentials are not a valid HTTP header value".to_string())?;
                v.set_sensitive(true);
                req.header(AUTHORIZATION, v)
            }
        })
    }

    /// One attempt: `POST` the compressed `WriteRequest`.
    pub(crate) async fn send(&self, body: Bytes) -> Result<(), Failure> {
        let retry = |detail: String| Failure {
            verdict: Verdict::Retry,
            detail,
            retry_after: None,
        };
        let req = self
            .http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .body(body);
        // A credentials file that cannot be read now may be back on the next attempt (it is
        // being rotated): retried, as Prometheus does with any error before an answer.
        let req = self.authorize(req).map_err(retry)?;
        let resp = req.send().await.map_err(|e| retry(error_chain(&e)))?;
        let status = resp.status();
        let verdict = classify(status, self.retry_on_http_429);
        if verdict == Verdict::Sent {
            // Drain the body so that the connection is reused.
            let _ = resp.bytes().await;
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.bytes().await.unwrap_or_default();
        let excerpt = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES)]);
        let first_line = excerpt.lines().next().unwrap_or("").trim();
        Err(Failure {
            verdict,
            detail: format!("server returned HTTP status {status}: {first_line}"),
            retry_after,
        })
    }
}

fn secret(s: &Secret) -> Result<String, String> {
    match s {
        Secret::Inline(v) => Ok(v.clone()),
        Secret::File(path) => std::fs::read_to_string(path)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("reading the credentials file {path}: {e}")),
    }
}

fn read_secret(remote: &str, key: &'static str, path: &str) -> Result<(), RemoteWriteError> {
    std::fs::read(path)
        .map(drop)
        .map_err(|source| RemoteWriteError::File {
            remote: remote.to_string(),
            key,
            path: path.to_string(),
            source,
        })
}

fn pem_bytes(remote: &str, key: &'static str, pem: &Pem) -> Result<Vec<u8>, RemoteWriteError> {
    match pem {
        Pem::Inline(text) => Ok(text.as_bytes().to_vec()),
        Pem::File(path) => std::fs::read(path).map_err(|source| RemoteWriteError::File {
            remote: remote.to_string(),
            key,
            path: path.to_string(),
            source,
        }),
    }
}

/// The error and its causes, `: `-joined: reqwest's top-level message alone ("error sending
/// request") does not say whether the connection was refused or timed out.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_like_prometheus() {
        let s = |n| StatusCode::from_u16(n).unwrap();
        assert_eq!(classify(s(200), false), Verdict::Sent);
        assert_eq!(classify(s(204), false), Verdict::Sent);
        for n in [500, 502, 503, 504] {
            assert_eq!(classify(s(n), false), Verdict::Retry, "{n}");
        }
        assert_eq!(classify(s(429), false), Verdict::GiveUp);
        assert_eq!(classify(s(429), true), Verdict::Retry);
        for n in [301, 400, 401, 403, 404, 409, 413] {
            assert_eq!(classify(s(n), true), Verdict::GiveUp, "{n}");
        }
    }
}
