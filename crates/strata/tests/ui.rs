//! The querier's web UI end to end: `strata query` serves the pages, headless Chromium (Debian
//! `chromium`) runs their scripts against the real HTTP API, and the tests read the resulting
//! DOM and decode a screenshot to check a chart was really drawn.
//!
//! - `graph_page_…`: `--debug.blocks-dir`, under a route prefix: graph, table and error panels
//!   from URL parameters, and the screenshot's pixels.
//! - `stores_page_and_dedup_…`: a real bucket, store gateway and querier (plus a dead endpoint):
//!   the stores page, and the deduplication control.
//! - `stores_page_and_query_options_…`: the UI router next to a fake API, to check the exact
//!   parameters the controls send and how API warnings are shown.
//! - `metric_name_completion_…`: typing into the query box in the browser.
//!
//! Without Chromium the tests skip with a message, unless `STRATA_REQUIRE_CHROMIUM` is set
//! (scripts/test.sh sets it), in which case they fail. `STRATA_UI_SCREENSHOT_DIR=<dir>` keeps
//! the graph screenshot as `<dir>/graph.png`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_model::Labels;
use strata_testutil::process::{ChildGuard, free_port, http_request};
use strata_tsdb::{BlockWriter, BlockWriterOptions};

/// 2026-01-01T00:00:00Z, the end of the test data, in ms.
const T0: i64 = 1_767_225_600_000;
const T0_TEXT: &str = "2026-01-01 00:00:00";
/// The graph page's first two series colours (graph.js PALETTE).
const BLUE: [u8; 3] = [0x2f, 0x6f, 0xdf];
const ORANGE: [u8; 3] = [0xe8, 0x59, 0x0c];
const WIDTH: u32 = 1200;
const HEIGHT: u32 = 1000;

/// Chromium, or `None` (and a message) when the test may skip.
fn chromium() -> Option<PathBuf> {
    let candidates = ["chromium", "chromium-browser", "google-chrome"];
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| candidates.iter().map(move |c| dir.join(c)))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("STRATA_REQUIRE_CHROMIUM").is_none(),
            "STRATA_REQUIRE_CHROMIUM is set but no chromium is on PATH (apt-get install chromium)"
        );
        // Straight to stderr, past the test harness' capture, so the skip is always visible.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: chromium is not installed (apt-get install chromium); \
             set STRATA_REQUIRE_CHROMIUM=1 to make this a failure"
        );
    }
    found
}

/// What headless Chromium saw: `--dump-dom` output or a `--screenshot` file.
enum Capture<'a> {
    Dom,
    Screenshot(&'a Path),
}

/// Runs headless Chromium on `url`; returns stdout (the DOM for `Capture::Dom`).
fn run_chromium(bin: &Path, url: &str, capture: Capture<'_>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out_path = profile.path().join("stdout");
    let err_path = profile.path().join("stderr");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--virtual-time-budget=15000",
        &format!("--window-size={WIDTH},{HEIGHT}"),
        &format!(
            "--user-data-dir={}",
            profile.path().join("profile").display()
        ),
    ]);
    match capture {
        Capture::Dom => {
            cmd.arg("--dump-dom");
        }
        Capture::Screenshot(p) => {
            cmd.arg(format!("--screenshot={}", p.display()));
        }
    }
    cmd.arg(url)
        .stdout(Stdio::from(File::create(&out_path).unwrap()))
        .stderr(Stdio::from(File::create(&err_path).unwrap()));
    let mut guard = ChildGuard::spawn("chromium", &mut cmd).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = guard.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not finish within 120s on {url}; stderr:\n{}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        status.success(),
        "chromium failed with {status} on {url}; stderr:\n{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    stdout
}

/// `ui_test_temperature{room="lab"|"office"}` (sawtooth waves) and `ui_test_up`, every 15 s
/// over the two hours up to T0.
fn write_blocks(dir: &Path) {
    let mut w = BlockWriter::new(dir, BlockWriterOptions::default()).unwrap();
    let ts = |i: i64| T0 - 2 * 3600 * 1000 + i * 15_000;
    let mut series: Vec<(Labels, Vec<(i64, f64)>)> = vec![
        (
            Labels::from_pairs(&[("__name__", "ui_test_temperature"), ("room", "lab")]),
            (0..=480)
                .map(|i| (ts(i), 20.0 + (i % 40) as f64 * 0.25))
                .collect(),
        ),
        (
            Labels::from_pairs(&[("__name__", "ui_test_temperature"), ("room", "office")]),
            (0..=480)
                .map(|i| (ts(i), 5.0 + (i % 60) as f64 * 0.1))
                .collect(),
        ),
        (
            Labels::from_pairs(&[("__name__", "ui_test_up"), ("job", "x")]),
            (0..=480).map(|i| (ts(i), 1.0)).collect(),
        ),
    ];
    series.sort_by(|a, b| a.0.cmp(&b.0));
    for (l, s) in &series {
        w.add_series(l, s).unwrap();
    }
    w.finish().unwrap();
}

/// A raw HTTP GET; returns the status code and the body (the servers here send
/// `Content-Length` bodies for pages).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let r = http_request("GET", &format!("http://127.0.0.1:{port}{path}"), b"").unwrap();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

fn http_status(port: u16, path: &str) -> u16 {
    http_get(port, path).0
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A decoded RGB screenshot.
struct Image {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

fn decode_png(path: &Path) -> Image {
    let mut decoder = png::Decoder::new(BufReader::new(File::open(path).unwrap()));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let (width, height) = (info.width as usize, info.height as usize);
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let row = &buf[y * info.line_size..][..width * channels];
        for px in row.chunks(channels) {
            if channels >= 3 {
                rgb.extend_from_slice(&px[..3]);
            } else {
                rgb.extend_from_slice(&[px[0], px[0], px[0]]);
            }
        }
    }
    Image { width, height, rgb }
}

/// Pixels close to `colour`: (count, distinct columns, min row, max row).
fn colour_extent(img: &Image, colour: [u8; 3]) -> (usize, usize, usize, usize) {
    let mut count = 0;
    let mut columns = vec![false; img.width];
    let (mut min_y, mut max_y) = (usize::MAX, 0);
    for y in 0..img.height {
        for (x, column) in columns.iter_mut().enumerate() {
            let p = &img.rgb[(y * img.width + x) * 3..][..3];
            if p.iter()
                .zip(colour)
                .all(|(&a, b)| (i32::from(a) - i32::from(b)).abs() <= 24)
            {
                count += 1;
                *column = true;
                min_y = min_y.min(y);
                max_y = max_y.max(y);
            }
        }
    }
    (count, columns.iter().filter(|c| **c).count(), min_y, max_y)
}

struct Server {
    _guard: ChildGuard,
    port: u16,
}

fn start_query(dir: &Path, extra: &[&str], ready_path: &str) -> Server {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("query")
        .arg(format!("--debug.blocks-dir={}", dir.display()))
        .arg(format!("--http-address=127.0.0.1:{port}"))
        .args(extra);
    let mut guard = ChildGuard::spawn("strata query", &mut cmd).unwrap();
    guard
        .wait_for_http(
            &format!("http://127.0.0.1:{port}{ready_path}"),
            Duration::from_secs(60),
        )
        .unwrap();
    Server {
        _guard: guard,
        port,
    }
}

#[test]
fn graph_page_draws_table_and_chart_from_the_real_api() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_blocks(dir.path());
    // Served under a route prefix, so every link the page makes must honour it.
    let srv = start_query(
        dir.path(),
        &["--web.route-prefix=/strata"],
        "/strata/-/ready",
    );
    let base = format!("http://127.0.0.1:{}/strata", srv.port);

    assert_eq!(http_status(srv.port, "/strata"), 302);
    assert_eq!(http_status(srv.port, "/strata/graph"), 200);

    // Panel 0: graph of the last hour up to T0; panel 1: table at T0; panel 2: a syntax error.
    let params = [
        ("g0.expr", "ui_test_temperature"),
        ("g0.tab", "0"),
        ("g0.range_input", "1h"),
        ("g0.end_input", T0_TEXT),
        ("g0.max_source_resolution", "0s"),
        ("g1.expr", "ui_test_temperature"),
        ("g1.tab", "1"),
        ("g1.moment_input", T0_TEXT),
        ("g2.expr", "sum(ui_test_up"),
        ("g2.tab", "1"),
    ];
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let url = format!("{base}/graph?{}", query.join("&"));

    let dom = run_chromium(&chromium, &url, Capture::Dom);
    let panels: Vec<&str> = dom.split("<section class=\"panel\"").skip(1).collect();
    assert_eq!(panels.len(), 3, "three panels from the URL:\n{dom}");

    // The graph panel finished and its legend names both series.
    let graph = panels[0];
    assert!(
        graph.contains(r#"data-state="done""#),
        "graph panel:\n{graph}"
    );
    for room in ["lab", "office"] {
        let entry =
            format!(r#"<span class="legend-label">ui_test_temperature{{room="{room}"}}</span>"#);
        assert!(graph.contains(&entry), "legend entry for {room}:\n{graph}");
    }
    assert!(graph.contains("<canvas"), "uPlot canvas:\n{graph}");
    assert!(graph.contains("Result series: 2"), "{graph}");
    // Auto step for 1h: 3600 s / 250 = 14 s.
    assert!(graph.contains("Resolution: 14s"), "{graph}");

    // The table panel shows the value at T0 for each series, in label order.
    let table = panels[1];
    assert!(
        table.contains(r#"data-state="done""#),
        "table panel:\n{table}"
    );
    let lab = table.find(
        r#"<td class="series">ui_test_temperature{room="lab"}</td><td class="value">20</td>"#,
    );
    let office = table.find(
        r#"<td class="series">ui_test_temperature{room="office"}</td><td class="value">5</td>"#,
    );
    assert!(
        lab.is_some() && office.is_some() && lab < office,
        "table rows:\n{table}"
    );
    assert_eq!(table.matches("<tr class=\"series-row\"").count(), 2);

    // The bad expression shows the API's error.
    let bad = panels[2];
    assert!(bad.contains(r#"data-state="error""#), "error panel:\n{bad}");
    assert!(bad.contains(r#"class="alert error""#), "{bad}");
    assert!(bad.contains("bad_data"), "the API's error type:\n{bad}");

    // Metric names for completion were loaded from /api/v1/label/__name__/values.
    assert!(dom.contains(r#"data-metric-names="2""#), "completion names");

    // The screenshot: both series drawn as lines across most of the plot width.
    let shot_dir = tempfile::tempdir().unwrap();
    let shot = shot_dir.path().join("graph.png");
    run_chromium(&chromium, &url, Capture::Screenshot(&shot));
    if let Some(dir) = std::env::var_os("STRATA_UI_SCREENSHOT_DIR") {
        // For looking at what the test saw.
        std::fs::copy(&shot, Path::new(&dir).join("graph.png")).unwrap();
    }
    let img = decode_png(&shot);
    assert_eq!((img.width, img.height), (WIDTH as usize, HEIGHT as usize));
    for (name, colour) in [("lab (blue)", BLUE), ("office (orange)", ORANGE)] {
        let (count, columns, min_y, max_y) = colour_extent(&img, colour);
        assert!(
            count > 1000 && columns > img.width / 2,
            "series {name}: {count} pixels in {columns} columns; the chart was not drawn \
             (screenshot kept at {})",
            keep(&shot)
        );
        // Sawtooth waves span many rows, a legend swatch or a border does not.
        assert!(
            max_y - min_y > 60,
            "series {name} spans rows {min_y}..{max_y} only (screenshot kept at {})",
            keep(&shot)
        );
    }
}

/// Copies a screenshot out of its temporary directory so a failure can be inspected.
fn keep(shot: &Path) -> String {
    let dest = std::env::temp_dir().join(format!("strata-ui-{}.png", std::process::id()));
    let _ = std::fs::copy(shot, &dest);
    dest.display().to_string()
}

/// The UI router next to a fake API: `/api/v1/stores` in Thanos' shape and a `/api/v1/query`
/// that answers with warnings and records the parameters the page sent.
/// Query parameters of every `/api/v1/query` request the fake API received.
type Seen = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// A page the fake API serves at `/completion-test` (set once the server is up).
type Page = Arc<Mutex<String>>;

fn start_fake_api() -> (u16, Seen, Page) {
    use axum::Json;
    use axum::extract::Query;
    use axum::routing::get;

    let seen: Seen = Arc::default();
    let page: Page = Arc::default();
    let page2 = page.clone();
    let seen2 = seen.clone();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let last_check = "2026-01-01T00:00:00Z";
    let stores = serde_json::json!({
        "status": "success",
        "data": {
            "sidecar": [
                {"name": "10.0.0.1:10901", "lastCheck": last_check, "lastError": null,
                 "labelSets": [{"cluster": "eu-1", "replica": "a"}],
                 "minTime": now_ms - 3_600_000, "maxTime": i64::MAX},
                {"name": "10.0.0.2:10901", "lastCheck": last_check,
                 "lastError": "rpc error: code = Unavailable desc = connection refused",
                 "labelSets": [{"cluster": "eu-1", "replica": "b"}],
                 "minTime": i64::MIN, "maxTime": i64::MAX}
            ],
            "store": [
                {"name": "store-gw:10901", "lastCheck": last_check, "lastError": null,
                 "labelSets": [{"cluster": "eu-1"}, {"cluster": "us-1"}],
                 "minTime": T0 - 86_400_000, "maxTime": T0}
            ]
        }
    });
    let app = strata_ui::router(strata_ui::UiConfig::default())
        .route(
            "/completion-test",
            get(move || {
                let html = page2.lock().unwrap().clone();
                async move { axum::response::Html(html) }
            }),
        )
        .route(
            "/api/v1/stores",
            get(move || {
                let stores = stores.clone();
                async move { Json(stores) }
            }),
        )
        .route(
            "/api/v1/metadata",
            get(|| async {
                Json(serde_json::json!({"status": "success", "data": {
                    "other_metric": [{"type": "counter", "help": "Other things seen.", "unit": ""}]
                }}))
            }),
        )
        .route(
            "/api/v1/label/__name__/values",
            get(|| async {
                Json(serde_json::json!({"status": "success", "data": ["fake_metric", "other_metric", "up"]}))
            }),
        )
        .route(
            "/api/v1/query",
            get(move |Query(q): Query<BTreeMap<String, String>>| {
                seen2.lock().unwrap().push(q);
                async {
                    Json(serde_json::json!({
                        "status": "success",
                        "data": {"resultType": "vector", "result": [
                            {"metric": {"__name__": "fake_metric", "a": "1"}, "value": [1767225600, "42"]}
                        ]},
                        "warnings": ["receive store-gw:10901: context deadline exceeded"]
                    }))
                }
            }),
        );
    let port = free_port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            tx.send(()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (port, seen, page)
}

#[test]
fn stores_page_and_query_options_against_a_fake_api() {
    let Some(chromium) = chromium() else { return };
    let (port, seen, _page) = start_fake_api();
    let base = format!("http://127.0.0.1:{port}");

    // Stores: grouped by type, health, labels, time ranges.
    let dom = run_chromium(&chromium, &format!("{base}/stores"), Capture::Dom);
    assert!(dom.contains(r#"data-state="done""#), "stores page:\n{dom}");
    let sidecars = dom
        .split(r#"data-type="sidecar""#)
        .nth(1)
        .expect("a sidecar section");
    let sidecars = sidecars.split("</section>").next().unwrap();
    assert!(sidecars.contains("(1/2 up)"), "{sidecars}");
    let up = sidecars
        .split(r#"data-endpoint="10.0.0.1:10901""#)
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(up.contains(r#"<span class="badge up">UP</span>"#), "{up}");
    assert!(up.contains(r#"cluster="eu-1""#) && up.contains(r#"replica="a""#));
    assert!(up.contains(r#"<td class="max-time">+Inf</td>"#), "{up}");
    let down = sidecars
        .split(r#"data-endpoint="10.0.0.2:10901""#)
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(
        down.contains(r#"<span class="badge down">DOWN</span>"#),
        "{down}"
    );
    assert!(down.contains("connection refused"), "{down}");
    assert!(down.contains(r#"<td class="min-time">-Inf</td>"#), "{down}");
    let store = dom
        .split(r#"data-type="store""#)
        .nth(1)
        .expect("a store section");
    assert!(
        store.contains(r#"<td class="min-time">2025-12-31 00:00:00</td>"#),
        "{store}"
    );
    assert!(
        store.contains(r#"<td class="max-time">2026-01-01 00:00:00</td>"#),
        "{store}"
    );
    assert!(store.contains(r#"cluster="us-1""#), "{store}");

    // Query options reach the API; warnings are shown.
    let url = format!(
        "{base}/graph?g0.expr=fake_metric&g0.tab=1&g0.deduplicate=0&g0.partial_response=0\
         &g0.max_source_resolution=5m&g0.moment_input={}",
        encode(T0_TEXT)
    );
    let dom = run_chromium(&chromium, &url, Capture::Dom);
    assert!(dom.contains(r#"data-state="done""#), "graph page:\n{dom}");
    assert!(
        dom.contains(r#"class="alert warning""#)
            && dom.contains("receive store-gw:10901: context deadline exceeded"),
        "warning shown:\n{dom}"
    );
    assert!(
        dom.contains(r#"<td class="series">fake_metric{a="1"}</td><td class="value">42</td>"#),
        "{dom}"
    );
    assert!(dom.contains(r#"data-metric-names="3""#), "completion names");
    let seen = seen.lock().unwrap();
    let q = seen.first().expect("the page queried the API");
    assert_eq!(q.get("query").map(String::as_str), Some("fake_metric"));
    assert_eq!(q.get("dedup").map(String::as_str), Some("false"));
    assert_eq!(q.get("partial_response").map(String::as_str), Some("false"));
    assert_eq!(
        q.get("max_source_resolution").map(String::as_str),
        Some("5m")
    );
    assert_eq!(q.get("time").map(String::as_str), Some("1767225600.000"));
}

/// Typing into the query box in a real browser: the graph page with a script appended that
/// types, reads the completion list (names, and a metric's type and help from
/// `/api/v1/metadata`) and accepts the first entry with Tab.
#[test]
fn metric_name_completion_in_the_browser() {
    let Some(chromium) = chromium() else { return };
    let (port, _seen, page) = start_fake_api();
    let (status, graph) = http_get(port, "/graph");
    assert_eq!(status, 200);
    let script = r#"<script type="module">
const body = document.body;
for (let i = 0; i < 200 && !(body.dataset.metricNames && body.dataset.metricMetadata); i++) {
  await new Promise((r) => setTimeout(r, 25));
}
const ta = document.querySelector('textarea.expr');
const type = (text) => {
  ta.value = text;
  ta.setSelectionRange(text.length, text.length);
  ta.dispatchEvent(new Event('input'));
  return Array.from(document.querySelectorAll('.completions li .name')).map((n) => n.textContent);
};
body.dataset.prefix = type('sum(rate(ot').join(',');
const item = document.querySelector('.completions li');
body.dataset.metaType = item.querySelector('.meta-type')?.textContent ?? '';
body.dataset.metaHelp = item.title;
body.dataset.inner = type('metric').join(',');
body.dataset.inBraces = type('up{job="ot').join(',');
type('sum(fake_m');
ta.dispatchEvent(new KeyboardEvent('keydown', { key: 'Tab', bubbles: true, cancelable: true }));
body.dataset.accepted = ta.value;
body.dataset.completionTest = 'done';
</script>
</body>"#;
    assert!(graph.contains("</body>"));
    *page.lock().unwrap() = graph.replace("</body>", script);

    let dom = run_chromium(
        &chromium,
        &format!("http://127.0.0.1:{port}/completion-test"),
        Capture::Dom,
    );
    assert!(
        dom.contains(r#"data-completion-test="done""#),
        "completion script did not finish:\n{dom}"
    );
    // Prefix matches, then substring matches; nothing inside braces; Tab accepts.
    assert!(dom.contains(r#"data-prefix="other_metric""#), "{dom}");
    // The metric's type beside its name and its help on hover, from /api/v1/metadata.
    assert!(dom.contains(r#"data-meta-type="counter""#), "{dom}");
    assert!(
        dom.contains(r#"data-meta-help="Other things seen.""#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"data-inner="fake_metric,other_metric""#),
        "{dom}"
    );
    assert!(dom.contains(r#"data-in-braces="""#), "{dom}");
    assert!(dom.contains(r#"data-accepted="sum(fake_metric""#), "{dom}");
}

/// The whole stack: blocks uploaded to a bucket, `strata store` serving it, `strata query`
/// fanning out to it (and to an endpoint that is down). The stores page shows both with their
/// health, labels and time range; the dedup control changes what the table shows.
#[test]
fn stores_page_and_dedup_against_a_real_querier_and_store_gateway() {
    let Some(chromium) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let blocks = tmp.path().join("blocks");
    std::fs::create_dir_all(&blocks).unwrap();
    write_blocks(&blocks);
    let yml = tmp.path().join("bucket.yml");
    std::fs::write(
        &yml,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            tmp.path().join("bucket").display()
        ),
    )
    .unwrap();
    let strata = env!("CARGO_BIN_EXE_strata");
    let out = Command::new(strata)
        .args(["tools", "bucket", "upload-blocks"])
        .arg(format!("--objstore.config-file={}", yml.display()))
        .arg(format!("--path={}", blocks.display()))
        .args(["--label=cluster=\"eu1\"", "--label=replica=\"a\""])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "upload-blocks: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (store_http, store_grpc) = (free_port(), free_port());
    let mut store = ChildGuard::spawn(
        "strata store",
        Command::new(strata)
            .arg("store")
            .arg(format!("--objstore.config-file={}", yml.display()))
            .arg(format!("--data-dir={}", tmp.path().join("store").display()))
            .arg(format!("--http-address=127.0.0.1:{store_http}"))
            .arg(format!("--grpc-address=127.0.0.1:{store_grpc}")),
    )
    .unwrap();
    store
        .wait_for_http(
            &format!("http://127.0.0.1:{store_http}/-/ready"),
            Duration::from_secs(60),
        )
        .unwrap();

    let dead = free_port();
    let (http, grpc) = (free_port(), free_port());
    let mut query = ChildGuard::spawn(
        "strata query",
        Command::new(strata)
            .arg("query")
            .arg(format!("--endpoint=127.0.0.1:{store_grpc}"))
            .arg(format!("--endpoint=127.0.0.1:{dead}"))
            .arg("--query.replica-label=replica")
            .arg(format!("--http-address=127.0.0.1:{http}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc}")),
    )
    .unwrap();
    query
        .wait_for_http(
            &format!("http://127.0.0.1:{http}/-/ready"),
            Duration::from_secs(60),
        )
        .unwrap();
    // Wait for the first probe of the store gateway.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http_get(http, "/api/v1/stores");
        if status == 200 && body.contains(r#""store":[{"#) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the querier never saw the store gateway: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let base = format!("http://127.0.0.1:{http}");
    let dom = run_chromium(&chromium, &format!("{base}/stores"), Capture::Dom);
    assert!(dom.contains(r#"data-state="done""#), "stores page:\n{dom}");
    let section = dom
        .split(r#"data-type="store""#)
        .nth(1)
        .expect("a store section")
        .split("</section>")
        .next()
        .unwrap();
    let row = section
        .split(&format!(r#"data-endpoint="127.0.0.1:{store_grpc}""#))
        .nth(1)
        .expect("the store gateway's row")
        .split("</tr>")
        .next()
        .unwrap();
    assert!(row.contains(r#"<span class="badge up">UP</span>"#), "{row}");
    assert!(
        row.contains(r#"cluster="eu1""#) && row.contains(r#"replica="a""#),
        "{row}"
    );
    assert!(
        row.contains(r#"<td class="min-time">2025-12-31 22:00:00</td>"#),
        "{row}"
    );
    let down = dom
        .split(&format!(r#"data-endpoint="127.0.0.1:{dead}""#))
        .nth(1)
        .expect("the dead endpoint's row")
        .split("</tr>")
        .next()
        .unwrap();
    assert!(
        down.contains(r#"<span class="badge down">DOWN</span>"#),
        "{down}"
    );
    assert!(down.contains(r#"class="last-error""#), "{down}");

    // Deduplication on (g0) drops the replica label; off (g1) keeps it.
    let url = format!(
        "{base}/graph?g0.expr=ui_test_temperature&g0.tab=1&g0.moment_input={t}\
         &g1.expr=ui_test_temperature&g1.tab=1&g1.deduplicate=0&g1.moment_input={t}",
        t = encode(T0_TEXT)
    );
    let dom = run_chromium(&chromium, &url, Capture::Dom);
    let panels: Vec<&str> = dom.split("<section class=\"panel\"").skip(1).collect();
    assert_eq!(panels.len(), 2, "{dom}");
    assert!(panels[0].contains(r#"data-state="done""#), "{}", panels[0]);
    assert!(
        panels[0].contains(
            r#"<td class="series">ui_test_temperature{cluster="eu1", room="lab"}</td><td class="value">20</td>"#
        ),
        "deduplicated:\n{}",
        panels[0]
    );
    assert!(
        panels[1].contains(
            r#"<td class="series">ui_test_temperature{cluster="eu1", replica="a", room="lab"}</td><td class="value">20</td>"#
        ),
        "not deduplicated:\n{}",
        panels[1]
    );
}

/// The ruler's pages in headless Chromium: a ruler (stateful, over a querier that evaluates
/// `vector(1)` itself) shows its firing alert with its annotation on `/alerts` and both rules
/// with their health on `/rules`; its menu has no query pages, and `/` leads to the alerts.
#[test]
fn ruler_alerts_and_rules_pages_in_the_browser() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let blocks = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks).unwrap();
    let query = start_query(&blocks, &[], "/-/ready");
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: ui-demo\n    rules:\n      - record: ui:one\n        expr: vector(1)\n      - alert: UiAlwaysFiring\n        expr: vector(1)\n        labels:\n          severity: page\n        annotations:\n          summary: 'value is {{ $value }}'\n",
    )
    .unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("rule")
        .arg(format!("--http-address=127.0.0.1:{port}"))
        .arg(format!("--grpc-address=127.0.0.1:{}", free_port()))
        .arg(format!("--query=127.0.0.1:{}", query.port))
        .arg(format!("--rule-file={}", rules.display()))
        .arg(format!("--data-dir={}", dir.path().join("rule").display()))
        .arg("--eval-interval=1s");
    let mut guard = ChildGuard::spawn("strata rule", &mut cmd).unwrap();
    guard
        .wait_for_http(
            &format!("http://127.0.0.1:{port}/-/ready"),
            Duration::from_secs(60),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(port, "/api/v1/alerts").1.contains("firing") {
        assert!(Instant::now() < deadline, "the alert never fired");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http_status(port, "/graph"), 404);

    let dom = run_chromium(
        &chromium,
        &format!("http://127.0.0.1:{port}/"),
        Capture::Dom,
    );
    assert!(dom.contains("data-state=\"done\""), "{dom}");
    assert!(dom.contains("<title>Alerts · Strata rule</title>"), "{dom}");
    assert!(dom.contains("UiAlwaysFiring"), "{dom}");
    assert!(dom.contains("badge state firing"), "{dom}");
    assert!(dom.contains("value is 1"), "{dom}");
    assert!(dom.contains("1 firing, 0 pending, 0 inactive"), "{dom}");
    assert!(!dom.contains("href=\"graph\""), "{dom}");

    let dom = run_chromium(
        &chromium,
        &format!("http://127.0.0.1:{port}/rules"),
        Capture::Dom,
    );
    assert!(dom.contains("data-state=\"done\""), "{dom}");
    assert!(dom.contains("1 groups, 2 rules"), "{dom}");
    assert!(
        dom.contains("ui:one") && dom.contains("UiAlwaysFiring"),
        "{dom}"
    );
    assert_eq!(dom.matches("badge up\">OK</span>").count(), 2, "{dom}");
}
