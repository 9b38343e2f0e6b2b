//! What the engine evaluates over: the [`Storage`] trait, and [`MemStorage`], an in-memory
//! implementation for tests and the conformance runner.
//!
//! The trait is shaped after Prometheus' `storage.Querier.Select` and Thanos' Store API
//! `Series` call, so that the querier can implement it over Store API clients: select by
//! matchers and a closed time range, with hints saying what the engine will do with the
//! data, and get back series **sorted by labels**, each with its samples either as encoded
//! chunks (what the Store API and blocks carry; the engine decodes them once, in bulk, on its
//! worker threads) or as decoded arrays (what a deduplicating merge produces).

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_model::{Labels, Matcher};
use strata_tsdb::RawChunk;

use crate::error::StorageError;

/// What the engine will do with the selected series (Prometheus' `storage.SelectHints`).
/// A storage may use them to fetch less (for example, skip chunks outside `[start, end]`, or
/// pick a downsampled resolution from `step`); it must not change the answer because of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectHints {
    /// First millisecond any sample is needed for (inclusive).
    pub start: i64,
    /// Last millisecond any sample is needed for (inclusive).
    pub end: i64,
    /// Evaluation step in milliseconds (0 for instant queries).
    pub step: i64,
    /// Range of the range selector in milliseconds (0 for instant selectors).
    pub range: i64,
    /// The function or aggregation directly consuming the selector, if any (`rate`, `sum`).
    pub func: Option<String>,
    /// Labels of the enclosing aggregation's `by`/`without` clause.
    pub grouping: Vec<String>,
    /// Whether `grouping` is a `by` (true) or `without` (false) clause.
    pub by: bool,
}

/// One encoded chunk of a series with its inclusive time bounds.
#[derive(Debug, Clone)]
pub struct ChunkData {
    /// Timestamp of the first sample.
    pub min_time: i64,
    /// Timestamp of the last sample.
    pub max_time: i64,
    /// The encoded samples (XOR for floats).
    pub chunk: RawChunk,
}

/// The samples of one selected series.
#[derive(Debug, Clone)]
pub enum SeriesData {
    /// Decoded float samples, sorted by timestamp, timestamps unique.
    Floats {
        /// Sample timestamps in milliseconds.
        timestamps: Arc<[i64]>,
        /// Sample values (stale markers included).
        values: Arc<[f64]>,
    },
    /// Encoded chunks sorted by time, not overlapping.
    Chunks(Vec<ChunkData>),
    /// The series has native histogram samples in the selected range; the engine refuses
    /// to evaluate it.
    NativeHistograms,
}

/// One selected series.
#[derive(Debug, Clone)]
pub struct StoredSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Its samples.
    pub data: SeriesData,
}

/// The answer to one [`Storage::select`].
#[derive(Debug, Default)]
pub struct SelectResult {
    /// The matching series, sorted by labels, labels unique.
    pub series: Vec<StoredSeries>,
    /// Non-fatal problems (for example, a store that did not answer under partial
    /// response); returned to the user as warnings.
    pub warnings: Vec<String>,
}

/// The batches of one [`Storage::select_batches`]; an error ends the selection.
pub type SelectBatches = Box<dyn Iterator<Item = Result<SelectResult, StorageError>> + Send>;

/// A source of series for the engine.
///
/// Implementations are called from the engine's worker threads, never from an async task,
/// so a networked implementation may block (the querier runs queries on blocking threads).
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The series matching every matcher that have samples in `[hints.start, hints.end]`,
    /// sorted by labels. A series may carry samples outside that range.
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError>;

    /// What [`Storage::select`] answers, handed over in batches: each batch sorted by labels,
    /// each after the previous in label order, no labels repeated across batches, warnings
    /// carried by any batch.
    ///
    /// Why: a networked storage receives the selection over many frames; with batches the
    /// engine evaluates what has arrived while the rest is still in transit, instead of
    /// adding the whole transfer to the query's latency. The default is `select`'s answer
    /// as one batch.
    fn select_batches(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectBatches, StorageError> {
        let all = self.select(matchers, hints)?;
        Ok(Box::new(std::iter::once(Ok(all))))
    }

    /// Whether [`Storage::select_early`] may start selections: the engine then finds a
    /// query's selections before evaluating it (which costs a pass over the expression).
    fn selects_early(&self) -> bool {
        false
    }

    /// Starts a selection now, to be read when evaluation reaches its selector, if the
    /// storage can do so without waiting (a networked storage sends its requests and
    /// returns); `None` leaves it to [`Storage::select_batches`] at that point.
    ///
    /// Why: a networked storage pays a round trip per selection, and the engine evaluates
    /// one node at a time. Started together, as Prometheus' engine selects every selector
    /// before evaluating, the selections of a query with several selectors (`a / b`) are in
    /// flight at once instead of one after the other.
    fn select_early(
        &self,
        _matchers: &[Matcher],
        _hints: &SelectHints,
    ) -> Option<Result<SelectBatches, StorageError>> {
        None
    }

    /// Label names of the series matching any of `matcher_sets` (all series if empty) with
    /// samples in `[mint, maxt]`, sorted and unique.
    fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Values of label `name` over the series matching any of `matcher_sets` (all series if
    /// empty) with samples in `[mint, maxt]`, sorted and unique.
    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Label sets of the series matching any of `matcher_sets` with samples in
    /// `[mint, maxt]`, sorted and unique (the `/api/v1/series` endpoint).
    fn series_labels(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError>;
}

/// A series held in memory: float samples plus the timestamps of any native histogram
/// samples (kept only so that selecting them can be refused).
#[derive(Debug, Clone, Default)]
struct MemSeries {
    timestamps: Vec<i64>,
    values: Vec<f64>,
    histogram_timestamps: Vec<i64>,
}

/// An in-memory [`Storage`], for tests and the conformance runner.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    series: BTreeMap<Labels, MemSeries>,
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> Self {
        MemStorage::default()
    }

    /// Adds a float sample. Samples of a series may arrive in any order; a later sample with
    /// the same timestamp replaces the earlier one.
    pub fn add(&mut self, labels: &Labels, t: i64, v: f64) {
        let s = self.series.entry(labels.clone()).or_default();
        match s.timestamps.last() {
            Some(&last) if last < t => {
                s.timestamps.push(t);
                s.values.push(v);
            }
            None => {
                s.timestamps.push(t);
                s.values.push(v);
            }
            _ => match s.timestamps.binary_search(&t) {
                Ok(i) => s.values[i] = v,
                Err(i) => {
                    s.timestamps.insert(i, t);
                    s.values.insert(i, v);
                }
            },
        }
    }

    /// Records a native histogram sample at `t` (its value is not kept).
    pub fn add_native_histogram(&mut self, labels: &Labels, t: i64) {
        let s = self.series.entry(labels.clone()).or_default();
        if let Err(i) = s.histogram_timestamps.binary_search(&t) {
            s.histogram_timestamps.insert(i, t);
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    fn matching<'a>(
        &'a self,
        matcher_sets: &'a [Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> impl Iterator<Item = (&'a Labels, &'a MemSeries)> + 'a {
        self.series.iter().filter(move |(l, s)| {
            let in_range = |ts: &[i64]| ts.iter().any(|&t| t >= mint && t <= maxt);
            (in_range(&s.timestamps) || in_range(&s.histogram_timestamps))
                && (matcher_sets.is_empty() || matcher_sets.iter().any(|ms| matches_all(l, ms)))
        })
    }
}

/// Whether `labels` satisfy every matcher (an absent label reads as `""`).
pub(crate) fn matches_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.matches(labels.get(m.name()).unwrap_or("")))
}

impl Storage for MemStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        let sets = [matchers.to_vec()];
        let series = self
            .matching(&sets, hints.start, hints.end)
            .map(|(l, s)| {
                let hist = s
                    .histogram_timestamps
                    .iter()
                    .any(|&t| t >= hints.start && t <= hints.end);
                let data = if hist {
                    SeriesData::NativeHistograms
                } else {
                    SeriesData::Floats {
                        timestamps: s.timestamps.clone().into(),
                        values: s.values.clone().into(),
                    }
                };
                StoredSeries {
                    labels: l.clone(),
                    data,
                }
            })
            .collect();
        Ok(SelectResult {
            series,
            warnings: Vec::new(),
        })
    }

    fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(names_of(
            self.matching(matcher_sets, mint, maxt).map(|(l, _)| l),
        ))
    }

    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(values_of(
            name,
            self.matching(matcher_sets, mint, maxt).map(|(l, _)| l),
        ))
    }

    fn series_labels(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .matching(matcher_sets, mint, maxt)
            .map(|(l, _)| l.clone())
            .collect())
    }
}

/// The label names of `series`, sorted and unique (what [`Storage::label_names`] answers
/// once the matching series are known).
pub(crate) fn names_of<L: std::borrow::Borrow<Labels>>(
    series: impl IntoIterator<Item = L>,
) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for l in series {
        for label in l.borrow().iter() {
            if !names.contains(&label.name) {
                names.insert(label.name.clone());
            }
        }
    }
    names.into_iter().collect()
}

/// The values of label `name` in `series`, sorted and unique.
pub(crate) fn values_of<L: std::borrow::Borrow<Labels>>(
    name: &str,
    series: impl IntoIterator<Item = L>,
) -> Vec<String> {
    let mut values = std::collections::BTreeSet::new();
    for l in series {
        if let Some(v) = l.borrow().get(name)
            && !values.contains(v)
        {
            values.insert(v.to_string());
        }
    }
    values.into_iter().collect()
}
