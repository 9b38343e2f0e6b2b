//! `--http.config`: the web configuration file of Prometheus' exporter-toolkit, which Thanos
//! reads for every component's HTTP server: TLS (`tls_server_config`), basic authentication
//! (`basic_auth_users`, bcrypt hashes), extra response headers (`http_server_config.headers`)
//! and a request rate limit (`rate_limit`).
//!
//! The file is read and checked once, at start-up: an unknown key, a setting Strata cannot
//! honour, an unreadable certificate or a malformed password hash fails start-up. The server
//! certificate and key files are the exception: as the exporter-toolkit reads them on every
//! TLS handshake, they are read again when they change on disk (rotation without a restart).
//!
//! Differences from the exporter-toolkit, each refused at start-up rather than ignored:
//! rustls speaks TLS 1.2 and 1.3 only (`min_version: TLS10`/`TLS11` mean TLS 1.2, a
//! `max_version` below TLS 1.2 is an error), implements no CBC cipher suite and no P-521 key
//! exchange; TLS settings without a certificate (which the exporter-toolkit ignores, serving
//! plain HTTP) are an error. HTTP/2 is not served: ALPN offers `http/1.1` only.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, NamedGroup, RootCertStore,
    SignatureScheme,
};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpStream;

/// Why the web configuration file cannot be used. Each names the file; reasons name the key.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// A checked web configuration, ready to guard an HTTP server: see
/// [`crate::http::Listener::bind`].
pub struct WebConfig {
    tls: Option<Arc<rustls::ServerConfig>>,
    /// `client_auth_type` as written (for the start-up log line).
    client_auth: &'static str,
    guard: Option<Arc<Guard>>,
    users: usize,
}

impl std::fmt::Debug for WebConfig {
    // Not derived: the password hashes stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("client_auth", &self.client_auth)
            .field("basic_auth_users", &self.users)
            .finish_non_exhaustive()
    }
}

impl WebConfig {
    /// Reads and checks the web configuration file at `path`. Relative file names in it
    /// (`cert_file`, `key_file`, `client_ca_file`) are relative to the file's directory, as
    /// in the exporter-toolkit.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new(""));
        WebConfig::from_yaml(&text, dir).map_err(|reason| WebConfigError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses and checks a web configuration; relative file names are relative to `dir`.
    fn from_yaml(text: &str, dir: &Path) -> Result<WebConfig, String> {
        let file: FileConfig = if is_empty_yaml(text) {
            FileConfig::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
        };
        let (tls, client_auth) = match file.tls_server_config {
            Some(t) => match build_tls(&t, dir)? {
                Some((cfg, auth)) => (Some(cfg), auth),
                None => (None, "NoClientCert"),
            },
            None => (None, "NoClientCert"),
        };
        let http = file.http_server_config.unwrap_or_default();
        let headers = check_headers(http.headers.unwrap_or_default())?;
        let users = check_users(file.basic_auth_users.unwrap_or_default())?;
        let limiter = file.rate_limit.map(RateLimiter::new).transpose()?.flatten();
        let n_users = users.hashes.len();
        let guard = (!users.hashes.is_empty() || !headers.is_empty() || limiter.is_some())
            .then(|| Arc::new(Guard::new(users, headers, limiter)));
        // `http2` is accepted either way: HTTP/2 is not served, clients use HTTP/1.1 (see
        // the module documentation), which is what `http2: false` asks for.
        let _ = http.http2;
        Ok(WebConfig {
            tls,
            client_auth,
            guard,
            users: n_users,
        })
    }

    /// The TLS configuration, when the file turns TLS on.
    pub(crate) fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.clone()
    }

    /// `client_auth_type`.
    pub(crate) fn client_auth(&self) -> &'static str {
        self.client_auth
    }

    /// How many `basic_auth_users` there are (none: no authentication).
    pub fn basic_auth_users(&self) -> usize {
        self.users
    }

    /// Whether the server speaks TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// `router` behind the rate limit, the basic authentication and the extra headers: every
    /// route, the probes, `/metrics` and the fallback included.
    pub(crate) fn guard(&self, router: Router) -> Router {
        match &self.guard {
            Some(g) => router.layer(axum::middleware::from_fn_with_state(
                g.clone(),
                guard_requests,
            )),
            None => router,
        }
    }
}

/// A YAML document with nothing but blanks and comments: the exporter-toolkit takes it for
/// the default configuration (plain HTTP, no authentication).
fn is_empty_yaml(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    })
}

// ------------------------------------------------------------------------------------------
// The file.
// ------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    http_server_config: Option<HttpServerConfig>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<RateLimitConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    /// The certificate chain, inline PEM.
    #[serde(default)]
    cert: Option<String>,
    /// The key, inline PEM.
    #[serde(default)]
    key: Option<String>,
    /// The client CA, inline PEM.
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitConfig {
    #[serde(default)]
    interval: Option<GoDuration>,
    #[serde(default)]
    burst: Option<u32>,
}

/// A Go `time.Duration` as yaml.v2 reads it: a `time.ParseDuration` string, or an integer
/// number of nanoseconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum GoDuration {
    Nanos(u64),
    Text(String),
}

impl GoDuration {
    fn to_std(&self) -> Result<Duration, String> {
        match self {
            GoDuration::Nanos(n) => Ok(Duration::from_nanos(*n)),
            GoDuration::Text(s) => {
                if s.trim() == "0" {
                    return Ok(Duration::ZERO);
                }
                strata_model::Duration::parse_go(s)
                    .map(|d| d.to_std())
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// An optional string setting: Go reads an absent key and an empty string alike.
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Go's `config.JoinDir`: relative file names are relative to the configuration's directory.
fn join(dir: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

// ------------------------------------------------------------------------------------------
// TLS.
// ------------------------------------------------------------------------------------------

/// PEM text given inline or by file name.
#[derive(Debug, Clone)]
enum Pem {
    Inline { key: &'static str, text: String },
    File { key: &'static str, path: PathBuf },
}

impl Pem {
    /// The one of `inline` and `file` that is set (both is an error); None if neither.
    fn pick(
        inline: (&'static str, &Option<String>),
        file: (&'static str, &Option<String>),
        dir: &Path,
    ) -> Result<Option<Pem>, String> {
        match (set(inline.1), set(file.1)) {
            (Some(_), Some(_)) => Err(format!(
                "tls_server_config: set {} or {}, not both",
                inline.0, file.0
            )),
            (Some(text), None) => Ok(Some(Pem::Inline {
                key: inline.0,
                text: text.to_string(),
            })),
            (None, Some(f)) => Ok(Some(Pem::File {
                key: file.0,
                path: join(dir, f),
            })),
            (None, None) => Ok(None),
        }
    }

    fn what(&self) -> String {
        match self {
            Pem::Inline { key, .. } => format!("tls_server_config.{key}"),
            Pem::File { key, path } => format!("tls_server_config.{key} {}", path.display()),
        }
    }

    fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            Pem::Inline { text, .. } => Ok(text.as_bytes().to_vec()),
            Pem::File { path, .. } => {
                std::fs::read(path).map_err(|e| format!("reading {}: {e}", self.what()))
            }
        }
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        crate::tls::pem_certificates(&self.read()?).map_err(|e| format!("{}: {e}", self.what()))
    }

    /// The file's identity and version, None for inline PEM or a file that cannot be seen.
    fn stamp(&self) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let Pem::File { path, .. } = self else {
            return None;
        };
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        })
    }
}

/// What tells a changed file: a rewrite changes its modification time or size, a rename over
/// it (or a Kubernetes secret's symlink swap) its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

/// The server's certificate and key, read again when their files change: the exporter-toolkit
/// reads them on every handshake, so that certificates rotate without a restart.
#[derive(Debug)]
struct ReloadingCert {
    cert: Pem,
    key: Pem,
    provider: Arc<CryptoProvider>,
    state: Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    current: Arc<CertifiedKey>,
    /// The files' stamps when `current` was read.
    loaded: [Option<FileStamp>; 2],
    /// The stamps of a version that failed to load (say, a new certificate before its new
    /// key): not tried again, nor logged again, until a file changes once more.
    failed: Option<[Option<FileStamp>; 2]>,
}

impl ReloadingCert {
    fn new(cert: Pem, key: Pem, provider: Arc<CryptoProvider>) -> Result<ReloadingCert, String> {
        let loaded = [cert.stamp(), key.stamp()];
        let current = Arc::new(certified_key(&cert, &key, &provider)?);
        Ok(ReloadingCert {
            cert,
            key,
            provider,
            state: Mutex::new(CertState {
                current,
                loaded,
                failed: None,
            }),
        })
    }

    fn reloadable(&self) -> bool {
        matches!(self.cert, Pem::File { .. }) || matches!(self.key, Pem::File { .. })
    }
}

fn certified_key(cert: &Pem, key: &Pem, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let certs = cert.certificates()?;
    let der = PrivateKeyDer::from_pem_slice(&key.read()?)
        .map_err(|e| format!("{}: no private key in it: {e}", key.what()))?;
    CertifiedKey::from_der(certs, der, provider).map_err(|e| {
        format!(
            "{} does not fit {}: {e}",
            key.what(),
            cert.what().trim_start_matches("tls_server_config.")
        )
    })
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut state = self.state.lock().expect("certificate lock");
        if self.reloadable() {
            let now = [self.cert.stamp(), self.key.stamp()];
            // A file that cannot be seen (mid-rotation) keeps the certificate in use.
            let visible = now
                .iter()
                .zip([&self.cert, &self.key])
                .all(|(s, p)| s.is_some() || matches!(p, Pem::Inline { .. }));
            if visible && now != state.loaded && state.failed != Some(now) {
                match certified_key(&self.cert, &self.key, &self.provider) {
                    Ok(k) => {
                        tracing::info!(
                            cert = %self.cert.what(),
                            "HTTP server certificate changed on disk: using the new one"
                        );
                        state.current = Arc::new(k);
                        state.loaded = now;
                        state.failed = None;
                    }
                    Err(e) => {
                        tracing::warn!(
                            err = %e,
                            "HTTP server certificate changed on disk but cannot be used; \
                             still serving the previous one"
                        );
                        state.failed = Some(now);
                    }
                }
            }
        }
        Some(state.current.clone())
    }
}

/// `client_auth_type`, Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn parse(s: &str) -> Result<ClientAuth, String> {
        Ok(match s {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // The exporter-toolkit keeps the old name for compatibility.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            other => {
                return Err(format!(
                    "tls_server_config.client_auth_type: invalid value {other:?} (one of \
                     NoClientCert, RequestClientCert, RequireAnyClientCert, \
                     VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
                ));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            ClientAuth::NoClientCert => "NoClientCert",
            ClientAuth::RequestClientCert => "RequestClientCert",
            ClientAuth::RequireAnyClientCert => "RequireAnyClientCert",
            ClientAuth::VerifyClientCertIfGiven => "VerifyClientCertIfGiven",
            ClientAuth::RequireAndVerifyClientCert => "RequireAndVerifyClientCert",
        }
    }

    fn mandatory(self) -> bool {
        matches!(
            self,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// `min_version` / `max_version`: `TLS10` … `TLS13`, as the minor version (0 … 3).
fn tls_version(key: &str, v: &Option<String>, default: u8) -> Result<u8, String> {
    Ok(match v.as_deref() {
        None => default,
        Some("TLS10") => 0,
        Some("TLS11") => 1,
        Some("TLS12") => 2,
        Some("TLS13") => 3,
        Some(other) => {
            return Err(format!(
                "tls_server_config.{key}: unknown TLS version {other:?} (one of TLS10, TLS11, \
                 TLS12, TLS13)"
            ));
        }
    })
}

/// The TLS 1.2 cipher suites rustls implements, by their Go (IANA) names.
const TLS12_SUITES: &[(&str, u16)] = &[
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xc02b),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 0xc02c),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xc02f),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 0xc030),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xcca8),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", 0xcca9),
];

/// The TLS 1.3 cipher suites: Go accepts their names in `cipher_suites` but does not let
/// them be configured (every TLS 1.3 suite stays enabled); so does Strata.
const TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// `curve_preferences` names (Go's) and the groups they are.
const CURVES: &[(&str, Option<NamedGroup>)] = &[
    ("CurveP256", Some(NamedGroup::secp256r1)),
    ("CurveP384", Some(NamedGroup::secp384r1)),
    ("CurveP521", None),
    ("X25519", Some(NamedGroup::X25519)),
];

/// The rustls configuration the file's `tls_server_config` asks for, and its
/// `client_auth_type`; None when the section configures no TLS (no certificate, key, CA or
/// client authentication), as in the exporter-toolkit.
fn build_tls(
    t: &TlsServerConfig,
    dir: &Path,
) -> Result<Option<(Arc<rustls::ServerConfig>, &'static str)>, String> {
    let enabled = [
        &t.cert,
        &t.key,
        &t.client_ca,
        &t.cert_file,
        &t.key_file,
        &t.client_ca_file,
        &t.client_auth_type,
    ]
    .iter()
    .any(|v| set(v).is_some());
    if !enabled {
        // The exporter-toolkit then serves plain HTTP, ignoring the rest of the section:
        // refused, so that no TLS setting is silently without effect.
        let given: Vec<&str> = [
            ("cipher_suites", t.cipher_suites.is_some()),
            ("curve_preferences", t.curve_preferences.is_some()),
            ("min_version", t.min_version.is_some()),
            ("max_version", t.max_version.is_some()),
            (
                "prefer_server_cipher_suites",
                t.prefer_server_cipher_suites.is_some(),
            ),
            ("client_allowed_sans", t.client_allowed_sans.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, given)| given.then_some(k))
        .collect();
        if !given.is_empty() {
            return Err(format!(
                "tls_server_config sets {} but no certificate (cert_file or cert): TLS would \
                 be off and these settings without effect",
                given.join(", ")
            ));
        }
        return Ok(None);
    }
    let cert = Pem::pick(("cert", &t.cert), ("cert_file", &t.cert_file), dir)?
        .ok_or("tls_server_config: missing one of cert or cert_file")?;
    let key = Pem::pick(("key", &t.key), ("key_file", &t.key_file), dir)?
        .ok_or("tls_server_config: missing one of key or key_file")?;
    let client_ca = Pem::pick(
        ("client_ca", &t.client_ca),
        ("client_ca_file", &t.client_ca_file),
        dir,
    )?;
    let auth = ClientAuth::parse(set(&t.client_auth_type).unwrap_or(""))?;
    if client_ca.is_some() && auth == ClientAuth::NoClientCert {
        return Err(
            "tls_server_config: a client CA is configured without a client_auth_type that \
             asks for client certificates"
                .into(),
        );
    }
    if t.client_allowed_sans.is_some() && !auth.mandatory() {
        return Err(
            "tls_server_config.client_allowed_sans requires client_auth_type to be one of \
             RequireAnyClientCert or RequireAndVerifyClientCert"
                .into(),
        );
    }

    let min = tls_version("min_version", &t.min_version, 2)?;
    let max = tls_version("max_version", &t.max_version, 3)?;
    if max < 2 {
        return Err(format!(
            "tls_server_config.max_version: TLS1{max} is not supported: rustls, Strata's TLS \
             library, speaks TLS 1.2 and 1.3 only"
        ));
    }
    if min > max {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    if min < 2 {
        tracing::warn!(
            "--http.config: tls_server_config.min_version TLS1{min} means TLS 1.2 here: \
             rustls, Strata's TLS library, speaks TLS 1.2 and 1.3 only"
        );
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match (min.max(2), max) {
        (2, 3) => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        (3, _) => vec![&rustls::version::TLS13],
        _ => vec![&rustls::version::TLS12],
    };

    let base = crate::tls::provider();
    let mut provider = (*base).clone();
    if let Some(names) = &t.cipher_suites {
        let mut tls12 = Vec::new();
        for name in names {
            if TLS13_SUITES.contains(&name.as_str()) {
                tracing::warn!(
                    cipher_suite = %name,
                    "--http.config: tls_server_config.cipher_suites: TLS 1.3 suites cannot be \
                     chosen (as in Go): every TLS 1.3 suite stays enabled"
                );
                continue;
            }
            let id = TLS12_SUITES
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| *id)
                .ok_or_else(|| {
                    format!(
                        "tls_server_config.cipher_suites: {name:?} is unknown or not \
                         implemented by rustls, Strata's TLS library (it implements {}, and \
                         the TLS 1.3 suites)",
                        TLS12_SUITES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            let suite = base
                .cipher_suites
                .iter()
                .find(|s| u16::from(s.suite()) == id)
                .ok_or_else(|| {
                    format!(
                        "tls_server_config.cipher_suites: {name} is not enabled in this \
                         build's TLS provider"
                    )
                })?;
            if !tls12.contains(suite) {
                tls12.push(*suite);
            }
        }
        let mut suites: Vec<_> = base
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        suites.extend(tls12);
        provider.cipher_suites = suites;
    }
    if let Some(names) = &t.curve_preferences {
        let mut groups = Vec::new();
        for name in names {
            let group = CURVES
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| {
                    format!(
                        "tls_server_config.curve_preferences: unknown curve {name:?} (one of \
                         CurveP256, CurveP384, CurveP521, X25519)"
                    )
                })?
                .1
                .ok_or_else(|| {
                    format!(
                        "tls_server_config.curve_preferences: {name} is not implemented by \
                         rustls, Strata's TLS library (use CurveP256, CurveP384 or X25519)"
                    )
                })?;
            let kx = base
                .kx_groups
                .iter()
                .find(|g| g.name() == group)
                .ok_or_else(|| {
                    format!(
                        "tls_server_config.curve_preferences: {name} is not enabled in this \
                         build's TLS provider"
                    )
                })?;
            if !groups
                .iter()
                .any(|g: &&dyn rustls::crypto::SupportedKxGroup| g.name() == group)
            {
                groups.push(*kx);
            }
        }
        provider.kx_groups = groups;
    }
    let provider = Arc::new(provider);

    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match auth {
        ClientAuth::NoClientCert => None,
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            // Go asks for a certificate and does not verify it (its key is still proven by
            // the handshake's signature); the client CA's subjects are the hints it sends.
            let hints = match &client_ca {
                Some(ca) => roots(ca)?.subjects(),
                None => Vec::new(),
            };
            Some(Arc::new(AnyClientCert {
                mandatory: auth.mandatory(),
                hints,
                provider: provider.clone(),
            }))
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            // Without a client CA Go verifies against the system's roots, and sends no hints.
            let builder = match &client_ca {
                Some(ca) => WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca)?),
                    provider.clone(),
                ),
                None => WebPkiClientVerifier::builder_with_provider(
                    crate::tls::system_roots().map_err(|e| {
                        format!(
                            "tls_server_config: client certificates are to be verified and no \
                                 client CA is given (client_ca_file), but {e}"
                        )
                    })?,
                    provider.clone(),
                )
                .clear_root_hint_subjects(),
            };
            let builder = if auth.mandatory() {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            Some(
                builder
                    .build()
                    .map_err(|e| format!("tls_server_config: client CA: {e}"))?,
            )
        }
    };
    let verifier = match (&t.client_allowed_sans, verifier) {
        (Some(allowed), Some(inner)) => Some(Arc::new(AllowedSans {
            inner,
            allowed: allowed.clone(),
        }) as Arc<dyn ClientCertVerifier>),
        (_, v) => v,
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let resolver = ReloadingCert::new(cert, key, provider)?;
    let mut cfg = builder.with_cert_resolver(Arc::new(resolver));
    // The exporter-toolkit's default (Go itself has ignored it since 1.17 and lets the server
    // choose): the suites' order above is the server's preference.
    cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some((Arc::new(cfg), auth.name())))
}

/// The client CA certificates.
fn roots(ca: &Pem) -> Result<RootCertStore, String> {
    crate::tls::pem_roots(&ca.read()?).map_err(|e| format!("{}: {e}", ca.what()))
}

/// Go's `RequestClientCert` and `RequireAnyClientCert`: a certificate is asked for (and
/// required by the latter) but not verified against any CA.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Go still parses it: something that is not even DER is refused.
        match der::tlv(end_entity.as_ref()) {
            Some((0x30, _, [])) => Ok(ClientCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `client_allowed_sans`: after `inner` accepted the client's certificate, one of its subject
/// alternative names (DNS, e-mail, IP address or URI, as Go lists them) must be in `allowed`,
/// compared exactly.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("none of the client certificate's SANs {found:?} is in client_allowed_sans")]
struct SanNotAllowed {
    found: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = der::subject_alt_names(end_entity.as_ref()).ok_or(
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
        )?;
        if sans.iter().any(|s| self.allowed.contains(s)) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(SanNotAllowed { found: sans })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

/// Just enough DER to read a certificate's subject alternative names. Its items are `pub`
/// for the fuzz crate, which compiles the file in by path.
#[allow(unreachable_pub)]
mod der;

/// Connections whose TLS handshake completed ([`crate::tls::accept_tls`]).
#[derive(Debug)]
pub(crate) struct TlsListener {
    connections: tokio::sync::mpsc::Receiver<crate::tls::Accepted>,
    addr: SocketAddr,
}

impl TlsListener {
    pub(crate) fn new(
        listener: tokio::net::TcpListener,
        addr: SocketAddr,
        cfg: Arc<rustls::ServerConfig>,
    ) -> TlsListener {
        let rx = crate::tls::accept_tls(listener, cfg, "HTTP");
        TlsListener {
            connections: rx,
            addr,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(c) => c,
            // The accepting task is gone (it only ends once this receiver is dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

// ------------------------------------------------------------------------------------------
// Requests: rate limit, basic authentication, headers.
// ------------------------------------------------------------------------------------------

/// `http_server_config.headers` the exporter-toolkit allows, with the values it allows
/// (None: any).
const ALLOWED_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

fn check_headers(
    headers: BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) else {
            return Err(format!(
                "http_server_config.headers: HTTP header {name:?} can not be configured (one \
                 of {})",
                ALLOWED_HEADERS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        if let Some(allowed) = allowed
            && !allowed.contains(&value.as_str())
        {
            return Err(format!(
                "http_server_config.headers: invalid value for {name}: expected one of \
                 {allowed:?}, but got {value:?}"
            ));
        }
        // "Unset if blank".
        if value.is_empty() {
            continue;
        }
        let v = HeaderValue::from_str(&value).map_err(|_| {
            format!("http_server_config.headers: {name}: {value:?} is not a valid header value")
        })?;
        let name =
            HeaderName::from_bytes(name.as_bytes()).expect("an allowed header name is valid");
        out.push((name, v));
    }
    Ok(out)
}

/// `basic_auth_users`, checked.
#[derive(Debug, Default)]
struct Users {
    hashes: HashMap<String, String>,
    /// The highest cost among the hashes (the decoy's).
    max_cost: u32,
}

fn check_users(users: BTreeMap<String, String>) -> Result<Users, String> {
    let mut out = Users::default();
    for (user, hash) in users {
        let parts: bcrypt::HashParts = hash.parse().map_err(|e| {
            format!(
                "basic_auth_users: the password hash of user {user:?} is not a bcrypt hash: {e}"
            )
        })?;
        let cost = parts.get_cost();
        if !(4..=31).contains(&cost) {
            return Err(format!(
                "basic_auth_users: the password hash of user {user:?} has bcrypt cost {cost}, \
                 outside 4 to 31"
            ));
        }
        out.max_cost = out.max_cost.max(cost);
        out.hashes.insert(user, hash);
    }
    Ok(out)
}

/// `rate_limit`: a token bucket of `burst` requests refilled with one every `interval`, shared
/// by all clients (Go's `rate.Limiter`).
#[derive(Debug)]
struct RateLimiter {
    interval: Duration,
    burst: f64,
    /// Tokens, and when they were counted.
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// None when `interval` is zero (the exporter-toolkit's "disabled").
    fn new(c: RateLimitConfig) -> Result<Option<RateLimiter>, String> {
        let interval = match &c.interval {
            Some(i) => i
                .to_std()
                .map_err(|e| format!("rate_limit.interval: {e}"))?,
            None => Duration::ZERO,
        };
        if interval.is_zero() {
            return Ok(None);
        }
        let burst = c.burst.unwrap_or(0);
        if burst == 0 {
            return Err(
                "rate_limit.burst must be at least 1 when rate_limit.interval is set: with 0 \
                 every request would be refused"
                    .into(),
            );
        }
        Ok(Some(RateLimiter {
            interval,
            burst: f64::from(burst),
            state: Mutex::new((f64::from(burst), Instant::now())),
        }))
    }

    fn allow(&self) -> bool {
        let now = Instant::now();
        let mut s = self.state.lock().expect("rate limiter lock");
        let refill = now.duration_since(s.1).as_secs_f64() / self.interval.as_secs_f64();
        s.0 = (s.0 + refill).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What every request passes: the rate limit, then basic authentication; the extra headers
/// go on every response.
struct Guard {
    users: Users,
    /// A hash for unknown users, of the users' highest cost: a wrong user name takes as long
    /// to refuse as a wrong password (no user enumeration by timing).
    decoy: OnceLock<String>,
    /// Per user, a keyed digest of the password that last verified: bcrypt is slow by design
    /// and must not run on every request (the exporter-toolkit caches its results too).
    /// Bounded by the number of users.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    /// The digests' key, random per process, so that the cache holds nothing a stolen memory
    /// image could brute-force faster than bcrypt.
    digest_key: [u8; 32],
    /// bcrypt runs one at a time (as in the exporter-toolkit): a flood of wrong passwords
    /// costs one core, not all.
    bcrypt: Arc<tokio::sync::Mutex<()>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    limiter: Option<RateLimiter>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("users", &self.users.hashes.len())
            .field("headers", &self.headers)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl Guard {
    fn new(
        users: Users,
        headers: Vec<(HeaderName, HeaderValue)>,
        limiter: Option<RateLimiter>,
    ) -> Guard {
        let mut digest_key = [0u8; 32];
        crate::tls::provider()
            .secure_random
            .fill(&mut digest_key)
            .expect("the system's random number generator works");
        Guard {
            users,
            decoy: OnceLock::new(),
            verified: Mutex::new(HashMap::new()),
            digest_key,
            bcrypt: Arc::new(tokio::sync::Mutex::new(())),
            headers,
            limiter,
        }
    }

    fn digest(&self, user: &[u8], password: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.digest_key);
        h.update((user.len() as u64).to_le_bytes());
        h.update(user);
        h.update(password);
        h.finalize().into()
    }

    /// Whether `digest` is the one cached for `user`, compared in constant time.
    fn cached(&self, user: &str, digest: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .expect("auth cache lock")
            .get(user)
            .is_some_and(|d| bool::from(d.ct_eq(digest)))
    }

    /// Whether the request carries the credentials of one of the users.
    async fn authorized(self: &Arc<Self>, headers: &HeaderMap) -> bool {
        let Some((user, password)) = basic_credentials(headers) else {
            return false;
        };
        let digest = self.digest(&user, &password);
        // A user name that is not UTF-8 is no user: it still gets the decoy's bcrypt below.
        let user = String::from_utf8(user).unwrap_or_default();
        if self.users.hashes.contains_key(&user) && self.cached(&user, &digest) {
            return true;
        }
        // The lock goes into the blocking task, so that a request that gives up waiting
        // does not let a second bcrypt start while its own still runs.
        let turn = self.bcrypt.clone().lock_owned().await;
        let guard = self.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            guard.verify(&user, &password, digest)
        })
        .await
        .unwrap_or(false)
    }

    /// bcrypt, unless requests that waited for the same credentials verified them meanwhile.
    fn verify(&self, user: &str, password: &[u8], digest: [u8; 32]) -> bool {
        let hash = match self.users.hashes.get(user) {
            Some(hash) => {
                if self.cached(user, &digest) {
                    return true;
                }
                hash.as_str()
            }
            None => {
                let decoy = self.decoy.get_or_init(|| {
                    bcrypt::hash_with_salt(b"strata: no such user", self.users.max_cost, [0x5a; 16])
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                });
                let _ = bcrypt::verify(password, decoy);
                return false;
            }
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            self.verified
                .lock()
                .expect("auth cache lock")
                .insert(user.to_string(), digest);
        }
        ok
    }
}

/// The user and password of an `Authorization: Basic` header, as Go's `Request.BasicAuth`
/// reads them.
fn basic_credentials(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    const PREFIX: &[u8] = b"Basic ";
    if value.len() < PREFIX.len() || !value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&value[PREFIX.len()..])
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

async fn guard_requests(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    if let Some(limiter) = &g.limiter
        && !limiter.allow()
    {
        return (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response();
    }
    let mut response = if g.users.hashes.is_empty() || g.authorized(req.headers()).await {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, "Basic"),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            "Unauthorized\n",
        )
            .into_response()
    };
    // The exporter-toolkit sets them before the handler runs, which may override them.
    for (name, value) in &g.headers {
        if !response.headers().contains_key(name) {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests;
