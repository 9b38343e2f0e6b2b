//! Thanos' HTTP client configuration (`pkg/httpconfig` `ClientConfig`): the YAML that
//! `--prometheus.http-client` (sidecar) and the `http_config` of `--alertmanagers.config`
//! (ruler) take, and the `reqwest` client built from it.
//!
//! Secrets given as files (`bearer_token_file`, `basic_auth.password_file`) are read on every
//! request, as Prometheus' own client does, so rotated credentials are picked up without a
//! restart; [`ClientAuth::apply`] does that.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::client_tls::{ClientTls, ClientTlsError, apply_client_tls};

/// Thanos' `HTTPClientConfig` YAML.
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

/// An HTTP client configuration that cannot be used. The messages name the key; callers add
/// which flag or file the configuration came from.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// The configuration is malformed or contradicts itself.
    #[error("{0}")]
    Config(String),
    /// A file named by the configuration (token, password, certificate) cannot be read.
    #[error("reading {what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HttpClientConfig {
    /// Parses the YAML; unknown keys are errors naming the key. Empty text is the default.
    pub fn from_yaml(text: &str) -> Result<Self, HttpClientError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| HttpClientError::Config(e.to_string()))
    }

    /// Whether any of `basic_auth` is set.
    pub fn has_basic_auth(&self) -> bool {
        let ba = &self.basic_auth;
        !ba.username.is_empty() || !ba.password.is_empty() || !ba.password_file.is_empty()
    }

    /// Builds the client (with `user_agent` on every request) and the authentication to add to
    /// each request. Contradictory settings (both basic auth and a bearer token, a certificate
    /// without its key, …) and unreadable files are errors here, at start-up, not on the
    /// first request.
    pub fn build(
        &self,
        user_agent: &str,
    ) -> Result<(reqwest::Client, ClientAuth), HttpClientError> {
        let config = self;
        let mut b = reqwest::Client::builder()
            .user_agent(user_agent)
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
                HttpClientError::Config(format!("proxy_url {:?}: {e}", config.proxy_url))
            })?;
            b = b.proxy(proxy);
        }
        let tls = &config.tls_config;
        if !tls.server_name.is_empty() {
            return Err(HttpClientError::Config(
                "tls_config.server_name is not supported yet: connect with the name the \
                 certificate is issued for in the URL"
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
                return Err(HttpClientError::Config(
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
            HttpClientError::Config(match e {
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
        let has_basic = config.has_basic_auth();
        let has_bearer = !config.bearer_token.is_empty() || !config.bearer_token_file.is_empty();
        if has_basic && has_bearer {
            return Err(HttpClientError::Config(
                "at most one of basic_auth and bearer_token[_file] must be configured".into(),
            ));
        }
        if !config.bearer_token.is_empty() && !config.bearer_token_file.is_empty() {
            return Err(HttpClientError::Config(
                "at most one of bearer_token and bearer_token_file must be configured".into(),
            ));
        }
        if !ba.password.is_empty() && !ba.password_file.is_empty() {
            return Err(HttpClientError::Config(
                "at most one of basic_auth.password and basic_auth.password_file must be configured"
                    .into(),
            ));
        }
        let auth = if has_basic {
            ClientAuth::Basic {
                username: ba.username.clone(),
                password: ba.password.clone(),
                password_file: ba.password_file.clone(),
            }
        } else if !config.bearer_token.is_empty() {
            ClientAuth::Bearer(config.bearer_token.clone())
        } else if !config.bearer_token_file.is_empty() {
            // Fail at start-up, not on the first request, when the file is missing.
            read_file("bearer_token_file", &config.bearer_token_file)?;
            ClientAuth::BearerFile(config.bearer_token_file.clone())
        } else {
            ClientAuth::None
        };
        let http = b
            .build()
            .map_err(|e| HttpClientError::Config(format!("building the HTTP client: {e}")))?;
        Ok((http, auth))
    }
}

/// How each request authenticates.
#[derive(Clone)]
pub enum ClientAuth {
    None,
    Bearer(String),
    BearerFile(String),
    Basic {
        username: String,
        password: String,
        password_file: String,
    },
}

/// Secrets stay out of logs and panics.
impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::None => f.write_str("None"),
            ClientAuth::Bearer(_) => f.write_str("Bearer(<secret>)"),
            ClientAuth::BearerFile(p) => f.debug_tuple("BearerFile").field(p).finish(),
            ClientAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}

impl ClientAuth {
    /// Adds the credentials to a request, reading secret files now so rotated ones are used.
    pub fn apply(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, HttpClientError> {
        Ok(match self {
            ClientAuth::None => rb,
            ClientAuth::Bearer(t) => rb.bearer_auth(t),
            ClientAuth::BearerFile(f) => {
                let token = read_file("bearer_token_file", f)?;
                rb.bearer_auth(String::from_utf8_lossy(&token).trim())
            }
            ClientAuth::Basic {
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
}

fn nanos(v: Option<i64>, key: &str) -> Result<Option<Duration>, HttpClientError> {
    match v {
        None | Some(0) => Ok(None),
        Some(n) if n > 0 => Ok(Some(Duration::from_nanos(n as u64))),
        Some(n) => Err(HttpClientError::Config(format!(
            "transport_config.{key} is {n}: a duration in nanoseconds cannot be negative"
        ))),
    }
}

fn read_file(what: &'static str, path: &str) -> Result<Vec<u8>, HttpClientError> {
    std::fs::read(path).map_err(|source| HttpClientError::File {
        what,
        path: PathBuf::from(path),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contradictions_and_unknown_keys_are_errors() {
        let cfg =
            HttpClientConfig::from_yaml("bearer_token: t\nbasic_auth:\n  username: u\n").unwrap();
        let err = cfg.build("t").unwrap_err();
        assert!(
            err.to_string().contains("at most one of basic_auth"),
            "{err}"
        );
        let err = HttpClientConfig::from_yaml("bearer_tokn: t\n").unwrap_err();
        assert!(err.to_string().contains("bearer_tokn"), "{err}");
        let cfg = HttpClientConfig::from_yaml("bearer_token_file: /nonexistent/token\n").unwrap();
        let err = cfg.build("t").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/token"), "{err}");
        let cfg = HttpClientConfig::from_yaml("tls_config:\n  cert_file: c\n").unwrap();
        let err = cfg.build("t").unwrap_err();
        assert!(err.to_string().contains("together"), "{err}");
    }

    #[test]
    fn debug_hides_secrets() {
        let a = ClientAuth::Basic {
            username: "u".into(),
            password: "hunter2".into(),
            password_file: String::new(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
        assert!(!format!("{:?}", ClientAuth::Bearer("tok".into())).contains("tok"));
    }
}
