//! TLS pieces every server and client of Strata shares (rustls, aws-lc-rs): the crypto
//! provider, certificates read from PEM, the system's trust roots, and accepting TLS
//! connections without letting one slow handshake hold up the rest.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore};
use tokio::net::{TcpListener, TcpStream};

/// The process' default crypto provider, else aws-lc-rs (the provider tonic picks in the same
/// situation).
pub fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// The certificates of a PEM file's contents. An error (for the caller to prefix with the
/// file) when one does not parse, or when there is none.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

/// The certificates of a PEM file's contents as trust roots (see [`pem_certificates`]).
pub fn pem_roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in pem_certificates(pem)? {
        roots
            .add(c)
            .map_err(|e| format!("a certificate cannot be used as a CA: {e}"))?;
    }
    Ok(roots)
}

/// The system's trust roots, read once per process (`rustls-native-certs`: the OpenSSL
/// locations, or `SSL_CERT_FILE`/`SSL_CERT_DIR`), as Go uses them where no CA is configured.
/// The error says why there are none; callers add which setting would have given a CA.
pub fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(format!(
                    "the system's trust store has no usable CA certificate{}",
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join("; "))
                    }
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS connection that finished its handshake, and the client's address.
pub type Accepted = (tokio_rustls::server::TlsStream<TcpStream>, SocketAddr);

/// Accepts connections on `listener` and hands over those whose TLS handshake with `cfg`
/// succeeds. Each handshake runs in a task of its own, with [`HANDSHAKE_TIMEOUT`], so a
/// slow or silent client holds up nobody else; a failed one is logged at debug level (port
/// scanners and plain-text clients make them) and dropped. TCP_NODELAY is set on every
/// connection (see [`crate::http`]). Dropping the receiver stops the loop and releases the
/// port. `what` names the server in logs ("HTTP", "gRPC").
pub fn accept_tls(
    listener: TcpListener,
    cfg: Arc<rustls::ServerConfig>,
    what: &'static str,
) -> tokio::sync::mpsc::Receiver<Accepted> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(err = %e, "accepting a {what} connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(err = %e, "could not set TCP_NODELAY on a {what} connection");
            }
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, err = %e, "{what} TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "{what} TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

/// `--grpc-client-tls-skip-verify`, `insecure_skip_verify`: trusts any certificate chain and
/// name, as Go's `InsecureSkipVerify` does, while still checking that the server holds the key
/// of the certificate it presented (the handshake signatures are verified with the same
/// crypto provider tonic uses). The connection stays encrypted; it is only unauthenticated.
#[derive(Debug)]
pub struct SkipServerVerification {
    provider: Arc<CryptoProvider>,
}

impl SkipServerVerification {
    /// The verifier over the process' default crypto provider, else aws-lc-rs (the provider
    /// tonic picks in the same situation).
    pub fn new() -> Arc<Self> {
        Arc::new(SkipServerVerification {
            provider: provider(),
        })
    }
}

impl ServerCertVerifier for SkipServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
