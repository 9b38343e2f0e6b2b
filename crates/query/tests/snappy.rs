//! `--grpc-compression=snappy` end to end: a querier compressing with Snappy against real store
//! gateways (in-process, over blocks made by promtool 2.42) answers exactly as an uncompressed
//! one, the Store API acceptance suite passes through Snappy links, and a TCP proxy that
//! watches the bytes proves the messages really were compressed both ways.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use strata_query::{ClientConfig, Compression, EndpointSet, EndpointSetConfig, Fanout};
use strata_store::testing::{StoreApiClient, run_acceptance};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP proxy that forwards to `target` and keeps every byte it forwarded, per direction.
/// h2c is plaintext, so gRPC message payloads appear verbatim in the recorded bytes.
struct Sniffer {
    addr: SocketAddr,
    to_server: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
}

impl Sniffer {
    async fn start(target: SocketAddr) -> Sniffer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let to_server = Arc::new(Mutex::new(Vec::new()));
        let to_client = Arc::new(Mutex::new(Vec::new()));
        let (up, down) = (to_server.clone(), to_client.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, up.clone()));
                tokio::spawn(pipe(sr, cw, down.clone()));
            }
        });
        Sniffer {
            addr,
            to_server,
            to_client,
        }
    }

    /// How many framed-snappy streams (stream identifier chunks) went each way.
    fn snappy_streams(&self) -> (usize, usize) {
        let count = |b: &Arc<Mutex<Vec<u8>>>| {
            let b = b.lock().unwrap();
            b.windows(10)
                .filter(|w| *w == b"\xff\x06\x00\x00sNaPpY")
                .count()
        };
        (count(&self.to_server), count(&self.to_client))
    }

    fn bytes_to_client(&self) -> usize {
        self.to_client.lock().unwrap().len()
    }
}

async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = w.shutdown().await;
}

/// A fan-out over `addrs` with `compression`, probed once; every endpoint must be up.
async fn fanout_with(addrs: &[String], compression: Compression) -> Fanout {
    let set = EndpointSet::new(EndpointSetConfig {
        endpoints: addrs.to_vec(),
        client: ClientConfig {
            compression,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    set.update().await;
    for s in set.status() {
        assert!(s.last_error.is_none(), "{s:?}");
        assert!(s.info.is_some(), "{s:?}");
    }
    Fanout {
        endpoints: set,
        response_timeout: None,
        max_wait: Duration::from_secs(60),
        limits: Default::default(),
        selector: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_querier_answers_like_an_uncompressed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = promtool_blocks(&tmp.path().join("a"), &openmetrics(3, 0, None));
    let bucket = fs_bucket(&tmp.path().join("bucket"));
    upload(&bucket, &blocks, &[("cluster", "eu1")]).await;
    let store = Served::start(bucket, &tmp.path().join("data")).await;
    let plain_wire = Sniffer::start(store.addr).await;
    let snappy_wire = Sniffer::start(store.addr).await;

    let plain = querier(
        fanout_with(&[plain_wire.addr.to_string()], Compression::None).await,
        &[],
    );
    let snappy = querier(
        fanout_with(&[snappy_wire.addr.to_string()], Compression::Snappy).await,
        &[],
    );
    assert_same_range_answers(
        &snappy,
        &plain,
        &[
            "http_requests_total",
            "rate(http_requests_total[5m])",
            "sum by (job) (increase(http_requests_total[1h]))",
            "temperature",
        ],
    )
    .await;

    // Compression really happened, both ways: every Series request (Info's is empty, and empty
    // messages stay uncompressed as in grpc-go) and every response message is a framed-snappy
    // stream on the Snappy link, and none is on the plain one.
    let (up, down) = snappy_wire.snappy_streams();
    assert!(up >= 4, "requests compressed: {up}");
    assert!(
        down > up,
        "responses compressed: {down} (Info and every Series frame)"
    );
    assert_eq!(plain_wire.snappy_streams(), (0, 0));
    // The store's answers (labels and XOR chunks, 10 series) shrink on the wire.
    assert!(
        snappy_wire.bytes_to_client() < plain_wire.bytes_to_client(),
        "snappy {} bytes, plain {} bytes",
        snappy_wire.bytes_to_client(),
        plain_wire.bytes_to_client()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_api_acceptance_through_snappy_links() {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, served) = two_gateways(tmp.path()).await;
    let mut wires = Vec::new();
    for s in &served {
        wires.push(Sniffer::start(s.addr).await);
    }
    let addrs: Vec<String> = wires.iter().map(|w| w.addr.to_string()).collect();

    // Acceptance client → querier → (snappy) → store gateways.
    let (q1, _stop1) = serve_querier(fanout_with(&addrs, Compression::Snappy).await).await;
    let mut client = StoreApiClient::connect(format!("http://{q1}"))
        .await
        .unwrap();
    let report = run_acceptance(&mut client, &reference).await.unwrap();
    assert!(report.cases > 40, "{report:?}");
    for w in &wires {
        let (up, down) = w.snappy_streams();
        assert!(up > 0 && down > 0, "{up} {down}");
    }

    // Acceptance client → querier → (snappy) → querier → (snappy) → store gateways: the
    // querier's own Store API serves Snappy too.
    let q1_wire = Sniffer::start(q1).await;
    let (q2, _stop2) =
        serve_querier(fanout_with(&[q1_wire.addr.to_string()], Compression::Snappy).await).await;
    let mut client = StoreApiClient::connect(format!("http://{q2}"))
        .await
        .unwrap();
    run_acceptance(&mut client, &reference).await.unwrap();
    let (up, down) = q1_wire.snappy_streams();
    assert!(up > 40 && down > 40, "{up} {down}");
}

/// Sends every call as `grpc-encoding: snappy` with a body of one message flagged compressed
/// whose payload is not a framed-snappy stream.
#[derive(Clone)]
struct CorruptSnappy(tonic::transport::Channel);

impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>> for CorruptSnappy {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = <tonic::transport::Channel as tonic::codegen::Service<
        tonic::codegen::http::Request<tonic::body::Body>,
    >>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        let (mut parts, _) = req.into_parts();
        parts
            .headers
            .insert("grpc-encoding", "snappy".parse().unwrap());
        parts
            .headers
            .insert("grpc-accept-encoding", "snappy".parse().unwrap());
        let body = String::from("\u{1}\0\0\0\u{a}not snappy");
        self.0.call(tonic::codegen::http::Request::from_parts(
            parts,
            tonic::body::Body::new(body),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_snappy_requests_get_a_clear_status() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = promtool_blocks(&tmp.path().join("a"), &openmetrics(2, 0, None));
    let bucket = fs_bucket(&tmp.path().join("bucket"));
    upload(&bucket, &blocks, &[("cluster", "eu1")]).await;
    let store = Served::start(bucket, &tmp.path().join("data")).await;
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", store.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client =
        strata_storepb::thanos::store_client::StoreClient::new(CorruptSnappy(ch.clone()));
    let st = client
        .label_names(strata_storepb::thanos::LabelNamesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::Internal, "{st:?}");
    assert!(st.message().starts_with("snappy: "), "{st:?}");
    // The server is unharmed: a well-formed Snappy client gets its answer on the same
    // connection.
    let mut client = strata_storepb::thanos::store_client::StoreClient::new(
        strata_storepb::snappy::SnappyChannel::snappy(ch, 1 << 20),
    );
    let names = client
        .label_names(strata_storepb::thanos::LabelNamesRequest {
            end: i64::MAX,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .names;
    assert!(names.contains(&"cluster".to_string()), "{names:?}");
}
