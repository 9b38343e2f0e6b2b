//! Thanos-style address discovery: the `host:port`, `dns+host:port`, `dnssrv+name` and
//! `dnssrvnoa+name` forms that the querier's `--endpoint` flags and the store gateway's
//! memcached `addresses` take, and their resolution to `host:port` addresses.
//!
//! A/AAAA lookups go through the system resolver (`getaddrinfo`, so `/etc/hosts` counts);
//! SRV lookups, which it cannot make, through a [`Resolver`] reading `/etc/resolv.conf`.
//! Lookups that fail are logged and give nothing: the callers re-resolve periodically and
//! decide what an empty answer means (the querier keeps a group's last members).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use hickory_resolver::TokioResolver;

/// One address in Thanos' discovery syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressSpec {
    /// `host:port`, used as given: the host is left to whoever connects (no lookup here), so
    /// a name keeps following its DNS records between re-resolutions.
    Static(String),
    /// `dns+host:port`: every A/AAAA address of `host`, with `port`, so each replica behind
    /// one name (a headless service) is its own address.
    Dns { host: String, port: u16 },
    /// `dnssrv+name`: SRV records, each target resolved to its addresses, for services that
    /// publish their ports in DNS.
    DnsSrv(String),
    /// `dnssrvnoa+name`: SRV records, targets used as host names, for targets that have no
    /// A/AAAA records of their own in the same zone (or that must stay names, for TLS).
    DnsSrvNoA(String),
}

/// An address that is not one of the [`AddressSpec`] forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad address {address:?}: want host:port, dns+host:port, dnssrv+name or dnssrvnoa+name")]
pub struct BadAddress {
    /// The address as written.
    pub address: String,
}

impl AddressSpec {
    /// Parses Thanos' address syntax.
    pub fn parse(s: &str) -> Result<Self, BadAddress> {
        let bad = || BadAddress {
            address: s.to_string(),
        };
        let host_port = |hp: &str| -> Result<(String, u16), BadAddress> {
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
            Ok(AddressSpec::Dns { host, port })
        } else if let Some(rest) = s.strip_prefix("dnssrv+") {
            if rest.is_empty() {
                return Err(bad());
            }
            Ok(AddressSpec::DnsSrv(rest.to_string()))
        } else if let Some(rest) = s.strip_prefix("dnssrvnoa+") {
            if rest.is_empty() {
                return Err(bad());
            }
            Ok(AddressSpec::DnsSrvNoA(rest.to_string()))
        } else if s.contains('+') || s.contains("://") {
            Err(bad())
        } else {
            host_port(s)?;
            Ok(AddressSpec::Static(s.to_string()))
        }
    }

    /// Whether resolving it takes SRV lookups (and so a [`Resolver`] that can make them).
    pub fn uses_srv(&self) -> bool {
        matches!(self, AddressSpec::DnsSrv(_) | AddressSpec::DnsSrvNoA(_))
    }
}

/// A DNS resolver's configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResolverError(String);

/// Resolves [`AddressSpec`]s: A/AAAA through the system resolver, SRV through a DNS client
/// built once from the system's configuration (or a given server).
///
/// Without a usable configuration it still resolves everything but SRV names, which give
/// nothing (with a warning), so a component whose addresses never use SRV does not depend on
/// `/etc/resolv.conf`.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    srv: Option<TokioResolver>,
}

impl Resolver {
    /// A resolver without SRV lookups (what [`Resolver::default`] gives).
    pub fn without_srv() -> Self {
        Resolver::default()
    }

    /// SRV lookups with the system's configuration (`/etc/resolv.conf`). A configuration that
    /// cannot be read is logged and leaves the resolver without SRV lookups; use
    /// [`Resolver::try_new`] to fail instead.
    pub fn system() -> Self {
        Self::or_warn(Self::try_new(None))
    }

    /// SRV lookups with the DNS server `server` (tests run their own). A failure is logged
    /// as for [`Resolver::system`].
    pub fn with_server(server: SocketAddr) -> Self {
        Self::or_warn(Self::try_new(Some(server)))
    }

    fn or_warn(r: Result<Self, ResolverError>) -> Self {
        r.unwrap_or_else(|e| {
            tracing::warn!(err = %e, "no DNS resolver for SRV lookups");
            Resolver::default()
        })
    }

    /// SRV lookups with `server`, or with the system's configuration when `None`; an error
    /// when the configuration cannot be read.
    pub fn try_new(server: Option<SocketAddr>) -> Result<Self, ResolverError> {
        let built = match server {
            None => TokioResolver::builder_tokio().and_then(|b| b.build()),
            Some(addr) => {
                use hickory_resolver::config::{
                    ConnectionConfig, NameServerConfig, ResolverConfig,
                };
                let mut conn = ConnectionConfig::udp();
                conn.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![conn]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
                )
                .build()
            }
        };
        built
            .map(|r| Resolver { srv: Some(r) })
            .map_err(|e| ResolverError(format!("system DNS configuration: {e}")))
    }

    /// Whether SRV names can be resolved.
    pub fn has_srv(&self) -> bool {
        self.srv.is_some()
    }

    /// The addresses one spec stands for now (a static address stands for itself). A
    /// failed lookup is logged and gives nothing.
    pub async fn resolve(&self, spec: &AddressSpec) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        match spec {
            AddressSpec::Static(a) => {
                out.insert(a.clone());
            }
            AddressSpec::Dns { host, port } => {
                match tokio::net::lookup_host((host.as_str(), *port)).await {
                    Ok(addrs) => out.extend(addrs.map(|a| a.to_string())),
                    Err(e) => tracing::warn!(%host, err = %e, "DNS lookup failed"),
                }
            }
            AddressSpec::DnsSrv(name) | AddressSpec::DnsSrvNoA(name) => {
                let Some(r) = &self.srv else {
                    tracing::warn!(%name, "no DNS resolver for SRV lookups; check /etc/resolv.conf");
                    return out;
                };
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
                        return out;
                    }
                };
                for (target, port) in targets {
                    if matches!(spec, AddressSpec::DnsSrvNoA(_)) {
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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_parses_every_form() {
        assert_eq!(
            AddressSpec::parse("localhost:10901").unwrap(),
            AddressSpec::Static("localhost:10901".into())
        );
        assert_eq!(
            AddressSpec::parse("[::1]:10901").unwrap(),
            AddressSpec::Static("[::1]:10901".into())
        );
        assert_eq!(
            AddressSpec::parse("dns+store.svc:10901").unwrap(),
            AddressSpec::Dns {
                host: "store.svc".into(),
                port: 10901
            }
        );
        assert_eq!(
            AddressSpec::parse("dns+[::1]:11211").unwrap(),
            AddressSpec::Dns {
                host: "::1".into(),
                port: 11211
            }
        );
        assert_eq!(
            AddressSpec::parse("dnssrv+_grpc._tcp.store.svc").unwrap(),
            AddressSpec::DnsSrv("_grpc._tcp.store.svc".into())
        );
        assert_eq!(
            AddressSpec::parse("dnssrvnoa+_grpc._tcp.store.svc").unwrap(),
            AddressSpec::DnsSrvNoA("_grpc._tcp.store.svc".into())
        );
        assert!(AddressSpec::parse("dnssrv+x").unwrap().uses_srv());
        assert!(AddressSpec::parse("dnssrvnoa+x").unwrap().uses_srv());
        assert!(!AddressSpec::parse("dns+x:1").unwrap().uses_srv());
    }

    #[test]
    fn dns_rejects_other_forms_naming_the_address() {
        for bad in [
            "localhost",
            "dns+host",
            "foo+bar:1",
            "http://x:1",
            ":1",
            "h:99999",
            "dnssrv+",
            "dnssrvnoa+",
            "dns+:1",
        ] {
            let e = AddressSpec::parse(bad).unwrap_err();
            assert_eq!(e.address, bad);
            let msg = e.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains("want host:port, dns+host:port"), "{msg}");
        }
    }

    #[tokio::test]
    async fn dns_resolves_static_and_a_records() {
        let r = Resolver::without_srv();
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        // Static addresses are not looked up.
        assert_eq!(
            r.resolve(&AddressSpec::Static("no-such-host.invalid:1".into()))
                .await,
            set(&["no-such-host.invalid:1"])
        );
        assert_eq!(
            r.resolve(&AddressSpec::parse("dns+127.0.0.1:11211").unwrap())
                .await,
            set(&["127.0.0.1:11211"])
        );
        // SRV names without an SRV resolver give nothing.
        assert!(!r.has_srv());
        assert!(
            r.resolve(&AddressSpec::parse("dnssrv+_x._tcp.example").unwrap())
                .await
                .is_empty()
        );
    }
}
