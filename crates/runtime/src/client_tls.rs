//! TLS of outgoing HTTP clients configured by a `tls_config` YAML block (the sidecar's
//! `--prometheus.http-client`, the ruler's `--remote-write.config`): trust only the given CA
//! bundle, present a client certificate, or skip verification.
//!
//! Callers load the PEM bytes themselves (from a file, or inline where their YAML allows it)
//! and word errors with their own key names; this is the one place that turns those bytes
//! into reqwest settings, so every client treats them alike.

/// PEM material for one client.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTls<'a> {
    /// CA bundle: when given, the only roots trusted (the system's are not added).
    pub ca_pem: Option<&'a [u8]>,
    /// Client certificate chain and its private key, given together.
    pub cert_pem: Option<&'a [u8]>,
    pub key_pem: Option<&'a [u8]>,
    pub insecure_skip_verify: bool,
}

/// Why the PEM material is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("the CA bundle is not valid PEM: {0}")]
    BadCa(String),
    #[error("the CA bundle holds no PEM certificate")]
    NoCa,
    #[error("the client certificate or key is not valid PEM: {0}")]
    BadIdentity(String),
    #[error("a client certificate and its key must be given together")]
    HalfIdentity,
}

/// Applies `tls` to `b`.
pub fn apply_client_tls(
    mut b: reqwest::ClientBuilder,
    tls: &ClientTls<'_>,
) -> Result<reqwest::ClientBuilder, ClientTlsError> {
    if let Some(ca) = tls.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(ca)
            .map_err(|e| ClientTlsError::BadCa(e.to_string()))?;
        if certs.is_empty() {
            return Err(ClientTlsError::NoCa);
        }
        b = b.tls_certs_only(certs);
    }
    match (tls.cert_pem, tls.key_pem) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            let mut pem = Vec::with_capacity(cert.len() + key.len() + 1);
            pem.extend_from_slice(cert);
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| ClientTlsError::BadIdentity(e.to_string()))?;
            b = b.identity(id);
        }
        _ => return Err(ClientTlsError::HalfIdentity),
    }
    if tls.insecure_skip_verify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_material_is_refused() {
        let b = || reqwest::Client::builder();
        let e = apply_client_tls(
            b(),
            &ClientTls {
                ca_pem: Some(b"not pem"),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(e, ClientTlsError::NoCa | ClientTlsError::BadCa(_)),
            "{e}"
        );
        let e = apply_client_tls(
            b(),
            &ClientTls {
                cert_pem: Some(b"x"),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, ClientTlsError::HalfIdentity), "{e}");
        let e = apply_client_tls(
            b(),
            &ClientTls {
                cert_pem: Some(b"x"),
                key_pem: Some(b"y"),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, ClientTlsError::BadIdentity(_)), "{e}");
        assert!(apply_client_tls(b(), &ClientTls::default()).is_ok());
    }
}
