//! Certificates for the TLS tests, made by Debian's `openssl` (installed by `scripts/test.sh`).

use std::path::{Path, PathBuf};

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate for 127.0.0.1/localhost made by `openssl`, that no client
/// trusts: `(cert.pem, key.pem)` in `dir`.
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    self_signed(
        dir,
        "cert.pem",
        "key.pem",
        "/CN=localhost",
        &["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
    );
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// `openssl req -x509`: a new key `key` and its self-signed certificate `cert`.
fn self_signed(dir: &Path, cert: &str, key: &str, subject: &str, extra: &[&str]) {
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days",
        "2", "-subj", subject,
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

/// The files of [`ca_signed_certificates`].
#[derive(Debug, Clone)]
pub struct CaSigned {
    /// The CA's certificate (`ca.pem`), which signed the two others.
    pub ca: PathBuf,
    /// A server certificate for 127.0.0.1 and `localhost` (`server.pem`, `server.key`).
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate, CN `strata-client` (`client.pem`, `client.key`).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A test CA, and a server and a client certificate it signed, in `dir`: for TLS verified
/// against a CA, and for mutual TLS.
pub fn ca_signed_certificates(dir: &Path) -> CaSigned {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("writing server.ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")
        .expect("writing client.ext");
    self_signed(dir, "ca.pem", "ca.key", "/CN=strata-test-ca", &[]);
    for (name, cn) in [("server", "localhost"), ("client", "strata-client")] {
        sign_with_ca(dir, name, cn);
    }
    CaSigned {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}

/// A client certificate `<name>.pem` (key `<name>.key`), CN `name`, signed by the CA of
/// [`ca_signed_certificates`] (which must have run in `dir`), with `subject_alt_name` (in
/// `openssl`'s syntax: `DNS:a.example,IP:10.0.0.1,email:a@example.com,URI:spiffe://x/y`) when
/// given.
pub fn ca_signed_client_certificate(
    dir: &Path,
    name: &str,
    subject_alt_name: Option<&str>,
) -> (PathBuf, PathBuf) {
    let mut ext = String::from("extendedKeyUsage=clientAuth\n");
    if let Some(san) = subject_alt_name {
        ext.push_str(&format!("subjectAltName={san}\n"));
    }
    std::fs::write(dir.join(format!("{name}.ext")), ext).expect("writing the extensions file");
    sign_with_ca(dir, name, name);
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

/// A new key `<name>.key` and its certificate `<name>.pem`, CN `cn`, with the extensions in
/// `<name>.ext`, signed by `ca.pem`/`ca.key` in `dir`.
fn sign_with_ca(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}
