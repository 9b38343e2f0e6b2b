//! The querier's web UI: a graph page (query box with metric-name completion, table and graph
//! views, Thanos' deduplication / partial response / max source resolution controls), a stores
//! page, and their static assets.
//!
//! Everything is embedded in the binary (`include_bytes!`): no CDN, no build step. The pages are
//! plain HTML, the behaviour is hand-written JavaScript modules in `assets/static/`, and the chart
//! is drawn by uPlot, vendored in `assets/vendor/uplot/` with its licence.
//!
//! [`router`] serves paths relative to the route prefix; the caller nests it under
//! `--web.route-prefix` next to the HTTP API. Every link in the pages is relative to a
//! `<base href>` naming the web prefix, so the pages work under any prefix and behind proxies:
//!
//! - `/` redirects (302) to `<web prefix>/graph`, as Thanos does;
//! - `/graph`, `/stores` serve the pages (`Cache-Control: no-cache`);
//! - `/static/<version>/<file>` serves an asset for a year (`immutable`): `<version>` is a hash
//!   of all assets, so a new binary changes every asset URL. `/static/<file>` also works and
//!   is revalidated (`no-cache`); both carry an `ETag` and answer `If-None-Match` with 304.
//!   Assets are gzipped once, when the router is built, and sent gzipped to clients whose
//!   `Accept-Encoding` allows it (`Vary: Accept-Encoding`, a separate `ETag`).
//!
//! The web prefix is `--web.external-prefix` if set, else the value of the
//! `--web.prefix-header` request header if that is configured and looks like a path, else
//! `--web.route-prefix`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// How the UI is reached and what its controls start with.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// `--web.route-prefix`: where the router is nested (the caller nests it).
    pub route_prefix: String,
    /// `--web.external-prefix`: the prefix browsers see, for links and redirects.
    pub external_prefix: String,
    /// `--web.prefix-header`: a request header carrying the prefix (ignored when
    /// `external_prefix` is set).
    pub prefix_header: String,
    /// Whether the "partial response" box starts checked (`--query.partial-response`).
    pub partial_response: bool,
    /// `--query.default-step` (ms): the graph's smallest automatic step, used when the step
    /// box is empty (step = max(range / 250, this), as in Thanos' UI).
    pub default_step_ms: i64,
    /// Which component serves the UI: the querier has every page, the ruler only its alerts
    /// and rules (it has no query API), as in Thanos.
    pub component: Component,
}

/// The component a UI belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Component {
    #[default]
    Query,
    Rule,
}

impl Component {
    /// The pages it serves, in menu order: `(path, title)`.
    fn pages(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Component::Query => &[
                ("graph", "Graph"),
                ("alerts", "Alerts"),
                ("rules", "Rules"),
                ("stores", "Stores"),
            ],
            Component::Rule => &[("alerts", "Alerts"), ("rules", "Rules")],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Component::Query => "query",
            Component::Rule => "rule",
        }
    }
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            route_prefix: String::new(),
            external_prefix: String::new(),
            prefix_header: String::new(),
            partial_response: true,
            component: Component::Query,
            default_step_ms: 1000,
        }
    }
}

/// An embedded static file.
struct Asset {
    path: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal) => {
        Asset {
            path: $path,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $file)),
        }
    };
}

/// Everything under `/static/`.
const ASSETS: &[Asset] = &[
    asset!("app.css", "static/app.css"),
    asset!("common.js", "static/common.js"),
    asset!("graph.js", "static/graph.js"),
    asset!("stores.js", "static/stores.js"),
    asset!("alerts.js", "static/alerts.js"),
    asset!("rules.js", "static/rules.js"),
    asset!("favicon.svg", "static/favicon.svg"),
    asset!("vendor/uPlot.iife.min.js", "vendor/uplot/uPlot.iife.min.js"),
    asset!("vendor/uPlot.min.css", "vendor/uplot/uPlot.min.css"),
    asset!("vendor/uPlot-LICENSE.txt", "vendor/uplot/LICENSE.uPlot"),
];

const GRAPH_HTML: &str = include_str!("../assets/graph.html");
/// The stores, alerts and rules pages: a title, a status line and what their script draws.
const LIST_HTML: &str = include_str!("../assets/list.html");

/// The `Content-Type` for a file name, by extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// FNV-1a, 64 bits: a stable content hash for ETags and the asset version.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// One asset's served forms, in `ASSETS` order.
struct Prepared {
    etag: HeaderValue,
    /// The gzipped body and its `ETag`, when gzip makes it smaller.
    gzip: Option<(Bytes, HeaderValue)>,
}

struct Ui {
    cfg: UiConfig,
    /// Hash of every asset: the `<version>` segment of asset URLs.
    version: String,
    prepared: Vec<Prepared>,
}

/// `body` gzipped, if that makes it smaller.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(body).ok()?;
    let out = enc.finish().ok()?;
    (out.len() < body.len()).then_some(out)
}

fn etag_value(tag: &str) -> HeaderValue {
    HeaderValue::from_str(tag).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The UI's routes, relative to the route prefix (the caller nests them).
///
/// No fallback is set, so the router merges with others; unknown paths under `/static/`
/// answer 404.
pub fn router(cfg: UiConfig) -> Router {
    let mut all = FNV_OFFSET;
    let mut prepared = Vec::with_capacity(ASSETS.len());
    for a in ASSETS {
        all = fnv1a(fnv1a(all, a.path.as_bytes()), a.body);
        let hash = fnv1a(FNV_OFFSET, a.body);
        prepared.push(Prepared {
            etag: etag_value(&format!("\"{hash:016x}\"")),
            gzip: gzip(a.body)
                .map(|gz| (Bytes::from(gz), etag_value(&format!("\"{hash:016x}-gz\"")))),
        });
    }
    let ui = Arc::new(Ui {
        cfg,
        version: format!("{:012x}", all >> 16),
        prepared,
    });
    let component = ui.cfg.component;
    let mut router = Router::new()
        .route("/", get(root))
        .route("/alerts", get(alerts))
        .route("/rules", get(rules))
        .route("/static/{*path}", get(asset));
    if component == Component::Query {
        router = router
            .route("/graph", get(graph))
            .route("/stores", get(stores));
    }
    router.with_state(ui)
}

/// True for a prefix that is safe to put into a `<base href>` and a `Location`: a path, or an
/// absolute http(s) URL, without quotes, spaces or markup characters.
fn safe_prefix(p: &str) -> bool {
    let (host, path) = match p
        .strip_prefix("http://")
        .or_else(|| p.strip_prefix("https://"))
    {
        Some(rest) => rest.split_once('/').unwrap_or((rest, "")),
        None => ("", p),
    };
    !path.starts_with("//")
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        && path.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '~' | '%' | '+')
        })
}

impl Ui {
    /// The prefix browsers see, without a trailing slash (`""` at the root).
    fn web_prefix(&self, headers: &HeaderMap) -> String {
        let normalise = |p: &str| -> String {
            let p = p.trim().trim_end_matches('/');
            if p.is_empty() || p.contains("://") || p.starts_with('/') {
                p.to_string()
            } else {
                format!("/{p}")
            }
        };
        let external = &self.cfg.external_prefix;
        if !external.is_empty() && safe_prefix(external) {
            return normalise(external);
        }
        // An external prefix with characters we refuse to echo falls back to the route prefix.
        let header = (external.is_empty() && !self.cfg.prefix_header.is_empty())
            .then(|| headers.get(self.cfg.prefix_header.as_str()))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.contains("//") && safe_prefix(v));
        if let Some(v) = header {
            return normalise(v);
        }
        if safe_prefix(&self.cfg.route_prefix) {
            normalise(&self.cfg.route_prefix)
        } else {
            String::new()
        }
    }

    /// The menu, the current page marked.
    fn nav(&self, template: &str) -> String {
        let mut out = String::new();
        for (path, title) in self.cfg.component.pages() {
            let current = template.contains(&format!("/{path}.js\""));
            out.push_str(&format!(
                "  <a href=\"{path}\"{}>{title}</a>\n",
                if current { " class=\"active\"" } else { "" }
            ));
        }
        out
    }

    /// One of the list pages: `page` names its script and element ids.
    fn list_page(&self, page: &str, title: &str, headers: &HeaderMap) -> Response {
        let template = LIST_HTML
            .replace("{{PAGE}}", page)
            .replace("{{TITLE}}", title);
        self.page(&template, headers)
    }

    fn page(&self, template: &str, headers: &HeaderMap) -> Response {
        let base = format!("{}/", self.web_prefix(headers));
        let html = template
            .replace("{{NAV}}", &self.nav(template))
            .replace("{{COMPONENT}}", self.cfg.component.name())
            .replace("{{BASE}}", &html_escape(&base))
            .replace("{{STATIC}}", &format!("static/{}", self.version))
            .replace(
                "{{DEFAULT_STEP_MS}}",
                &self.cfg.default_step_ms.max(1).to_string(),
            )
            .replace(
                "{{PARTIAL_RESPONSE}}",
                if self.cfg.partial_response {
                    "true"
                } else {
                    "false"
                },
            );
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            html,
        )
            .into_response()
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn root(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    let home = ui.cfg.component.pages()[0].0;
    let location = format!("{}/{home}", ui.web_prefix(&headers));
    match HeaderValue::from_str(&location) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "invalid web prefix").into_response(),
    }
}

async fn graph(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    ui.page(GRAPH_HTML, &headers)
}

async fn stores(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    ui.list_page("stores", "Stores", &headers)
}

async fn alerts(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    ui.list_page("alerts", "Alerts", &headers)
}

async fn rules(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    ui.list_page("rules", "Rules", &headers)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

async fn asset(
    State(ui): State<Arc<Ui>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (path, versioned) = match path.split_once('/') {
        Some((v, rest)) if v == ui.version => (rest, true),
        _ => (path.as_str(), false),
    };
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return not_found();
    };
    let a = &ASSETS[i];
    let prepared = &ui.prepared[i];
    let (body, etag, gzipped) = match &prepared.gzip {
        Some((gz, tag)) if strata_runtime::http::accepts_gzip(&headers) => {
            (gz.clone(), tag.clone(), true)
        }
        _ => (Bytes::from_static(a.body), prepared.etag.clone(), false),
    };
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == etag)
        });
    let mut resp = if matches {
        (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag)],
            [(header::CACHE_CONTROL, cache)],
        )
            .into_response()
    } else {
        (
            [(header::ETAG, etag)],
            [
                (header::CONTENT_TYPE, content_type(a.path)),
                (header::CACHE_CONTROL, cache),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
            .into_response()
    };
    if prepared.gzip.is_some() {
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        if gzipped && !matches {
            resp.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    resp
}

#[cfg(test)]
mod tests;
