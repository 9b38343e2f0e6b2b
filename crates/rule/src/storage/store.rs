//! The Store and Info APIs over the ruler's local storage, as Thanos' `TSDBStore` serves a
//! stateful ruler's TSDB.
//!
//! - External labels are the ruler's `--label`s: a matcher on one of them is checked against
//!   its value (a mismatch selects nothing) and not applied to series; every served series
//!   carries them, overriding a series label of the same name (Thanos' `ExtendSortedLabels`).
//! - Series are sorted by their served labels; a series' chunks come from the blocks (oldest
//!   first) then the head, in time order, raw XOR chunks as stored (no re-encoding). Only
//!   chunks overlapping the requested range are sent.
//! - A request for downsampled aggregates gets raw chunks, as from Thanos' TSDB store: the
//!   ruler holds raw data only.
//! - `without_replica_labels` removes those names from served series; two series that become
//!   one are merged (their chunks interleaved by time).
//!
//! Memory: a Series call holds the selected series' labels and chunk references (block
//! chunk metas, head chunk handles — the head's bytes are shared, not copied, except each
//! series' open chunk), never the block chunks' bytes beyond the frame being sent.

use std::collections::BTreeSet;
use std::sync::Arc;

use strata_model::{Labels, Matcher};
use strata_storepb::convert::{labels_from_model, matchers_to_model};
use strata_storepb::limits::RequestLimits;
use strata_storepb::server::{SeriesFrames, SeriesSender, spawn_series};
use strata_storepb::thanos::info::info_server::Info;
use strata_storepb::thanos::info::{InfoRequest, InfoResponse, RulesInfo, StoreInfo, TsdbInfo};
use strata_storepb::thanos::store_server::Store;
use strata_storepb::thanos::{
    AggrChunk, Chunk, LabelMatcher, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, Series, SeriesBatch, SeriesRequest, SeriesResponse, ZLabelSet,
    series_response,
};
use strata_tsdb::{Block, ChunkMeta, RawChunk};
use tonic::{Request, Response, Status};

use super::LocalStorage;

/// The Store and Info services of a [`LocalStorage`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalStore {
    storage: Arc<LocalStorage>,
    /// `--store.limits.request-series` and `--store.limits.request-samples`.
    limits: RequestLimits,
}

/// How a request's matchers and `without_replica_labels` apply.
#[derive(Debug)]
struct Plan {
    ext: Labels,
    /// Matchers on series' own labels.
    rest: Vec<Matcher>,
    strip: Vec<String>,
}

impl Plan {
    /// `None` when a matcher on an external label rejects its value: nothing is selected.
    fn new(
        ext: &Labels,
        matchers: &[LabelMatcher],
        strip: &[String],
    ) -> Result<Option<Plan>, Status> {
        let ms = matchers_to_model(matchers)
            .map_err(|e| Status::invalid_argument(format!("invalid matchers: {e}")))?;
        let mut rest = Vec::with_capacity(ms.len());
        for m in ms {
            match ext.get(m.name()) {
                Some(v) if !m.matches(v) => return Ok(None),
                Some(_) => {}
                None => rest.push(m),
            }
        }
        Ok(Some(Plan {
            ext: ext.clone(),
            rest,
            strip: strip.to_vec(),
        }))
    }

    /// A series' labels as served: external labels on top, stripped names removed.
    fn finalize(&self, own: &Labels) -> Labels {
        let merged = own.merged_with(&self.ext);
        if self.strip.is_empty() {
            return merged;
        }
        merged
            .into_vec()
            .into_iter()
            .filter(|l| !self.strip.contains(&l.name))
            .collect()
    }

    fn matches_own(&self, own: &Labels) -> bool {
        self.rest
            .iter()
            .all(|m| m.matches(own.get(m.name()).unwrap_or("")))
    }
}

/// Where a selected series' chunks are.
enum Source {
    /// Chunk metas in the block at this index of the snapshot.
    Block(usize, Vec<ChunkMeta>),
    Head(Vec<(i64, i64, RawChunk)>),
}

/// One selected series of one source.
struct Entry {
    labels: Labels,
    /// Blocks in snapshot order, then the head: the order chunks are sent in.
    order: usize,
    source: Source,
}

/// A consistent view of what a request selected.
struct Selection {
    blocks: Arc<Vec<Arc<Block>>>,
    entries: Vec<Entry>,
}

fn block_status(b: &Block, e: &strata_tsdb::Error) -> Status {
    Status::internal(format!(
        "reading the ruler's local block {}: {e}",
        b.dir().display()
    ))
}

impl LocalStore {
    pub(crate) fn new(storage: Arc<LocalStorage>) -> Self {
        LocalStore {
            storage,
            limits: RequestLimits::default(),
        }
    }

    /// The same service, failing a Series call past `limits` (`RESOURCE_EXHAUSTED`, naming
    /// the flag), as Thanos' ruler limits its Store API.
    pub fn with_limits(mut self, limits: RequestLimits) -> Self {
        self.limits = limits;
        self
    }

    fn ext(&self) -> &Labels {
        &self.storage.opts.external_labels
    }

    /// The series matching `plan` with data in `[mint, maxt]`, sorted by served labels
    /// (equal label sets in chunk order). `with_chunks`: keep where their chunks are.
    fn select(
        &self,
        plan: &Plan,
        mint: i64,
        maxt: i64,
        with_chunks: bool,
    ) -> Result<Selection, Status> {
        let mut entries = Vec::new();
        // The block list and the head are read under the block list's lock, so that a cut
        // publishing a block and truncating the head cannot fall between them.
        let blocks = {
            let guard = self
                .storage
                .blocks
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let blocks = Arc::clone(&guard);
            let head = super::lock(&self.storage.head);
            for s in head.series.values() {
                if !s.overlaps(mint, maxt) || !plan.matches_own(&s.labels) {
                    continue;
                }
                let chunks = if with_chunks {
                    let c = s.chunks(mint, maxt);
                    // A gap around the range: nothing to send, as Thanos' TSDB store.
                    if c.is_empty() {
                        continue;
                    }
                    c
                } else {
                    Vec::new()
                };
                entries.push(Entry {
                    labels: plan.finalize(&s.labels),
                    order: usize::MAX,
                    source: Source::Head(chunks),
                });
            }
            blocks
        };
        for (i, b) in blocks.iter().enumerate() {
            let m = b.meta();
            if m.min_time > maxt || m.max_time <= mint {
                continue;
            }
            let ids = b.select(&plan.rest).map_err(|e| block_status(b, &e))?;
            for id in ids {
                let (labels, mut metas) = b.index().series(id).map_err(|e| block_status(b, &e))?;
                metas.retain(|c| c.overlaps(mint, maxt));
                if metas.is_empty() {
                    continue;
                }
                if !with_chunks {
                    metas = Vec::new();
                }
                entries.push(Entry {
                    labels: plan.finalize(&labels),
                    order: i,
                    source: Source::Block(i, metas),
                });
            }
        }
        entries.sort_by(|a, b| a.labels.cmp(&b.labels).then(a.order.cmp(&b.order)));
        Ok(Selection { blocks, entries })
    }

    /// Streams the series `req` selects into `tx`.
    pub(crate) async fn stream_series(
        &self,
        req: SeriesRequest,
        tx: &SeriesSender,
    ) -> Result<(), Status> {
        let Some(plan) = Plan::new(self.ext(), &req.matchers, &req.without_replica_labels)? else {
            return Ok(());
        };
        if req.min_time > req.max_time {
            return Ok(());
        }
        // Reading block indexes is file I/O (mapped pages): off the async workers.
        let this = self.clone();
        let (mint, maxt, with_chunks) = (req.min_time, req.max_time, !req.skip_chunks);
        let sel = tokio::task::spawn_blocking(move || this.select(&plan, mint, maxt, with_chunks))
            .await
            .map_err(|e| Status::internal(format!("selecting series: {e}")))??;
        let batch_size = usize::try_from(req.response_batch_size).unwrap_or(0).max(1);
        let limit = usize::try_from(req.limit).unwrap_or(0);
        let mut batch: Vec<Series> = Vec::new();
        let mut sent = 0usize;
        let mut samples = 0u64;
        let mut entries = sel.entries.into_iter().peekable();
        while let Some(first) = entries.next() {
            if limit > 0 && sent >= limit {
                break;
            }
            let labels = first.labels.clone();
            let mut chunks = Vec::new();
            let mut add = |e: Entry| -> Result<(), Status> {
                match e.source {
                    Source::Block(i, metas) => {
                        let b = &sel.blocks[i];
                        for m in metas {
                            let raw = b.chunk(m.chunk_ref).map_err(|e| block_status(b, &e))?;
                            chunks.push(aggr(m.min_time, m.max_time, raw)?);
                        }
                    }
                    Source::Head(cs) => {
                        for (lo, hi, raw) in cs {
                            chunks.push(aggr(lo, hi, raw)?);
                        }
                    }
                }
                Ok(())
            };
            add(first)?;
            let mut merged = false;
            while let Some(next) = entries.next_if(|e| e.labels == labels) {
                add(next)?;
                merged = true;
            }
            if merged {
                // Several series became one (external or stripped labels): interleave.
                chunks.sort_by_key(|c| (c.min_time, c.max_time));
            }
            self.limits.check_series(sent as u64 + 1)?;
            self.limits.count_samples(&mut samples, &chunks)?;
            batch.push(Series {
                labels: labels_from_model(&labels),
                chunks,
            });
            sent += 1;
            if batch.len() >= batch_size {
                send(tx, &mut batch, batch_size).await?;
            }
        }
        send(tx, &mut batch, batch_size).await
    }

    /// The label names of the series selected, with the external label names.
    pub(crate) fn label_names_answer(
        &self,
        req: &LabelNamesRequest,
    ) -> Result<LabelNamesResponse, Status> {
        let Some(plan) = Plan::new(self.ext(), &req.matchers, &req.without_replica_labels)? else {
            return Ok(LabelNamesResponse::default());
        };
        let sel = self.select(&plan, req.start, req.end, false)?;
        let names: BTreeSet<&str> = sel
            .entries
            .iter()
            .flat_map(|e| e.labels.iter().map(|l| l.name.as_str()))
            .collect();
        let mut names: Vec<String> = names.into_iter().map(str::to_owned).collect();
        if req.limit > 0 {
            names.truncate(usize::try_from(req.limit).unwrap_or(usize::MAX));
        }
        Ok(LabelNamesResponse {
            names,
            ..Default::default()
        })
    }

    /// The values of one label over the series selected (an external label's own value).
    pub(crate) fn label_values_answer(
        &self,
        req: &LabelValuesRequest,
    ) -> Result<LabelValuesResponse, Status> {
        if req.label.is_empty() {
            return Err(Status::invalid_argument("label name is empty"));
        }
        let Some(plan) = Plan::new(self.ext(), &req.matchers, &req.without_replica_labels)? else {
            return Ok(LabelValuesResponse::default());
        };
        let sel = self.select(&plan, req.start, req.end, false)?;
        let values: BTreeSet<&str> = sel
            .entries
            .iter()
            .filter_map(|e| e.labels.get(&req.label))
            .collect();
        let mut values: Vec<String> = values.into_iter().map(str::to_owned).collect();
        if req.limit > 0 {
            values.truncate(usize::try_from(req.limit).unwrap_or(usize::MAX));
        }
        Ok(LabelValuesResponse {
            values,
            ..Default::default()
        })
    }

    /// The data's time range as Thanos' `TSDBStore.TimeRange` gives it: from the oldest
    /// sample (block or head; `i64::MAX` while there is none) to `i64::MAX`, since the ruler
    /// keeps recording.
    pub fn time_range(&self) -> (i64, i64) {
        let blocks_min = self
            .storage
            .blocks()
            .first()
            .map_or(i64::MAX, |b| b.meta().min_time);
        let head_min = super::lock(&self.storage.head).min_time;
        (blocks_min.min(head_min), i64::MAX)
    }

    /// The Info API answer: component `rule`, the external labels, the Store API's range,
    /// and the Rules API.
    pub fn info_response(&self) -> InfoResponse {
        let (min_time, max_time) = self.time_range();
        let ext = ZLabelSet {
            labels: labels_from_model(self.ext()),
        };
        let label_sets = if ext.labels.is_empty() {
            Vec::new()
        } else {
            vec![ext.clone()]
        };
        InfoResponse {
            label_sets,
            component_type: "rule".into(),
            store: Some(StoreInfo {
                min_time,
                max_time,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos: vec![TsdbInfo {
                    labels: Some(ext),
                    min_time,
                    max_time,
                }],
                supports_projections: false,
            }),
            rules: Some(RulesInfo {}),
            ..Default::default()
        }
    }
}

fn aggr(min_time: i64, max_time: i64, raw: RawChunk) -> Result<AggrChunk, Status> {
    let chunk = Chunk::from_raw_owned(raw)
        .map_err(|e| Status::internal(format!("local chunk [{min_time}, {max_time}]: {e}")))?;
    Ok(AggrChunk::raw(min_time, max_time, chunk))
}

/// Sends the batch (as one series or a batch frame, as the client asked).
async fn send(tx: &SeriesSender, batch: &mut Vec<Series>, batch_size: usize) -> Result<(), Status> {
    let result = if batch_size > 1 {
        if batch.is_empty() {
            return Ok(());
        }
        series_response::Result::Batch(SeriesBatch::of(std::mem::take(batch)))
    } else {
        let Some(series) = batch.pop() else {
            return Ok(());
        };
        series_response::Result::Series(series)
    };
    tx.send(Ok(SeriesResponse {
        result: Some(result),
    }))
    .await
    .map_err(|_| Status::cancelled("the client went away"))
}

#[tonic::async_trait]
impl Store for LocalStore {
    type SeriesStream = SeriesFrames;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let store = self.clone();
        let req = request.into_inner();
        Ok(Response::new(spawn_series(move |tx| async move {
            match store.stream_series(req, &tx).await {
                Err(s) if s.code() == tonic::Code::Cancelled => Ok(()),
                other => other,
            }
        })))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let this = self.clone();
        let req = request.into_inner();
        tokio::task::spawn_blocking(move || this.label_names_answer(&req))
            .await
            .map_err(|e| Status::internal(format!("label names: {e}")))?
            .map(Response::new)
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let this = self.clone();
        let req = request.into_inner();
        tokio::task::spawn_blocking(move || this.label_values_answer(&req))
            .await
            .map_err(|e| Status::internal(format!("label values: {e}")))?
            .map(Response::new)
    }
}

#[tonic::async_trait]
impl Info for LocalStore {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(self.info_response()))
    }
}
