//! Where alerts go: `--alertmanagers.url` (repeatable) with `--alertmanagers.send-timeout`, or
//! `--alertmanagers.config[-file]`, Thanos' `AlertingConfig` YAML, which takes precedence.
//!
//! ```yaml
//! alertmanagers:
//!   - http_config: {basic_auth: {...}, bearer_token: ..., tls_config: {...}, proxy_url: ...}
//!     static_configs: ["am-0:9093", "dns+am.svc:9093", "dnssrv+_web._tcp.am.svc"]
//!     file_sd_configs: [{files: ["/etc/am/*.json"], refresh_interval: 5m}]
//!     scheme: http
//!     path_prefix: /am
//!     timeout: 10s
//!     api_version: v2
//! ```
//!
//! Each entry is one *set* of Alertmanagers (one cluster): every alert batch goes to every
//! resolved address of every set. Unknown keys are errors, as Thanos reads the file strictly.
//!
//! `api_version`: Thanos defaults it to `v1` (for the URL flags too). Alertmanager 0.27
//! removed that API, so here `v2` is both the default and the only version; an explicit `v1`
//! is refused at start-up rather than failing on every send.

use std::time::Duration;

use serde::Deserialize;
use strata_runtime::dns::AddressSpec;
use strata_runtime::http_client::{BasicAuth, HttpClientConfig};

use super::NotifierError;

/// Thanos' default Alertmanager port, added to `dns+` URLs that name none.
const DEFAULT_ALERTMANAGER_PORT: u16 = 9093;

/// Per-set `timeout` when the YAML gives none (Thanos' default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Prometheus' file SD `refresh_interval` default.
const DEFAULT_FILE_SD_REFRESH: Duration = Duration::from_secs(300);

/// Every Alertmanager set the ruler notifies.
#[derive(Debug, Clone, Default)]
pub struct NotifierConfig {
    pub alertmanagers: Vec<AlertmanagerSet>,
}

/// One set of Alertmanagers sharing a client configuration.
#[derive(Debug, Clone)]
pub struct AlertmanagerSet {
    /// Authentication, TLS and proxy for every address of the set.
    pub http_config: HttpClientConfig,
    /// Addresses in Thanos' discovery syntax (`host:port`, `dns+`, `dnssrv+`, `dnssrvnoa+`),
    /// or a bare host from a URL without a port (the scheme's port is then used).
    pub static_addresses: Vec<AddressSpec>,
    /// Files listing more addresses (Prometheus file SD format).
    pub file_sd: Vec<FileSdConfig>,
    /// `http` or `https`.
    pub scheme: String,
    /// Path before `/api/v2/alerts` (an Alertmanager behind a reverse proxy path).
    pub path_prefix: String,
    /// How long one POST to one Alertmanager may take.
    pub timeout: Duration,
}

/// `file_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSdConfig {
    /// Paths; the file name part may hold `*` and `?` wildcards.
    pub files: Vec<String>,
    /// How often the files are re-read.
    pub refresh_interval: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertingConfig {
    #[serde(default)]
    alertmanagers: Option<Vec<RawAlertmanager>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    #[serde(default)]
    http_config: Option<HttpClientConfig>,
    #[serde(default)]
    static_configs: Option<Vec<String>>,
    #[serde(default)]
    file_sd_configs: Option<Vec<RawFileSd>>,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileSd {
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    refresh_interval: Option<String>,
}

impl NotifierConfig {
    /// The configuration from the ruler's flags. A non-empty `config_yaml`
    /// (`--alertmanagers.config[-file]`) wins over `urls` (`--alertmanagers.url`) and
    /// `send_timeout` (`--alertmanagers.send-timeout`), which are then ignored, as in Thanos.
    pub fn from_flags(
        urls: &[String],
        send_timeout: Duration,
        config_yaml: Option<&str>,
    ) -> Result<Self, NotifierError> {
        if let Some(yaml) = config_yaml.filter(|y| !y.trim().is_empty()) {
            if !urls.is_empty() {
                tracing::warn!(
                    "--alertmanagers.config is set: --alertmanagers.url and \
                     --alertmanagers.send-timeout are ignored"
                );
            }
            return Self::from_yaml(yaml);
        }
        let alertmanagers = urls
            .iter()
            .map(|u| AlertmanagerSet::from_url(u, send_timeout))
            .collect::<Result<_, _>>()?;
        Ok(NotifierConfig { alertmanagers })
    }

    /// Parses `--alertmanagers.config` YAML strictly.
    pub fn from_yaml(yaml: &str) -> Result<Self, NotifierError> {
        let raw: Option<RawAlertingConfig> =
            serde_yaml_ng::from_str(yaml).map_err(|e| NotifierError::ConfigYaml(e.to_string()))?;
        let raw = raw.and_then(|r| r.alertmanagers).unwrap_or_default();
        let alertmanagers = raw
            .into_iter()
            .enumerate()
            .map(|(i, r)| AlertmanagerSet::from_raw(i, r))
            .collect::<Result<_, _>>()?;
        Ok(NotifierConfig { alertmanagers })
    }
}

fn config_err(index: usize, key: &str, detail: impl Into<String>) -> NotifierError {
    NotifierError::Config {
        key: format!("alertmanagers[{index}].{key}"),
        detail: detail.into(),
    }
}

fn check_scheme(scheme: &str) -> Result<(), String> {
    match scheme {
        "http" | "https" => Ok(()),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

/// An address in Thanos' discovery syntax (static configs, file SD, URLs). An SRV name takes
/// its ports from its records: a `:port` there is refused rather than looked up as part of the
/// name (which would find nothing).
pub(crate) fn parse_address(addr: &str) -> Result<AddressSpec, String> {
    let spec = AddressSpec::parse(addr).map_err(|e| e.to_string())?;
    if let AddressSpec::DnsSrv(name) | AddressSpec::DnsSrvNoA(name) = &spec
        && name.contains(':')
    {
        return Err(format!(
            "{addr:?}: an SRV name takes its ports from its SRV records; remove the :port"
        ));
    }
    Ok(spec)
}

/// An address as written in the configuration, for messages.
pub(crate) fn address_text(spec: &AddressSpec) -> String {
    match spec {
        AddressSpec::Static(a) => a.clone(),
        AddressSpec::Dns { host, port } => format!("dns+{host}:{port}"),
        AddressSpec::DnsSrv(n) => format!("dnssrv+{n}"),
        AddressSpec::DnsSrvNoA(n) => format!("dnssrvnoa+{n}"),
    }
}

impl AlertmanagerSet {
    fn from_raw(i: usize, r: RawAlertmanager) -> Result<Self, NotifierError> {
        match r.api_version.as_deref() {
            None | Some("") | Some("v2") => {}
            Some("v1") => {
                return Err(config_err(
                    i,
                    "api_version",
                    "v1 is not supported: Alertmanager removed its v1 API (0.27); remove the \
                     key or set it to v2",
                ));
            }
            Some(other) => {
                return Err(config_err(
                    i,
                    "api_version",
                    format!("{other:?} is not an Alertmanager API version; use v2"),
                ));
            }
        }
        let scheme = r
            .scheme
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "http".into());
        check_scheme(&scheme).map_err(|d| config_err(i, "scheme", d))?;
        let timeout = match r.timeout.as_deref() {
            None | Some("") => DEFAULT_TIMEOUT,
            Some(t) => prometheus_duration(t).map_err(|d| config_err(i, "timeout", d))?,
        };
        if timeout.is_zero() {
            return Err(config_err(i, "timeout", "must be positive"));
        }
        let static_addresses = r
            .static_configs
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(j, a)| {
                parse_address(a).map_err(|d| config_err(i, &format!("static_configs[{j}]"), d))
            })
            .collect::<Result<_, _>>()?;
        let file_sd = r
            .file_sd_configs
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(j, f)| {
                let refresh_interval = match f.refresh_interval.as_deref() {
                    None | Some("") => DEFAULT_FILE_SD_REFRESH,
                    Some(t) => prometheus_duration(t).map_err(|d| {
                        config_err(i, &format!("file_sd_configs[{j}].refresh_interval"), d)
                    })?,
                };
                if f.files.is_empty() {
                    return Err(config_err(
                        i,
                        &format!("file_sd_configs[{j}].files"),
                        "lists no file",
                    ));
                }
                Ok(FileSdConfig {
                    files: f.files,
                    refresh_interval: refresh_interval.max(Duration::from_secs(1)),
                })
            })
            .collect::<Result<_, _>>()?;
        let http_config = r.http_config.unwrap_or_default();
        Ok(AlertmanagerSet {
            http_config,
            static_addresses,
            file_sd,
            scheme,
            path_prefix: r.path_prefix.unwrap_or_default(),
            timeout,
        })
    }

    /// One `--alertmanagers.url`: `http://host:9093`, `https://user:pass@host/prefix`,
    /// `dns+http://name:9093`, `dnssrv+https://_web._tcp.name`, `dnssrvnoa+http://…`.
    /// Credentials become basic auth, the path the path prefix; a `dns+` URL without a port
    /// gets 9093, as in Thanos (a plain URL without a port uses its scheme's port).
    pub fn from_url(url: &str, timeout: Duration) -> Result<Self, NotifierError> {
        let bad = |detail: &str| NotifierError::BadUrl {
            url: redact_url(url),
            detail: detail.to_string(),
        };
        if timeout.is_zero() {
            return Err(NotifierError::SendTimeout);
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let full_scheme = parsed.scheme().to_ascii_lowercase();
        let (dns_prefix, scheme) = match full_scheme.split_once('+') {
            Some((p, s)) if matches!(p, "dns" | "dnssrv" | "dnssrvnoa") => (Some(p), s),
            Some(_) => {
                return Err(bad(
                    "unknown discovery prefix: use dns+, dnssrv+ or dnssrvnoa+",
                ));
            }
            None => (None, full_scheme.as_str()),
        };
        check_scheme(scheme).map_err(|d| bad(&d))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let host_port = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let address = match dns_prefix {
            Some("dns") => {
                let hp = if parsed.port().is_some() {
                    host_port
                } else {
                    format!("{host}:{DEFAULT_ALERTMANAGER_PORT}")
                };
                parse_address(&format!("dns+{hp}")).map_err(|e| bad(&e))?
            }
            Some(p) => parse_address(&format!("{p}+{host_port}")).map_err(|e| bad(&e))?,
            None if parsed.port().is_some() => parse_address(&host_port).map_err(|e| bad(&e))?,
            // No port: the host alone, the URL's scheme decides the port.
            None => AddressSpec::Static(host.to_string()),
        };
        let mut http_config = HttpClientConfig::default();
        if !parsed.username().is_empty() || parsed.password().is_some() {
            http_config.basic_auth = BasicAuth {
                username: percent_decode(parsed.username()),
                password: percent_decode(parsed.password().unwrap_or_default()),
                password_file: String::new(),
            };
        }
        Ok(AlertmanagerSet {
            http_config,
            static_addresses: vec![address],
            file_sd: Vec::new(),
            scheme: scheme.to_string(),
            path_prefix: parsed.path().to_string(),
            timeout,
        })
    }

    /// `<scheme>://<address>/<path_prefix>/api/v2/alerts`, the prefix's slashes normalised.
    pub(crate) fn alerts_url(&self, address: &str) -> String {
        let mut path = String::new();
        for seg in self.path_prefix.split('/').filter(|s| !s.is_empty()) {
            path.push('/');
            path.push_str(seg);
        }
        format!("{}://{address}{path}/api/v2/alerts", self.scheme)
    }
}

/// Prometheus' duration syntax (`10s`, `1m30s`, `5m`).
fn prometheus_duration(s: &str) -> Result<Duration, String> {
    strata_model::Duration::parse_prometheus(s)
        .map(|d| d.to_std())
        .map_err(|e| format!("{e} (want a Prometheus duration such as 10s or 1m)"))
}

/// The URL with its password replaced, for error messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("xxxxx"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `%XX` escapes of URL user info decoded (Go's `url.User` gives them decoded).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(7);

    fn one(url: &str) -> AlertmanagerSet {
        let c = NotifierConfig::from_flags(&[url.to_string()], T, None).unwrap();
        assert_eq!(c.alertmanagers.len(), 1);
        c.alertmanagers.into_iter().next().unwrap()
    }

    #[test]
    fn url_forms() {
        let s = one("http://am:9093");
        assert_eq!(
            s.static_addresses,
            vec![AddressSpec::Static("am:9093".into())]
        );
        assert_eq!(s.scheme, "http");
        assert_eq!(s.timeout, T);
        assert_eq!(s.alerts_url("am:9093"), "http://am:9093/api/v2/alerts");

        let s = one("dns+http://am.svc:9093");
        assert_eq!(
            s.static_addresses,
            vec![AddressSpec::Dns {
                host: "am.svc".into(),
                port: 9093
            }]
        );
        // dns+ without a port gets Alertmanager's.
        let s = one("dns+https://am.svc/prefix/");
        assert_eq!(
            s.static_addresses,
            vec![AddressSpec::Dns {
                host: "am.svc".into(),
                port: 9093
            }]
        );
        assert_eq!(s.scheme, "https");
        assert_eq!(
            s.alerts_url("10.0.0.1:9093"),
            "https://10.0.0.1:9093/prefix/api/v2/alerts"
        );

        let s = one("dnssrv+http://_web._tcp.am.svc");
        assert_eq!(
            s.static_addresses,
            vec![AddressSpec::DnsSrv("_web._tcp.am.svc".into())]
        );
        let s = one("dnssrvnoa+http://_web._tcp.am.svc");
        assert_eq!(
            s.static_addresses,
            vec![AddressSpec::DnsSrvNoA("_web._tcp.am.svc".into())]
        );

        // Plain URL without a port: the scheme's port, as Go's client would use.
        let s = one("http://am");
        assert_eq!(s.static_addresses, vec![AddressSpec::Static("am".into())]);

        let s = one("http://user:p%40ss@am:9093/sub/path");
        assert_eq!(s.http_config.basic_auth.username, "user");
        assert_eq!(s.http_config.basic_auth.password, "p@ss");
        assert_eq!(
            s.alerts_url("am:9093"),
            "http://am:9093/sub/path/api/v2/alerts"
        );
    }

    #[test]
    fn bad_urls_say_which_and_hide_passwords() {
        for (url, want) in [
            ("am:9093", "not http or https"),
            ("ftp://am:9093", "not http or https"),
            ("srv+http://am:9093", "discovery prefix"),
            ("http://", "--alertmanagers.url"),
            ("dnssrv+http://_web._tcp.am:9093", "remove the :port"),
        ] {
            let err = NotifierConfig::from_flags(&[url.into()], T, None).unwrap_err();
            assert!(err.to_string().contains(want), "{url}: {err}");
        }
        let err = NotifierConfig::from_flags(&["ftp://u:secret@am".into()], T, None).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = NotifierConfig::from_flags(&["http://am:9093".into()], Duration::ZERO, None)
            .unwrap_err();
        assert!(err.to_string().contains("send-timeout"), "{err}");
    }

    #[test]
    fn every_url_is_its_own_set() {
        let c = NotifierConfig::from_flags(&["http://a:1".into(), "https://b:2".into()], T, None)
            .unwrap();
        let urls: Vec<String> = c
            .alertmanagers
            .iter()
            .map(|s| s.alerts_url(&address_text(&s.static_addresses[0])))
            .collect();
        assert_eq!(
            urls,
            ["http://a:1/api/v2/alerts", "https://b:2/api/v2/alerts"]
        );
        assert!(
            NotifierConfig::from_flags(&[], T, None)
                .unwrap()
                .alertmanagers
                .is_empty()
        );
    }

    #[test]
    fn yaml_takes_precedence_over_urls() {
        let yaml = "alertmanagers:\n  - static_configs: [\"a:1\"]\n    timeout: 3s\n";
        let c = NotifierConfig::from_flags(&["http://b:2".into()], T, Some(yaml)).unwrap();
        assert_eq!(c.alertmanagers.len(), 1);
        assert_eq!(
            c.alertmanagers[0].static_addresses,
            vec![AddressSpec::Static("a:1".into())]
        );
        assert_eq!(c.alertmanagers[0].timeout, Duration::from_secs(3));
        // Empty YAML is as if unset.
        let c = NotifierConfig::from_flags(&["http://b:2".into()], T, Some("  \n")).unwrap();
        assert_eq!(
            c.alertmanagers[0].static_addresses,
            vec![AddressSpec::Static("b:2".into())]
        );
    }

    #[test]
    fn full_yaml() {
        let yaml = r#"
alertmanagers:
  - http_config:
      basic_auth: {username: u, password: p}
      tls_config: {insecure_skip_verify: true}
    static_configs: ["dns+am.svc:9093", "dnssrv+_web._tcp.am.svc", "10.0.0.1:9093"]
    file_sd_configs:
      - files: ["/etc/am/*.json"]
        refresh_interval: 1m
    scheme: https
    path_prefix: /am/
    timeout: 30s
    api_version: v2
  - static_configs: ["b:9093"]
"#;
        let c = NotifierConfig::from_yaml(yaml).unwrap();
        assert_eq!(c.alertmanagers.len(), 2);
        let a = &c.alertmanagers[0];
        assert_eq!(a.http_config.basic_auth.username, "u");
        assert!(a.http_config.tls_config.insecure_skip_verify);
        assert_eq!(a.static_addresses.len(), 3);
        assert_eq!(
            a.file_sd,
            vec![FileSdConfig {
                files: vec!["/etc/am/*.json".into()],
                refresh_interval: Duration::from_secs(60)
            }]
        );
        assert_eq!(a.timeout, Duration::from_secs(30));
        assert_eq!(a.alerts_url("h:1"), "https://h:1/am/api/v2/alerts");
        let b = &c.alertmanagers[1];
        assert_eq!(b.scheme, "http");
        assert_eq!(b.timeout, DEFAULT_TIMEOUT);
        assert!(
            NotifierConfig::from_yaml("")
                .unwrap()
                .alertmanagers
                .is_empty()
        );
        assert!(
            NotifierConfig::from_yaml("alertmanagers: []")
                .unwrap()
                .alertmanagers
                .is_empty()
        );
    }

    #[test]
    fn bad_yaml_names_the_key() {
        for (yaml, want) in [
            (
                "alertmanagers:\n  - api_version: v1\n",
                "alertmanagers[0].api_version: v1 is not supported",
            ),
            ("alertmanagers:\n  - api_version: v3\n", "api_version"),
            ("alertmanagers:\n  - statc_configs: []\n", "statc_configs"),
            ("alertmanager: []\n", "alertmanager"),
            (
                "alertmanagers:\n  - http_config: {bearer_tokn: x}\n",
                "bearer_tokn",
            ),
            (
                "alertmanagers:\n  - timeout: 10\n",
                "alertmanagers[0].timeout",
            ),
            ("alertmanagers:\n  - timeout: 0s\n", "must be positive"),
            (
                "alertmanagers:\n  - scheme: ftp\n",
                "alertmanagers[0].scheme",
            ),
            (
                "alertmanagers:\n  - {}\n  - static_configs: [\"nope\"]\n",
                "alertmanagers[1].static_configs[0]",
            ),
            (
                "alertmanagers:\n  - file_sd_configs: [{files: []}]\n",
                "file_sd_configs[0].files",
            ),
            (
                "alertmanagers:\n  - file_sd_configs: [{files: [a], refresh_interval: x}]\n",
                "refresh_interval",
            ),
            ("alertmanagers: [", "--alertmanagers.config"),
            (
                "alertmanagers:\n  - static_configs: [\"dnssrv+_web._tcp.am:9093\"]\n",
                "remove the :port",
            ),
        ] {
            let err = NotifierConfig::from_yaml(yaml).unwrap_err();
            assert!(err.to_string().contains(want), "{yaml}: {err}");
            assert!(
                err.to_string().contains("--alertmanagers.config"),
                "{yaml}: {err}"
            );
        }
    }
}
