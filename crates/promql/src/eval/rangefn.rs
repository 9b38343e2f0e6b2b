//! Functions over range vectors (`rate`, `*_over_time`, ...).
//!
//! Each series' samples are decoded once; the window `(t - range, t]` slides over them with
//! two monotone indices, so each step only looks at its own window. Every function computes
//! its window exactly as Prometheus' `functions.go` does (same operations, same order), so
//! results round identically.

use promql_parser::parser::{Call, Expr};

use super::aggr::{go_g, quantile};
use super::{
    Evaluator, RangeInput, RangeInputs, Steps, VSeries, Val, check_unique_labels,
    drop_metric_labels_owned, par_map_owned, selector_matchers, series_samples,
};
use crate::error::{Error, Result};
use crate::is_stale_nan;
use crate::kahan;
use strata_model::labels::METRIC_NAME;
use strata_model::{Label, Labels, MatchOp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeFn {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Changes,
    Resets,
    Deriv,
    PredictLinear,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    MinOverTime,
    MaxOverTime,
    LastOverTime,
    FirstOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
    MadOverTime,
    PresentOverTime,
    AbsentOverTime,
    TsOfMinOverTime,
    TsOfMaxOverTime,
    TsOfFirstOverTime,
    TsOfLastOverTime,
    DoubleExponentialSmoothing,
}

impl RangeFn {
    pub(crate) fn parse(name: &str) -> Option<RangeFn> {
        Some(match name {
            "rate" => RangeFn::Rate,
            "increase" => RangeFn::Increase,
            "delta" => RangeFn::Delta,
            "irate" => RangeFn::Irate,
            "idelta" => RangeFn::Idelta,
            "changes" => RangeFn::Changes,
            "resets" => RangeFn::Resets,
            "deriv" => RangeFn::Deriv,
            "predict_linear" => RangeFn::PredictLinear,
            "avg_over_time" => RangeFn::AvgOverTime,
            "sum_over_time" => RangeFn::SumOverTime,
            "count_over_time" => RangeFn::CountOverTime,
            "min_over_time" => RangeFn::MinOverTime,
            "max_over_time" => RangeFn::MaxOverTime,
            "last_over_time" => RangeFn::LastOverTime,
            "first_over_time" => RangeFn::FirstOverTime,
            "stddev_over_time" => RangeFn::StddevOverTime,
            "stdvar_over_time" => RangeFn::StdvarOverTime,
            "quantile_over_time" => RangeFn::QuantileOverTime,
            "mad_over_time" => RangeFn::MadOverTime,
            "present_over_time" => RangeFn::PresentOverTime,
            "absent_over_time" => RangeFn::AbsentOverTime,
            "ts_of_min_over_time" => RangeFn::TsOfMinOverTime,
            "ts_of_max_over_time" => RangeFn::TsOfMaxOverTime,
            "ts_of_first_over_time" => RangeFn::TsOfFirstOverTime,
            "ts_of_last_over_time" => RangeFn::TsOfLastOverTime,
            "double_exponential_smoothing" => RangeFn::DoubleExponentialSmoothing,
            _ => return None,
        })
    }

    /// `last_over_time` and `first_over_time` act like an offset and keep the name.
    fn keeps_name(self) -> bool {
        matches!(self, RangeFn::LastOverTime | RangeFn::FirstOverTime)
    }
}

/// What a window computation needs besides the samples.
#[derive(Clone, Copy)]
struct WinCtx {
    /// Exclusive start and inclusive end of the window.
    range_start: i64,
    range_end: i64,
    range_secs: f64,
    /// The step's evaluation time (predict_linear's intercept time).
    eval_t: i64,
    p0: f64,
    p1: f64,
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

impl Evaluator<'_> {
    /// Evaluates a call whose argument `matrix_idx` is a range vector.
    pub(crate) fn eval_range_call(
        &mut self,
        f: RangeFn,
        call: &Call,
        matrix_idx: usize,
        steps: Steps,
    ) -> Result<Val> {
        let n = steps.len();
        // Scalar parameters (quantile, prediction horizon, smoothing factors), per step.
        let mut params: Vec<Vec<f64>> = Vec::new();
        for (i, a) in call.args.args.iter().enumerate() {
            if i != matrix_idx {
                params.push(self.eval_scalar(a, steps)?);
            }
        }
        let arg = unwrap_parens(&call.args.args[matrix_idx]);
        self.set_hints(Some(call.func.name.to_string()), None);
        let (mut inputs, window) = match arg {
            Expr::MatrixSelector(ms) => self.matrix_input(ms, steps)?,
            Expr::Subquery(sq) => {
                let (series, window) = self.subquery_input(sq, steps)?;
                (RangeInputs::evaluated(series, n), window)
            }
            _ => {
                return Err(Error::BadQuery(format!(
                    "expected type range vector in call to function {:?}",
                    call.func.name
                )));
            }
        };
        let qctx = self.qctx;
        let delayed = self.opts.delayed_name_removal;
        struct Outcome {
            series: VSeries,
            bad_quantiles: Vec<f64>,
            smoothing_error: Option<String>,
        }
        let work = |input: RangeInput, buf: &mut (Vec<i64>, Vec<f64>)| {
            qctx.check("expression evaluation")?;
            let mint = window.reference(steps.t(0)) - window.range + 1;
            let maxt = window.reference(steps.t(n - 1));
            let RangeInput {
                labels: in_labels,
                drop_name: in_drop,
                data,
            } = input;
            let (ts, vs) = series_samples(&data, &in_labels, mint, maxt, buf)?;
            // Range windows never contain staleness markers.
            let filtered;
            let (ts, vs) = if vs.iter().any(|v| is_stale_nan(*v)) {
                let mut t2 = Vec::with_capacity(ts.len());
                let mut v2 = Vec::with_capacity(ts.len());
                for (t, v) in ts.iter().zip(vs) {
                    if !is_stale_nan(*v) {
                        t2.push(*t);
                        v2.push(*v);
                    }
                }
                filtered = (t2, v2);
                (&filtered.0[..], &filtered.1[..])
            } else {
                (ts, vs)
            };
            if ts.is_empty() {
                return Ok(Outcome {
                    series: VSeries::new(Labels::empty(), false, 0),
                    bad_quantiles: Vec::new(),
                    smoothing_error: None,
                });
            }
            let labels = if f.keeps_name() || delayed {
                in_labels
            } else {
                drop_metric_labels_owned(in_labels)
            };
            let drop_name = !f.keeps_name() || in_drop;
            let mut out = Outcome {
                series: VSeries::new(labels, drop_name, n),
                bad_quantiles: Vec::new(),
                smoothing_error: None,
            };
            // Counter resets, precomputed once per series: each window then only visits
            // the resets inside it (rate/increase in O(1 + resets) per step).
            let counter = matches!(f, RangeFn::Rate | RangeFn::Increase | RangeFn::Resets);
            let resets: Vec<usize> = if counter {
                (1..vs.len()).filter(|&k| vs[k] < vs[k - 1]).collect()
            } else {
                Vec::new()
            };
            let mut rp = 0usize;
            // rate/increase/delta: windows are reduced to a few numbers per step, and the
            // extrapolation then runs over all steps at once in a branch-free loop.
            let batched = matches!(f, RangeFn::Rate | RangeFn::Increase | RangeFn::Delta);
            // sum_over_time: windows are summed four at a time (see `kahan_sums`).
            let mut sum_windows: Vec<(usize, usize, usize)> = Vec::new();
            let mut lanes = if batched {
                Lanes::with_capacity(n)
            } else {
                Lanes::default()
            };
            // min/max_over_time slide a monotonic deque of non-NaN samples: O(samples).
            let extreme = matches!(f, RangeFn::MaxOverTime | RangeFn::MinOverTime);
            let is_max = f == RangeFn::MaxOverTime;
            let mut deque: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
            let (mut lo, mut hi) = (0usize, 0usize);
            let mut last_window: Option<(usize, usize, i64)> = None;
            let mut scratch = Vec::new();
            for i in 0..n {
                let r = window.reference(steps.t(i));
                let start = r - window.range;
                while hi < ts.len() && ts[hi] <= r {
                    if extreme && !vs[hi].is_nan() {
                        // Equal values stay: the earliest of equal extremes is reported.
                        while let Some(&b) = deque.back() {
                            let dominated = if is_max {
                                vs[b] < vs[hi]
                            } else {
                                vs[b] > vs[hi]
                            };
                            if !dominated {
                                break;
                            }
                            deque.pop_back();
                        }
                        deque.push_back(hi);
                    }
                    hi += 1;
                }
                while lo < hi && ts[lo] <= start {
                    lo += 1;
                }
                if lo >= hi {
                    continue;
                }
                if extreme {
                    while deque.front().is_some_and(|&k| k < lo) {
                        deque.pop_front();
                    }
                    out.series
                        .set(i, deque.front().map_or(f64::NAN, |&k| vs[k]));
                    continue;
                }
                while rp < resets.len() && resets[rp] <= lo {
                    rp += 1;
                }
                let mut rq = rp;
                while rq < resets.len() && resets[rq] < hi {
                    rq += 1;
                }
                let ctx = WinCtx {
                    range_start: start,
                    range_end: r,
                    range_secs: window.range as f64 / 1000.0,
                    eval_t: steps.t(i),
                    p0: params.first().map_or(0.0, |p| p[i]),
                    p1: params.get(1).map_or(0.0, |p| p[i]),
                };
                // With `@` every step sees the same window: compute it once.
                if let Some((a, b, _)) = last_window
                    && a == lo
                    && b == hi
                    && window.at.is_some()
                    && !batched
                    && f != RangeFn::PredictLinear
                    && params.is_empty()
                {
                    let prev = out.series.v[i - 1];
                    if out.series.ok[i - 1] {
                        out.series.set(i, prev);
                    }
                    continue;
                }
                last_window = Some((lo, hi, r));
                match f {
                    RangeFn::QuantileOverTime
                        if ctx.p0.is_nan() || !(0.0..=1.0).contains(&ctx.p0) =>
                    {
                        out.bad_quantiles.push(ctx.p0);
                    }
                    RangeFn::DoubleExponentialSmoothing => {
                        if ctx.p0 <= 0.0 || ctx.p0 >= 1.0 {
                            out.smoothing_error = Some(format!(
                                "invalid smoothing factor. Expected: 0 < sf < 1, got: {:.6}",
                                ctx.p0
                            ));
                            break;
                        }
                        if ctx.p1 <= 0.0 || ctx.p1 >= 1.0 {
                            out.smoothing_error = Some(format!(
                                "invalid trend factor. Expected: 0 < tf < 1, got: {:.6}",
                                ctx.p1
                            ));
                            break;
                        }
                    }
                    _ => {}
                }
                if f == RangeFn::SumOverTime && window.at.is_none() {
                    sum_windows.push((i, lo, hi));
                    continue;
                }
                if f == RangeFn::Deriv && window.at.is_none() {
                    if hi - lo >= 2 {
                        sum_windows.push((i, lo, hi));
                    }
                    continue;
                }
                if batched {
                    let n_win = hi - lo;
                    if n_win >= 2 {
                        let mut result = vs[hi - 1] - vs[lo];
                        for &k in &resets[rp..rq] {
                            result += vs[k - 1];
                        }
                        lanes.push(i, ts[lo], ts[hi - 1], n_win, vs[lo], result, &ctx);
                    }
                    continue;
                }
                let value = if counter {
                    counter_window(f, ts, vs, lo, hi, &resets[rp..rq], ctx)
                } else {
                    window_value(f, &ts[lo..hi], &vs[lo..hi], ctx, &mut scratch)
                };
                if let Some(v) = value {
                    out.series.set(i, v);
                }
            }
            for chunk in sum_windows.chunks(4) {
                let values = if f == RangeFn::Deriv {
                    derivs(ts, vs, chunk)
                } else {
                    kahan_sums(vs, chunk)
                };
                for (&(i, _, _), v) in chunk.iter().zip(values) {
                    out.series.set(i, v);
                }
            }
            if batched {
                lanes.extrapolate(
                    f != RangeFn::Delta,
                    f == RangeFn::Rate,
                    window.range as f64 / 1000.0,
                );
                for (k, &i) in lanes.step.iter().enumerate() {
                    out.series.set(i as usize, lanes.out[k]);
                }
            }
            Ok(out)
        };
        // Batch by batch as the storage hands them over (evaluation overlaps the transfer).
        let counter_check = matches!(f, RangeFn::Rate | RangeFn::Increase);
        let (mut outs, mut names) = (Vec::new(), Vec::new());
        while let Some(batch) = self.next_range_inputs(&mut inputs)? {
            if counter_check {
                // What the counter check needs, kept before the inputs are consumed.
                names.extend(
                    batch
                        .iter()
                        .map(|i| i.labels.get(METRIC_NAME).map(str::to_string)),
                );
            }
            outs.extend(par_map_owned(batch, work)?);
        }
        let mut series = Vec::with_capacity(outs.len());
        let mut bad_q = Vec::new();
        for (k, o) in outs.into_iter().enumerate() {
            if let Some(e) = o.smoothing_error {
                return Err(Error::Execution(e));
            }
            bad_q.extend(o.bad_quantiles);
            if o.series.is_empty() {
                continue;
            }
            if counter_check {
                let name = names[k].as_deref().unwrap_or("");
                if !name.is_empty()
                    && !["_total", "_sum", "_count", "_bucket"]
                        .iter()
                        .any(|suf| name.ends_with(suf))
                {
                    self.annos.info(format!(
                        "metric might not be a counter, name does not end in \
                         _total/_sum/_count/_bucket: {name:?}"
                    ));
                }
            }
            series.push(o.series);
        }
        for q in bad_q {
            self.annos.warn(format!(
                "quantile value should be between 0 and 1, got {}",
                go_g(q)
            ));
        }
        if f == RangeFn::AbsentOverTime {
            let mut found = vec![false; n];
            for s in &series {
                for (k, &ok) in s.ok.iter().enumerate() {
                    found[k] |= ok;
                }
            }
            let mut out = VSeries::new(absent_labels(arg)?, true, n);
            for (k, &f) in found.iter().enumerate() {
                if !f {
                    out.set(k, 1.0);
                }
            }
            return Ok(Val::Vector(if out.is_empty() {
                Vec::new()
            } else {
                vec![out]
            }));
        }
        if !delayed {
            check_unique_labels(&series)?;
        }
        Ok(Val::Vector(series))
    }
}

/// The labels `absent()` and `absent_over_time()` give their output: the selector's
/// equality matchers, except names matched more than once.
pub(crate) fn absent_labels(arg: &Expr) -> Result<Labels> {
    let vs = match unwrap_parens(arg) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Ok(Labels::empty()),
    };
    let matchers = selector_matchers(vs)?;
    let mut out: Vec<Label> = Vec::new();
    let mut has = std::collections::HashSet::new();
    for m in &matchers {
        if m.name() == METRIC_NAME {
            continue;
        }
        if m.op() == MatchOp::Equal && !has.contains(m.name()) {
            out.retain(|l| l.name != m.name());
            out.push(Label::new(m.name(), m.value()));
            has.insert(m.name().to_string());
        } else {
            out.retain(|l| l.name != m.name());
        }
    }
    Ok(Labels::new(out))
}

/// The value of one window, or `None` when the function gives no output for it.
fn window_value(
    f: RangeFn,
    ts: &[i64],
    vs: &[f64],
    c: WinCtx,
    scratch: &mut Vec<f64>,
) -> Option<f64> {
    let n = ts.len();
    match f {
        RangeFn::Rate => extrapolated_rate(ts, vs, c, true, true),
        RangeFn::Increase => extrapolated_rate(ts, vs, c, true, false),
        RangeFn::Delta => extrapolated_rate(ts, vs, c, false, false),
        RangeFn::Irate | RangeFn::Idelta => {
            if n < 2 {
                return None;
            }
            let (t0, t1) = (ts[n - 2], ts[n - 1]);
            let (v0, v1) = (vs[n - 2], vs[n - 1]);
            let interval = t1 - t0;
            if interval == 0 {
                return None;
            }
            let is_rate = f == RangeFn::Irate;
            let mut r = v1;
            if !is_rate || v1 >= v0 || v1.is_nan() || v0.is_nan() {
                r = v1 - v0;
            }
            if is_rate {
                r /= interval as f64 / 1000.0;
            }
            Some(r)
        }
        RangeFn::Changes => {
            let mut changes = 0;
            for k in 1..n {
                let (p, c) = (vs[k - 1], vs[k]);
                if c != p && !(c.is_nan() && p.is_nan()) {
                    changes += 1;
                }
            }
            Some(changes as f64)
        }
        RangeFn::Resets => {
            let mut resets = 0;
            for k in 1..n {
                if vs[k] < vs[k - 1] {
                    resets += 1;
                }
            }
            Some(resets as f64)
        }
        RangeFn::Deriv => {
            if n < 2 {
                return None;
            }
            Some(linear_regression(ts, vs, ts[0]).0)
        }
        RangeFn::PredictLinear => {
            if n < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(ts, vs, c.eval_t);
            Some(slope * c.p0 + intercept)
        }
        RangeFn::AvgOverTime => {
            let (mut sum, mut count) = (vs[0], 1.0f64);
            let (mut mean, mut kc) = (0.0f64, 0.0f64);
            let mut incremental = false;
            for (i, &x) in vs[1..].iter().enumerate() {
                count = (i + 2) as f64;
                if !incremental {
                    let (ns, nc) = kahan::inc(x, sum, kc);
                    if !ns.is_infinite() {
                        sum = ns;
                        kc = nc;
                        continue;
                    }
                    incremental = true;
                    mean = sum / (count - 1.0);
                    kc /= count - 1.0;
                }
                let q = (count - 1.0) / count;
                let (m, nc) = kahan::inc(x / count, q * mean, q * kc);
                mean = m;
                kc = nc;
            }
            Some(if incremental {
                mean + kc
            } else {
                sum / count + kc / count
            })
        }
        RangeFn::SumOverTime => {
            let (mut sum, mut kc) = (0.0, 0.0);
            for &x in vs {
                (sum, kc) = kahan::inc(x, sum, kc);
            }
            Some(if sum.is_infinite() { sum } else { sum + kc })
        }
        RangeFn::CountOverTime => Some(n as f64),
        RangeFn::PresentOverTime | RangeFn::AbsentOverTime => Some(1.0),
        RangeFn::MaxOverTime
        | RangeFn::MinOverTime
        | RangeFn::TsOfMaxOverTime
        | RangeFn::TsOfMinOverTime => {
            let (mut best, mut best_t) = (vs[0], ts[0]);
            for (&t, &x) in ts.iter().zip(vs) {
                let take = match f {
                    RangeFn::MaxOverTime => x > best || best.is_nan(),
                    RangeFn::MinOverTime => x < best || best.is_nan(),
                    RangeFn::TsOfMaxOverTime => x >= best || best.is_nan(),
                    _ => x <= best || best.is_nan(),
                };
                if take {
                    best = x;
                    best_t = t;
                }
            }
            Some(match f {
                RangeFn::TsOfMaxOverTime | RangeFn::TsOfMinOverTime => best_t as f64 / 1000.0,
                _ => best,
            })
        }
        RangeFn::LastOverTime => Some(vs[n - 1]),
        RangeFn::FirstOverTime => Some(vs[0]),
        RangeFn::TsOfFirstOverTime => Some(ts[0] as f64 / 1000.0),
        RangeFn::TsOfLastOverTime => Some(ts[n - 1] as f64 / 1000.0),
        RangeFn::StddevOverTime | RangeFn::StdvarOverTime => {
            let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for &x in vs {
                count += 1.0;
                let delta = x - (mean + cmean);
                (mean, cmean) = kahan::inc(delta / count, mean, cmean);
                (aux, caux) = kahan::inc(delta * (x - (mean + cmean)), aux, caux);
            }
            let variance = (aux + caux) / count;
            Some(if f == RangeFn::StddevOverTime {
                variance.sqrt()
            } else {
                variance
            })
        }
        RangeFn::QuantileOverTime => {
            scratch.clear();
            scratch.extend_from_slice(vs);
            Some(quantile(c.p0, scratch))
        }
        RangeFn::MadOverTime => {
            if vs.iter().any(|v| v.is_nan()) {
                return Some(f64::NAN);
            }
            scratch.clear();
            scratch.extend_from_slice(vs);
            let median = quantile(0.5, scratch);
            scratch.clear();
            scratch.extend(vs.iter().map(|x| (x - median).abs()));
            Some(quantile(0.5, scratch))
        }
        RangeFn::DoubleExponentialSmoothing => {
            if n < 2 {
                return None;
            }
            let (sf, tf) = (c.p0, c.p1);
            let mut s0 = 0.0f64;
            let mut s1 = vs[0];
            let mut b = vs[1] - vs[0];
            for (i, &x) in vs.iter().enumerate().skip(1) {
                let xs = sf * x;
                b = if i - 1 == 0 {
                    b
                } else {
                    tf * (s1 - s0) + (1.0 - tf) * b
                };
                let y = (1.0 - sf) * (s1 + b);
                s0 = s1;
                s1 = xs + y;
            }
            Some(s1)
        }
    }
}

/// `sum_over_time` of up to four windows `[lo, hi)` at once. Each window is summed on its
/// own, in sample order, with Prometheus' compensated steps, exactly as one at a time would;
/// running four independent sums side by side only lets the CPU overlap their latencies.
fn kahan_sums(vs: &[f64], windows: &[(usize, usize, usize)]) -> [f64; 4] {
    let mut sum = [0.0f64; 4];
    let mut c = [0.0f64; 4];
    let mut lo = [0usize; 4];
    let mut len = [0usize; 4];
    for (q, &(_, l, h)) in windows.iter().enumerate() {
        lo[q] = l;
        len[q] = h - l;
    }
    let common = len[..windows.len()].iter().copied().min().unwrap_or(0);
    let mut done = false;
    #[cfg(target_arch = "x86_64")]
    if windows.len() == 4 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available (checked above); the function only indexes `vs`
        // through bounds-checked slice accesses.
        unsafe { kahan4_avx2(vs, lo, common, &mut sum, &mut c) };
        done = true;
    }
    if !done {
        for j in 0..common {
            for q in 0..windows.len() {
                (sum[q], c[q]) = kahan::inc(vs[lo[q] + j], sum[q], c[q]);
            }
        }
    }
    for q in 0..windows.len() {
        for j in common..len[q] {
            (sum[q], c[q]) = kahan::inc(vs[lo[q] + j], sum[q], c[q]);
        }
    }
    let mut out = [0.0f64; 4];
    for q in 0..windows.len() {
        out[q] = if sum[q].is_infinite() {
            sum[q]
        } else {
            sum[q] + c[q]
        };
    }
    out
}

/// `deriv` of up to four windows `[lo, hi)` (each at least two samples): Prometheus'
/// `linearRegression` with the window's first timestamp as intercept time, four windows
/// side by side when AVX2 is available, each lane doing exactly the scalar operations.
fn derivs(ts: &[i64], vs: &[f64], windows: &[(usize, usize, usize)]) -> [f64; 4] {
    let mut out = [0.0f64; 4];
    #[cfg(target_arch = "x86_64")]
    if windows.len() == 4 && std::arch::is_x86_feature_detected!("avx2") {
        let lo = [windows[0].1, windows[1].1, windows[2].1, windows[3].1];
        let len = [
            windows[0].2 - windows[0].1,
            windows[1].2 - windows[1].1,
            windows[2].2 - windows[2].1,
            windows[3].2 - windows[3].1,
        ];
        // SAFETY: AVX2 is available (checked above); `vs` and `ts` are only indexed
        // through bounds-checked slice accesses.
        let sums = unsafe { linreg4_avx2(ts, vs, lo, len) };
        for q in 0..4 {
            let (l, h) = (windows[q].1, windows[q].2);
            out[q] = linreg_finish(&vs[l..h], sums[q]).0;
        }
        return out;
    }
    for (q, &(_, l, h)) in windows.iter().enumerate() {
        out[q] = linear_regression(&ts[l..h], &vs[l..h], ts[l]).0;
    }
    out
}

/// The compensated sums of `linearRegression`: (sum_x, c_x, sum_y, c_y, sum_xy, c_xy,
/// sum_x2, c_x2) per lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn linreg4_avx2(ts: &[i64], vs: &[f64], lo: [usize; 4], len: [usize; 4]) -> [[f64; 8]; 4] {
    use std::arch::x86_64::*;
    #[inline]
    #[target_feature(enable = "avx2")]
    fn step(s: __m256d, c: __m256d, x: __m256d) -> (__m256d, __m256d) {
        let sign = _mm256_set1_pd(-0.0);
        let inf = _mm256_set1_pd(f64::INFINITY);
        let t = _mm256_add_pd(s, x);
        let ge = _mm256_cmp_pd::<_CMP_GE_OQ>(_mm256_andnot_pd(sign, s), _mm256_andnot_pd(sign, x));
        let d = _mm256_blendv_pd(
            _mm256_add_pd(_mm256_sub_pd(x, t), s),
            _mm256_add_pd(_mm256_sub_pd(s, t), x),
            ge,
        );
        let is_inf = _mm256_cmp_pd::<_CMP_EQ_OQ>(_mm256_andnot_pd(sign, t), inf);
        (t, _mm256_andnot_pd(is_inf, _mm256_add_pd(c, d)))
    }
    let zero = _mm256_setzero_pd();
    let thousand = _mm256_set1_pd(1e3);
    let (mut sx, mut cx, mut sy, mut cy) = (zero, zero, zero, zero);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (zero, zero, zero, zero);
    let t0 = [ts[lo[0]], ts[lo[1]], ts[lo[2]], ts[lo[3]]];
    let common = len.iter().copied().min().unwrap_or(0);
    for j in 0..common {
        let dt = _mm256_set_pd(
            (ts[lo[3] + j] - t0[3]) as f64,
            (ts[lo[2] + j] - t0[2]) as f64,
            (ts[lo[1] + j] - t0[1]) as f64,
            (ts[lo[0] + j] - t0[0]) as f64,
        );
        let x = _mm256_div_pd(dt, thousand);
        let y = _mm256_set_pd(vs[lo[3] + j], vs[lo[2] + j], vs[lo[1] + j], vs[lo[0] + j]);
        (sx, cx) = step(sx, cx, x);
        (sy, cy) = step(sy, cy, y);
        (sxy, cxy) = step(sxy, cxy, _mm256_mul_pd(x, y));
        (sx2, cx2) = step(sx2, cx2, _mm256_mul_pd(x, x));
    }
    let mut lanes = [[0.0f64; 4]; 8];
    // SAFETY: each array holds exactly four f64, what an unaligned 256-bit store writes.
    unsafe {
        for (k, v) in [sx, cx, sy, cy, sxy, cxy, sx2, cx2].into_iter().enumerate() {
            _mm256_storeu_pd(lanes[k].as_mut_ptr(), v);
        }
    }
    let mut out = [[0.0f64; 8]; 4];
    for q in 0..4 {
        for k in 0..8 {
            out[q][k] = lanes[k][q];
        }
        // The samples beyond the common length, one lane at a time.
        let mut st = out[q];
        for j in common..len[q] {
            let x = (ts[lo[q] + j] - t0[q]) as f64 / 1e3;
            let y = vs[lo[q] + j];
            (st[0], st[1]) = kahan::inc(x, st[0], st[1]);
            (st[2], st[3]) = kahan::inc(y, st[2], st[3]);
            (st[4], st[5]) = kahan::inc(x * y, st[4], st[5]);
            (st[6], st[7]) = kahan::inc(x * x, st[6], st[7]);
        }
        out[q] = st;
    }
    out
}

/// Four `kahan::inc` sequences side by side in AVX2 lanes: the same IEEE operations per
/// lane (add, subtract, absolute-value comparison, select), so every lane's result is
/// bit-identical to the scalar code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kahan4_avx2(
    vs: &[f64],
    lo: [usize; 4],
    common: usize,
    sum: &mut [f64; 4],
    c: &mut [f64; 4],
) {
    use std::arch::x86_64::*;
    let sign = _mm256_set1_pd(-0.0);
    let inf = _mm256_set1_pd(f64::INFINITY);
    let mut s = _mm256_set_pd(sum[3], sum[2], sum[1], sum[0]);
    let mut cc = _mm256_set_pd(c[3], c[2], c[1], c[0]);
    for j in 0..common {
        let x = _mm256_set_pd(vs[lo[3] + j], vs[lo[2] + j], vs[lo[1] + j], vs[lo[0] + j]);
        let t = _mm256_add_pd(s, x);
        // |sum| >= |x|, false when either is NaN (as Go's comparison).
        let ge = _mm256_cmp_pd::<_CMP_GE_OQ>(_mm256_andnot_pd(sign, s), _mm256_andnot_pd(sign, x));
        let d_sum_big = _mm256_add_pd(_mm256_sub_pd(s, t), x);
        let d_x_big = _mm256_add_pd(_mm256_sub_pd(x, t), s);
        let d = _mm256_blendv_pd(d_x_big, d_sum_big, ge);
        // The compensation resets to zero once the sum is infinite.
        let is_inf = _mm256_cmp_pd::<_CMP_EQ_OQ>(_mm256_andnot_pd(sign, t), inf);
        cc = _mm256_andnot_pd(is_inf, _mm256_add_pd(cc, d));
        s = t;
    }
    let mut out_s = [0.0f64; 4];
    let mut out_c = [0.0f64; 4];
    // SAFETY: both arrays hold exactly four f64, what an unaligned 256-bit store writes.
    unsafe {
        _mm256_storeu_pd(out_s.as_mut_ptr(), s);
        _mm256_storeu_pd(out_c.as_mut_ptr(), cc);
    }
    *sum = out_s;
    *c = out_c;
}

/// Per-step inputs of `rate`/`increase`/`delta` extrapolation, as parallel arrays.
#[derive(Default)]
struct Lanes {
    step: Vec<u32>,
    d_start: Vec<f64>,
    d_end: Vec<f64>,
    d_sampled: Vec<f64>,
    n_minus_one: Vec<f64>,
    first_v: Vec<f64>,
    result: Vec<f64>,
    out: Vec<f64>,
}

impl Lanes {
    fn with_capacity(n: usize) -> Self {
        Lanes {
            step: Vec::with_capacity(n),
            d_start: Vec::with_capacity(n),
            d_end: Vec::with_capacity(n),
            d_sampled: Vec::with_capacity(n),
            n_minus_one: Vec::with_capacity(n),
            first_v: Vec::with_capacity(n),
            result: Vec::with_capacity(n),
            out: Vec::with_capacity(n),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        step: usize,
        first_t: i64,
        last_t: i64,
        n: usize,
        first_v: f64,
        result: f64,
        c: &WinCtx,
    ) {
        self.step.push(step as u32);
        // Millisecond differences as Prometheus takes them: integer subtraction, then one
        // conversion to float.
        self.d_start.push((first_t - c.range_start) as f64);
        self.d_end.push((c.range_end - last_t) as f64);
        self.d_sampled.push((last_t - first_t) as f64);
        self.n_minus_one.push((n - 1) as f64);
        self.first_v.push(first_v);
        self.result.push(result);
    }

    /// `extrapolatedRate`'s arithmetic for every lane: the same operations in the same
    /// order as Prometheus, written without branches so that it vectorizes.
    fn extrapolate(&mut self, is_counter: bool, is_rate: bool, range_secs: f64) {
        let len = self.step.len();
        self.out.clear();
        self.out.resize(len, 0.0);
        for k in 0..len {
            let mut to_start = self.d_start[k] / 1000.0;
            let mut to_end = self.d_end[k] / 1000.0;
            let sampled = self.d_sampled[k] / 1000.0;
            let avg = sampled / self.n_minus_one[k];
            let threshold = avg * 1.1;
            if to_start >= threshold {
                to_start = avg / 2.0;
            }
            if is_counter {
                let (r, fv) = (self.result[k], self.first_v[k]);
                let to_zero = if r > 0.0 && fv >= 0.0 {
                    sampled * (fv / r)
                } else {
                    to_start
                };
                if to_zero < to_start {
                    to_start = to_zero;
                }
            }
            if to_end >= threshold {
                to_end = avg / 2.0;
            }
            let mut factor = (sampled + to_start + to_end) / sampled;
            if is_rate {
                factor /= range_secs;
            }
            self.out[k] = self.result[k] * factor;
        }
    }
}

/// `rate`, `increase` and `resets` over the window `[lo, hi)`, given the counter resets
/// inside it (indices `k` with `vs[k] < vs[k - 1]`, `lo < k < hi`). The additions happen in
/// the same order as Prometheus' loop over every sample, so the result is identical.
fn counter_window(
    f: RangeFn,
    ts: &[i64],
    vs: &[f64],
    lo: usize,
    hi: usize,
    resets: &[usize],
    c: WinCtx,
) -> Option<f64> {
    if f == RangeFn::Resets {
        return Some(resets.len() as f64);
    }
    let n = hi - lo;
    if n < 2 {
        return None;
    }
    let mut result = vs[hi - 1] - vs[lo];
    for &k in resets {
        result += vs[k - 1];
    }
    extrapolate(
        ts[lo],
        ts[hi - 1],
        n,
        vs[lo],
        result,
        c,
        true,
        f == RangeFn::Rate,
    )
}

/// `rate`, `increase` and `delta` with Prometheus' extrapolation to the window edges.
fn extrapolated_rate(
    ts: &[i64],
    vs: &[f64],
    c: WinCtx,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let n = ts.len();
    if n < 2 {
        return None;
    }
    let mut result = vs[n - 1] - vs[0];
    if is_counter {
        for k in 1..n {
            if vs[k] < vs[k - 1] {
                result += vs[k - 1];
            }
        }
    }
    extrapolate(ts[0], ts[n - 1], n, vs[0], result, c, is_counter, is_rate)
}

/// The extrapolation step of `extrapolatedRate`, given the raw increase `result`.
#[allow(clippy::too_many_arguments)]
fn extrapolate(
    first_t: i64,
    last_t: i64,
    n: usize,
    first_v: f64,
    result: f64,
    c: WinCtx,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let mut to_start = (first_t - c.range_start) as f64 / 1000.0;
    let mut to_end = (c.range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / (n - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if is_counter {
        let mut to_zero = to_start;
        if result > 0.0 && first_v >= 0.0 {
            to_zero = sampled * (first_v / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= c.range_secs;
    }
    Some(result * factor)
}

/// Least-squares regression with compensated sums (Prometheus' `linearRegression`):
/// the slope, and the intercept at `intercept_t`.
fn linear_regression(ts: &[i64], vs: &[f64], intercept_t: i64) -> (f64, f64) {
    let mut st = [0.0f64; 8];
    for (&t, &y) in ts.iter().zip(vs) {
        let x = (t - intercept_t) as f64 / 1e3;
        (st[0], st[1]) = kahan::inc(x, st[0], st[1]);
        (st[2], st[3]) = kahan::inc(y, st[2], st[3]);
        (st[4], st[5]) = kahan::inc(x * y, st[4], st[5]);
        (st[6], st[7]) = kahan::inc(x * x, st[6], st[7]);
    }
    linreg_finish(vs, st)
}

/// The end of `linearRegression` from its compensated sums.
fn linreg_finish(vs: &[f64], st: [f64; 8]) -> (f64, f64) {
    let n = vs.len() as f64;
    let init_y = vs[0];
    if vs.iter().all(|&y| y == init_y) && !init_y.is_nan() || vs.len() == 1 {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let sum_x = st[0] + st[1];
    let sum_y = st[2] + st[3];
    let sum_xy = st[4] + st[5];
    let sum_x2 = st[6] + st[7];
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}
