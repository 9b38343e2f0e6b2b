//! The evaluator: every node of the expression is evaluated once over all of its steps.
//!
//! An instant vector over `n` steps is a list of [`VSeries`]: labels, a value per step and a
//! presence flag per step. Labels are therefore handled once per series per node, never per
//! sample, and every per-step loop is plain array indexing.
//!
//! Time handling follows Prometheus 3.x: instant selectors look back `(t - lookback, t]`,
//! range selectors and subqueries cover `(t - range, t]`, `offset` shifts the reference time
//! and `@` pins it. Prometheus implements `@` by rewriting offsets and wrapping
//! step-invariant subtrees; evaluating every selector at its own reference time
//! (`(@ or step time) - offset`) gives the same answers directly.

mod aggr;
mod binop;
mod funcs;
mod hist;
mod rangefn;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};
use rayon::prelude::*;
use strata_model::labels::METRIC_NAME;
use strata_model::{Labels, MatchOp, Matcher};

use crate::annotations::Annotations;
use crate::engine::{EngineOptions, QueryContext};
use crate::error::{Error, Result, exec_err};
use crate::fxhash::{FxHashMap, FxHasher};
use crate::storage::{SelectBatches, SelectHints, SeriesData, Storage, StoredSeries};
use crate::{is_stale_nan, value};

/// Below this many series, work stays on the calling thread: spreading it costs more than
/// it saves.
const PAR_MIN_SERIES: usize = 32;

/// The steps a node is evaluated at: `start, start + step, ..., end` (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Steps {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) step: i64,
}

impl Steps {
    pub(crate) fn len(&self) -> usize {
        ((self.end - self.start) / self.step + 1) as usize
    }

    #[inline]
    pub(crate) fn t(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    pub(crate) fn is_instant(&self) -> bool {
        self.start == self.end
    }
}

/// One series of an instant vector over all steps.
#[derive(Debug, Clone)]
pub(crate) struct VSeries {
    pub(crate) labels: Labels,
    /// Delayed name removal: drop `__name__` when the query finishes.
    pub(crate) drop_name: bool,
    pub(crate) v: Vec<f64>,
    pub(crate) ok: Vec<bool>,
}

impl VSeries {
    pub(crate) fn new(labels: Labels, drop_name: bool, n: usize) -> Self {
        VSeries {
            labels,
            drop_name,
            v: vec![0.0; n],
            ok: vec![false; n],
        }
    }

    #[inline]
    pub(crate) fn set(&mut self, i: usize, v: f64) {
        self.v[i] = v;
        self.ok[i] = true;
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<f64> {
        if self.ok[i] { Some(self.v[i]) } else { None }
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.ok.iter().any(|&b| b)
    }
}

/// One series of a range vector evaluated at a single time (an instant query's matrix
/// result).
#[derive(Debug, Clone)]
pub(crate) struct RSeries {
    pub(crate) labels: Labels,
    pub(crate) drop_name: bool,
    pub(crate) ts: Vec<i64>,
    pub(crate) vs: Vec<f64>,
}

/// A node's value over all its steps.
#[derive(Debug)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<VSeries>),
    Matrix(Vec<RSeries>),
}

/// A series entering a range function: its labels and where its samples come from.
#[derive(Debug)]
pub(crate) struct RangeInput {
    pub(crate) labels: Labels,
    pub(crate) drop_name: bool,
    pub(crate) data: SourceData,
}

/// A range function's input: a selection still arriving in batches, or a subquery's series
/// evaluated already (one batch).
pub(crate) struct RangeInputs {
    pub(crate) selected: Option<SelectBatches>,
    pub(crate) evaluated: Option<Vec<RangeInput>>,
    /// Series of the selection so far, and the steps each is evaluated at (sample limit).
    pub(crate) seen: usize,
    pub(crate) steps: usize,
}

impl RangeInputs {
    /// Series evaluated already, to be evaluated again at `steps` steps.
    pub(crate) fn evaluated(series: Vec<RangeInput>, steps: usize) -> Self {
        RangeInputs {
            selected: None,
            evaluated: Some(series),
            seen: 0,
            steps,
        }
    }
}

#[derive(Debug)]
pub(crate) enum SourceData {
    Stored(SeriesData),
    Decoded { ts: Vec<i64>, vs: Vec<f64> },
}

/// How a range-vector argument is positioned in time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) range: i64,
    pub(crate) offset: i64,
    pub(crate) at: Option<i64>,
}

impl Window {
    #[inline]
    pub(crate) fn reference(&self, t: i64) -> i64 {
        self.at.unwrap_or(t) - self.offset
    }
}

/// The evaluation state of one query.
pub(crate) struct Evaluator<'a> {
    pub(crate) storage: &'a dyn Storage,
    pub(crate) opts: &'a EngineOptions,
    pub(crate) qctx: &'a QueryContext,
    /// The query's own start and end, for `@ start()` and `@ end()`.
    pub(crate) query_start: i64,
    pub(crate) query_end: i64,
    /// The query's step (0 for instant queries), for `step()`.
    pub(crate) query_step: i64,
    pub(crate) annos: Annotations,
    /// Hints for the selectors evaluated next: the consuming function and grouping.
    hint_func: Option<String>,
    hint_grouping: Option<(Vec<String>, bool)>,
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

/// Converts the parser's matchers (plus the metric name) to Strata matchers.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>> {
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(METRIC_NAME, name.clone()));
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err(Error::Parse(
            "selectors with \"or\" between label matchers are not supported".into(),
        ));
    }
    for m in &vs.matchers.matchers {
        use promql_parser::label::MatchOp as P;
        let op = match m.op {
            P::Equal => MatchOp::Equal,
            P::NotEqual => MatchOp::NotEqual,
            P::Re(_) => MatchOp::RegexMatch,
            P::NotRe(_) => MatchOp::RegexNoMatch,
        };
        out.push(
            Matcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| Error::Parse(e.to_string()))?,
        );
    }
    Ok(out)
}

/// Removes the labels that describe what a metric is (`__name__`, `__type__`, `__unit__`):
/// what Prometheus drops when an operation changes a metric's meaning.
pub(crate) fn drop_metric_labels(l: &Labels) -> Labels {
    if !l
        .iter()
        .any(|x| matches!(x.name.as_str(), METRIC_NAME | "__type__" | "__unit__"))
    {
        return l.clone();
    }
    Labels::from_sorted(
        l.iter()
            .filter(|x| !matches!(x.name.as_str(), METRIC_NAME | "__type__" | "__unit__"))
            .cloned()
            .collect(),
    )
}

/// [`drop_metric_labels`] for owned labels: no string is copied.
pub(crate) fn drop_metric_labels_owned(l: Labels) -> Labels {
    if !l
        .iter()
        .any(|x| matches!(x.name.as_str(), METRIC_NAME | "__type__" | "__unit__"))
    {
        return l;
    }
    let mut v = l.into_vec();
    v.retain(|x| !matches!(x.name.as_str(), METRIC_NAME | "__type__" | "__unit__"));
    Labels::from_sorted(v)
}

/// Groups series with identical labels into one, keeping first-appearance order and
/// dropping series without any point. Two series with a point at the same step are an error,
/// as in Prometheus' range evaluation ("vector cannot contain metrics with the same
/// labelset").
pub(crate) fn merge_same_labels(mut series: Vec<VSeries>) -> Result<Vec<VSeries>> {
    series.retain(|s| !s.is_empty());
    if !has_duplicate_labels(&series) {
        return Ok(series);
    }
    let mut out: Vec<VSeries> = Vec::with_capacity(series.len());
    let mut index: FxHashMap<Labels, usize> = FxHashMap::default();
    for s in series {
        if s.is_empty() {
            continue;
        }
        match index.get(&s.labels) {
            Some(&i) => {
                let dst = &mut out[i];
                for (k, &ok) in s.ok.iter().enumerate() {
                    if ok {
                        if dst.ok[k] {
                            return Err(exec_err(
                                "vector cannot contain metrics with the same labelset",
                            ));
                        }
                        dst.ok[k] = true;
                        dst.v[k] = s.v[k];
                    }
                }
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Prometheus' `Matrix.ContainsSameLabelset` check: any two series with equal labels are
/// an error, whatever their timestamps.
pub(crate) fn check_unique_labels(series: &[VSeries]) -> Result<()> {
    if has_duplicate_labels(series) {
        return Err(exec_err(
            "vector cannot contain metrics with the same labelset",
        ));
    }
    Ok(())
}

/// Whether two series share a label set: a fast hash pass, confirmed by comparison.
fn has_duplicate_labels(series: &[VSeries]) -> bool {
    if series.len() < 2 {
        return false;
    }
    let mut seen: FxHashMap<u64, usize> = FxHashMap::default();
    seen.reserve(series.len());
    for (i, s) in series.iter().enumerate() {
        let mut h = FxHasher::default();
        s.labels.hash(&mut h);
        match seen.entry(h.finish()) {
            std::collections::hash_map::Entry::Occupied(e) => {
                if series[*e.get()].labels == s.labels {
                    return true;
                }
                // A hash collision between different label sets: check exhaustively.
                let mut all: std::collections::HashSet<&Labels> = std::collections::HashSet::new();
                return !series.iter().all(|x| all.insert(&x.labels));
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i);
            }
        }
    }
    false
}

/// The samples of a series within `[mint, maxt]`, decoded into `buf` unless the storage
/// already holds them decoded.
pub(crate) fn series_samples<'b>(
    data: &'b SourceData,
    labels: &Labels,
    mint: i64,
    maxt: i64,
    buf: &'b mut (Vec<i64>, Vec<f64>),
) -> Result<(&'b [i64], &'b [f64])> {
    match data {
        SourceData::Decoded { ts, vs } => {
            let lo = ts.partition_point(|&t| t < mint);
            let hi = ts.partition_point(|&t| t <= maxt);
            Ok((&ts[lo..hi], &vs[lo..hi]))
        }
        SourceData::Stored(d) => stored_samples(d, labels, mint, maxt, buf),
    }
}

/// [`series_samples`] for data straight from the storage.
pub(crate) fn stored_samples<'b>(
    data: &'b SeriesData,
    labels: &Labels,
    mint: i64,
    maxt: i64,
    buf: &'b mut (Vec<i64>, Vec<f64>),
) -> Result<(&'b [i64], &'b [f64])> {
    let (ts, vs): (&[i64], &[f64]) = match data {
        SeriesData::Floats { timestamps, values } => (timestamps, values),
        SeriesData::NativeHistograms => {
            return Err(Error::NativeHistogram(labels.to_string()));
        }
        SeriesData::Chunks(chunks) => {
            buf.0.clear();
            buf.1.clear();
            if decode_many(chunks, labels, mint, maxt, buf)? {
                return Ok(in_range(&buf.0, &buf.1, mint, maxt));
            }
            for c in chunks {
                if c.max_time < mint || c.min_time > maxt {
                    continue;
                }
                match c.chunk.encoding {
                    strata_tsdb::Encoding::Xor => {}
                    strata_tsdb::Encoding::Histogram | strata_tsdb::Encoding::FloatHistogram => {
                        return Err(Error::NativeHistogram(labels.to_string()));
                    }
                    other => {
                        return Err(Error::Storage(crate::StorageError::new(format!(
                            "series {labels}: chunk encoding {} cannot be evaluated",
                            other.name()
                        ))));
                    }
                }
                let before = buf.0.len();
                c.chunk
                    .xor_iter()
                    .and_then(|mut it| it.decode_into(&mut buf.0, &mut buf.1))
                    .map_err(|e| {
                        Error::Storage(crate::StorageError::new(format!(
                            "series {labels}: decoding chunk: {e}"
                        )))
                    })?;
                // Chunks from a merge may overlap the previous one; keep timestamps strictly
                // increasing so that every window scan stays valid.
                if before > 0 && buf.0.len() > before && buf.0[before] <= buf.0[before - 1] {
                    keep_increasing(buf, before);
                }
            }
            (&buf.0, &buf.1)
        }
    };
    Ok(in_range(ts, vs, mint, maxt))
}

/// The samples of `ts`/`vs` (sorted by time) within `[mint, maxt]`.
fn in_range<'b>(ts: &'b [i64], vs: &'b [f64], mint: i64, maxt: i64) -> (&'b [i64], &'b [f64]) {
    let lo = ts.partition_point(|&t| t < mint);
    let hi = ts.partition_point(|&t| t <= maxt);
    (&ts[lo..hi], &vs[lo..hi])
}

/// Chunks of one series at least this many are decoded together
/// ([`strata_tsdb::XorIterator::decode_chunks_into`], several bit streams in lockstep).
const DECODE_MANY_MIN: usize = 8;

/// Decodes a series' chunks overlapping `[mint, maxt]` in one call when there are enough of
/// them, all XOR and in time order without overlaps (as a block's chunks are); returns
/// `false`, with `buf` untouched, when they are not, for the chunk-by-chunk path.
fn decode_many(
    chunks: &[crate::storage::ChunkData],
    labels: &Labels,
    mint: i64,
    maxt: i64,
    buf: &mut (Vec<i64>, Vec<f64>),
) -> Result<bool> {
    let wanted = || {
        chunks
            .iter()
            .filter(|c| c.max_time >= mint && c.min_time <= maxt)
    };
    if wanted().nth(DECODE_MANY_MIN - 1).is_none() {
        return Ok(false);
    }
    let mut prev_max = i64::MIN;
    let mut data: Vec<&[u8]> = Vec::with_capacity(chunks.len());
    for c in wanted() {
        if c.chunk.encoding != strata_tsdb::Encoding::Xor || c.min_time <= prev_max {
            return Ok(false);
        }
        prev_max = c.max_time;
        data.push(&c.chunk.data);
    }
    strata_tsdb::XorIterator::decode_chunks_into(&data, &mut buf.0, &mut buf.1).map_err(
        |(_, e)| {
            Error::Storage(crate::StorageError::new(format!(
                "series {labels}: decoding chunk: {e}"
            )))
        },
    )?;
    // Chunk times that do not match their samples could still break the order: keep
    // timestamps strictly increasing, as the chunk-by-chunk path does.
    if !buf.0.is_sorted_by(|a, b| a < b) {
        keep_increasing(buf, 0);
    }
    Ok(true)
}

/// Drops every sample from index `from` on whose timestamp is not after the last one kept,
/// so that timestamps are strictly increasing (samples before `from` are already).
fn keep_increasing(buf: &mut (Vec<i64>, Vec<f64>), from: usize) {
    let mut w = from;
    for r in from..buf.0.len() {
        if w == 0 || buf.0[r] > buf.0[w - 1] {
            buf.0[w] = buf.0[r];
            buf.1[w] = buf.1[r];
            w += 1;
        }
    }
    buf.0.truncate(w);
    buf.1.truncate(w);
}

/// Runs `f` over `items` in order, in parallel when there are enough of them, with one
/// scratch buffer per worker.
pub(crate) fn par_map_owned<T, R, F>(items: Vec<T>, f: F) -> Result<Vec<R>>
where
    T: Send,
    R: Send,
    F: Fn(T, &mut (Vec<i64>, Vec<f64>)) -> Result<R> + Sync + Send,
{
    if items.len() < PAR_MIN_SERIES {
        let mut buf = (Vec::new(), Vec::new());
        items.into_iter().map(|it| f(it, &mut buf)).collect()
    } else {
        items
            .into_par_iter()
            .with_min_len(8)
            .map_init(|| (Vec::new(), Vec::new()), |buf, it| f(it, buf))
            .collect()
    }
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        storage: &'a dyn Storage,
        opts: &'a EngineOptions,
        qctx: &'a QueryContext,
        query_start: i64,
        query_end: i64,
        query_step: i64,
    ) -> Self {
        Evaluator {
            storage,
            opts,
            qctx,
            query_start,
            query_end,
            query_step,
            annos: Annotations::default(),
            hint_func: None,
            hint_grouping: None,
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        self.qctx.check("expression evaluation")
    }

    /// Refuses to hold more than `max_samples` points at once (Prometheus'
    /// `--query.max-samples`): `series` series over `steps` steps would.
    pub(crate) fn check_samples(&self, series: usize, steps: usize) -> Result<()> {
        if series.saturating_mul(steps) > self.opts.max_samples {
            return Err(Error::TooManySamples("expression evaluation"));
        }
        Ok(())
    }

    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_millis() as i64,
                Err(e) => -(e.duration().as_millis() as i64),
            }),
        }
    }

    /// Evaluates a node over `steps`.
    pub(crate) fn eval(&mut self, expr: &Expr, steps: Steps) -> Result<Val> {
        self.check()?;
        match expr {
            Expr::Paren(p) => self.eval(&p.expr, steps),
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; steps.len()])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Unary(u) => {
                let v = self.eval(&u.expr, steps)?;
                match v {
                    Val::Scalar(mut xs) => {
                        for x in &mut xs {
                            *x = -*x;
                        }
                        Ok(Val::Scalar(xs))
                    }
                    Val::Vector(mut series) => {
                        for s in &mut series {
                            if !self.opts.delayed_name_removal {
                                s.labels = drop_metric_labels(&s.labels);
                            }
                            s.drop_name = true;
                            for x in &mut s.v {
                                *x = -*x;
                            }
                        }
                        if !self.opts.delayed_name_removal {
                            series = merge_same_labels(series)?;
                        }
                        Ok(Val::Vector(series))
                    }
                    _ => Err(Error::BadQuery(
                        "unary expression only allowed on expressions of type scalar or \
                         instant vector"
                            .into(),
                    )),
                }
            }
            Expr::VectorSelector(vs) => {
                let hints_func = self.hint_func.take();
                let grouping = self.hint_grouping.take();
                self.eval_vector_selector(vs, steps, hints_func, grouping, false)
                    .map(Val::Vector)
            }
            Expr::MatrixSelector(ms) => {
                let (inputs, window) = self.matrix_input(ms, steps)?;
                let series = self.all_range_inputs(inputs)?;
                self.materialize_matrix(series, window, steps)
                    .map(Val::Matrix)
            }
            Expr::Subquery(sq) => {
                let (series, window) = self.subquery_input(sq, steps)?;
                self.materialize_matrix(series, window, steps)
                    .map(Val::Matrix)
            }
            Expr::Call(call) => self.eval_call(call, steps),
            Expr::Aggregate(agg) => self.eval_aggregate(agg, steps),
            Expr::Binary(b) => {
                self.hint_func = None;
                self.hint_grouping = None;
                self.eval_binary(b, steps)
            }
            Expr::Extension(_) => Err(Error::BadQuery(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// Evaluates an expression that must produce an instant vector.
    pub(crate) fn eval_vector(&mut self, expr: &Expr, steps: Steps) -> Result<Vec<VSeries>> {
        match self.eval(expr, steps)? {
            Val::Vector(v) => Ok(v),
            other => Err(Error::BadQuery(format!(
                "expected instant vector, got {}",
                val_type_name(&other)
            ))),
        }
    }

    /// Evaluates an expression that must produce a scalar.
    pub(crate) fn eval_scalar(&mut self, expr: &Expr, steps: Steps) -> Result<Vec<f64>> {
        match self.eval(expr, steps)? {
            Val::Scalar(v) => Ok(v),
            other => Err(Error::BadQuery(format!(
                "expected scalar, got {}",
                val_type_name(&other)
            ))),
        }
    }

    /// Starts a selection; its batches come from [`Evaluator::next_selected`].
    #[allow(clippy::too_many_arguments)]
    fn select(
        &mut self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        step: i64,
        range: i64,
        func: Option<String>,
        grouping: Option<(Vec<String>, bool)>,
    ) -> Result<SelectBatches> {
        let matchers = selector_matchers(vs)?;
        let (grouping, by) = grouping.unwrap_or_default();
        let hints = SelectHints {
            start: mint,
            end: maxt,
            step,
            range,
            func,
            grouping,
            by,
        };
        Ok(self.storage.select_batches(&matchers, &hints)?)
    }

    /// The next batch of a selection (`None` at its end), its warnings noted. `seen` counts
    /// the series so far, which the sample limit checks against `steps` as they arrive.
    fn next_selected(
        &mut self,
        batches: &mut SelectBatches,
        seen: &mut usize,
        steps: usize,
    ) -> Result<Option<Vec<StoredSeries>>> {
        let Some(batch) = batches.next() else {
            return Ok(None);
        };
        let batch = batch?;
        for w in batch.warnings {
            self.annos.warnings.insert(w);
        }
        *seen += batch.series.len();
        self.check_samples(*seen, steps)?;
        Ok(Some(batch.series))
    }

    /// An instant vector selector over `steps`. With `keep_sample_time`, the values are the
    /// selected samples' timestamps in seconds (for `timestamp()`).
    pub(crate) fn eval_vector_selector(
        &mut self,
        vs: &VectorSelector,
        steps: Steps,
        func: Option<String>,
        grouping: Option<(Vec<String>, bool)>,
        keep_sample_time: bool,
    ) -> Result<Vec<VSeries>> {
        let offset = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let lookback = self.opts.lookback_delta_ms;
        let n = steps.len();
        let reference = |i: usize| at.unwrap_or(steps.t(i)) - offset;
        let (ref_lo, ref_hi) = (reference(0), reference(n - 1));
        let mint = ref_lo - lookback + 1;
        let maxt = ref_hi;
        let step = if steps.is_instant() { 0 } else { steps.step };
        let mut batches = self.select(vs, mint, maxt, step, 0, func, grouping)?;
        let qctx = self.qctx;
        let work = |s: StoredSeries, buf: &mut (Vec<i64>, Vec<f64>)| {
            qctx.check("expression evaluation")?;
            let StoredSeries { labels, data } = s;
            let (ts, vals) = stored_samples(&data, &labels, mint, maxt, buf)?;
            if ts.is_empty() {
                return Ok(VSeries::new(Labels::empty(), false, 0));
            }
            let mut out = VSeries::new(labels, false, n);
            if ts.is_empty() {
                return Ok(out);
            }
            // j: index of the first sample after the reference time; the reference time
            // never decreases from step to step.
            let mut j = 0usize;
            for i in 0..n {
                let r = reference(i);
                while j < ts.len() && ts[j] <= r {
                    j += 1;
                }
                if j == 0 {
                    continue;
                }
                let k = j - 1;
                if ts[k] > r - lookback && !is_stale_nan(vals[k]) {
                    let v = if keep_sample_time {
                        ts[k] as f64 / 1000.0
                    } else {
                        vals[k]
                    };
                    out.set(i, v);
                }
            }
            Ok(out)
        };
        // Each batch is evaluated while the storage may still be receiving the next.
        let (mut out, mut seen) = (Vec::new(), 0);
        while let Some(stored) = self.next_selected(&mut batches, &mut seen, n)? {
            out.extend(
                par_map_owned(stored, work)?
                    .into_iter()
                    .filter(|s| !s.is_empty()),
            );
        }
        Ok(out)
    }

    /// The series of a range selector, in the batches the storage hands over, and how its
    /// windows sit in time.
    pub(crate) fn matrix_input(
        &mut self,
        ms: &MatrixSelector,
        steps: Steps,
    ) -> Result<(RangeInputs, Window)> {
        let vs = &ms.vs;
        let window = Window {
            range: ms.range.as_millis() as i64,
            offset: offset_ms(&vs.offset),
            at: self.at_ms(&vs.at),
        };
        let n = steps.len();
        let mint = window.reference(steps.t(0)) - window.range + 1;
        let maxt = window.reference(steps.t(n - 1));
        let step = if steps.is_instant() { 0 } else { steps.step };
        let func = self.hint_func.take();
        let grouping = self.hint_grouping.take();
        let batches = self.select(vs, mint, maxt, step, window.range, func, grouping)?;
        Ok((
            RangeInputs {
                selected: Some(batches),
                evaluated: None,
                seen: 0,
                steps: n,
            },
            window,
        ))
    }

    /// The next batch of range-function input (`None` at the end).
    pub(crate) fn next_range_inputs(
        &mut self,
        from: &mut RangeInputs,
    ) -> Result<Option<Vec<RangeInput>>> {
        if let Some(v) = from.evaluated.take() {
            self.check_samples(v.len(), from.steps)?;
            return Ok(Some(v));
        }
        let Some(batches) = from.selected.as_mut() else {
            return Ok(None);
        };
        let (mut seen, steps) = (from.seen, from.steps);
        let next = self.next_selected(batches, &mut seen, steps)?;
        from.seen = seen;
        Ok(next.map(|stored| {
            stored
                .into_iter()
                .map(|s| RangeInput {
                    labels: s.labels,
                    drop_name: false,
                    data: SourceData::Stored(s.data),
                })
                .collect()
        }))
    }

    /// All of a range vector's input at once.
    fn all_range_inputs(&mut self, mut from: RangeInputs) -> Result<Vec<RangeInput>> {
        let mut all = Vec::new();
        while let Some(batch) = self.next_range_inputs(&mut from)? {
            all.extend(batch);
        }
        Ok(all)
    }

    /// Evaluates a subquery's inner expression over its own steps and returns its series as
    /// range-function input.
    pub(crate) fn subquery_input(
        &mut self,
        sq: &SubqueryExpr,
        steps: Steps,
    ) -> Result<(Vec<RangeInput>, Window)> {
        let window = Window {
            range: sq.range.as_millis() as i64,
            offset: offset_ms(&sq.offset),
            at: self.at_ms(&sq.at),
        };
        let step = match sq.step {
            Some(d) if !d.is_zero() => d.as_millis() as i64,
            _ => self.opts.subquery_step_ms,
        };
        if step <= 0 {
            return Err(Error::BadQuery("zero or negative subquery step".into()));
        }
        let n = steps.len();
        let first = window.reference(steps.t(0)) - window.range;
        // The first step-aligned time strictly after the window start (subqueries are
        // left-open, and their steps are multiples of the step since the epoch).
        let mut start = first.div_euclid(step) * step;
        if start <= first {
            start += step;
        }
        let end = window.reference(steps.t(n - 1));
        self.hint_func = None;
        self.hint_grouping = None;
        let series = if start > end {
            Vec::new()
        } else {
            let inner = Steps { start, end, step };
            self.check_samples(1, inner.len())?;
            match self.eval(&sq.expr, inner)? {
                Val::Vector(v) => v
                    .into_iter()
                    .map(|s| {
                        let mut ts = Vec::new();
                        let mut vs = Vec::new();
                        for i in 0..s.v.len() {
                            if s.ok[i] {
                                ts.push(inner.t(i));
                                vs.push(s.v[i]);
                            }
                        }
                        RangeInput {
                            labels: s.labels,
                            drop_name: s.drop_name,
                            data: SourceData::Decoded { ts, vs },
                        }
                    })
                    .collect(),
                other => {
                    return Err(Error::BadQuery(format!(
                        "subquery is only allowed on instant vector, got {}",
                        val_type_name(&other)
                    )));
                }
            }
        };
        Ok((series, window))
    }

    /// A range vector as a result (instant queries only): the samples in each series' window
    /// at the single evaluation time.
    fn materialize_matrix(
        &mut self,
        series: Vec<RangeInput>,
        window: Window,
        steps: Steps,
    ) -> Result<Vec<RSeries>> {
        if !steps.is_instant() {
            return Err(Error::BadQuery(
                "cannot do range evaluation of a range vector".into(),
            ));
        }
        let r = window.reference(steps.start);
        let (mint, maxt) = (r - window.range + 1, r);
        let mut out = Vec::new();
        let mut buf = (Vec::new(), Vec::new());
        for s in series {
            let (ts, vs) = series_samples(&s.data, &s.labels, mint, maxt, &mut buf)?;
            let mut rs = RSeries {
                labels: s.labels.clone(),
                drop_name: s.drop_name,
                ts: Vec::with_capacity(ts.len()),
                vs: Vec::with_capacity(ts.len()),
            };
            for (t, v) in ts.iter().zip(vs) {
                if !is_stale_nan(*v) {
                    rs.ts.push(*t);
                    rs.vs.push(*v);
                }
            }
            if !rs.ts.is_empty() {
                out.push(rs);
            }
        }
        Ok(out)
    }

    /// Finishes a query: applies delayed name removal and checks for duplicate label sets.
    pub(crate) fn finish(&mut self, v: Val) -> Result<Val> {
        if !self.opts.delayed_name_removal {
            return Ok(v);
        }
        match v {
            Val::Vector(mut series) => {
                for s in &mut series {
                    if s.drop_name {
                        s.labels = drop_metric_labels(&s.labels);
                        s.drop_name = false;
                    }
                }
                Ok(Val::Vector(merge_same_labels(series)?))
            }
            Val::Matrix(mut series) => {
                for s in &mut series {
                    if s.drop_name {
                        s.labels = drop_metric_labels(&s.labels);
                        s.drop_name = false;
                    }
                }
                let mut seen = HashMap::new();
                let mut out: Vec<RSeries> = Vec::with_capacity(series.len());
                for s in series {
                    match seen.get(&s.labels) {
                        Some(&i) => {
                            let dst: &mut RSeries = &mut out[i];
                            let mut pts: Vec<(i64, f64)> =
                                dst.ts.iter().copied().zip(dst.vs.iter().copied()).collect();
                            pts.extend(s.ts.iter().copied().zip(s.vs.iter().copied()));
                            pts.sort_by_key(|p| p.0);
                            if pts.windows(2).any(|w| w[0].0 == w[1].0) {
                                return Err(exec_err(
                                    "vector cannot contain metrics with the same labelset",
                                ));
                            }
                            dst.ts = pts.iter().map(|p| p.0).collect();
                            dst.vs = pts.iter().map(|p| p.1).collect();
                        }
                        None => {
                            seen.insert(s.labels.clone(), out.len());
                            out.push(s);
                        }
                    }
                }
                Ok(Val::Matrix(out))
            }
            other => Ok(other),
        }
    }

    pub(crate) fn set_hints(
        &mut self,
        func: Option<String>,
        grouping: Option<(Vec<String>, bool)>,
    ) {
        self.hint_func = func;
        self.hint_grouping = grouping;
    }
}

pub(crate) fn val_type_name(v: &Val) -> &'static str {
    match v {
        Val::Scalar(_) => "scalar",
        Val::Str(_) => "string",
        Val::Vector(_) => "instant vector",
        Val::Matrix(_) => "range vector",
    }
}

/// Converts an evaluated top-level value to the public result: for an `instant` query a
/// scalar or a vector, for a range query a matrix.
pub(crate) fn to_value(v: Val, steps: Steps, instant: bool) -> value::Value {
    match v {
        Val::Scalar(xs) => {
            if instant {
                value::Value::Scalar {
                    t: steps.start,
                    v: xs[0],
                }
            } else {
                value::Value::Matrix(vec![value::Series {
                    labels: Labels::empty(),
                    points: xs
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| (steps.t(i), v))
                        .collect(),
                }])
            }
        }
        Val::Str(s) => value::Value::String { t: steps.start, s },
        Val::Vector(series) => {
            if instant {
                value::Value::Vector(
                    series
                        .into_iter()
                        .filter_map(|s| {
                            s.get(0).map(|v| value::Sample {
                                labels: s.labels,
                                t: steps.start,
                                v,
                            })
                        })
                        .collect(),
                )
            } else {
                let mut out: Vec<value::Series> = series
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| value::Series {
                        points: (0..s.v.len())
                            .filter(|&i| s.ok[i])
                            .map(|i| (steps.t(i), s.v[i]))
                            .collect(),
                        labels: s.labels,
                    })
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                value::Value::Matrix(out)
            }
        }
        Val::Matrix(series) => {
            let mut out: Vec<value::Series> = series
                .into_iter()
                .map(|s| value::Series {
                    labels: s.labels,
                    points: s.ts.into_iter().zip(s.vs).collect(),
                })
                .collect();
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            value::Value::Matrix(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ChunkData;
    use strata_tsdb::{Encoding, RawChunk, XorEncoder};

    /// `n` chunks of 120 samples at 15 s with jitter, chunk `i` starting at `i * 1800 s`.
    fn chunks(n: usize) -> (Vec<ChunkData>, Vec<(i64, f64)>) {
        let (mut out, mut all) = (Vec::new(), Vec::new());
        for i in 0..n as i64 {
            let samples: Vec<(i64, f64)> = (0..120)
                .map(|k| {
                    let t = i * 1_800_000 + k * 15_000 + (k * 7 % 5);
                    (t, (i * 120 + k) as f64 * 1.5)
                })
                .collect();
            out.push(ChunkData {
                min_time: samples[0].0,
                max_time: samples[119].0,
                chunk: RawChunk::new(Encoding::Xor, XorEncoder::encode(samples.clone()).unwrap()),
            });
            all.extend(samples);
        }
        (out, all)
    }

    fn samples_of(data: SeriesData, mint: i64, maxt: i64) -> Result<Vec<(i64, f64)>> {
        let mut buf = (Vec::new(), Vec::new());
        let labels = Labels::from_pairs(&[("__name__", "x")]);
        let (ts, vs) = stored_samples(&data, &labels, mint, maxt, &mut buf)?;
        Ok(ts.iter().copied().zip(vs.iter().copied()).collect())
    }

    #[test]
    fn many_chunks_decode_together_like_one_by_one() {
        let (cs, all) = chunks(21);
        // Every chunk, then a range that cuts chunks at both ends (still eight or more).
        for (mint, maxt) in [(i64::MIN, i64::MAX), (2_000_000, 30_000_000)] {
            let want: Vec<(i64, f64)> = all
                .iter()
                .copied()
                .filter(|s| s.0 >= mint && s.0 <= maxt)
                .collect();
            assert_eq!(
                samples_of(SeriesData::Chunks(cs.clone()), mint, maxt).unwrap(),
                want
            );
        }
        // Overlapping chunks (a merge of two stores) take the chunk-by-chunk path and still
        // give each timestamp once, in order.
        let mut twice = cs.clone();
        twice.extend(cs[15..].iter().cloned());
        twice.sort_by_key(|c| c.min_time);
        assert_eq!(
            samples_of(SeriesData::Chunks(twice), i64::MIN, i64::MAX).unwrap(),
            all
        );
        // A corrupt chunk among many is an error naming the series.
        let mut bad = cs;
        let mut data = bad[9].chunk.data.to_vec();
        data.truncate(data.len() / 2);
        bad[9].chunk = RawChunk::new(Encoding::Xor, data);
        let e = samples_of(SeriesData::Chunks(bad), i64::MIN, i64::MAX).unwrap_err();
        assert!(e.to_string().contains("decoding chunk"), "{e}");
    }
}
