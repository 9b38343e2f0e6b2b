//! The bucket block viewer that `compact`, `store` and `tools bucket web` serve on their HTTP
//! port: a page that draws every block of the bucket on a timeline per stream, and Thanos'
//! JSON API behind its own viewer (`GET /api/v1/blocks`, `POST /api/v1/blocks/mark`), so
//! dashboards and scripts written against Thanos keep working.
//!
//! The page is rendered on the server (plain HTML and SVG, no JavaScript): it works behind
//! any proxy and from `curl`. The view refreshes in the background every
//! `--block-viewer.global.sync-block-interval`; a failed refresh keeps the last good view and
//! shows the error on the page and in the API's `err` field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use strata_block::fetch::{fetch_deletion_marks, fetch_metas};
use strata_block::markers::{mark_for_deletion, mark_no_compact, read_no_compact_mark};
use strata_model::TimeOrDuration;
use strata_model::timestamp::format_rfc3339_millis;
use strata_objstore::Bucket;
use strata_runtime::Shutdown;
use strata_tsdb::BlockMeta;
use ulid::Ulid;

/// How the viewer presents and what it allows.
#[derive(Debug, Clone, Default)]
pub(crate) struct ViewerOptions {
    /// External label whose value titles each timeline (`--bucket-web-label`); without it the
    /// full external label set does.
    pub(crate) title_label: Option<String>,
    /// Whether blocks may be marked from the API (`--disable-admin-operations` turns it off).
    pub(crate) admin: bool,
    /// `--selector.relabel-config`: only the blocks these rules keep are shown.
    pub(crate) rules: Vec<strata_block::relabel::RelabelConfig>,
    /// `--min-time`/`--max-time` of `tools bucket web`: only the blocks overlapping the range
    /// (resolved at each refresh, for durations relative to now) are shown.
    pub(crate) time_range: Option<(TimeOrDuration, TimeOrDuration)>,
}

#[derive(Debug, Default)]
struct View {
    metas: Vec<BlockMeta>,
    deleting: BTreeSet<Ulid>,
    no_compact: BTreeSet<Ulid>,
    refreshed_at_ms: Option<i64>,
    err: Option<String>,
}

/// The shared, periodically refreshed view of a bucket's blocks.
#[derive(Clone)]
pub(crate) struct BlockViewer {
    bucket: Bucket,
    opts: ViewerOptions,
    view: Arc<RwLock<View>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl BlockViewer {
    pub(crate) fn new(bucket: Bucket, opts: ViewerOptions) -> BlockViewer {
        BlockViewer {
            bucket,
            opts,
            view: Arc::new(RwLock::new(View::default())),
        }
    }

    /// Reads the bucket once; on failure the previous view stays and the error is kept.
    pub(crate) async fn refresh(&self, timeout: Duration) {
        let result = tokio::time::timeout(timeout, async {
            let fetched = fetch_metas(&self.bucket, 32).await?;
            let ids: Vec<Ulid> = fetched.metas.keys().copied().collect();
            let deleting = fetch_deletion_marks(&self.bucket, ids.iter().copied(), 32).await?;
            let mut no_compact = BTreeSet::new();
            for id in &ids {
                if read_no_compact_mark(&self.bucket, *id).await?.is_some() {
                    no_compact.insert(*id);
                }
            }
            Ok::<_, strata_block::Error>((fetched.metas, deleting, no_compact))
        })
        .await;
        let mut view = self.view.write().expect("view lock");
        match result {
            Ok(Ok((metas, deleting, no_compact))) => {
                let (min_t, max_t) = self.opts.time_range.map_or((i64::MIN, i64::MAX), |(a, b)| {
                    let now = now_ms();
                    (a.resolve(now), b.resolve(now))
                });
                view.metas = metas
                    .into_values()
                    .filter(|m| strata_block::relabel::selects_block(m, &self.opts.rules))
                    .filter(|m| m.max_time >= min_t && m.min_time <= max_t)
                    .collect();
                view.deleting = deleting.into_keys().collect();
                view.no_compact = no_compact;
                view.refreshed_at_ms = Some(now_ms());
                view.err = None;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "block viewer: reading the bucket failed");
                view.err = Some(e.to_string());
            }
            Err(_) => {
                view.err = Some(format!(
                    "reading the bucket took longer than {timeout:?} \
                     (--block-viewer.global.sync-block-timeout)"
                ));
            }
        }
    }

    /// Shows `metas` as they are, for a viewer fed by its component's own block sync (the
    /// store gateway shows the blocks it serves, as Thanos' store shows its loaded blocks)
    /// instead of reading the bucket itself.
    pub(crate) fn set_blocks(&self, metas: Vec<BlockMeta>) {
        let mut view = self.view.write().expect("view lock");
        view.metas = metas;
        view.refreshed_at_ms = Some(now_ms());
        view.err = None;
    }

    /// Refreshes now and then every `interval` until shutdown.
    pub(crate) fn spawn_refresher(
        &self,
        interval: Duration,
        timeout: Duration,
        shutdown: Shutdown,
    ) {
        let viewer = self.clone();
        tokio::spawn(async move {
            loop {
                viewer.refresh(timeout).await;
                tokio::select! {
                    () = tokio::time::sleep(interval.max(Duration::from_secs(1))) => {}
                    () = shutdown.wait() => return,
                }
            }
        });
    }

    /// `/`, `/blocks`, `/api/v1/blocks` and `/api/v1/blocks/mark`.
    pub(crate) fn router(&self) -> Router {
        Router::new()
            .route("/", get(|| async { Redirect::to("blocks") }))
            .route("/blocks", get(page))
            .route("/api/v1/blocks", get(api_blocks))
            .route("/api/v1/blocks/mark", post(api_mark))
            .with_state(self.clone())
    }
}

async fn api_blocks(State(v): State<BlockViewer>) -> Response {
    let view = v.view.read().expect("view lock");
    let blocks: Vec<serde_json::Value> = view
        .metas
        .iter()
        .filter_map(|m| serde_json::from_slice(&m.to_json()).ok())
        .collect();
    let body = serde_json::json!({
        "status": "success",
        "data": {
            "blocks": blocks,
            "label": v.opts.title_label.clone().unwrap_or_default(),
            "refreshedAt": view.refreshed_at_ms.map(format_rfc3339_millis),
            "err": view.err,
        }
    });
    Json(body).into_response()
}

#[derive(Deserialize)]
struct MarkForm {
    id: String,
    action: String,
    #[serde(default)]
    detail: String,
}

fn api_error(status: StatusCode, error_type: &str, msg: String) -> Response {
    (
        status,
        Json(serde_json::json!({"status": "error", "errorType": error_type, "error": msg})),
    )
        .into_response()
}

async fn api_mark(State(v): State<BlockViewer>, Form(f): Form<MarkForm>) -> Response {
    if !v.opts.admin {
        return api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "admin operations are disabled (--disable-admin-operations)".into(),
        );
    }
    let Ok(id) = Ulid::from_string(&f.id) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            format!("{:?} is not a block ULID", f.id),
        );
    };
    let known = v
        .view
        .read()
        .expect("view lock")
        .metas
        .iter()
        .any(|m| m.ulid == id);
    if !known {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            format!("block {id} is not in the bucket (as of the last refresh)"),
        );
    }
    let result = match f.action.as_str() {
        "DELETION" => mark_for_deletion(&v.bucket, id, &f.detail).await,
        "NO_COMPACTION" => mark_no_compact(&v.bucket, id, "manual", &f.detail).await,
        other => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                format!("unknown action {other:?}: use DELETION or NO_COMPACTION"),
            );
        }
    };
    match result {
        Ok(_) => {
            tracing::info!(block = %id, action = %f.action, "block marked from the block viewer");
            let mut view = v.view.write().expect("view lock");
            if f.action == "DELETION" {
                view.deleting.insert(id);
            } else {
                view.no_compact.insert(id);
            }
            Json(serde_json::json!({"status": "success"})).into_response()
        }
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn resolution_text(res: i64) -> &'static str {
    match res {
        0 => "raw",
        300_000 => "5m",
        3_600_000 => "1h",
        _ => "other",
    }
}

fn duration_text(ms: i64) -> String {
    let h = ms as f64 / 3_600_000.0;
    if h >= 48.0 {
        format!("{:.1}d", h / 24.0)
    } else {
        format!("{h:.1}h")
    }
}

const WIDTH: f64 = 1100.0;
const ROW: f64 = 22.0;

async fn page(State(v): State<BlockViewer>) -> Response {
    let view = v.view.read().expect("view lock");
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Blocks · Strata</title>\
         <style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}\
         h2{font-size:15px;margin:28px 0 6px}table{border-collapse:collapse;font-size:12px}\
         td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}\
         .err{color:#b00;font-weight:bold}.muted{color:#777}\
         rect.raw{fill:#4e79a7}rect.r5m{fill:#f28e2b}rect.r1h{fill:#59a14f}\
         rect.deleting{fill:#bbb}rect.nocompact{stroke:#d00;stroke-width:2}</style></head><body>\
         <h1>Blocks</h1>",
    );
    match view.refreshed_at_ms {
        Some(t) => {
            let _ = write!(
                html,
                "<p class=\"muted\">{} blocks, read from the bucket at {}.</p>",
                view.metas.len(),
                format_rfc3339_millis(t)
            );
        }
        None => html.push_str("<p class=\"muted\">The bucket has not been read yet.</p>"),
    }
    if let Some(e) = &view.err {
        let _ = write!(html, "<p class=\"err\">Last refresh failed: {}</p>", esc(e));
    }
    // One timeline per stream title, blocks in rows by compaction level and resolution.
    let mut streams: BTreeMap<String, Vec<&BlockMeta>> = BTreeMap::new();
    for m in &view.metas {
        let labels = m.external_labels();
        let title = match &v.opts.title_label {
            Some(l) => labels
                .get(l)
                .cloned()
                .unwrap_or_else(|| format!("(no {l})")),
            None => labels_text(&labels),
        };
        streams.entry(title).or_default().push(m);
    }
    for (title, mut blocks) in streams {
        blocks.sort_by_key(|m| (m.resolution(), m.compaction.level, m.min_time));
        let min = blocks.iter().map(|m| m.min_time).min().unwrap_or(0);
        let max = blocks
            .iter()
            .map(|m| m.max_time)
            .max()
            .unwrap_or(1)
            .max(min + 1);
        let scale = WIDTH / (max - min) as f64;
        let rows: BTreeSet<(i64, u32)> = blocks
            .iter()
            .map(|m| (m.resolution(), m.compaction.level))
            .collect();
        let row_of: BTreeMap<(i64, u32), usize> =
            rows.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        let _ = write!(
            html,
            "<h2>{}</h2><p class=\"muted\">{} to {}</p>\
             <svg width=\"{}\" height=\"{}\" role=\"img\">",
            esc(&title),
            format_rfc3339_millis(min),
            format_rfc3339_millis(max),
            WIDTH + 80.0,
            rows.len() as f64 * ROW + 4.0
        );
        for ((res, level), i) in &row_of {
            let _ = write!(
                html,
                "<text x=\"{}\" y=\"{}\" font-size=\"11\">{} L{}</text>",
                WIDTH + 6.0,
                *i as f64 * ROW + 15.0,
                resolution_text(*res),
                level
            );
        }
        for m in &blocks {
            let row = row_of[&(m.resolution(), m.compaction.level)];
            let class = if view.deleting.contains(&m.ulid) {
                "deleting".to_string()
            } else {
                match m.resolution() {
                    0 => "raw",
                    300_000 => "r5m",
                    _ => "r1h",
                }
                .to_string()
            };
            let nc = if view.no_compact.contains(&m.ulid) {
                " nocompact"
            } else {
                ""
            };
            let _ = write!(
                html,
                "<rect class=\"{class}{nc}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{}\">\
                 <title>{} · {} → {} ({}) · level {} · {} series, {} samples{}{}</title></rect>",
                (m.min_time - min) as f64 * scale,
                row as f64 * ROW + 2.0,
                ((m.max_time - m.min_time) as f64 * scale - 1.0).max(1.0),
                ROW - 4.0,
                m.ulid,
                format_rfc3339_millis(m.min_time),
                format_rfc3339_millis(m.max_time),
                duration_text(m.max_time - m.min_time),
                m.compaction.level,
                m.stats.num_series,
                m.stats.num_samples,
                if view.deleting.contains(&m.ulid) {
                    " · marked for deletion"
                } else {
                    ""
                },
                if nc.is_empty() { "" } else { " · no-compact" }
            );
        }
        html.push_str("</svg>");
        html.push_str(
            "<table><tr><th>ULID</th><th>from</th><th>until</th><th>range</th><th>resolution</th>\
             <th>level</th><th>series</th><th>samples</th><th>chunks</th><th>source</th>\
             <th>marks</th></tr>",
        );
        for m in &blocks {
            let mut marks = Vec::new();
            if view.deleting.contains(&m.ulid) {
                marks.push("deletion");
            }
            if view.no_compact.contains(&m.ulid) {
                marks.push("no-compact");
            }
            let source = m.thanos.as_ref().map(|t| t.source.as_str()).unwrap_or("");
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                m.ulid,
                format_rfc3339_millis(m.min_time),
                format_rfc3339_millis(m.max_time),
                duration_text(m.max_time - m.min_time),
                resolution_text(m.resolution()),
                m.compaction.level,
                m.stats.num_series,
                m.stats.num_samples,
                m.stats.num_chunks,
                esc(source),
                marks.join(", ")
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}
