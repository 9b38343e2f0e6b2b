//! How the querier reaches its endpoints: the gRPC client settings of the
//! `--grpc-client-*` and `--grpc-compression` flags ([`ClientConfig`]), an endpoint's own
//! settings from the endpoint SD config ([`EndpointClient`], Thanos' per-endpoint
//! `grpc_client_config`), and the checked form that opens channels (`Client`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use strata_storepb::snappy::SnappyChannel;
use strata_storepb::thanos::store_client::StoreClient;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

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

/// How to reach the endpoints (`--grpc-client-*`, `--grpc-compression`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientConfig {
    pub tls: bool,
    /// With `tls`: accept any server certificate (the connection is encrypted but not
    /// authenticated); `ca` is then not used. Without `tls`: no effect, as in Thanos.
    pub tls_skip_verify: bool,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub server_name: Option<String>,
    pub compression: Compression,
}

/// A `ClientConfig` checked and with its files read, ready to open channels.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    tls: Option<ClientTlsConfig>,
    /// `--grpc-client-tls-skip-verify`: replaces certificate verification.
    skip_verify: Option<Arc<crate::tls::SkipServerVerification>>,
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
        let skip_verify =
            (c.tls && c.tls_skip_verify).then(crate::tls::SkipServerVerification::new);
        let tls = if c.tls {
            let mut t = ClientTlsConfig::new();
            match &c.ca {
                // Nothing is verified, so there is nothing to verify against (as Go's
                // InsecureSkipVerify ignores RootCAs).
                Some(ca) if skip_verify.is_some() => tracing::warn!(
                    ca = %ca.display(),
                    "{}: server certificates are not verified; {} is not used",
                    names.skip_verify,
                    names.ca
                ),
                Some(ca) => {
                    t = t.ca_certificate(Certificate::from_pem(read_tls(names.ca, ca)?));
                }
                None => {}
            }
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
            Some(t)
        } else {
            None
        };
        Ok(Client {
            tls,
            skip_verify,
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
        if let Some(t) = &self.tls {
            ep = match &self.skip_verify {
                Some(v) => ep.tls_config_with_verifier(t.clone(), v.clone()),
                None => ep.tls_config(t.clone()),
            }
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
}

/// The `--grpc-client-tls-*` flags.
pub(crate) const FLAG_NAMES: SettingNames = SettingNames {
    ca: "--grpc-client-tls-ca",
    cert: "--grpc-client-tls-cert",
    key: "--grpc-client-tls-key",
    skip_verify: "--grpc-client-tls-skip-verify",
};

/// An endpoint's `grpc_client_config` in the endpoint SD config (the error that carries
/// these also names the endpoint and the file).
pub(crate) const SD_CONFIG_NAMES: SettingNames = SettingNames {
    ca: "grpc_client_config.tls_config.ca_file",
    cert: "grpc_client_config.tls_config.cert_file",
    key: "grpc_client_config.tls_config.key_file",
    skip_verify: "grpc_client_config.tls_config.insecure_skip_verify",
};

/// An endpoint's own client settings (`grpc_client_config` of an endpoint SD config entry),
/// read as Thanos reads them (`cmd/thanos/endpointset.go`, v0.38 and later):
///
/// - TLS: an entry that sets none of `tls_config.enabled`, `cert_file`, `key_file`,
///   `ca_file` and `server_name` uses the `--grpc-client-tls-*` flags. One with `enabled:
///   true` uses its own settings only (nothing is inherited from the flags: no CA means the
///   system's roots). One that sets files or a server name but not `enabled` talks in clear
///   text, whatever the flags say.
/// - Compression: `snappy` compresses this endpoint's calls; `none` or nothing keeps
///   `--grpc-compression` (so `none` cannot switch off the flag's snappy, as in Thanos).
///
/// Where Strata differs: Thanos applies these settings to static addresses and groups only
/// and dials addresses found by `dns+`/`dnssrv+` with the flags' settings, ignoring the
/// entry's. Strata applies them to every address an entry resolves to: a TLS endpoint
/// behind a DNS name would otherwise be called in clear text. And a TLS file that cannot be
/// read fails start-up (or a reload, which then keeps the previous endpoints) with an error
/// naming the endpoint and the field; Thanos logs it and falls back to the flags' settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointClient {
    pub tls: EndpointTls,
    /// `compression_type: snappy`.
    pub snappy: bool,
}

/// The TLS part of an [`EndpointClient`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EndpointTls {
    /// Nothing set: the `--grpc-client-tls-*` flags decide.
    #[default]
    Flags,
    /// TLS settings given but `enabled` false: clear text.
    Disabled,
    /// `enabled: true`, with these settings.
    Enabled {
        skip_verify: bool,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        ca: Option<PathBuf>,
        server_name: Option<String>,
    },
}

impl EndpointClient {
    /// Whether the entry leaves everything to the flags.
    pub fn is_flags(&self) -> bool {
        *self == EndpointClient::default()
    }

    /// The settings the endpoint is called with, given the flags' `flags`.
    pub fn apply(&self, flags: &ClientConfig) -> ClientConfig {
        let mut c = flags.clone();
        match &self.tls {
            EndpointTls::Flags => {}
            EndpointTls::Disabled => {
                c.tls = false;
                c.tls_skip_verify = false;
                c.cert = None;
                c.key = None;
                c.ca = None;
                c.server_name = None;
            }
            EndpointTls::Enabled {
                skip_verify,
                cert,
                key,
                ca,
                server_name,
            } => {
                c.tls = true;
                c.tls_skip_verify = *skip_verify;
                c.cert = cert.clone();
                c.key = key.clone();
                c.ca = ca.clone();
                c.server_name = server_name.clone();
            }
        }
        if self.snappy {
            c.compression = Compression::Snappy;
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
        assert!(c.tls.is_some() && c.skip_verify.is_some());
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
        assert!(c.tls.is_none() && c.skip_verify.is_none());
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
    fn endpoint_settings_replace_the_flags_as_thanos_reads_them() {
        // Nothing set: the flags, unchanged.
        assert!(EndpointClient::default().is_flags());
        assert_eq!(EndpointClient::default().apply(&flags()), flags());
        // TLS enabled: the entry's settings only, none inherited from the flags.
        let own = EndpointClient {
            tls: EndpointTls::Enabled {
                skip_verify: false,
                cert: Some("/e/cert.pem".into()),
                key: Some("/e/key.pem".into()),
                ca: None,
                server_name: None,
            },
            snappy: false,
        };
        assert_eq!(
            own.apply(&flags()),
            ClientConfig {
                tls: true,
                cert: Some("/e/cert.pem".into()),
                key: Some("/e/key.pem".into()),
                compression: Compression::Gzip,
                ..Default::default()
            }
        );
        // Disabled: clear text even where the flags say TLS.
        let plain = EndpointClient {
            tls: EndpointTls::Disabled,
            snappy: true,
        };
        assert_eq!(
            plain.apply(&flags()),
            ClientConfig {
                compression: Compression::Snappy,
                ..Default::default()
            }
        );
    }

    #[test]
    fn endpoint_tls_errors_name_the_field() {
        let bad_ca = EndpointClient {
            tls: EndpointTls::Enabled {
                skip_verify: false,
                cert: None,
                key: None,
                ca: Some("/nonexistent/ca.pem".into()),
                server_name: None,
            },
            snappy: false,
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
            cert: Some("/e/cert.pem".into()),
            ..Default::default()
        };
        let e = Client::with_names(&half, &SD_CONFIG_NAMES)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls_config.cert_file and grpc_client_config.tls_config.key_file"),
            "{e}"
        );
        let e = Client::new(&half).unwrap_err().to_string();
        assert!(
            e.contains("--grpc-client-tls-cert and --grpc-client-tls-key"),
            "{e}"
        );
    }
}
