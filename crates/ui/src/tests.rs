use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

struct Got {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
    bytes: Vec<u8>,
}

async fn send(app: &Router, method: Method, uri: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes: bytes.to_vec(),
    }
}

async fn get(app: &Router, uri: &str) -> Got {
    send(app, Method::GET, uri, &[]).await
}

fn hdr(g: &Got, name: header::HeaderName) -> &str {
    g.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn cfg(route: &str, external: &str, header: &str) -> UiConfig {
    UiConfig {
        route_prefix: route.into(),
        external_prefix: external.into(),
        prefix_header: header.into(),
        partial_response: true,
        default_step_ms: 1000,
        component: Component::Query,
    }
}

/// The asset version the pages link to.
fn version_of(page: &str) -> String {
    let start = page.find("static/").unwrap() + "static/".len();
    page[start..].split('/').next().unwrap().to_string()
}

#[tokio::test]
async fn root_redirects_to_graph_like_thanos() {
    let app = router(UiConfig::default());
    let r = get(&app, "/").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(hdr(&r, header::LOCATION), "/graph");

    // The external prefix wins; a trailing slash is dropped; a missing leading one added.
    for (external, want) in [
        ("/thanos", "/thanos/graph"),
        ("/thanos/", "/thanos/graph"),
        ("thanos", "/thanos/graph"),
        ("https://example.com/q", "https://example.com/q/graph"),
    ] {
        let app = router(cfg("", external, ""));
        let r = get(&app, "/").await;
        assert_eq!(
            hdr(&r, header::LOCATION),
            want,
            "external prefix {external}"
        );
    }

    // Only a route prefix: links and redirects follow it.
    let app = Router::new().nest("/foo", router(cfg("/foo", "", "")));
    let r = get(&app, "/foo").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(hdr(&r, header::LOCATION), "/foo/graph");

    // Route prefix for serving, external prefix for what browsers see.
    let app = Router::new().nest("/internal", router(cfg("/internal", "/public", "")));
    let r = get(&app, "/internal").await;
    assert_eq!(hdr(&r, header::LOCATION), "/public/graph");
    assert_eq!(get(&app, "/internal/graph").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/graph").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn prefix_header_is_used_only_when_safe_and_no_external_prefix() {
    let app = router(cfg("", "", "X-Forwarded-Prefix"));
    let r = send(
        &app,
        Method::GET,
        "/",
        &[("X-Forwarded-Prefix", "/proxied/strata")],
    )
    .await;
    assert_eq!(hdr(&r, header::LOCATION), "/proxied/strata/graph");
    let page = send(
        &app,
        Method::GET,
        "/graph",
        &[("X-Forwarded-Prefix", "/proxied/strata")],
    )
    .await;
    assert!(
        page.body.contains(r#"<base href="/proxied/strata/">"#),
        "{}",
        page.body
    );

    // Markup or absolute URLs in the header are ignored.
    for bad in [
        r#"/x"><script>"#,
        "https://evil.example/",
        "/a b",
        "javascript:alert(1)",
        "//evil.example",
    ] {
        let r = send(&app, Method::GET, "/graph", &[("X-Forwarded-Prefix", bad)]).await;
        assert!(r.body.contains(r#"<base href="/">"#), "header {bad}");
        assert!(!r.body.contains("<script>\""), "header {bad}");
    }

    // The external prefix overrides the header.
    let app = router(cfg("", "/ext", "X-Forwarded-Prefix"));
    let r = send(&app, Method::GET, "/", &[("X-Forwarded-Prefix", "/hdr")]).await;
    assert_eq!(hdr(&r, header::LOCATION), "/ext/graph");
}

#[tokio::test]
async fn pages_are_html_with_base_and_versioned_assets() {
    let app = router(cfg("", "/thanos", ""));
    for (path, script) in [("/graph", "graph.js"), ("/stores", "stores.js")] {
        let r = get(&app, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(
            hdr(&r, header::CONTENT_TYPE),
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(hdr(&r, header::CACHE_CONTROL), "no-cache", "{path}");
        assert!(
            r.body.contains(r#"<base href="/thanos/">"#),
            "{path}: {}",
            r.body
        );
        let version = version_of(&r.body);
        assert!(
            r.body
                .contains(&format!(r#"src="static/{version}/{script}""#)),
            "{path}"
        );
        assert!(!r.body.contains("{{"), "{path}: unreplaced placeholder");
        // Nothing is loaded from elsewhere.
        assert!(!r.body.contains("http://") && !r.body.contains("https://"));
    }
    let r = get(&app, "/graph").await;
    assert!(r.body.contains(r#"data-partial-response="true""#));
    let mut c = cfg("", "", "");
    c.partial_response = false;
    let r = get(&router(c), "/graph").await;
    assert!(r.body.contains(r#"data-partial-response="false""#));
    // --query.default-step reaches the graph's automatic step.
    assert!(
        get(&app, "/graph")
            .await
            .body
            .contains(r#"data-default-step="1000""#)
    );
    let mut c = cfg("", "", "");
    c.default_step_ms = 60_000;
    let r = get(&router(c), "/graph").await;
    assert!(r.body.contains(r#"data-default-step="60000""#));
}

#[tokio::test]
async fn every_asset_the_pages_and_modules_reference_is_served() {
    let app = router(UiConfig::default());
    let page = get(&app, "/graph").await.body + &get(&app, "/stores").await.body;
    let version = version_of(&page);
    let mut refs: Vec<String> = page
        .split(&format!("static/{version}/"))
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect();
    // Relative module imports (`from './common.js'`).
    for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
        let text = std::str::from_utf8(a.body).unwrap();
        for part in text.split("from './").skip(1) {
            refs.push(part.split('\'').next().unwrap().to_string());
        }
    }
    assert!(refs.len() >= 7, "{refs:?}");
    for r in refs {
        let got = get(&app, &format!("/static/{version}/{r}")).await;
        assert_eq!(got.status, StatusCode::OK, "{r}");
    }
}

#[tokio::test]
async fn static_assets_have_content_types_and_cache_headers() {
    let app = router(UiConfig::default());
    let version = version_of(&get(&app, "/graph").await.body);
    for (path, ct) in [
        ("graph.js", "text/javascript; charset=utf-8"),
        ("common.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
        ("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("vendor/uPlot.min.css", "text/css; charset=utf-8"),
        ("vendor/uPlot-LICENSE.txt", "text/plain; charset=utf-8"),
    ] {
        let r = get(&app, &format!("/static/{version}/{path}")).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(hdr(&r, header::CONTENT_TYPE), ct, "{path}");
        assert_eq!(
            hdr(&r, header::CACHE_CONTROL),
            "public, max-age=31536000, immutable",
            "{path}"
        );
        assert_eq!(hdr(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert!(!r.body.is_empty());
        let etag = hdr(&r, header::ETAG).to_string();
        assert!(etag.starts_with('"') && etag.len() == 18, "{etag}");

        // Unversioned URLs work too, but are revalidated.
        let u = get(&app, &format!("/static/{path}")).await;
        assert_eq!(u.status, StatusCode::OK);
        assert_eq!(hdr(&u, header::CACHE_CONTROL), "no-cache");
        assert_eq!(u.body, r.body);

        // Conditional requests.
        let c = send(
            &app,
            Method::GET,
            &format!("/static/{path}"),
            &[("If-None-Match", &etag)],
        )
        .await;
        assert_eq!(c.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(c.body.is_empty());
        let c = send(
            &app,
            Method::GET,
            &format!("/static/{path}"),
            &[("If-None-Match", "\"other\"")],
        )
        .await;
        assert_eq!(c.status, StatusCode::OK);
    }
    let uplot = get(&app, "/static/vendor/uPlot-LICENSE.txt").await;
    assert!(uplot.body.contains("MIT"));

    let head = send(&app, Method::HEAD, "/static/app.css", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let app = router(UiConfig::default());
    let version = version_of(&get(&app, "/graph").await.body);
    for path in [
        "/static/nope.js".to_string(),
        format!("/static/{version}/nope.js"),
        format!("/static/{version}/"),
        "/static/0123456789ab/graph.js".to_string(),
        "/static/../Cargo.toml".to_string(),
        "/static/%2e%2e/src/lib.rs".to_string(),
        "/static/vendor".to_string(),
        "/nope".to_string(),
        "/graph/extra".to_string(),
    ] {
        let r = get(&app, &path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    // Only GET and HEAD.
    let r = send(&app, Method::POST, "/graph", &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn merges_with_other_routers() {
    // The querier merges the UI next to the API and the base router; no route or fallback
    // may collide.
    let api = Router::new().route("/api/v1/query", axum::routing::get(|| async { "api" }));
    let app = Router::new()
        .route("/-/ready", axum::routing::get(|| async { "ok" }))
        .merge(api)
        .merge(router(UiConfig::default()));
    assert_eq!(get(&app, "/api/v1/query").await.body, "api");
    assert_eq!(get(&app, "/graph").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/nope").await.status, StatusCode::NOT_FOUND);
}

#[test]
fn content_types_by_extension() {
    assert_eq!(content_type("a/b.js"), "text/javascript; charset=utf-8");
    assert_eq!(content_type("x.css"), "text/css; charset=utf-8");
    assert_eq!(content_type("x.html"), "text/html; charset=utf-8");
    assert_eq!(content_type("x.svg"), "image/svg+xml");
    assert_eq!(content_type("noext"), "application/octet-stream");
}

#[test]
fn prefixes_that_may_be_echoed() {
    for ok in [
        "",
        "/",
        "/thanos",
        "thanos/q",
        "/a-b_c.d~e%20f",
        "https://example.com",
        "http://example.com:9090/thanos",
        "http://[::1]:9090/x",
    ] {
        assert!(safe_prefix(ok), "{ok}");
    }
    for bad in [
        "//evil.example",
        "javascript:alert(1)",
        "/a\"b",
        "/a<b",
        "/a b",
        "ftp://x/y",
        "https://ex ample.com/",
    ] {
        assert!(!safe_prefix(bad), "{bad}");
    }
}

#[tokio::test]
async fn unsafe_external_prefix_falls_back_to_the_route_prefix() {
    let app = router(cfg("/route", r#"/x"onload="alert(1)"#, ""));
    let r = get(&app, "/").await;
    assert_eq!(hdr(&r, header::LOCATION), "/route/graph");
    let page = get(&app, "/graph").await;
    assert!(page.body.contains(r#"<base href="/route/">"#));
    assert!(!page.body.contains("onload"));
}

#[tokio::test]
async fn assets_are_gzipped_when_the_client_accepts_it() {
    use std::io::Read as _;
    let app = router(UiConfig::default());
    let plain = get(&app, "/static/vendor/uPlot.iife.min.js").await;
    assert!(hdr(&plain, header::CONTENT_ENCODING).is_empty());
    assert_eq!(hdr(&plain, header::VARY), "Accept-Encoding");

    let gz = send(
        &app,
        Method::GET,
        "/static/vendor/uPlot.iife.min.js",
        &[("Accept-Encoding", "br;q=1.0, gzip;q=0.8")],
    )
    .await;
    assert_eq!(gz.status, StatusCode::OK);
    assert_eq!(hdr(&gz, header::CONTENT_ENCODING), "gzip");
    assert_eq!(hdr(&gz, header::VARY), "Accept-Encoding");
    assert_eq!(
        hdr(&gz, header::CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    assert!(gz.bytes.len() < plain.bytes.len() / 2, "{}", gz.bytes.len());
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz.bytes[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain.bytes);
    let gz_etag = hdr(&gz, header::ETAG).to_string();
    assert_ne!(gz_etag, hdr(&plain, header::ETAG));

    // Each representation revalidates against its own tag.
    let c = send(
        &app,
        Method::GET,
        "/static/vendor/uPlot.iife.min.js",
        &[("Accept-Encoding", "gzip"), ("If-None-Match", &gz_etag)],
    )
    .await;
    assert_eq!(c.status, StatusCode::NOT_MODIFIED);
    let c = send(
        &app,
        Method::GET,
        "/static/vendor/uPlot.iife.min.js",
        &[("If-None-Match", &gz_etag)],
    )
    .await;
    assert_eq!(c.status, StatusCode::OK);

    // Refused or absent gzip: identity.
    for ae in ["gzip;q=0", "identity", "br"] {
        let r = send(
            &app,
            Method::GET,
            "/static/app.css",
            &[("Accept-Encoding", ae)],
        )
        .await;
        assert!(hdr(&r, header::CONTENT_ENCODING).is_empty(), "{ae}");
    }
    let r = send(
        &app,
        Method::GET,
        "/static/app.css",
        &[("Accept-Encoding", "*")],
    )
    .await;
    assert_eq!(hdr(&r, header::CONTENT_ENCODING), "gzip");
}

#[tokio::test]
async fn a_ruler_serves_its_alerts_and_rules_pages_only() {
    let app = router(UiConfig {
        component: Component::Rule,
        ..UiConfig::default()
    });
    let root = get(&app, "/").await;
    assert_eq!(root.status, StatusCode::FOUND);
    assert_eq!(hdr(&root, header::LOCATION), "/alerts");
    for (path, script) in [("/alerts", "alerts.js"), ("/rules", "rules.js")] {
        let page = get(&app, path).await;
        let body = page.body;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(body.contains(script), "{path}: {body}");
        assert!(body.contains("Strata rule"), "{path}: {body}");
        assert!(
            !body.contains("href=\"graph\""),
            "{path}: no query pages on a ruler: {body}"
        );
        let version = version_of(&body);
        let js = get(&app, &format!("/static/{version}/{script}")).await;
        assert_eq!(js.status, StatusCode::OK, "{script}");
    }
    for path in ["/graph", "/stores"] {
        assert_eq!(
            get(&app, path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // The querier links every page, the current one marked.
    let app = router(UiConfig::default());
    let body = get(&app, "/alerts").await.body;
    for page in ["graph", "alerts", "rules", "stores"] {
        assert!(body.contains(&format!("href=\"{page}\"")), "{page}: {body}");
    }
    assert!(
        body.contains("<a href=\"alerts\" class=\"active\">Alerts</a>"),
        "{body}"
    );
}
