//! The fan-out: one request sent to every store that can hold matching data, the answers
//! merged into one sorted list.
//!
//! Stores are picked by their advertised time range and external label sets (a matcher on an
//! external label that the set's value fails rules the store out), and by the request's
//! `storeMatch[]` selectors, matched against the store's address. Each store is called
//! concurrently; `--store.response-timeout` bounds the wait for each frame, as Thanos' does,
//! so a store that hangs costs at most that long. A failing store is a warning naming it
//! under partial response, else the error of the whole request.
//!
//! Every store sends its series sorted by labels, so the lists are merged k-way: series with
//! equal labels from several stores (a sidecar and a store gateway covering the same
//! Prometheus) become one series holding both stores' chunks, in store order.

use std::time::Duration;

use strata_model::{Labels, Matcher};
use strata_storepb::convert::{labels_to_model, matchers_to_model};
use strata_storepb::thanos::store_client::StoreClient;
use strata_storepb::thanos::{
    AggrChunk, LabelMatcher, LabelNamesRequest, LabelValuesRequest, SeriesRequest, series_response,
};

use crate::endpoint::{EndpointSet, StoreChannel, StoreEndpoint};
use crate::error::QueryError;

/// Series per frame asked of the stores (`response_batch_size`): one frame per series costs
/// the store and the querier a protobuf message and a channel hop each; 64 series per frame
/// cut the Series call by a quarter in `examples/fanout_profile.rs`. Stores that predate
/// batching ignore the field and send one series per frame.
pub const RESPONSE_BATCH: i64 = 64;

/// One series as the stores sent it: labels (external labels included) and chunks.
pub type WireSeries = (Labels, Vec<AggrChunk>);

/// What a fan-out returned.
#[derive(Debug, Default)]
pub struct Merged<T> {
    pub items: T,
    /// Store warnings and, under partial response, the failures of stores, each naming the
    /// store.
    pub warnings: Vec<String>,
}

/// Sends requests to the stores of an [`EndpointSet`].
#[derive(Debug, Clone)]
pub struct Fanout {
    pub endpoints: std::sync::Arc<EndpointSet>,
    /// `--store.response-timeout` (None: wait for as long as `max_wait`).
    pub response_timeout: Option<Duration>,
    /// The longest any store call may take in total (the query timeout), so that a store
    /// that hangs without a response timeout cannot hold a query thread forever.
    pub max_wait: Duration,
}

/// Whether a store with these external label sets can hold series matching `matchers`.
pub fn labels_can_match(label_sets: &[Labels], matchers: &[Matcher]) -> bool {
    if label_sets.is_empty() {
        return true;
    }
    label_sets.iter().any(|set| {
        matchers.iter().all(|m| match set.get(m.name()) {
            Some(v) => m.matches(v),
            None => true,
        })
    })
}

/// Whether `storeMatch[]` lets a request reach the store at `addr`: each selector is matched
/// against the label set `{__address__="<addr>"}` and one matching selector is enough. As in
/// Thanos, a matcher on any other label is ignored (the set has no such label). No selectors:
/// every store.
pub fn address_matches(store_match: &[Vec<Matcher>], addr: &str) -> bool {
    store_match.is_empty()
        || store_match.iter().any(|set| {
            set.iter()
                .filter(|m| m.name() == ADDRESS_LABEL)
                .all(|m| m.matches(addr))
        })
}

/// The label `storeMatch[]` selectors match a store's address with.
pub const ADDRESS_LABEL: &str = "__address__";

impl Fanout {
    /// The stores whose range overlaps `[mint, maxt]`, whose labels can match and whose
    /// address one of `store_match` (`storeMatch[]`; empty: any) matches.
    pub fn stores_for(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        store_match: &[Vec<Matcher>],
    ) -> Vec<StoreEndpoint> {
        self.endpoints
            .stores()
            .into_iter()
            .filter(|s| s.min_time <= maxt && s.max_time >= mint)
            .filter(|s| labels_can_match(&s.label_sets, matchers))
            .filter(|s| address_matches(store_match, &s.addr))
            .collect()
    }

    fn frame_timeout(&self) -> Duration {
        self.response_timeout.unwrap_or(self.max_wait)
    }

    /// Runs `req` on every selected store and merges the answers. `partial`: a failing store
    /// becomes a warning instead of the error. `store_match`: the request's `storeMatch[]`
    /// (empty: every store).
    pub async fn series(
        &self,
        req: SeriesRequest,
        partial: bool,
        store_match: &[Vec<Matcher>],
    ) -> Result<Merged<Vec<WireSeries>>, QueryError> {
        let matchers =
            matchers_to_model(&req.matchers).map_err(|e| QueryError::BadRequest(e.to_string()))?;
        let stores = self.stores_for(&matchers, req.min_time, req.max_time, store_match);
        let frame_timeout = self.frame_timeout();
        let deadline = tokio::time::Instant::now() + self.max_wait;
        let calls = stores.into_iter().map(|s| {
            let req = req.clone();
            async move {
                let r = call_series(s.client, req, frame_timeout, deadline).await;
                (s.addr, r)
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut out = Merged::default();
        let mut lists = Vec::new();
        for (addr, r) in results {
            match r {
                Ok((series, warnings)) => {
                    out.warnings
                        .extend(warnings.into_iter().map(|w| format!("store {addr}: {w}")));
                    lists.push(series);
                }
                Err(e) => fail(&mut out.warnings, &addr, e, partial)?,
            }
        }
        out.items = merge_sorted(lists);
        Ok(out)
    }

    /// LabelNames on every selected store, unioned.
    pub async fn label_names(
        &self,
        req: LabelNamesRequest,
        partial: bool,
        store_match: &[Vec<Matcher>],
    ) -> Result<Merged<Vec<String>>, QueryError> {
        let sel = Selection {
            matchers: &req.matchers,
            start: req.start,
            end: req.end,
            store_match,
        };
        self.strings(sel, partial, |mut c| {
            let req = req.clone();
            async move {
                let r = c.label_names(req).await?.into_inner();
                Ok((r.names, r.warnings))
            }
        })
        .await
    }

    /// LabelValues on every selected store, unioned.
    pub async fn label_values(
        &self,
        req: LabelValuesRequest,
        partial: bool,
        store_match: &[Vec<Matcher>],
    ) -> Result<Merged<Vec<String>>, QueryError> {
        let sel = Selection {
            matchers: &req.matchers,
            start: req.start,
            end: req.end,
            store_match,
        };
        self.strings(sel, partial, |mut c| {
            let req = req.clone();
            async move {
                let r = c.label_values(req).await?.into_inner();
                Ok((r.values, r.warnings))
            }
        })
        .await
    }

    /// Runs `call` (a label names or values request) on every store that can match, each
    /// bounded by the frame timeout, and unions the strings.
    async fn strings<F, Fut>(
        &self,
        sel: Selection<'_>,
        partial: bool,
        call: F,
    ) -> Result<Merged<Vec<String>>, QueryError>
    where
        F: Fn(StoreClient<StoreChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<String>, Vec<String>), tonic::Status>>,
    {
        let matchers =
            matchers_to_model(sel.matchers).map_err(|e| QueryError::BadRequest(e.to_string()))?;
        let stores = self.stores_for(&matchers, sel.start, sel.end, sel.store_match);
        let t = self.frame_timeout();
        let calls = stores.into_iter().map(|s| {
            let answer = call(s.client);
            async move {
                let r = match tokio::time::timeout(t, answer).await {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(st)) => Err(status_message(&st)),
                    Err(_) => Err(timeout_message(t)),
                };
                (s.addr, r)
            }
        });
        self.union(futures::future::join_all(calls).await, partial)
    }

    fn union(
        &self,
        results: Vec<(String, StringsResult)>,
        partial: bool,
    ) -> Result<Merged<Vec<String>>, QueryError> {
        let mut set = std::collections::BTreeSet::new();
        let mut out = Merged::default();
        for (addr, r) in results {
            match r {
                Ok((items, warnings)) => {
                    set.extend(items);
                    out.warnings
                        .extend(warnings.into_iter().map(|w| format!("store {addr}: {w}")));
                }
                Err(e) => fail(&mut out.warnings, &addr, e, partial)?,
            }
        }
        out.items = set.into_iter().collect();
        Ok(out)
    }
}

/// Which stores a label names or values request goes to.
struct Selection<'a> {
    matchers: &'a [LabelMatcher],
    start: i64,
    end: i64,
    store_match: &'a [Vec<Matcher>],
}

/// A store's strings (names or values) and warnings, or why it failed.
type StringsResult = Result<(Vec<String>, Vec<String>), String>;

fn fail(
    warnings: &mut Vec<String>,
    addr: &str,
    e: String,
    partial: bool,
) -> Result<(), QueryError> {
    if partial {
        tracing::warn!(store = %addr, err = %e, "store failed; partial response");
        warnings.push(format!("store {addr}: {e}"));
        Ok(())
    } else {
        Err(QueryError::Store {
            store: addr.to_string(),
            message: e,
        })
    }
}

fn status_message(st: &tonic::Status) -> String {
    format!("{:?}: {}", st.code(), st.message())
}

fn timeout_message(t: Duration) -> String {
    format!(
        "no answer within {} (--store.response-timeout)",
        strata_model::Duration::from_std(t)
    )
}

/// One store's Series call, collected, with a per-frame timeout and an overall deadline.
async fn call_series(
    mut client: StoreClient<StoreChannel>,
    req: SeriesRequest,
    frame_timeout: Duration,
    deadline: tokio::time::Instant,
) -> Result<(Vec<WireSeries>, Vec<String>), String> {
    let next_wait = || {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        frame_timeout.min(left)
    };
    let mut stream = match tokio::time::timeout(next_wait(), client.series(req)).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(st)) => return Err(status_message(&st)),
        Err(_) => return Err(timeout_message(frame_timeout)),
    };
    let mut series: Vec<WireSeries> = Vec::new();
    let mut warnings = Vec::new();
    let mut push = |s: strata_storepb::thanos::Series| {
        let labels = labels_to_model(s.labels);
        // A series may be split across frames: equal labels in a row are one series.
        match series.last_mut() {
            Some((l, chunks)) if *l == labels => chunks.extend(s.chunks),
            _ => series.push((labels, s.chunks)),
        }
    };
    loop {
        match tokio::time::timeout(next_wait(), stream.message()).await {
            Ok(Ok(Some(frame))) => match frame.result {
                Some(series_response::Result::Series(s)) => push(s),
                Some(series_response::Result::Batch(b)) => b.series.into_iter().for_each(&mut push),
                Some(series_response::Result::Warning(w)) => warnings.push(w),
                Some(series_response::Result::Hints(_)) | None => {}
            },
            Ok(Ok(None)) => break,
            Ok(Err(st)) => return Err(status_message(&st)),
            Err(_) => return Err(timeout_message(frame_timeout)),
        }
    }
    if !series.is_sorted_by(|a, b| a.0 <= b.0) {
        // A store that breaks the sort contract still gives a correct merge.
        sort_and_join(&mut series);
    }
    Ok((series, warnings))
}

/// Sorts series by labels and joins those with equal labels into one, chunks in their
/// original order.
pub fn sort_and_join(series: &mut Vec<WireSeries>) {
    series.sort_by(|a, b| a.0.cmp(&b.0));
    series.dedup_by(|b, a| {
        if a.0 == b.0 {
            a.1.append(&mut b.1);
            true
        } else {
            false
        }
    });
}

/// Merges lists sorted by labels into one sorted list; equal labels become one series whose
/// chunks are the inputs' chunks in list order. The number of lists is the number of stores
/// (tens at most), so each step scans the heads linearly instead of keeping a heap.
pub fn merge_sorted(lists: Vec<Vec<WireSeries>>) -> Vec<WireSeries> {
    let total: usize = lists.iter().map(Vec::len).sum();
    let mut iters: Vec<std::vec::IntoIter<WireSeries>> = lists
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(Vec::into_iter)
        .collect();
    if iters.len() <= 1 {
        return iters.pop().map(Iterator::collect).unwrap_or_default();
    }
    let mut out: Vec<WireSeries> = Vec::with_capacity(total);
    loop {
        // The first list whose head has the smallest labels; equal heads come after it.
        let mut best: Option<usize> = None;
        for i in 0..iters.len() {
            let Some(h) = iters[i].as_slice().first() else {
                continue;
            };
            if best.is_none_or(|b| h.0 < iters[b].as_slice()[0].0) {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        let Some((labels, mut chunks)) = iters[b].next() else {
            break;
        };
        for it in iters.iter_mut().skip(b + 1) {
            if it.as_slice().first().is_some_and(|h| h.0 == labels)
                && let Some((_, more)) = it.next()
            {
                chunks.extend(more);
            }
        }
        out.push((labels, chunks));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, tag: i64) -> WireSeries {
        (
            Labels::from_pairs(&[("__name__", name)]),
            vec![AggrChunk {
                min_time: tag,
                ..Default::default()
            }],
        )
    }

    #[test]
    fn k_way_merge_joins_equal_series_in_store_order() {
        let out = merge_sorted(vec![
            vec![s("a", 1), s("c", 1)],
            vec![],
            vec![s("a", 2), s("b", 2), s("d", 2)],
            vec![s("c", 3)],
        ]);
        let names: Vec<&str> = out.iter().map(|x| x.0.get("__name__").unwrap()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let tags: Vec<Vec<i64>> = out
            .iter()
            .map(|x| x.1.iter().map(|c| c.min_time).collect())
            .collect();
        assert_eq!(tags, [vec![1, 2], vec![2], vec![1, 3], vec![2]]);
        assert!(merge_sorted(vec![]).is_empty());
        assert_eq!(merge_sorted(vec![vec![s("x", 1)]]).len(), 1);
    }

    #[test]
    fn store_selection_by_external_labels() {
        let sets = vec![Labels::from_pairs(&[("cluster", "eu"), ("replica", "a")])];
        assert!(labels_can_match(&sets, &[Matcher::equal("cluster", "eu")]));
        assert!(!labels_can_match(&sets, &[Matcher::equal("cluster", "us")]));
        assert!(labels_can_match(&sets, &[Matcher::equal("job", "x")]));
        assert!(labels_can_match(&[], &[Matcher::equal("cluster", "us")]));
    }

    #[test]
    fn store_selection_by_address() {
        let re =
            |v: &str| Matcher::new(strata_model::MatchOp::RegexMatch, ADDRESS_LABEL, v).unwrap();
        let addr = "10.0.0.1:10901";
        assert!(address_matches(&[], addr));
        assert!(address_matches(
            &[vec![Matcher::equal(ADDRESS_LABEL, addr)]],
            addr
        ));
        assert!(!address_matches(
            &[vec![Matcher::equal(ADDRESS_LABEL, "x:1")]],
            addr
        ));
        // Any selector is enough.
        assert!(address_matches(
            &[
                vec![Matcher::equal(ADDRESS_LABEL, "x:1")],
                vec![re("10\\..*")]
            ],
            addr
        ));
        // All matchers of one selector must hold.
        assert!(!address_matches(
            &[vec![re("10\\..*"), Matcher::not_equal(ADDRESS_LABEL, addr)]],
            addr
        ));
        // Matchers on other labels are ignored, as in Thanos.
        assert!(address_matches(
            &[vec![Matcher::equal("__name__", "up")]],
            addr
        ));
        assert!(!address_matches(
            &[vec![Matcher::equal("__name__", "up"), re("192\\..*")]],
            addr
        ));
    }
}
