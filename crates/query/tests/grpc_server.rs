//! How every Store API server runs (`strata_storepb::server::serve`, shared by the gateway,
//! the sidecar and the querier): `--grpc-server-tls-min-version` and `--grpc-grace-period`.
//! Served here with a Store API double; the clients are real TLS and gRPC clients.

mod common;

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::CountingStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use strata_storepb::server::{ServerOptions, ServerTlsMinVersion, TlsFiles, serve};

/// Serves `store` with `opts` on a free port; the sender stops it.
async fn start(
    store: CountingStore,
    opts: ServerOptions,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        serve(listener, store, opts, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (addr, tx, task)
}

/// A TLS handshake with `addr` speaking only `version`, trusting `ca`: the version agreed on,
/// or why it failed.
fn handshake(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<rustls::ProtocolVersion, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let mut conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(conn.protocol_version().unwrap())
}

/// `--grpc-server-tls-min-version=1.3` (Thanos' default) refuses a client that speaks TLS
/// 1.2 only; `1.2` accepts it; TLS 1.3 clients are accepted either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_min_version_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let c = strata_testutil::tls::ca_signed_certificates(dir.path());
    for (min, tls12_ok) in [
        (ServerTlsMinVersion::Tls13, false),
        (ServerTlsMinVersion::Tls12, true),
    ] {
        let opts = ServerOptions {
            tls: Some(TlsFiles {
                cert: c.server_cert.clone(),
                key: c.server_key.clone(),
                client_ca: None,
                min_version: min,
            }),
            ..Default::default()
        };
        let (addr, stop, task) = start(CountingStore::new(Duration::ZERO), opts).await;
        let ca = c.ca.clone();
        let (v12, v13) = tokio::task::spawn_blocking(move || {
            (
                handshake(addr, &ca, &rustls::version::TLS12),
                handshake(addr, &ca, &rustls::version::TLS13),
            )
        })
        .await
        .unwrap();
        assert_eq!(v13, Ok(rustls::ProtocolVersion::TLSv1_3), "{min:?}");
        if tls12_ok {
            assert_eq!(v12, Ok(rustls::ProtocolVersion::TLSv1_2), "{min:?}");
        } else {
            assert!(v12.is_err(), "{min:?}: {v12:?}");
        }
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the server stops")
            .unwrap();
    }
}

/// `--grpc-grace-period`: a call still running when the grace period after the shutdown
/// signal is over no longer holds the server up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_call_holds_shutdown_up_for_the_grace_period_only() {
    let mut store = CountingStore::new(Duration::ZERO);
    store.hang = true;
    for (grace, stops) in [(None, false), (Some(Duration::from_millis(300)), true)] {
        let opts = ServerOptions {
            grace_period: grace,
            ..Default::default()
        };
        let (addr, stop, task) = start(store.clone(), opts).await;
        let mut client =
            strata_storepb::thanos::store_client::StoreClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
        let mut call = client
            .series(strata_storepb::thanos::SeriesRequest {
                min_time: 0,
                max_time: 1,
                matchers: vec![strata_storepb::thanos::LabelMatcher {
                    name: "__name__".into(),
                    value: "x".into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // The call is open and stays so.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), call.message())
                .await
                .is_err()
        );
        let asked = Instant::now();
        let _ = stop.send(());
        let ended = tokio::time::timeout(Duration::from_secs(3), task).await;
        assert_eq!(ended.is_ok(), stops, "grace {grace:?}");
        if stops {
            assert!(asked.elapsed() >= Duration::from_millis(300));
        }
        drop(call);
    }
}
