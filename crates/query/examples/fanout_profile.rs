//! Where a fan-out select spends its time, against a running Store API server: the bare
//! Series call (frames received, nothing decoded), the fan-out (labels converted, merged)
//! and the conversion to engine series.
//!
//! `fanout_profile HOST:PORT METRIC MINT_MS MAXT_MS [REPEAT]` (`BATCH=N` asks for N series
//! per frame; `STRIP=a,b` sets `without_replica_labels`; `FANOUT_ONLY=1` skips the bare call). `HOPS=1` instead times the querier's own
//! Series reader alone (`strata_storepb::frame::call_series` over a channel set up as the
//! querier's: 4 MiB HTTP/2 frames, no delay): until the answer's headers, its first message
//! and its last, with nothing decoded, to tell the transport from the decoding and merging.

use std::time::{Duration, Instant};

use strata_model::Matcher;
use strata_query::series::{AggrRead, Convert, to_engine};
use strata_query::{EndpointSet, EndpointSetConfig, Fanout};
use strata_storepb::convert::matcher_from_model;
use strata_storepb::thanos::SeriesRequest;
use strata_storepb::thanos::store_client::StoreClient;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: fanout_profile HOST:PORT METRIC MINT_MS MAXT_MS [REPEAT]");
        std::process::exit(2);
    }
    let (addr, metric) = (&args[1], &args[2]);
    let mint: i64 = args[3].parse().expect("MINT_MS");
    let maxt: i64 = args[4].parse().expect("MAXT_MS");
    let repeat: usize = args.get(5).map_or(5, |r| r.parse().expect("REPEAT"));
    let req = SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers: vec![matcher_from_model(&Matcher::equal("__name__", metric))],
        response_batch_size: std::env::var("BATCH").map_or(0, |b| b.parse().expect("BATCH")),
        without_replica_labels: std::env::var("STRIP")
            .map_or(Vec::new(), |s| s.split(',').map(str::to_string).collect()),
        ..Default::default()
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    if std::env::var_os("HOPS").is_some() {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("address")
            .tcp_nodelay(true)
            .max_frame_size(strata_query::endpoint::MAX_H2_FRAME)
            .connect()
            .await
            .expect("connect");
        let (mut head, mut first, mut last) = (Vec::new(), Vec::new(), Vec::new());
        let mut bytes = 0usize;
        // `HOPS=decode`: each message is also decoded, inline, as it comes.
        let decode = std::env::var("HOPS").is_ok_and(|v| v == "decode");
        for _ in 0..repeat {
            let mut ch = channel.clone();
            let t = Instant::now();
            let mut answer = strata_storepb::frame::call_series(&mut ch, &req, 256 << 20)
                .await
                .expect("series");
            head.push(t.elapsed().as_secs_f64() * 1e3);
            bytes = 0;
            let mut seen_first = false;
            while let Some(m) = answer.message().await.expect("message") {
                if !seen_first {
                    first.push(t.elapsed().as_secs_f64() * 1e3);
                    seen_first = true;
                }
                bytes += m.len();
                if decode {
                    let f = strata_storepb::frame::decode_series_response(m).expect("frame");
                    std::hint::black_box(f);
                }
            }
            last.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "bytes {bytes}; headers {:.2} ms; first message {:.2} ms; last message {:.2} ms",
            median(head),
            median(first),
            median(last)
        );
        return;
    }
    let mut client = StoreClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
        .max_decoding_message_size(256 << 20);
    let set = EndpointSet::new(EndpointSetConfig {
        endpoints: vec![addr.clone()],
        ..Default::default()
    })
    .expect("endpoint");
    set.update().await;
    let fanout = Fanout {
        endpoints: set,
        response_timeout: None,
        max_wait: Duration::from_secs(120),
        limits: Default::default(),
        selector: Default::default(),
    };
    let (mut bare, mut fan, mut conv) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0usize;
    for _ in 0..repeat {
        // `FANOUT_ONLY=1` skips the bare call, so that an instruction profile
        // (`valgrind --tool=callgrind`) shows the querier's own decoding alone.
        let bare_call = std::env::var_os("FANOUT_ONLY").is_none();
        let t = Instant::now();
        if bare_call {
            let mut stream = client
                .series(req.clone())
                .await
                .expect("series")
                .into_inner();
            bytes = 0;
            while let Some(f) = stream.message().await.expect("frame") {
                bytes += prost::Message::encoded_len(&f);
            }
        }
        bare.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        let merged = fanout.series(req.clone(), true, &[]).await.expect("fanout");
        fan.push(t.elapsed().as_secs_f64() * 1e3);
        let n = merged.items.len();
        let t = Instant::now();
        let out = to_engine(
            merged.items,
            &Convert {
                replica_labels: &[],
                algorithm: strata_dedup::Algorithm::Penalty,
                counter: false,
                aggr: AggrRead::Average,
            },
        )
        .expect("convert");
        conv.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(out.len(), n);
    }
    println!(
        "bytes {bytes}; bare Series {:.1} ms; fan-out {:.1} ms; to_engine {:.2} ms",
        median(bare),
        median(fan),
        median(conv)
    );
}
