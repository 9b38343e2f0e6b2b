//! The web configuration: every key of the file, each refusal, and a real server behind it
//! (TLS handshakes with rustls clients, basic authentication, headers, rate limit).

use std::io;
use std::sync::Mutex as StdMutex;

use axum::routing::get;
use base64::Engine;
use rustls::pki_types::ServerName;
use strata_testutil::tls::{CaSigned, ca_signed_certificates, ca_signed_client_certificate};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::*;
use crate::Shutdown;
use crate::http::Listener;

// ------------------------------------------------------------------------------------------
// Parsing.
// ------------------------------------------------------------------------------------------

/// Certificates are made once (openssl's RSA key generation is slow) and shared.
fn certs() -> &'static (tempfile::TempDir, CaSigned) {
    static CERTS: OnceLock<(tempfile::TempDir, CaSigned)> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let c = ca_signed_certificates(dir.path());
        (dir, c)
    })
}

fn parse(yaml: &str) -> Result<WebConfig, String> {
    WebConfig::from_yaml(yaml, certs().0.path())
}

fn err(yaml: &str) -> String {
    match parse(yaml) {
        Ok(c) => panic!("accepted: {c:?}\n{yaml}"),
        Err(e) => e,
    }
}

/// A bcrypt hash of `password` at the lowest cost (fast tests).
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

fn tls_section(extra: &str) -> String {
    let c = &certs().1;
    format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{extra}",
        c.server_cert.display(),
        c.server_key.display()
    )
}

#[test]
fn every_key_of_the_file_is_read() {
    let c = &certs().1;
    let yaml = format!(
        "tls_server_config:
  cert_file: server.pem
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {ca}
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  curve_preferences: [X25519, CurveP256, CurveP384]
  prefer_server_cipher_suites: false
  client_allowed_sans: [strata-client.example]
http_server_config:
  http2: false
  headers:
    Strict-Transport-Security: max-age=31536000
    X-Content-Type-Options: nosniff
    X-Frame-Options: deny
    X-XSS-Protection: '1; mode=block'
    Content-Security-Policy: \"default-src 'self'\"
basic_auth_users:
  alice: '{alice}'
  bob: '{bob}'
rate_limit:
  interval: 1s
  burst: 10
",
        ca = c.ca.display(),
        alice = hash("a"),
        bob = hash("b"),
    );
    let web = parse(&yaml).unwrap();
    assert!(web.tls_enabled());
    assert_eq!(web.client_auth(), "RequireAndVerifyClientCert");
    assert_eq!(web.basic_auth_users(), 2);
    let tls = web.tls().unwrap();
    assert!(!tls.ignore_client_order);
    assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
    let suites: Vec<u16> = tls
        .crypto_provider()
        .cipher_suites
        .iter()
        .map(|s| u16::from(s.suite()))
        .collect();
    // Every TLS 1.3 suite, then the one TLS 1.2 suite named.
    assert_eq!(suites.len(), 4, "{suites:x?}");
    assert_eq!(suites[3], 0xc02f);
    let groups: Vec<NamedGroup> = tls
        .crypto_provider()
        .kx_groups
        .iter()
        .map(|g| g.name())
        .collect();
    assert_eq!(
        groups,
        [
            NamedGroup::X25519,
            NamedGroup::secp256r1,
            NamedGroup::secp384r1
        ]
    );
    let guard = web.guard.as_ref().unwrap();
    assert_eq!(guard.headers.len(), 5);
    let limiter = guard.limiter.as_ref().unwrap();
    assert_eq!(limiter.interval, Duration::from_secs(1));
    assert_eq!(limiter.burst, 10.0);

    // Inline PEM instead of files.
    let inline = format!(
        "tls_server_config:\n  cert: |\n{}\n  key: |\n{}\n  client_ca: |\n{}\n  client_auth_type: VerifyClientCertIfGiven\n",
        indent(&c.server_cert),
        indent(&c.server_key),
        indent(&c.ca)
    );
    let web = parse(&inline).unwrap();
    assert_eq!(web.client_auth(), "VerifyClientCertIfGiven");

    // Nothing at all: plain HTTP, open.
    for empty in ["", "# nothing\n", "---\n", "{}", "tls_server_config:\n"] {
        let web = parse(empty).unwrap();
        assert!(!web.tls_enabled() && web.guard.is_none(), "{empty:?}");
    }
    // Basic authentication without TLS, as the exporter-toolkit allows.
    let web = parse(&format!("basic_auth_users:\n  alice: '{}'\n", hash("a"))).unwrap();
    assert!(!web.tls_enabled());
    assert_eq!(web.basic_auth_users(), 1);
    // The exporter-toolkit's older name for RequireAnyClientCert.
    let web = parse(&tls_section("  client_auth_type: RequireClientCert\n")).unwrap();
    assert_eq!(web.client_auth(), "RequireAnyClientCert");
    // Go's durations: a string or nanoseconds; zero turns the limit off.
    for (interval, expect) in [
        ("1m30s", Some(Duration::from_secs(90))),
        ("500ms", Some(Duration::from_millis(500))),
        ("1000000000", Some(Duration::from_secs(1))),
        ("0", None),
        ("0s", None),
    ] {
        let web = parse(&format!(
            "rate_limit:\n  interval: {interval}\n  burst: 1\n"
        ))
        .unwrap();
        assert_eq!(
            web.guard
                .as_ref()
                .and_then(|g| g.limiter.as_ref())
                .map(|l| l.interval),
            expect,
            "{interval}"
        );
    }
}

fn indent(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn unknown_keys_are_refused_by_name() {
    for (yaml, key) in [
        ("tls_config:\n  cert_file: x\n".to_string(), "tls_config"),
        (tls_section("  cert_path: x\n"), "cert_path"),
        ("http_server_config:\n  http3: true\n".to_string(), "http3"),
        ("rate_limit:\n  every: 1s\n".to_string(), "every"),
    ] {
        let e = err(&yaml);
        assert!(e.contains("unknown field") && e.contains(key), "{e}");
    }
}

#[test]
fn malformed_password_hashes_are_refused() {
    for hash in [
        "secret",
        "$2y$10$short",
        "$1$abcdefgh$abcdefghijklmnopqrstuv0123456789012345678901234",
        // Cost 3, below bcrypt's minimum.
        "$2y$03$L6Bc/AlTQHyd9liGgGEZyOFLPHNgyxeEPfgYfBCVxJ7JIlwxyVU3u",
    ] {
        let e = err(&format!("basic_auth_users:\n  alice: '{hash}'\n"));
        assert!(
            e.contains("basic_auth_users") && e.contains("\"alice\""),
            "{e}"
        );
        assert!(
            !e.contains(hash),
            "the hash must stay out of the message: {e}"
        );
    }
    let e = err("basic_auth_users:\n  alice:\n");
    assert!(e.contains("basic_auth_users"), "{e}");
}

#[test]
fn tls_files_that_cannot_be_used_are_refused() {
    let c = &certs().1;
    let dir = certs().0.path();
    // Missing files, named with the key and the path (relative to the file's directory).
    let e = err(&format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: missing.key\n",
        c.server_cert.display()
    ));
    assert!(
        e.contains("key_file") && e.contains(&dir.join("missing.key").display().to_string()),
        "{e}"
    );
    let e = err(&format!(
        "tls_server_config:\n  cert_file: missing.pem\n  key_file: {}\n",
        c.server_key.display()
    ));
    assert!(e.contains("cert_file") && e.contains("missing.pem"), "{e}");
    let e = err(&tls_section(&format!(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
        dir.join("missing-ca.pem").display()
    )));
    assert!(
        e.contains("client_ca_file") && e.contains("missing-ca.pem"),
        "{e}"
    );
    // A key that is not the certificate's.
    let e = err(&format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        c.server_cert.display(),
        c.client_key.display()
    ));
    assert!(e.contains("does not fit"), "{e}");
    // Not PEM.
    let e = err(&format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        c.server_key.display(),
        c.server_key.display()
    ));
    assert!(e.contains("no certificate"), "{e}");
    // One without the other, both ways of giving one.
    let e = err(&format!(
        "tls_server_config:\n  cert_file: {}\n",
        c.server_cert.display()
    ));
    assert!(e.contains("missing one of key or key_file"), "{e}");
    let e = err(&format!(
        "tls_server_config:\n  key_file: {}\n",
        c.server_key.display()
    ));
    assert!(e.contains("missing one of cert or cert_file"), "{e}");
    let e = err(&tls_section("  cert: x\n"));
    assert!(e.contains("cert or cert_file, not both"), "{e}");
}

#[test]
fn settings_rustls_cannot_honour_are_refused() {
    let c = &certs().1;
    for (extra, expect) in [
        (
            "  client_auth_type: Sometimes\n",
            "invalid value \"Sometimes\"",
        ),
        (
            &format!("  client_ca_file: {}\n", c.ca.display()) as &str,
            "without a client_auth_type",
        ),
        (
            "  client_auth_type: VerifyClientCertIfGiven\n  client_allowed_sans: [a]\n",
            "client_allowed_sans requires",
        ),
        (
            "  client_allowed_sans: [a]\n",
            "client_allowed_sans requires",
        ),
        ("  max_version: TLS11\n", "TLS11 is not supported"),
        (
            "  min_version: TLS13\n  max_version: TLS12\n",
            "above max_version",
        ),
        ("  min_version: SSL3\n", "unknown TLS version \"SSL3\""),
        (
            "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n",
            "not implemented by rustls",
        ),
        ("  cipher_suites: [TLS_NOPE]\n", "\"TLS_NOPE\" is unknown"),
        (
            "  curve_preferences: [CurveP521]\n",
            "CurveP521 is not implemented",
        ),
        ("  curve_preferences: [P256]\n", "unknown curve \"P256\""),
    ] {
        let e = err(&tls_section(extra));
        assert!(e.contains(expect), "{extra}: {e}");
    }
    // Go's oldest versions mean TLS 1.2 (with a warning).
    for min in ["TLS10", "TLS11"] {
        parse(&tls_section(&format!("  min_version: {min}\n"))).unwrap();
    }
    // TLS settings without a certificate would be without effect.
    let e = err("tls_server_config:\n  min_version: TLS13\n  cipher_suites: []\n");
    assert!(
        e.contains("min_version") && e.contains("cipher_suites") && e.contains("no certificate"),
        "{e}"
    );
}

#[test]
fn headers_are_those_the_exporter_toolkit_allows() {
    for (headers, expect) in [
        ("    Server: strata\n", "\"Server\" can not be configured"),
        (
            "    x-frame-options: deny\n",
            "\"x-frame-options\" can not be configured",
        ),
        (
            "    X-Frame-Options: allow\n",
            "invalid value for X-Frame-Options",
        ),
        (
            "    X-Content-Type-Options: sniff\n",
            "invalid value for X-Content-Type-Options",
        ),
    ] {
        let e = err(&format!("http_server_config:\n  headers:\n{headers}"));
        assert!(e.contains(expect), "{headers}: {e}");
    }
    // "Unset if blank".
    let web = parse("http_server_config:\n  headers:\n    X-XSS-Protection: ''\n").unwrap();
    assert!(web.guard.is_none());
}

#[test]
fn rate_limits_that_refuse_everything_are_refused() {
    let e = err("rate_limit:\n  interval: 1s\n");
    assert!(e.contains("rate_limit.burst"), "{e}");
    let e = err("rate_limit:\n  interval: soon\n  burst: 1\n");
    assert!(e.contains("rate_limit.interval"), "{e}");
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("web.yml");
    let e = WebConfig::load(&missing).unwrap_err().to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");
    std::fs::write(&missing, "basic_auth_users: [alice]\n").unwrap();
    let e = WebConfig::load(&missing).unwrap_err().to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");
    // Relative file names are relative to the file's directory.
    let c = &certs().1;
    std::fs::copy(&c.server_cert, dir.path().join("s.pem")).unwrap();
    std::fs::copy(&c.server_key, dir.path().join("s.key")).unwrap();
    std::fs::write(
        &missing,
        "tls_server_config:\n  cert_file: s.pem\n  key_file: s.key\n",
    )
    .unwrap();
    assert!(WebConfig::load(&missing).unwrap().tls_enabled());
}

#[test]
fn basic_credentials_are_read_as_go_reads_them() {
    let mut h = HeaderMap::new();
    let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (value, expect) in [
        (
            format!("Basic {}", enc("alice:pa:ss")),
            Some(("alice", "pa:ss")),
        ),
        (format!("basic {}", enc("alice:")), Some(("alice", ""))),
        (format!("Basic {}", enc("alice")), None),
        ("Basic !!!".to_string(), None),
        (format!("Bearer {}", enc("alice:x")), None),
        ("Basic".to_string(), None),
    ] {
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        assert_eq!(
            basic_credentials(&h),
            expect.map(|(u, p)| (u.as_bytes().to_vec(), p.as_bytes().to_vec())),
            "{value}"
        );
    }
}

/// The SANs of a certificate with every kind, as Go lists them.
#[test]
fn subject_alt_names_are_read_from_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let _ = ca_signed_certificates(dir.path());
    let (cert, _) = ca_signed_client_certificate(
        dir.path(),
        "sans",
        Some(
            "DNS:a.example,email:ops@example.com,IP:10.1.2.3,IP:2001:db8::1,URI:spiffe://cluster/ns/x",
        ),
    );
    let der = CertificateDer::from_pem_file(&cert).unwrap();
    let mut sans = der::subject_alt_names(der.as_ref()).unwrap();
    sans.sort();
    assert_eq!(
        sans,
        [
            "10.1.2.3",
            "2001:db8::1",
            "a.example",
            "ops@example.com",
            "spiffe://cluster/ns/x"
        ]
    );
    let plain = CertificateDer::from_pem_file(&certs().1.client_cert).unwrap();
    assert_eq!(
        der::subject_alt_names(plain.as_ref()).unwrap(),
        Vec::<String>::new()
    );
    // Truncated or garbage input is refused, never a panic.
    for n in 0..der.as_ref().len() {
        let _ = der::subject_alt_names(&der.as_ref()[..n]);
    }
    assert!(der::subject_alt_names(b"\x30\x84\xff\xff\xff\xff").is_none());
}

// ------------------------------------------------------------------------------------------
// Serving.
// ------------------------------------------------------------------------------------------

/// A server with the probes, `/metrics` and `/ok` behind `web`.
async fn serve(web: WebConfig) -> (SocketAddr, Shutdown) {
    let registry = Arc::new(StdMutex::new(
        prometheus_client::registry::Registry::default(),
    ));
    let prober = crate::Prober::new();
    prober.set_healthy();
    prober.set_ready();
    let router = crate::http::base_router(prober, registry).route("/ok", get(|| async { "ok\n" }));
    let shutdown = Shutdown::new();
    let listener = Listener::bind("127.0.0.1:0", Some(Arc::new(web)))
        .await
        .unwrap();
    let addr = listener.local_addr();
    tokio::spawn(listener.serve(router, shutdown.clone(), None));
    (addr, shutdown)
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 GET on `stream`: its status line and headers.
async fn get_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    auth: Option<(&str, &str)>,
) -> io::Result<Reply> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some((u, p)) = auth {
        let c = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.push_str(&format!("Authorization: Basic {c}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    Ok(Reply { status, head })
}

async fn http_get(addr: SocketAddr, path: &str, auth: Option<(&str, &str)>) -> io::Result<Reply> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio::time::timeout(Duration::from_secs(10), get_on(tcp, path, auth))
        .await
        .map_err(io::Error::other)?
}

/// GET over TLS with `client`; also the negotiated suite, version and ALPN protocol.
async fn https_get(
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    path: &str,
    auth: Option<(&str, &str)>,
) -> io::Result<(Reply, u16, rustls::ProtocolVersion, Option<Vec<u8>>)> {
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls = tokio_rustls::TlsConnector::from(client)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let (_, conn) = tls.get_ref();
        let suite = u16::from(conn.negotiated_cipher_suite().unwrap().suite());
        let version = conn.protocol_version().unwrap();
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let reply = get_on(tls, path, auth).await?;
        Ok((reply, suite, version, alpn))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(io::Error::other)?
}

/// A client trusting `ca`, presenting `identity` (certificate, key) if given, speaking
/// `versions`.
fn client(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Every connection a full handshake: a resumed session skips certificate checks.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[tokio::test]
async fn basic_auth_guards_every_path_and_headers_go_on_every_response() {
    let yaml = format!(
        "basic_auth_users:\n  alice: '{}'\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        hash("wonderland")
    );
    let (addr, shutdown) = serve(parse(&yaml).unwrap()).await;
    for path in ["/ok", "/metrics", "/-/healthy", "/-/ready", "/no/such/path"] {
        for auth in [
            None,
            Some(("alice", "wrong")),
            Some(("bob", "wonderland")),
            Some(("alice", "")),
        ] {
            let r = http_get(addr, path, auth).await.unwrap();
            assert_eq!(r.status, 401, "{path} {auth:?}");
            assert_eq!(r.header("www-authenticate"), Some("Basic"), "{path}");
            assert_eq!(r.header("x-frame-options"), Some("deny"), "{path}");
        }
    }
    for path in ["/ok", "/metrics", "/-/healthy", "/-/ready"] {
        let r = http_get(addr, path, Some(("alice", "wonderland")))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("x-frame-options"), Some("deny"), "{path}");
        assert_eq!(r.header("www-authenticate"), None);
    }
    let r = http_get(addr, "/no/such/path", Some(("alice", "wonderland")))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    // The cached verification still refuses a wrong password.
    let r = http_get(addr, "/ok", Some(("alice", "wonderlanD")))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    shutdown.trigger();
}

/// Verified credentials are cached: at bcrypt's default cost (10, ~50 ms) a second request
/// does not pay it again.
#[tokio::test]
async fn verified_credentials_are_not_hashed_again() {
    let yaml = format!(
        "basic_auth_users:\n  alice: '{}'\n",
        bcrypt::hash("wonderland", 12).unwrap()
    );
    let (addr, shutdown) = serve(parse(&yaml).unwrap()).await;
    let first = Instant::now();
    let r = http_get(addr, "/ok", Some(("alice", "wonderland"))).await;
    let first = first.elapsed();
    assert_eq!(r.unwrap().status, 200);
    let again = Instant::now();
    for _ in 0..10 {
        let r = http_get(addr, "/ok", Some(("alice", "wonderland"))).await;
        assert_eq!(r.unwrap().status, 200);
    }
    let again = again.elapsed();
    assert!(
        again < first,
        "ten cached requests took {again:?}, the first {first:?}"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn rate_limit_answers_429_beyond_the_burst() {
    let (addr, shutdown) = serve(parse("rate_limit:\n  interval: 1h\n  burst: 2\n").unwrap()).await;
    assert_eq!(http_get(addr, "/ok", None).await.unwrap().status, 200);
    assert_eq!(http_get(addr, "/ok", None).await.unwrap().status, 200);
    assert_eq!(http_get(addr, "/ok", None).await.unwrap().status, 429);
    shutdown.trigger();
}

#[tokio::test]
async fn tls_serves_https_only() {
    let c = &certs().1;
    let (addr, shutdown) = serve(parse(&tls_section("")).unwrap()).await;
    let (r, _, _, alpn) = https_get(addr, client(&c.ca, None, BOTH), "/ok", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(http_get(addr, "/ok", None).await.is_err());
    // A client that does not trust the CA.
    let other = tempfile::tempdir().unwrap();
    let other = ca_signed_certificates(other.path());
    assert!(
        https_get(addr, client(&other.ca, None, BOTH), "/ok", None)
            .await
            .is_err()
    );
    shutdown.trigger();
}

#[tokio::test]
async fn tls_versions_and_cipher_suites_are_enforced() {
    let c = &certs().1;
    let tls12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let tls13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

    let (addr, shutdown) = serve(parse(&tls_section("")).unwrap()).await;
    let (_, _, v, _) = https_get(addr, client(&c.ca, None, BOTH), "/ok", None)
        .await
        .unwrap();
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_3);
    let (_, _, v, _) = https_get(addr, client(&c.ca, None, tls12), "/ok", None)
        .await
        .unwrap();
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_2);
    shutdown.trigger();

    let (addr, shutdown) = serve(parse(&tls_section("  min_version: TLS13\n")).unwrap()).await;
    assert!(
        https_get(addr, client(&c.ca, None, tls12), "/ok", None)
            .await
            .is_err()
    );
    assert!(
        https_get(addr, client(&c.ca, None, tls13), "/ok", None)
            .await
            .is_ok()
    );
    shutdown.trigger();

    let (addr, shutdown) = serve(
        parse(&tls_section(
            "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n",
        ))
        .unwrap(),
    )
    .await;
    assert!(
        https_get(addr, client(&c.ca, None, tls13), "/ok", None)
            .await
            .is_err()
    );
    let (r, suite, v, _) = https_get(addr, client(&c.ca, None, BOTH), "/ok", None)
        .await
        .unwrap();
    assert_eq!(
        (r.status, suite, v),
        (200, 0xc030, rustls::ProtocolVersion::TLSv1_2)
    );
    shutdown.trigger();
}

/// Each `client_auth_type` against a client with no certificate, one the CA signed and a
/// self-signed one.
#[tokio::test]
async fn client_auth_types_behave_as_in_go() {
    let c = &certs().1;
    let other = tempfile::tempdir().unwrap();
    let (self_cert, self_key) = strata_testutil::tls::self_signed_certificate(other.path());
    let clients = [
        ("none", client(&c.ca, None, BOTH)),
        (
            "signed",
            client(&c.ca, Some((&c.client_cert, &c.client_key)), BOTH),
        ),
        (
            "self-signed",
            client(&c.ca, Some((&self_cert, &self_key)), BOTH),
        ),
    ];
    let ca = format!("  client_ca_file: {}\n", c.ca.display());
    for (auth, with_ca, accepted) in [
        ("NoClientCert", false, [true, true, true]),
        ("RequestClientCert", false, [true, true, true]),
        ("RequireAnyClientCert", false, [false, true, true]),
        ("RequireAnyClientCert", true, [false, true, true]),
        ("VerifyClientCertIfGiven", true, [true, true, false]),
        ("RequireAndVerifyClientCert", true, [false, true, false]),
    ] {
        let extra = format!(
            "  client_auth_type: {auth}\n{}",
            if with_ca { ca.as_str() } else { "" }
        );
        let (addr, shutdown) = serve(parse(&tls_section(&extra)).unwrap()).await;
        for ((name, client), accepted) in clients.iter().zip(accepted) {
            let r = https_get(addr, client.clone(), "/ok", None).await;
            assert_eq!(
                r.is_ok(),
                accepted,
                "{auth} (CA: {with_ca}), client {name}: {r:?}"
            );
        }
        shutdown.trigger();
    }
}

#[tokio::test]
async fn client_allowed_sans_match_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let c = ca_signed_certificates(dir.path());
    let (good_cert, good_key) = ca_signed_client_certificate(
        dir.path(),
        "good",
        Some("DNS:other.example,URI:spiffe://cluster/ns/monitoring"),
    );
    let (wild_cert, wild_key) =
        ca_signed_client_certificate(dir.path(), "wild", Some("DNS:*.example"));
    let (ip_cert, ip_key) = ca_signed_client_certificate(dir.path(), "ip", Some("IP:10.9.8.7"));
    for (auth, ca) in [
        ("RequireAndVerifyClientCert", true),
        ("RequireAnyClientCert", false),
    ] {
        let yaml = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: {auth}\n{}  client_allowed_sans: ['spiffe://cluster/ns/monitoring', '10.9.8.7', good.example]\n",
            c.server_cert.display(),
            c.server_key.display(),
            if ca {
                format!("  client_ca_file: {}\n", c.ca.display())
            } else {
                String::new()
            }
        );
        let (addr, shutdown) = serve(WebConfig::from_yaml(&yaml, dir.path()).unwrap()).await;
        for (name, identity, accepted) in [
            ("URI SAN", Some((&good_cert, &good_key)), true),
            ("IP SAN", Some((&ip_cert, &ip_key)), true),
            // A wildcard is a name like any other: no match.
            ("wildcard", Some((&wild_cert, &wild_key)), false),
            ("no SAN", Some((&c.client_cert, &c.client_key)), false),
            ("no certificate", None, false),
        ] {
            let identity = identity.map(|(c, k)| (c.as_path(), k.as_path()));
            let r = https_get(addr, client(&c.ca, identity, BOTH), "/ok", None).await;
            assert_eq!(r.is_ok(), accepted, "{auth}, {name}: {r:?}");
        }
        shutdown.trigger();
    }
}

/// A certificate rotated on disk is served from the next handshake on; a half-written
/// rotation (new certificate, old key) keeps the old one.
#[tokio::test]
async fn certificates_rotated_on_disk_are_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let first = tempfile::tempdir().unwrap();
    let first = ca_signed_certificates(first.path());
    let second = tempfile::tempdir().unwrap();
    let second = ca_signed_certificates(second.path());
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(&first.server_cert, &cert).unwrap();
    std::fs::copy(&first.server_key, &key).unwrap();
    let yaml = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n";
    let (addr, shutdown) = serve(WebConfig::from_yaml(yaml, dir.path()).unwrap()).await;
    let trusts_first = client(&first.ca, None, BOTH);
    let trusts_second = client(&second.ca, None, BOTH);
    assert!(
        https_get(addr, trusts_first.clone(), "/ok", None)
            .await
            .is_ok()
    );
    assert!(
        https_get(addr, trusts_second.clone(), "/ok", None)
            .await
            .is_err()
    );

    // Half a rotation: the certificate does not fit the key; the old pair stays.
    std::fs::copy(&second.server_cert, dir.path().join("new.crt")).unwrap();
    std::fs::rename(dir.path().join("new.crt"), &cert).unwrap();
    assert!(
        https_get(addr, trusts_first.clone(), "/ok", None)
            .await
            .is_ok()
    );
    // The rest of it.
    std::fs::copy(&second.server_key, dir.path().join("new.key")).unwrap();
    std::fs::rename(dir.path().join("new.key"), &key).unwrap();
    assert!(
        https_get(addr, trusts_second.clone(), "/ok", None)
            .await
            .is_ok()
    );
    assert!(https_get(addr, trusts_first, "/ok", None).await.is_err());
    // A file gone missing keeps the certificate in use.
    std::fs::remove_file(&cert).unwrap();
    assert!(https_get(addr, trusts_second, "/ok", None).await.is_ok());
    shutdown.trigger();
}

/// TLS and basic authentication together, as the integration test runs them on `strata
/// query`.
#[tokio::test]
async fn tls_and_basic_auth_together() {
    let c = &certs().1;
    let yaml = format!(
        "{}basic_auth_users:\n  alice: '{}'\n",
        tls_section("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"),
        hash("wonderland")
    );
    let (addr, shutdown) = serve(parse(&yaml).unwrap()).await;
    let mtls = client(&c.ca, Some((&c.client_cert, &c.client_key)), BOTH);
    let (r, ..) = https_get(addr, mtls.clone(), "/ok", None).await.unwrap();
    assert_eq!(r.status, 401);
    let (r, ..) = https_get(addr, mtls, "/ok", Some(("alice", "wonderland")))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        https_get(
            addr,
            client(&c.ca, None, BOTH),
            "/ok",
            Some(("alice", "wonderland"))
        )
        .await
        .is_err()
    );
    shutdown.trigger();
}
