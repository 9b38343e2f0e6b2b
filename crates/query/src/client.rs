//! How the querier reaches its endpoints: the gRPC client settings of the
//! `--grpc-client-*` and `--grpc-compression` flags ([`ClientConfig`]), the changes the
//! endpoint SD config makes to them ([`EndpointClient`]: `default_client_config` and each
//! endpoint's `client_config`, or the older `grpc_client_config`), and the checked form that
//! opens channels (`Client`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use strata_storepb::snappy::SnappyChannel;
use strata_storepb::thanos::exemplars_client::ExemplarsClient;
use strata_storepb::thanos::metadata_client::MetadataClient;
use strata_storepb::thanos::rules_client::RulesClient;
use strata_storepb::thanos::store_client::StoreClient;
use strata_storepb::thanos::targets_client::TargetsClient;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Identity};

use crate::endpoint::{EndpointChannel, MAX_FRAME_BYTES, MAX_H2_FRAME, StoreChannel};
use crate::error::QueryError;

/// `--grpc-compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    /// Thanos' only other choice: every message compressed in the Snappy framing format,
    /// as Thanos' (grpc-go's) `snappy` compressor does, for calls to Thanos and Strata
    /// endpoints alike. tonic has no snappy codec; [`strata_storepb::snappy`] wraps the
    /// channel instead.
    Snappy,
    /// gzip (not a Thanos value; offered for Strata-to-Strata links).
    Gzip,
}

/// `--grpc-client-tls-min-version` and `tls_config.min_version`: the oldest TLS version
/// the querier accepts from an endpoint.
///
/// rustls speaks TLS 1.2 and 1.3 only, so `1.0` and `1.1` mean what `1.2` means: no
/// endpoint that Thanos would reach with them and Strata cannot is likely to exist (TLS
/// 1.0 and 1.1 were withdrawn by RFC 8996). `1.3`, Thanos' default, is enforced: a server
/// that answers with TLS 1.2 fails the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMinVersion {
    V1_0,
    V1_1,
    V1_2,
    #[default]
    V1_3,
}

impl std::str::FromStr for TlsMinVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1.0" => Ok(TlsMinVersion::V1_0),
            "1.1" => Ok(TlsMinVersion::V1_1),
            "1.2" => Ok(TlsMinVersion::V1_2),
            "1.3" => Ok(TlsMinVersion::V1_3),
            other => Err(format!(
                "TLS version {other:?} is invalid: must be one of \"1.0\", \"1.1\", \"1.2\", \"1.3\""
            )),
        }
    }
}

/// How to reach the endpoints (`--grpc-client-*`, `--grpc-compression`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientConfig {
    pub tls: bool,
    /// With `tls`: accept any server certificate (the connection is encrypted but not
    /// authenticated); `ca` is then not used. Without `tls`: no effect, as in Thanos.
    pub tls_skip_verify: bool,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The CA that server certificates must chain to. None: the system's roots (as Go's
    /// TLS does when `RootCAs` is nil), read from `SSL_CERT_FILE`/`SSL_CERT_DIR` when set.
    pub ca: Option<PathBuf>,
    pub server_name: Option<String>,
    pub min_version: TlsMinVersion,
    pub compression: Compression,
}

/// A `ClientConfig` checked and with its files read, ready to open channels.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// Client identity and server name; server certificates are checked by `verifier`.
    tls: Option<ClientTlsConfig>,
    /// Set with `tls`: the CA's (or the system's) verifier, or `--grpc-client-tls-skip-verify`'s,
    /// each held to the minimum TLS version.
    verifier: Option<Arc<dyn ServerCertVerifier>>,
    /// tonic's own compression (gzip).
    compression: Option<CompressionEncoding>,
    /// `--grpc-compression=snappy`, done by the channel wrapper instead of tonic.
    snappy: bool,
}

fn read_tls(flag: &'static str, p: &PathBuf) -> Result<Vec<u8>, QueryError> {
    std::fs::read(p).map_err(|source| QueryError::ReadTls {
        flag,
        path: p.display().to_string(),
        source,
    })
}

/// The CA certificates in the PEM file `p`, as trust roots.
fn read_roots(flag: &'static str, p: &PathBuf) -> Result<RootCertStore, QueryError> {
    strata_runtime::tls::pem_roots(&read_tls(flag, p)?)
        .map_err(|why| QueryError::ClientConfig(format!("{flag} {}: {why}", p.display())))
}

impl Client {
    /// The flags' settings (`--grpc-client-*`, `--grpc-compression`).
    pub(crate) fn new(c: &ClientConfig) -> Result<Self, QueryError> {
        Self::with_names(c, &FLAG_NAMES)
    }

    /// `c`, whose settings the user wrote under `names` (for error messages).
    pub(crate) fn with_names(c: &ClientConfig, names: &SettingNames) -> Result<Self, QueryError> {
        let compression = match c.compression {
            Compression::None => None,
            Compression::Gzip => Some(CompressionEncoding::Gzip),
            Compression::Snappy => None,
        };
        let snappy = c.compression == Compression::Snappy;
        let (tls, verifier) = if c.tls {
            let provider = strata_runtime::tls::provider();
            let verifier: Arc<dyn ServerCertVerifier> = if c.tls_skip_verify {
                if let Some(ca) = &c.ca {
                    // Nothing is verified, so there is nothing to verify against (as Go's
                    // InsecureSkipVerify ignores RootCAs).
                    tracing::warn!(
                        ca = %ca.display(),
                        "{}: server certificates are not verified; {} is not used",
                        names.skip_verify,
                        names.ca
                    );
                }
                strata_runtime::tls::SkipServerVerification::new()
            } else {
                let roots = match &c.ca {
                    Some(ca) => Arc::new(read_roots(names.ca, ca)?),
                    None => strata_runtime::tls::system_roots().map_err(|e| {
                        QueryError::ClientConfig(format!(
                            "TLS without {}: server certificates are verified against the \
                             system's roots, but {e}; give {} (or set SSL_CERT_FILE)",
                            names.ca, names.ca
                        ))
                    })?,
                };
                WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| {
                        QueryError::ClientConfig(format!(
                            "{}: cannot verify with it: {e}",
                            names.ca
                        ))
                    })?
            };
            let verifier = if c.min_version == TlsMinVersion::V1_3 {
                crate::tls::Tls13Only::wrap(verifier, names.min_version)
            } else {
                verifier
            };
            let mut t = ClientTlsConfig::new();
            match (&c.cert, &c.key) {
                (Some(cert), Some(key)) => {
                    t = t.identity(Identity::from_pem(
                        read_tls(names.cert, cert)?,
                        read_tls(names.key, key)?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(QueryError::ClientConfig(format!(
                        "{} and {} go together",
                        names.cert, names.key
                    )));
                }
            }
            if let Some(n) = &c.server_name {
                t = t.domain_name(n.clone());
            }
            (Some(t), Some(verifier))
        } else {
            (None, None)
        };
        Ok(Client {
            tls,
            verifier,
            compression,
            snappy,
        })
    }

    /// A lazily connected channel to `addr`. Snappy applies to every call on it, Info
    /// included, as grpc-go's default call options do in Thanos.
    pub(crate) fn channel(&self, addr: &str) -> Result<StoreChannel, QueryError> {
        Ok(self.wrap(EndpointChannel::Single(self.raw_channel(addr)?)))
    }

    /// `--grpc-compression=snappy` (or the pass-through) around a transport.
    pub(crate) fn wrap(&self, ch: EndpointChannel) -> StoreChannel {
        if self.snappy {
            SnappyChannel::snappy(ch, MAX_FRAME_BYTES)
        } else {
            SnappyChannel::passthrough(ch)
        }
    }

    /// A lazily connected tonic channel to `addr`, with the TLS settings.
    pub(crate) fn raw_channel(&self, addr: &str) -> Result<Channel, QueryError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|_| QueryError::BadEndpoint(addr.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .max_frame_size(MAX_H2_FRAME);
        if let (Some(t), Some(v)) = (&self.tls, &self.verifier) {
            ep = ep
                .tls_config_with_verifier(t.clone(), v.clone())
                .map_err(|e| QueryError::ClientConfig(format!("TLS for {addr}: {e}")))?;
        }
        Ok(ep.connect_lazy())
    }

    pub(crate) fn store_client(&self, ch: StoreChannel) -> StoreClient<StoreChannel> {
        let mut c = StoreClient::new(ch).max_decoding_message_size(MAX_FRAME_BYTES);
        if let Some(e) = self.compression {
            c = c.send_compressed(e).accept_compressed(e);
        }
        c
    }

    pub(crate) fn metadata_client(&self, ch: StoreChannel) -> MetadataClient<StoreChannel> {
        let mut c = MetadataClient::new(ch).max_decoding_message_size(MAX_FRAME_BYTES);
        if let Some(e) = self.compression {
            c = c.send_compressed(e).accept_compressed(e);
        }
        c
    }

    pub(crate) fn rules_client(&self, ch: StoreChannel) -> RulesClient<StoreChannel> {
        let mut c = RulesClient::new(ch).max_decoding_message_size(MAX_FRAME_BYTES);
        if let Some(e) = self.compression {
            c = c.send_compressed(e).accept_compressed(e);
        }
        c
    }

    pub(crate) fn exemplars_client(&self, ch: StoreChannel) -> ExemplarsClient<StoreChannel> {
        let mut c = ExemplarsClient::new(ch).max_decoding_message_size(MAX_FRAME_BYTES);
        if let Some(e) = self.compression {
            c = c.send_compressed(e).accept_compressed(e);
        }
        c
    }

    pub(crate) fn targets_client(&self, ch: StoreChannel) -> TargetsClient<StoreChannel> {
        let mut c = TargetsClient::new(ch).max_decoding_message_size(MAX_FRAME_BYTES);
        if let Some(e) = self.compression {
            c = c.send_compressed(e).accept_compressed(e);
        }
        c
    }

    pub(crate) fn series_client(&self, ch: StoreChannel) -> crate::fanout::SeriesClient {
        crate::fanout::SeriesClient::new(ch, MAX_FRAME_BYTES, self.compression)
    }
}

/// What the TLS settings are called where the user wrote them, so that an error names the
/// flag or the configuration field to fix.
#[derive(Debug)]
pub(crate) struct SettingNames {
    ca: &'static str,
    cert: &'static str,
    key: &'static str,
    skip_verify: &'static str,
    min_version: &'static str,
}

/// The `--grpc-client-tls-*` flags.
pub(crate) const FLAG_NAMES: SettingNames = SettingNames {
    ca: "--grpc-client-tls-ca",
    cert: "--grpc-client-tls-cert",
    key: "--grpc-client-tls-key",
    skip_verify: "--grpc-client-tls-skip-verify",
    min_version: "--grpc-client-tls-min-version",
};

/// The endpoint SD config's client settings (the error that carries these also names the
/// endpoint, or `default_client_config`, and the file). A setting may come from the flags
/// there too, so each name says both.
pub(crate) const SD_CONFIG_NAMES: SettingNames = SettingNames {
    ca: "tls_config.ca_file (or --grpc-client-tls-ca)",
    cert: "tls_config.cert_file (or --grpc-client-tls-cert)",
    key: "tls_config.key_file (or --grpc-client-tls-key)",
    skip_verify: "tls_config.insecure_skip_verify (or --grpc-client-tls-skip-verify)",
    min_version: "tls_config.min_version (or --grpc-client-tls-min-version)",
};

/// Changes the endpoint SD config makes to the flags' client settings, one setting at a
/// time: `None` keeps what the level below says (the flags, or `default_client_config`
/// for an endpoint's own settings); for the paths and the server name, `Some(None)`
/// clears it.
///
/// Two forms of the configuration are read, as the Thanos versions that wrote them do
/// (`cmd/thanos/endpointset.go`):
///
/// - `client_config` and `default_client_config` (Thanos after v0.40, thanos-io/thanos#8594):
///   each field set replaces the setting below it and each field left out inherits it;
///   `enabled` left out is true where `cert_file`, `key_file`, `ca_file` or
///   `insecure_skip_verify` is set, else inherited; an empty string clears a path, the
///   server name or (as `none`) the compression. An endpoint's `client_config` applies on
///   top of `default_client_config`, which applies on top of the flags.
/// - `grpc_client_config` (Thanos v0.38 to v0.40): an entry that sets none of
///   `tls_config.enabled`, `cert_file`, `key_file`, `ca_file` and `server_name` keeps the
///   TLS settings below it. One with `enabled: true` uses its own TLS settings only
///   (nothing inherited: no CA means the system's roots). One that sets files or a server
///   name but not `enabled` talks in clear text. `compression_type: snappy` compresses;
///   `none` or nothing keeps the setting below (so it cannot switch off the flag's
///   snappy).
///
/// Where Strata differs: Thanos applies an entry's settings to static addresses and groups
/// only and dials addresses found by `dns+`/`dnssrv+` with the flags' settings, ignoring
/// the entry's. Strata applies them to every address an entry resolves to: a TLS endpoint
/// behind a DNS name would otherwise be called in clear text. And a TLS file that cannot be
/// read fails start-up (or a reload, which then keeps the previous endpoints) with an error
/// naming the endpoint and the field; Thanos logs it and skips the endpoint or falls back
/// to the flags' settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointClient {
    /// TLS on or off.
    pub tls: Option<bool>,
    pub skip_verify: Option<bool>,
    pub cert: Option<Option<PathBuf>>,
    pub key: Option<Option<PathBuf>>,
    pub ca: Option<Option<PathBuf>>,
    pub server_name: Option<Option<String>>,
    pub min_version: Option<TlsMinVersion>,
    pub compression: Option<Compression>,
}

impl EndpointClient {
    /// Whether it changes nothing.
    pub fn is_flags(&self) -> bool {
        *self == EndpointClient::default()
    }

    /// The settings the endpoint is called with, given the level below (`base`: the
    /// flags, or the flags with `default_client_config`).
    pub fn apply(&self, base: &ClientConfig) -> ClientConfig {
        let mut c = base.clone();
        if let Some(v) = self.tls {
            c.tls = v;
        }
        if let Some(v) = self.skip_verify {
            c.tls_skip_verify = v;
        }
        if let Some(v) = &self.cert {
            c.cert = v.clone();
        }
        if let Some(v) = &self.key {
            c.key = v.clone();
        }
        if let Some(v) = &self.ca {
            c.ca = v.clone();
        }
        if let Some(v) = &self.server_name {
            c.server_name = v.clone();
        }
        if let Some(v) = self.min_version {
            c.min_version = v;
        }
        if let Some(v) = self.compression {
            c.compression = v;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snappy_is_accepted_and_wraps_channels() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = Client::new(&ClientConfig {
            compression: Compression::Snappy,
            ..Default::default()
        })
        .unwrap();
        // Snappy is the channel wrapper's job; tonic must not also compress.
        assert!(c.snappy && c.compression.is_none());
        rt.block_on(async { assert!(c.channel("127.0.0.1:1").unwrap().is_snappy()) });
        for (compression, tonic) in [
            (Compression::None, None),
            (Compression::Gzip, Some(CompressionEncoding::Gzip)),
        ] {
            let c = Client::new(&ClientConfig {
                compression,
                ..Default::default()
            })
            .unwrap();
            assert_eq!(c.compression, tonic);
            rt.block_on(async { assert!(!c.channel("127.0.0.1:1").unwrap().is_snappy()) });
        }
    }

    #[test]
    fn client_options_refused_clearly() {
        let e = Client::new(&ClientConfig {
            tls: true,
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn skip_verify_needs_tls_and_replaces_the_ca() {
        // With TLS: a verifier, and the CA (not needed) is not even read.
        let c = Client::new(&ClientConfig {
            tls: true,
            tls_skip_verify: true,
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(c.tls.is_some() && c.verifier.is_some());
        // Channels open (lazily) with the custom verifier.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { c.channel("127.0.0.1:1").unwrap() });
        // Without TLS it changes nothing, as in Thanos.
        let c = Client::new(&ClientConfig {
            tls_skip_verify: true,
            ..Default::default()
        })
        .unwrap();
        assert!(c.tls.is_none() && c.verifier.is_none());
    }

    #[test]
    fn tls_min_versions_parse_as_thanos_spells_them() {
        for (s, v) in [
            ("1.0", TlsMinVersion::V1_0),
            ("1.1", TlsMinVersion::V1_1),
            ("1.2", TlsMinVersion::V1_2),
            ("1.3", TlsMinVersion::V1_3),
        ] {
            assert_eq!(s.parse::<TlsMinVersion>(), Ok(v));
        }
        for bad in ["", "1", "1.4", "TLS1.3", "1.3 "] {
            let e = bad.parse::<TlsMinVersion>().unwrap_err();
            assert!(e.contains("\"1.3\""), "{bad:?}: {e}");
        }
        assert_eq!(ClientConfig::default().min_version, TlsMinVersion::V1_3);
    }

    /// A CA file that holds no certificate is refused when read, naming the setting and
    /// the file, not at the first handshake.
    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let e = Client::new(&ClientConfig {
            tls: true,
            ca: Some(ca.clone()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--grpc-client-tls-ca") && e.contains(&ca.display().to_string()),
            "{e}"
        );
    }

    /// `min_version` 1.3 (Thanos' default) refuses a server that speaks TLS 1.2 only, during
    /// the handshake; 1.2 accepts the same server with the same certificates.
    #[test]
    fn min_version_1_3_refuses_a_tls_1_2_server() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = tempfile::tempdir().unwrap();
        let c = strata_testutil::tls::ca_signed_certificates(dir.path());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.server_cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&c.server_key).unwrap();
        let mut server =
            rustls::ServerConfig::builder_with_provider(strata_runtime::tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec()];
        let server = Arc::new(server);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Each connection's handshake: the version it agreed on, or why it failed.
        let (tx, rx) = std::sync::mpsc::channel::<Result<String, String>>();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(mut tcp) = tcp else { return };
                let mut conn = rustls::ServerConnection::new(server.clone()).unwrap();
                let mut outcome = Ok(String::new());
                while conn.is_handshaking() {
                    if let Err(e) = conn.complete_io(&mut tcp) {
                        outcome = Err(e.to_string());
                        break;
                    }
                }
                let outcome = outcome.map(|_| format!("{:?}", conn.protocol_version()));
                if tx.send(outcome).is_err() {
                    return;
                }
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (min_version, agreed) in [
            (TlsMinVersion::V1_3, false),
            (TlsMinVersion::V1_2, true),
            (TlsMinVersion::V1_3, false),
        ] {
            let client = Client::new(&ClientConfig {
                tls: true,
                ca: Some(c.ca.clone()),
                server_name: Some("localhost".into()),
                min_version,
                ..Default::default()
            })
            .unwrap();
            let ch = rt.block_on(async { client.channel(&addr).unwrap() });
            let call = rt.block_on(async {
                let mut info = strata_storepb::thanos::info::info_client::InfoClient::new(ch);
                tokio::time::timeout(
                    Duration::from_secs(10),
                    info.info(strata_storepb::thanos::info::InfoRequest {}),
                )
                .await
            });
            assert!(!matches!(call, Ok(Ok(_))), "{min_version:?}: {call:?}");
            let outcome = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            if agreed {
                assert_eq!(outcome, Ok("Some(TLSv1_2)".into()), "{min_version:?}");
            } else {
                assert!(outcome.is_err(), "{min_version:?}: {outcome:?}");
            }
        }
    }

    fn flags() -> ClientConfig {
        ClientConfig {
            tls: true,
            ca: Some("/flags/ca.pem".into()),
            server_name: Some("flags.example".into()),
            compression: Compression::Gzip,
            ..Default::default()
        }
    }

    #[test]
    fn endpoint_settings_change_the_flags_one_setting_at_a_time() {
        // Nothing set: the flags, unchanged.
        assert!(EndpointClient::default().is_flags());
        assert_eq!(EndpointClient::default().apply(&flags()), flags());
        // Each setting given replaces the flag's; a cleared one is gone; the rest stay.
        let own = EndpointClient {
            cert: Some(Some("/e/cert.pem".into())),
            key: Some(Some("/e/key.pem".into())),
            server_name: Some(None),
            min_version: Some(TlsMinVersion::V1_2),
            ..Default::default()
        };
        assert_eq!(
            own.apply(&flags()),
            ClientConfig {
                tls: true,
                cert: Some("/e/cert.pem".into()),
                key: Some("/e/key.pem".into()),
                ca: Some("/flags/ca.pem".into()),
                min_version: TlsMinVersion::V1_2,
                compression: Compression::Gzip,
                ..Default::default()
            }
        );
        // TLS off and snappy, on top of a level that had them otherwise.
        let plain = EndpointClient {
            tls: Some(false),
            compression: Some(Compression::Snappy),
            ..Default::default()
        };
        let got = plain.apply(&own.apply(&flags()));
        assert!(
            !got.tls && got.compression == Compression::Snappy,
            "{got:?}"
        );
    }

    #[test]
    fn endpoint_tls_errors_name_the_field() {
        let bad_ca = EndpointClient {
            tls: Some(true),
            ca: Some(Some("/nonexistent/ca.pem".into())),
            ..Default::default()
        };
        let e = Client::with_names(&bad_ca.apply(&flags()), &SD_CONFIG_NAMES)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls_config.ca_file") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        let half = ClientConfig {
            tls: true,
            tls_skip_verify: true,
            cert: Some("/e/cert.pem".into()),
            ..Default::default()
        };
        let e = Client::with_names(&half, &SD_CONFIG_NAMES)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls_config.cert_file") && e.contains("tls_config.key_file"),
            "{e}"
        );
        let e = Client::new(&half).unwrap_err().to_string();
        assert!(
            e.contains("--grpc-client-tls-cert and --grpc-client-tls-key"),
            "{e}"
        );
    }
}
