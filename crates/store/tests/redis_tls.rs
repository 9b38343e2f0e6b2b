//! The Redis client's TLS (`tls_enabled`, `tls_config`) against a real Redis 7 (Debian's
//! `redis-server`, which speaks TLS on a second port) with certificates made by `openssl`:
//! verified against a CA, for the address or a `server_name`; mutual TLS; a server the
//! client must not trust; `insecure_skip_verify`; and settings that cannot work refused when
//! the client is made, naming the setting.

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_store::memcached::ClientMetrics;
use strata_store::redis::{Redis, RedisConfig};
use strata_testutil::redis::RedisServer;
use strata_testutil::tls::{CaSigned, ca_signed_certificates, self_signed_certificate};

fn config(addr: &str, tls: &str) -> RedisConfig {
    let yaml = format!("addr: {addr}\ndial_timeout: 2s\ntls_enabled: true\n{tls}");
    RedisConfig::from_value(serde_yaml_ng::from_str(&yaml).unwrap()).unwrap()
}

/// Whether a value set through the client comes back through it (and is in the server,
/// read over its plain port) within a few seconds (a failed dial is retried after 1 s).
async fn round_trip(server: &RedisServer, cfg: RedisConfig, key: &str) -> bool {
    let client = Redis::new(cfg, "test", &ClientMetrics::redis(None)).unwrap();
    client.set_async(
        key.into(),
        Bytes::from_static(b"value"),
        Duration::from_secs(60),
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if client.get_multi(&[key.to_owned()]).await[0].as_deref() == Some(&b"value"[..]) {
            assert!(server.keys().unwrap().contains(&key.to_owned()));
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn tls_config(certs: &CaSigned, extra: &str) -> String {
    format!("tls_config:\n  ca_file: {}\n{extra}", certs.ca.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verified_against_a_ca_with_or_without_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = ca_signed_certificates(dir.path());
    let server = RedisServer::start_tls(&certs.server_cert, &certs.server_key, None).unwrap();
    let addr = server.tls_address();

    assert!(round_trip(&server, config(&addr, &tls_config(&certs, "")), "by-ip").await);
    // The certificate names localhost too.
    let named = tls_config(&certs, "  server_name: localhost\n");
    assert!(round_trip(&server, config(&addr, &named), "by-name").await);
    // But not another name.
    let wrong = tls_config(&certs, "  server_name: redis.example\n");
    assert!(!round_trip(&server, config(&addr, &wrong), "wrong-name").await);
    // The plain client on the TLS port gets nowhere, and TLS to the plain port neither.
    let plain = RedisConfig::from_value(
        serde_yaml_ng::from_str(&format!("addr: {addr}\ndial_timeout: 2s\n")).unwrap(),
    )
    .unwrap();
    assert!(!round_trip(&server, plain, "plain").await);
    let to_plain = config(&server.address(), &tls_config(&certs, ""));
    assert!(!round_trip(&server, to_plain, "to-plain").await);

    // A server that asks for a client certificate signed by the CA.
    let mtls =
        RedisServer::start_tls(&certs.server_cert, &certs.server_key, Some(&certs.ca)).unwrap();
    let addr = mtls.tls_address();
    let with_cert = tls_config(
        &certs,
        &format!(
            "  cert_file: {}\n  key_file: {}\n",
            certs.client_cert.display(),
            certs.client_key.display()
        ),
    );
    assert!(round_trip(&mtls, config(&addr, &with_cert), "mtls").await);
    assert!(!round_trip(&mtls, config(&addr, &tls_config(&certs, "")), "no-cert").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_is_refused_unless_verification_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_certificate(dir.path());
    let server = RedisServer::start_tls(&cert, &key, None).unwrap();
    let addr = server.tls_address();
    // Neither the system's roots nor another CA trust a self-signed certificate.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = ca_signed_certificates(&other_dir);
    assert!(!round_trip(&server, config(&addr, &tls_config(&other, "")), "other-ca").await);
    assert!(!round_trip(&server, config(&addr, ""), "system-roots").await);
    let skip = "tls_config:\n  insecure_skip_verify: true\n";
    assert!(round_trip(&server, config(&addr, skip), "skipped").await);
}

#[tokio::test]
async fn unusable_tls_settings_are_refused_when_the_client_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let missing = dir.path().join("missing.pem");
    let certs = ca_signed_certificates(dir.path());
    for (tls, want) in [
        (
            format!("tls_config:\n  ca_file: {}\n", missing.display()),
            "ca_file",
        ),
        (
            format!("tls_config:\n  ca_file: {}\n", junk.display()),
            "ca_file",
        ),
        (
            format!(
                "tls_config:\n  cert_file: {}\n  key_file: {}\n",
                certs.client_cert.display(),
                junk.display()
            ),
            "key_file",
        ),
        (
            "tls_config:\n  server_name: \"bad name!\"\n".to_string(),
            "server_name",
        ),
    ] {
        let e = Redis::new(
            config("127.0.0.1:1", &tls),
            "test",
            &ClientMetrics::redis(None),
        )
        .unwrap_err();
        assert!(e.contains(want), "{tls}: {e}");
    }
}
