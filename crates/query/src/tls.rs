//! Server-certificate verifiers of the querier's TLS client, which tonic takes in place of
//! its own:
//!
//! - `--grpc-client-tls-skip-verify`: `strata_runtime::tls::SkipServerVerification`.
//! - `--grpc-client-tls-min-version=1.3` (Thanos' default): any verifier, refusing TLS 1.2
//!   handshakes. tonic offers no way to choose the TLS versions of a client; every TLS 1.2
//!   handshake rustls completes has the server sign its key exchange (rustls offers only
//!   ECDHE suites), which goes through the verifier, so refusing that signature refuses
//!   TLS 1.2 before any request is sent.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// A verifier that refuses TLS 1.2 (see the module docs).
#[derive(Debug)]
pub(crate) struct Tls13Only {
    inner: Arc<dyn ServerCertVerifier>,
    /// The setting that asks for it, for the error.
    setting: &'static str,
}

impl Tls13Only {
    pub(crate) fn wrap(
        inner: Arc<dyn ServerCertVerifier>,
        setting: &'static str,
    ) -> Arc<dyn ServerCertVerifier> {
        Arc::new(Tls13Only { inner, setting })
    }
}

impl ServerCertVerifier for Tls13Only {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(format!(
            "the server speaks TLS 1.2 and {} is 1.3; set it to 1.2 to accept this server",
            self.setting
        )))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}
