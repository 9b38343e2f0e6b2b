//! The Store API acceptance suite: checks any Store API server (this store gateway today, the
//! sidecar and the querier when they land) against a reference answer computed by reading the
//! same blocks locally with [`strata_tsdb`].
//!
//! Like Thanos' `pkg/store/acceptance_test.go`, it runs a battery of requests (metric names,
//! equality and regex matchers, `=""` and `!=""`, matchers on external labels, matchers that
//! match nothing, time ranges on block edges, `skip_chunks`, `without_replica_labels`, batched
//! responses, `limit`, label names and values with matchers and time ranges, the Info API and
//! bad requests). The cases are derived from the data, so the suite works on any blocks.
//!
//! What "equal" means: the same series, in the same (sorted) order, with labels including
//! external labels; and for each series the same samples once chunks are decoded and cut to
//! the requested range. Chunks may be split or ordered differently by different servers.
//!
//! ```no_run
//! # async fn demo(dirs: Vec<(std::path::PathBuf, strata_model::Labels)>) {
//! use strata_store::testing::{Reference, StoreApiClient, run_acceptance};
//! let mut reference = Reference::default();
//! for (dir, ext) in &dirs {
//!     reference.add_block(dir, ext.clone()).unwrap();
//! }
//! let mut client = StoreApiClient::connect("http://127.0.0.1:10901").await.unwrap();
//! let report = run_acceptance(&mut client, &reference).await.unwrap();
//! assert!(report.cases > 0);
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use strata_model::{Labels, MatchOp, Matcher};
use strata_storepb::convert::{labels_to_model, matcher_from_model};
use strata_storepb::thanos::info::InfoRequest;
use strata_storepb::thanos::info::info_client::InfoClient;
use strata_storepb::thanos::store_client::StoreClient;
use strata_storepb::thanos::{
    AggrChunk, LabelMatcher, LabelNamesRequest, LabelValuesRequest, SeriesRequest, series_response,
};
use strata_tsdb::Block;
use tonic::transport::Channel;

/// The reference's own view of external labels, written independently of the gateway's
/// code so the two cannot share a mistake: external labels are added to (and override) a
/// series' labels, then the stripped names are removed.
fn finalize_labels(series: Labels, ext: &Labels, strip: &[String]) -> Labels {
    let mut all: BTreeMap<String, String> = series
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    for l in ext.iter() {
        all.insert(l.name.clone(), l.value.clone());
    }
    for s in strip {
        all.remove(s);
    }
    Labels::new(all.into_iter().map(|(n, v)| strata_model::Label::new(n, v)))
}

/// `None` if a matcher on an external label rejects the block's value; else the matchers on
/// other labels.
fn split_ext_matchers(matchers: &[Matcher], ext: &Labels) -> Option<Vec<Matcher>> {
    let (on_ext, rest): (Vec<&Matcher>, Vec<&Matcher>) =
        matchers.iter().partition(|m| ext.contains(m.name()));
    if on_ext
        .iter()
        .all(|m| m.matches(ext.get(m.name()).unwrap_or("")))
    {
        Some(rest.into_iter().cloned().collect())
    } else {
        None
    }
}

/// A mismatch or failure found by the suite, naming the case.
#[derive(Debug, thiserror::Error)]
#[error("acceptance case {case:?}: {detail}")]
pub struct AcceptanceError {
    pub case: String,
    pub detail: String,
}

fn fail(case: &str, detail: impl Into<String>) -> AcceptanceError {
    AcceptanceError {
        case: case.to_string(),
        detail: detail.into(),
    }
}

/// A client for the Store and Info APIs of one server.
#[derive(Debug, Clone)]
pub struct StoreApiClient {
    pub store: StoreClient<Channel>,
    pub info: InfoClient<Channel>,
}

/// Everything a Series call returned.
#[derive(Debug, Default, Clone)]
pub struct SeriesResult {
    pub series: Vec<(Labels, Vec<AggrChunk>)>,
    pub warnings: Vec<String>,
    pub hints: Vec<prost_types_any::Any>,
    /// Frames received.
    pub frames: usize,
}

/// Re-export path for `google.protobuf.Any`.
pub mod prost_types_any {
    pub use strata_storepb::Any;
}

impl StoreApiClient {
    /// Connects to `endpoint` (`http://host:port`).
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self, tonic::transport::Error> {
        let ch = Channel::from_shared(endpoint.into())
            .map_err(|e| {
                // An invalid URI; surface it through the transport error type.
                tracing::error!(err = %e, "invalid Store API endpoint");
                e
            })
            .expect("a valid endpoint URI")
            .connect()
            .await?;
        Ok(Self::from_channel(ch))
    }

    /// A client over an existing channel (for TLS or custom settings).
    pub fn from_channel(ch: Channel) -> Self {
        StoreApiClient {
            store: StoreClient::new(ch.clone()).max_decoding_message_size(256 << 20),
            info: InfoClient::new(ch),
        }
    }

    /// Runs a Series call and collects every frame.
    pub async fn series(&mut self, req: SeriesRequest) -> Result<SeriesResult, tonic::Status> {
        let mut stream = self.store.series(req).await?.into_inner();
        let mut out = SeriesResult::default();
        while let Some(frame) = stream.message().await? {
            out.frames += 1;
            match frame.result {
                Some(series_response::Result::Series(s)) => {
                    out.series.push((labels_to_model(s.labels), s.chunks));
                }
                Some(series_response::Result::Batch(b)) => {
                    for s in b.series {
                        out.series.push((labels_to_model(s.labels), s.chunks));
                    }
                }
                Some(series_response::Result::Warning(w)) => out.warnings.push(w),
                Some(series_response::Result::Hints(h)) => out.hints.push(h),
                None => {}
            }
        }
        Ok(out)
    }
}

/// Decodes the raw XOR chunks of a series and keeps the samples in `[mint, maxt]`, sorted by
/// time, one per timestamp.
pub fn decode_samples(
    chunks: &[AggrChunk],
    mint: i64,
    maxt: i64,
) -> Result<Vec<(i64, f64)>, String> {
    let mut out = Vec::new();
    for c in chunks {
        let Some(raw) = &c.raw else {
            return Err("a chunk without raw data".into());
        };
        let raw = raw.to_raw().map_err(|e| e.to_string())?;
        let it = raw.xor_iter().map_err(|e| e.to_string())?;
        for s in it {
            let (t, v) = s.map_err(|e| e.to_string())?;
            if t >= mint && t <= maxt {
                out.push((t, v));
            }
        }
    }
    out.sort_by_key(|s| s.0);
    out.dedup_by_key(|s| s.0);
    Ok(out)
}

/// One expected series.
#[derive(Debug, Clone, PartialEq)]
pub struct RefSeries {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

struct RefBlock {
    block: Block,
    ext: Labels,
}

/// The expected answers, computed from local copies of the raw blocks a server serves.
#[derive(Default)]
pub struct Reference {
    blocks: Vec<RefBlock>,
}

impl std::fmt::Debug for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reference")
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

impl Reference {
    /// Adds a local raw block served with external labels `ext`.
    pub fn add_block(&mut self, dir: &Path, ext: Labels) -> Result<(), strata_tsdb::Error> {
        self.blocks.push(RefBlock {
            block: Block::open(dir)?,
            ext,
        });
        Ok(())
    }

    /// `[min, max)` over all blocks.
    pub fn time_range(&self) -> (i64, i64) {
        let min = self.blocks.iter().map(|b| b.block.meta().min_time).min();
        let max = self.blocks.iter().map(|b| b.block.meta().max_time).max();
        (min.unwrap_or(0), max.unwrap_or(0))
    }

    /// The distinct external label sets.
    pub fn ext_label_sets(&self) -> Vec<Labels> {
        let s: BTreeSet<Labels> = self.blocks.iter().map(|b| b.ext.clone()).collect();
        s.into_iter().collect()
    }

    fn selected(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<(&RefBlock, Vec<Matcher>)> {
        self.blocks
            .iter()
            .filter(|b| b.block.meta().min_time <= maxt && b.block.meta().max_time > mint)
            .filter_map(|b| split_ext_matchers(matchers, &b.ext).map(|rest| (b, rest)))
            .collect()
    }

    /// Series (labels with external labels, minus `strip`) having a chunk overlapping
    /// `[mint, maxt]`, with their samples in that range; equal label sets merged.
    pub fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        strip: &[String],
    ) -> Result<Vec<RefSeries>, strata_tsdb::Error> {
        if mint > maxt {
            return Ok(Vec::new());
        }
        let mut out: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
        for (b, rest) in self.selected(matchers, mint, maxt) {
            for id in b.block.select(&rest)? {
                let (labels, chunks) = b.block.index().series(id)?;
                let chunks: Vec<_> = chunks.iter().filter(|c| c.overlaps(mint, maxt)).collect();
                if chunks.is_empty() {
                    continue;
                }
                let labels = finalize_labels(labels, &b.ext, strip);
                let samples = out.entry(labels).or_default();
                for c in chunks {
                    let raw = b.block.chunk(c.chunk_ref)?;
                    let decoded = strata_tsdb::block::decode_xor(&raw).map_err(|source| {
                        strata_tsdb::Error::Chunk {
                            file: b.block.dir().display().to_string(),
                            chunk_ref: c.chunk_ref,
                            source,
                        }
                    })?;
                    for (t, v) in decoded {
                        if t >= mint && t <= maxt {
                            samples.entry(t).or_insert(v);
                        }
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|(labels, s)| RefSeries {
                labels,
                samples: s.into_iter().collect(),
            })
            .collect())
    }

    /// Final labels of the series of one block matching `rest` with a chunk in range.
    fn block_labels(
        b: &RefBlock,
        rest: &[Matcher],
        start: i64,
        end: i64,
        strip: &[String],
    ) -> Result<Vec<Labels>, strata_tsdb::Error> {
        let mut out = Vec::new();
        for id in b.block.select(rest)? {
            let (labels, chunks) = b.block.index().series(id)?;
            if chunks.iter().any(|c| c.overlaps(start, end)) {
                out.push(finalize_labels(labels, &b.ext, strip));
            }
        }
        Ok(out)
    }

    /// Label names: per block overlapping the range (and passing the external-label
    /// matchers), every name of the block when no other matcher is given, else the names of
    /// the matching series with data in the range.
    pub fn label_names(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        strip: &[String],
    ) -> Result<Vec<String>, strata_tsdb::Error> {
        let mut out = BTreeSet::new();
        for (b, rest) in self.selected(matchers, start, end) {
            if rest.is_empty() {
                out.extend(
                    b.block
                        .index()
                        .label_names()
                        .into_iter()
                        .map(str::to_string),
                );
                out.extend(b.ext.iter().map(|l| l.name.clone()));
            } else {
                for l in Self::block_labels(b, &rest, start, end, strip)? {
                    out.extend(l.iter().map(|x| x.name.clone()));
                }
            }
        }
        for s in strip {
            out.remove(s);
        }
        Ok(out.into_iter().collect())
    }

    /// Label values, with the same block and series semantics as [`Reference::label_names`].
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        strip: &[String],
    ) -> Result<Vec<String>, strata_tsdb::Error> {
        if strip.iter().any(|s| s == name) {
            return Ok(Vec::new());
        }
        let mut out = BTreeSet::new();
        for (b, rest) in self.selected(matchers, start, end) {
            if !rest.is_empty() {
                for l in Self::block_labels(b, &rest, start, end, strip)? {
                    if let Some(v) = l.get(name) {
                        out.insert(v.to_string());
                    }
                }
                continue;
            }
            match b.ext.get(name) {
                Some(v) => {
                    out.insert(v.to_string());
                }
                None => out.extend(
                    b.block
                        .index()
                        .label_values(name)
                        .into_iter()
                        .map(str::to_string),
                ),
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Values of `name` in the data (with external labels), sorted.
    fn values_of(&self, name: &str) -> Vec<String> {
        let mut out = BTreeSet::new();
        for b in &self.blocks {
            match b.ext.get(name) {
                Some(v) => {
                    out.insert(v.to_string());
                }
                None => out.extend(
                    b.block
                        .index()
                        .label_values(name)
                        .into_iter()
                        .map(str::to_string),
                ),
            }
        }
        out.into_iter().collect()
    }

    fn all_names(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        for b in &self.blocks {
            out.extend(
                b.block
                    .index()
                    .label_names()
                    .into_iter()
                    .map(str::to_string),
            );
            out.extend(b.ext.iter().map(|l| l.name.clone()));
        }
        out.into_iter().collect()
    }
}

/// What the suite ran.
#[derive(Debug, Default, Clone)]
pub struct AcceptanceReport {
    /// Cases run.
    pub cases: usize,
    /// Series compared in total.
    pub series_compared: usize,
    /// Case names, in order.
    pub names: Vec<String>,
}

/// A series case.
struct Case {
    name: String,
    matchers: Vec<Matcher>,
    mint: i64,
    maxt: i64,
}

fn re(name: &str, v: &str) -> Matcher {
    Matcher::new(MatchOp::RegexMatch, name, v).expect("test regexes compile")
}

fn nre(name: &str, v: &str) -> Matcher {
    Matcher::new(MatchOp::RegexNoMatch, name, v).expect("test regexes compile")
}

fn wire(ms: &[Matcher]) -> Vec<LabelMatcher> {
    ms.iter().map(matcher_from_model).collect()
}

/// Builds the cases from the data: metric names, the label with the most values, external
/// labels, and the blocks' time range.
fn cases(r: &Reference) -> Vec<Case> {
    let (min, max) = r.time_range();
    let maxt = max - 1;
    let mid = min + (max - min) / 2;
    let names = r.values_of("__name__");
    let ext_names: BTreeSet<String> = r
        .ext_label_sets()
        .iter()
        .flat_map(|l| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
        .collect();
    // The series label with the most values (but at least two), for regex cases.
    let rich = r
        .all_names()
        .into_iter()
        .filter(|n| n != "__name__" && !ext_names.contains(n))
        .map(|n| {
            let v = r.values_of(&n);
            (v.len(), n, v)
        })
        .filter(|(k, _, _)| *k >= 2)
        .max();
    let mut out = Vec::new();
    let mut add = |name: String, matchers: Vec<Matcher>, mint: i64, maxt: i64| {
        out.push(Case {
            name,
            matchers,
            mint,
            maxt,
        });
    };
    for n in names.iter().take(3) {
        add(
            format!("__name__={n:?}"),
            vec![Matcher::equal("__name__", n)],
            min,
            maxt,
        );
    }
    add(
        "everything: __name__=~\".+\"".into(),
        vec![re("__name__", ".+")],
        min,
        maxt,
    );
    add(
        "no match: __name__=\"does_not_exist\"".into(),
        vec![Matcher::equal("__name__", "does_not_exist")],
        min,
        maxt,
    );
    add(
        "missing label =\"\" matches all".into(),
        vec![re("__name__", ".+"), Matcher::equal("no_such_label", "")],
        min,
        maxt,
    );
    add(
        "missing label !=\"\" matches none".into(),
        vec![
            re("__name__", ".+"),
            Matcher::not_equal("no_such_label", ""),
        ],
        min,
        maxt,
    );
    if let Some(first) = names.first() {
        add(
            format!("__name__!={first:?}"),
            vec![re("__name__", ".+"), Matcher::not_equal("__name__", first)],
            min,
            maxt,
        );
        add(
            format!("__name__=~{first:?} with a regex special-free alternation"),
            vec![re("__name__", &format!("{first}|does_not_exist"))],
            min,
            maxt,
        );
    }
    if let Some((_, label, values)) = &rich {
        let (a, b) = (&values[0], &values[values.len() - 1]);
        add(
            format!("{label}={a:?}"),
            vec![Matcher::equal(label, a)],
            min,
            maxt,
        );
        add(
            format!("{label}=~\"{a}|{b}\""),
            vec![re(label, &format!("{a}|{b}"))],
            min,
            maxt,
        );
        let prefix: String = a.chars().take(1).collect();
        add(
            format!("{label}=~\"{prefix}.*\" (prefix)"),
            vec![re(label, &format!("{prefix}.*"))],
            min,
            maxt,
        );
        add(
            format!(
                "{label}=~\".*{}\" (suffix)",
                &a[a.len().saturating_sub(1)..]
            ),
            vec![re(label, &format!(".*{}", &a[a.len().saturating_sub(1)..]))],
            min,
            maxt,
        );
        add(
            format!("{label}!~{a:?} with a name"),
            vec![re("__name__", ".+"), nre(label, a)],
            min,
            maxt,
        );
        add(
            format!("{label}=\"\" (series without it)"),
            vec![re("__name__", ".+"), Matcher::equal(label, "")],
            min,
            maxt,
        );
        add(
            format!("{label}!=\"\""),
            vec![Matcher::not_equal(label, "")],
            min,
            maxt,
        );
        add(
            format!("{label}=~\".+\" and {label}!={a:?}"),
            vec![re(label, ".+"), Matcher::not_equal(label, a)],
            min,
            maxt,
        );
    }
    for ext in r.ext_label_sets() {
        for l in ext.iter() {
            add(
                format!("external label {}={:?}", l.name, l.value),
                vec![Matcher::equal(&l.name, &l.value)],
                min,
                maxt,
            );
            add(
                format!("external label {}!={:?} with a name", l.name, l.value),
                vec![re("__name__", ".+"), Matcher::not_equal(&l.name, &l.value)],
                min,
                maxt,
            );
            add(
                format!("external label {}=\"no-such-value\"", l.name),
                vec![Matcher::equal(&l.name, "no-such-value")],
                min,
                maxt,
            );
            add(
                format!("external label {}=~\".+\"", l.name),
                vec![re(&l.name, ".+")],
                min,
                maxt,
            );
        }
    }
    let all = vec![re("__name__", ".+")];
    add("range: first millisecond".into(), all.clone(), min, min);
    add("range: last millisecond".into(), all.clone(), maxt, maxt);
    add(
        "range: middle window".into(),
        all.clone(),
        mid - 3_600_000,
        mid + 60_000,
    );
    add(
        "range: before the data".into(),
        all.clone(),
        min - 10_000_000,
        min - 1,
    );
    add(
        "range: after the data".into(),
        all.clone(),
        max + 1,
        max + 10_000_000,
    );
    add("range: min > max".into(), all.clone(), mid, mid - 1);
    add("range: unbounded".into(), all, i64::MIN, i64::MAX);
    out
}

fn compare(
    case: &str,
    got: &SeriesResult,
    want: &[RefSeries],
    mint: i64,
    maxt: i64,
    skip_chunks: bool,
) -> Result<(), AcceptanceError> {
    for w in got.series.windows(2) {
        if w[0].0 >= w[1].0 {
            return Err(fail(
                case,
                format!("series not strictly sorted: {} then {}", w[0].0, w[1].0),
            ));
        }
    }
    let got_labels: Vec<&Labels> = got.series.iter().map(|s| &s.0).collect();
    let want_labels: Vec<&Labels> = want.iter().map(|s| &s.labels).collect();
    if got_labels != want_labels {
        let first = got_labels
            .iter()
            .zip(&want_labels)
            .position(|(a, b)| a != b)
            .unwrap_or(got_labels.len().min(want_labels.len()));
        return Err(fail(
            case,
            format!(
                "{} series, want {}; first difference at #{first}: got {:?}, want {:?}",
                got_labels.len(),
                want_labels.len(),
                got_labels.get(first).map(|l| l.to_string()),
                want_labels.get(first).map(|l| l.to_string()),
            ),
        ));
    }
    for ((labels, chunks), w) in got.series.iter().zip(want) {
        if skip_chunks {
            if !chunks.is_empty() {
                return Err(fail(
                    case,
                    format!("{labels}: chunks sent with skip_chunks"),
                ));
            }
            continue;
        }
        let samples =
            decode_samples(chunks, mint, maxt).map_err(|e| fail(case, format!("{labels}: {e}")))?;
        if samples.len() != w.samples.len()
            || samples
                .iter()
                .zip(&w.samples)
                .any(|(a, b)| a.0 != b.0 || a.1.to_bits() != b.1.to_bits())
        {
            return Err(fail(
                case,
                format!(
                    "{labels}: {} samples, want {}; first got {:?}, want {:?}",
                    samples.len(),
                    w.samples.len(),
                    samples.first(),
                    w.samples.first()
                ),
            ));
        }
    }
    if !got.warnings.is_empty() {
        return Err(fail(
            case,
            format!("unexpected warnings: {:?}", got.warnings),
        ));
    }
    Ok(())
}

fn tsdb(case: &str) -> impl FnOnce(strata_tsdb::Error) -> AcceptanceError + '_ {
    move |e| fail(case, format!("reference: {e}"))
}

fn rpc(case: &str) -> impl FnOnce(tonic::Status) -> AcceptanceError + '_ {
    move |e| fail(case, format!("server: {e}"))
}

fn series_request(ms: &[Matcher], mint: i64, maxt: i64) -> SeriesRequest {
    SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers: wire(ms),
        ..Default::default()
    }
}

/// Runs every case against `client` and compares with `reference`. Stops at the first
/// mismatch.
pub async fn run_acceptance(
    client: &mut StoreApiClient,
    reference: &Reference,
) -> Result<AcceptanceReport, AcceptanceError> {
    let mut report = AcceptanceReport::default();
    let (min, max) = reference.time_range();
    let maxt = max - 1;

    for c in cases(reference) {
        let want = reference
            .series(&c.matchers, c.mint, c.maxt, &[])
            .map_err(tsdb(&c.name))?;
        let got = client
            .series(series_request(&c.matchers, c.mint, c.maxt))
            .await
            .map_err(rpc(&c.name))?;
        compare(&c.name, &got, &want, c.mint, c.maxt, false)?;
        report.series_compared += want.len();
        report.names.push(c.name);
    }

    let all = vec![re("__name__", ".+")];
    let want_all = reference
        .series(&all, min, maxt, &[])
        .map_err(tsdb("all"))?;
    if want_all.is_empty() {
        return Err(fail("data", "the reference blocks hold no series"));
    }

    // skip_chunks: labels only.
    let case = "skip_chunks";
    let mut req = series_request(&all, min, maxt);
    req.skip_chunks = true;
    let got = client.series(req).await.map_err(rpc(case))?;
    compare(case, &got, &want_all, min, maxt, true)?;
    report.names.push(case.into());

    // Batched responses give the same series in fewer frames.
    let case = "response_batch_size=7";
    let mut req = series_request(&all, min, maxt);
    req.response_batch_size = 7;
    let got = client.series(req).await.map_err(rpc(case))?;
    compare(case, &got, &want_all, min, maxt, false)?;
    if want_all.len() > 7 && got.frames >= want_all.len() {
        return Err(fail(
            case,
            format!(
                "{} frames for {} series: not batched",
                got.frames,
                want_all.len()
            ),
        ));
    }
    report.names.push(case.into());

    // limit: the first N series.
    let case = "limit=2";
    let mut req = series_request(&all, min, maxt);
    req.limit = 2;
    let got = client.series(req).await.map_err(rpc(case))?;
    let n = want_all.len().min(2);
    compare(case, &got, &want_all[..n], min, maxt, false)?;
    report.names.push(case.into());

    // without_replica_labels: strip each external label name; the output stays sorted.
    for ext in reference.ext_label_sets().iter().take(1) {
        for l in ext.iter() {
            let case = format!("without_replica_labels=[{}]", l.name);
            let strip = vec![l.name.clone()];
            let want = reference
                .series(&all, min, maxt, &strip)
                .map_err(tsdb(&case))?;
            let mut req = series_request(&all, min, maxt);
            req.without_replica_labels = strip;
            let got = client.series(req).await.map_err(rpc(&case))?;
            compare(&case, &got, &want, min, maxt, false)?;
            report.names.push(case);
        }
    }

    // A bad regex is a clear InvalidArgument, not a crash.
    let case = "invalid regex";
    let mut req = series_request(&[], min, maxt);
    req.matchers = vec![LabelMatcher {
        r#type: 2,
        name: "job".into(),
        value: "(unclosed".into(),
    }];
    match client.series(req).await {
        Err(s) if s.code() == tonic::Code::InvalidArgument => {}
        other => {
            return Err(fail(
                case,
                format!(
                    "want InvalidArgument, got {:?}",
                    other.map(|r| r.series.len())
                ),
            ));
        }
    }
    report.names.push(case.into());

    // Label names and values.
    let names = reference.all_names();
    let rich = names
        .iter()
        .filter(|n| *n != "__name__")
        .max_by_key(|n| reference.values_of(n).len())
        .cloned();
    let first_name = reference.values_of("__name__").into_iter().next();
    let mut label_cases: Vec<(String, Vec<Matcher>, i64, i64)> = vec![
        ("all".into(), vec![], min, maxt),
        ("before the data".into(), vec![], min - 10_000_000, min - 1),
        ("last millisecond".into(), vec![], maxt, maxt),
        (
            "no match".into(),
            vec![Matcher::equal("__name__", "does_not_exist")],
            min,
            maxt,
        ),
    ];
    if let Some(n) = &first_name {
        label_cases.push((
            format!("__name__={n:?}"),
            vec![Matcher::equal("__name__", n)],
            min,
            maxt,
        ));
        label_cases.push((
            format!("__name__={n:?}, middle window"),
            vec![Matcher::equal("__name__", n)],
            min + (max - min) / 2,
            min + (max - min) / 2 + 60_000,
        ));
    }
    for ext in reference.ext_label_sets().iter().take(1) {
        for l in ext.iter() {
            label_cases.push((
                format!("external {}={:?}", l.name, l.value),
                vec![Matcher::equal(&l.name, &l.value)],
                min,
                maxt,
            ));
        }
    }
    for (name, ms, start, end) in &label_cases {
        let case = format!("label names: {name}");
        let want = reference
            .label_names(ms, *start, *end, &[])
            .map_err(tsdb(&case))?;
        let got = client
            .store
            .label_names(LabelNamesRequest {
                start: *start,
                end: *end,
                matchers: wire(ms),
                ..Default::default()
            })
            .await
            .map_err(rpc(&case))?
            .into_inner();
        if got.names != want {
            return Err(fail(&case, format!("got {:?}, want {want:?}", got.names)));
        }
        report.names.push(case);
        let mut value_names = vec!["__name__".to_string(), "no_such_label".to_string()];
        value_names.extend(rich.clone());
        value_names.extend(
            reference
                .ext_label_sets()
                .iter()
                .flat_map(|l| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>()),
        );
        for label in value_names {
            let case = format!("label values of {label}: {name}");
            let want = reference
                .label_values(&label, ms, *start, *end, &[])
                .map_err(tsdb(&case))?;
            let got = client
                .store
                .label_values(LabelValuesRequest {
                    label: label.clone(),
                    start: *start,
                    end: *end,
                    matchers: wire(ms),
                    ..Default::default()
                })
                .await
                .map_err(rpc(&case))?
                .into_inner();
            if got.values != want {
                return Err(fail(&case, format!("got {:?}, want {want:?}", got.values)));
            }
            report.names.push(case);
        }
    }
    // without_replica_labels on label calls.
    for ext in reference.ext_label_sets().iter().take(1) {
        for l in ext.iter() {
            let case = format!("label names without_replica_labels=[{}]", l.name);
            let got = client
                .store
                .label_names(LabelNamesRequest {
                    start: min,
                    end: maxt,
                    without_replica_labels: vec![l.name.clone()],
                    ..Default::default()
                })
                .await
                .map_err(rpc(&case))?
                .into_inner();
            let want = reference
                .label_names(&[], min, maxt, std::slice::from_ref(&l.name))
                .map_err(tsdb(&case))?;
            if got.names != want {
                return Err(fail(&case, format!("got {:?}, want {want:?}", got.names)));
            }
            report.names.push(case);
        }
    }

    // Info: the time range and the external label sets.
    let case = "info";
    let info = client
        .info
        .info(InfoRequest {})
        .await
        .map_err(rpc(case))?
        .into_inner();
    let store = info.store.ok_or_else(|| {
        fail(
            case,
            "no StoreInfo: the server does not offer the Store API",
        )
    })?;
    if store.min_time > min || store.max_time < max - 1 {
        return Err(fail(
            case,
            format!(
                "advertises [{}, {}], the data spans [{min}, {max})",
                store.min_time, store.max_time
            ),
        ));
    }
    let got_sets: BTreeSet<Labels> = info
        .label_sets
        .into_iter()
        .map(|l| labels_to_model(l.labels))
        .collect();
    let want_sets: BTreeSet<Labels> = reference.ext_label_sets().into_iter().collect();
    if !want_sets.is_subset(&got_sets) {
        return Err(fail(
            case,
            format!("label sets {got_sets:?} lack some of {want_sets:?}"),
        ));
    }
    report.names.push(case.into());

    report.cases = report.names.len();
    Ok(report)
}

/// A Store API server that answers Info (type `store`, all time, `label_sets`) but never
/// answers Series, LabelNames or LabelValues: a hung store, for timeout and partial-response
/// tests.
#[derive(Debug, Clone)]
pub struct HangingStore {
    pub label_sets: Vec<Labels>,
}

#[tonic::async_trait]
impl strata_storepb::thanos::store_server::Store for HangingStore {
    type SeriesStream =
        futures::stream::Pending<Result<strata_storepb::thanos::SeriesResponse, tonic::Status>>;

    async fn series(
        &self,
        _: tonic::Request<SeriesRequest>,
    ) -> Result<tonic::Response<Self::SeriesStream>, tonic::Status> {
        Ok(tonic::Response::new(futures::stream::pending()))
    }

    async fn label_names(
        &self,
        _: tonic::Request<strata_storepb::thanos::LabelNamesRequest>,
    ) -> Result<tonic::Response<strata_storepb::thanos::LabelNamesResponse>, tonic::Status> {
        futures::future::pending().await
    }

    async fn label_values(
        &self,
        _: tonic::Request<strata_storepb::thanos::LabelValuesRequest>,
    ) -> Result<tonic::Response<strata_storepb::thanos::LabelValuesResponse>, tonic::Status> {
        futures::future::pending().await
    }
}

#[tonic::async_trait]
impl strata_storepb::thanos::info::info_server::Info for HangingStore {
    async fn info(
        &self,
        _: tonic::Request<InfoRequest>,
    ) -> Result<tonic::Response<strata_storepb::thanos::info::InfoResponse>, tonic::Status> {
        use strata_storepb::thanos::ZLabelSet;
        use strata_storepb::thanos::info::{InfoResponse, StoreInfo};
        Ok(tonic::Response::new(InfoResponse {
            label_sets: self
                .label_sets
                .iter()
                .map(|l| ZLabelSet {
                    labels: strata_storepb::convert::labels_from_model(l),
                })
                .collect(),
            component_type: "store".into(),
            store: Some(StoreInfo {
                min_time: i64::MIN,
                max_time: i64::MAX,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

impl HangingStore {
    /// Serves it on a free 127.0.0.1 port until the returned sender is dropped or fired.
    pub async fn start(self) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound address");
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = strata_storepb::server::serve(listener, self, None, async {
                let _ = rx.await;
            })
            .await;
        });
        (addr, tx)
    }
}
