//! Certificates for the TLS tests, made by Debian's `openssl` (installed by `scripts/test.sh`).

use std::path::{Path, PathBuf};

/// A self-signed certificate for 127.0.0.1/localhost made by `openssl`, that no client
/// trusts: `(cert.pem, key.pem)` in `dir`.
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("cert.pem"), dir.join("key.pem"))
}
