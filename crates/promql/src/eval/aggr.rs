//! Aggregation operators.
//!
//! Each input series is mapped to its group once. Value aggregations then run group by
//! group (in parallel across groups), folding each group's series in input order at every
//! step: the same order, and the same compensated arithmetic, as Prometheus'
//! `aggregation()`, so sums and means round the same way.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};
use rayon::prelude::*;
use strata_model::Labels;
use strata_model::labels::METRIC_NAME;

use super::{Evaluator, Steps, VSeries, Val, merge_same_labels};
use crate::error::{Error, Result, exec_err};
use crate::format;
use crate::kahan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggOp {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Quantile,
    Topk,
    Bottomk,
    Limitk,
    LimitRatio,
    CountValues,
}

impl AggOp {
    fn parse(s: &str) -> Result<AggOp> {
        Ok(match s {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "count" => AggOp::Count,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "group" => AggOp::Group,
            "stddev" => AggOp::Stddev,
            "stdvar" => AggOp::Stdvar,
            "quantile" => AggOp::Quantile,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            "limitk" => AggOp::Limitk,
            "limit_ratio" => AggOp::LimitRatio,
            "count_values" => AggOp::CountValues,
            other => return Err(Error::BadQuery(format!("unknown aggregation {other:?}"))),
        })
    }
}

/// How an aggregation groups: `by` (keep these labels) or `without` (drop these and the
/// metric name).
pub(crate) struct Grouping {
    pub(crate) without: bool,
    pub(crate) labels: Vec<String>,
}

impl Grouping {
    pub(crate) fn key(&self, l: &Labels, out: &mut Vec<u8>) {
        out.clear();
        for label in l {
            let listed = self.labels.binary_search(&label.name).is_ok();
            let keep = if self.without {
                !listed && label.name != METRIC_NAME
            } else {
                listed
            };
            if keep {
                out.extend_from_slice(label.name.as_bytes());
                out.push(0xff);
                out.extend_from_slice(label.value.as_bytes());
                out.push(0xff);
            }
        }
    }

    pub(crate) fn group_labels(&self, l: &Labels) -> Labels {
        Labels::from_sorted(
            l.iter()
                .filter(|label| {
                    let listed = self.labels.binary_search(&label.name).is_ok();
                    if self.without {
                        !listed && label.name != METRIC_NAME
                    } else {
                        listed
                    }
                })
                .cloned()
                .collect(),
        )
    }
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// `%g` (and `%v`) as Go prints a float64: shortest digits, exponent form when the decimal
/// exponent is below -4 or at least 6.
pub(crate) fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return format::float_f(v);
    }
    let exp = format!("{:e}", v.abs())
        .split_once('e')
        .and_then(|(_, e)| e.parse::<i32>().ok())
        .unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let mut s = String::new();
        format::format_float_e(v, &mut s);
        s
    } else {
        format::float_f(v)
    }
}

impl Evaluator<'_> {
    pub(crate) fn eval_aggregate(&mut self, agg: &AggregateExpr, steps: Steps) -> Result<Val> {
        let op = AggOp::parse(&agg.op.to_string())?;
        let mut grouping = Grouping {
            without: false,
            labels: Vec::new(),
        };
        match &agg.modifier {
            Some(LabelModifier::Include(l)) => grouping.labels = l.labels.clone(),
            Some(LabelModifier::Exclude(l)) => {
                grouping.without = true;
                grouping.labels = l.labels.clone();
            }
            None => {}
        }
        grouping.labels.sort();
        grouping.labels.dedup();

        if op == AggOp::CountValues {
            let label = match agg.param.as_deref().map(unwrap_parens) {
                Some(Expr::StringLiteral(s)) => s.val.clone(),
                _ => {
                    return Err(Error::BadQuery(
                        "count_values requires a string parameter".into(),
                    ));
                }
            };
            if label.is_empty() {
                return Err(exec_err(format!("invalid label name {label:?}")));
            }
            self.set_hints(
                Some("count_values".into()),
                Some((grouping.labels.clone(), !grouping.without)),
            );
            let input = self.eval_vector(&agg.expr, steps)?;
            return count_values(&grouping, &label, input, steps.len()).map(Val::Vector);
        }

        let param = match &agg.param {
            Some(p) => Some(self.eval_scalar(p, steps)?),
            None => None,
        };
        self.set_hints(
            Some(agg.op.to_string()),
            Some((grouping.labels.clone(), !grouping.without)),
        );
        let input = self.eval_vector(&agg.expr, steps)?;
        self.check()?;

        // Group ordinals in order of first appearance.
        let mut index: crate::fxhash::FxHashMap<Vec<u8>, usize> = Default::default();
        let mut key = Vec::new();
        let mut series_group = Vec::with_capacity(input.len());
        let mut first_of_group = Vec::new();
        for (si, s) in input.iter().enumerate() {
            grouping.key(&s.labels, &mut key);
            let g = match index.get(&key) {
                Some(&g) => g,
                None => {
                    let g = index.len();
                    index.insert(key.clone(), g);
                    g
                }
            };
            if g == first_of_group.len() {
                first_of_group.push(si);
            }
            series_group.push(g);
        }
        let n = steps.len();
        match op {
            AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::LimitRatio => {
                let param = param.expect("parser requires a parameter");
                self.aggregate_k(op, &param, input, &series_group, first_of_group.len(), n)
                    .map(Val::Vector)
            }
            _ => {
                if op == AggOp::Quantile {
                    let q = param.as_ref().expect("parser requires a parameter");
                    let mut bad: Vec<f64> = Vec::new();
                    if q.iter().any(|x| x.is_nan()) {
                        bad.push(f64::NAN);
                    }
                    let max = q.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let min = q.iter().copied().fold(f64::INFINITY, f64::min);
                    if max > 1.0 {
                        bad.push(max);
                    }
                    if min < 0.0 {
                        bad.push(min);
                    }
                    for b in bad {
                        self.annos.warn(format!(
                            "quantile value should be between 0 and 1, got {}",
                            go_g(b)
                        ));
                    }
                }
                let mut members: Vec<Vec<usize>> = vec![Vec::new(); first_of_group.len()];
                for (si, &g) in series_group.iter().enumerate() {
                    members[g].push(si);
                }
                let out: Vec<VSeries> = members
                    .par_iter()
                    .zip(first_of_group.par_iter())
                    .map(|(m, &first)| {
                        aggregate_group(op, param.as_deref(), &input, m, &grouping, first, n)
                    })
                    .collect();
                Ok(Val::Vector(
                    out.into_iter().filter(|s| !s.is_empty()).collect(),
                ))
            }
        }
    }

    fn aggregate_k(
        &mut self,
        op: AggOp,
        param: &[f64],
        input: Vec<VSeries>,
        series_group: &[usize],
        ngroups: usize,
        n: usize,
    ) -> Result<Vec<VSeries>> {
        // NaN propagates through max and min, as Go's math.Max/Min do.
        let max = param.iter().copied().fold(f64::NEG_INFINITY, |a, b| {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.max(b)
            }
        });
        let min = param.iter().copied().fold(f64::INFINITY, |a, b| {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.min(b)
            }
        });
        let has_nan = param.iter().any(|x| x.is_nan());
        if op == AggOp::LimitRatio {
            if max == 0.0 && min == 0.0 {
                return Ok(Vec::new());
            }
            if has_nan {
                return Err(exec_err("Ratio value is NaN"));
            }
            if max > 1.0 {
                self.annos.warn(format!(
                    "ratio value should be between -1 and 1, got {}, capping to 1",
                    go_g(max)
                ));
            }
            if min < -1.0 {
                self.annos.warn(format!(
                    "ratio value should be between -1 and 1, got {}, capping to -1",
                    go_g(min)
                ));
            }
        } else {
            if max < 1.0 {
                return Ok(Vec::new());
            }
            if has_nan {
                return Err(exec_err("Parameter value is NaN"));
            }
            if min <= -9223372036854775808.0 {
                return Err(exec_err(format!(
                    "Scalar value {} underflows int64",
                    go_g(min)
                )));
            }
            if max >= 9223372036854774784.0 {
                return Err(exec_err(format!(
                    "Scalar value {} overflows int64",
                    go_g(max)
                )));
            }
        }
        let offsets: Vec<f64> = if op == AggOp::LimitRatio {
            input.iter().map(|s| ratio_offset(&s.labels)).collect()
        } else {
            Vec::new()
        };
        // Output series are created only for inputs that get selected at some step.
        const NONE: usize = usize::MAX;
        let mut out_of: Vec<usize> = vec![NONE; input.len()];
        let mut out: Vec<VSeries> = Vec::new();
        // Instant queries return each group's selection in its final order.
        let mut order: Vec<usize> = Vec::new();
        let mut heaps: Vec<Vec<(f64, usize)>> = vec![Vec::new(); ngroups];
        for i in 0..n {
            for h in &mut heaps {
                h.clear();
            }
            let fp = param[i];
            let (k, r) = match op {
                AggOp::LimitRatio => (0usize, fp.clamp(-1.0, 1.0)),
                _ => {
                    let k = (fp as i64).min(input.len() as i64);
                    if k < 1 {
                        continue;
                    }
                    (k as usize, 0.0)
                }
            };
            if op == AggOp::LimitRatio && fp == 0.0 {
                continue;
            }
            for (si, s) in input.iter().enumerate() {
                if !s.ok[i] {
                    continue;
                }
                let v = s.v[i];
                let h = &mut heaps[series_group[si]];
                match op {
                    AggOp::Topk => {
                        if h.len() < k {
                            heap_push(h, (v, si), less_topk);
                        } else if h[0].0 < v || (h[0].0.is_nan() && !v.is_nan()) {
                            h[0] = (v, si);
                            if k > 1 {
                                heap_fix0(h, less_topk);
                            }
                        }
                    }
                    AggOp::Bottomk => {
                        if h.len() < k {
                            heap_push(h, (v, si), less_bottomk);
                        } else if h[0].0 > v || (h[0].0.is_nan() && !v.is_nan()) {
                            h[0] = (v, si);
                            if k > 1 {
                                heap_fix0(h, less_bottomk);
                            }
                        }
                    }
                    AggOp::Limitk => {
                        if h.len() < k {
                            heap_push(h, (v, si), less_topk);
                        }
                    }
                    _ => {
                        let off = offsets[si];
                        if (r >= 0.0 && off < r) || (r < 0.0 && off >= 1.0 + r) {
                            heap_push(h, (v, si), less_topk);
                        }
                    }
                }
            }
            for h in &mut heaps {
                match op {
                    AggOp::Topk => go_sort(h, |a, b| less_topk(b, a)),
                    AggOp::Bottomk => go_sort(h, |a, b| less_bottomk(b, a)),
                    _ => {}
                }
                for &(v, si) in h.iter() {
                    if out_of[si] == NONE {
                        out_of[si] = out.len();
                        out.push(VSeries::new(
                            input[si].labels.clone(),
                            input[si].drop_name,
                            n,
                        ));
                    }
                    out[out_of[si]].set(i, v);
                    if n == 1 {
                        order.push(out_of[si]);
                    }
                }
            }
        }
        if n == 1 {
            let mut taken: Vec<Option<VSeries>> = out.into_iter().map(Some).collect();
            return Ok(order.into_iter().filter_map(|k| taken[k].take()).collect());
        }
        Ok(out.into_iter().filter(|s| !s.is_empty()).collect())
    }
}

fn less_topk(a: &(f64, usize), b: &(f64, usize)) -> bool {
    a.0.is_nan() || a.0 < b.0
}

fn less_bottomk(a: &(f64, usize), b: &(f64, usize)) -> bool {
    a.0.is_nan() || a.0 > b.0
}

/// `container/heap.Push`.
fn heap_push<T: Copy>(h: &mut Vec<T>, x: T, less: fn(&T, &T) -> bool) {
    h.push(x);
    let mut j = h.len() - 1;
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

/// `container/heap.Fix(h, 0)`.
fn heap_fix0<T: Copy>(h: &mut [T], less: fn(&T, &T) -> bool) {
    let n = h.len();
    let mut i = 0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && less(&h[j2], &h[j1]) {
            j = j2;
        }
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

/// Go's `sort.Sort` as far as observable order goes: insertion sort (stable) for up to 12
/// elements, which is what Go uses for such short inputs; a stable sort beyond.
pub(crate) fn go_sort<T>(h: &mut [T], less: impl Fn(&T, &T) -> bool) {
    if h.len() <= 12 {
        for i in 1..h.len() {
            let mut j = i;
            while j > 0 && less(&h[j], &h[j - 1]) {
                h.swap(j, j - 1);
                j -= 1;
            }
        }
    } else {
        h.sort_by(|a, b| {
            if less(a, b) {
                std::cmp::Ordering::Less
            } else if less(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
    }
}

/// `limit_ratio`'s deterministic sampling offset of a series: its labels' hash over the
/// maximum u64 (Prometheus' `HashRatioSampler`).
fn ratio_offset(l: &Labels) -> f64 {
    let mut b = Vec::new();
    for label in l {
        b.extend_from_slice(label.name.as_bytes());
        b.push(0xff);
        b.extend_from_slice(label.value.as_bytes());
        b.push(0xff);
    }
    crate::eval::funcs::xxhash64(&b) as f64 / u64::MAX as f64
}

/// Aggregates one group (its member series in input order) over all steps.
fn aggregate_group(
    op: AggOp,
    param: Option<&[f64]>,
    input: &[VSeries],
    members: &[usize],
    grouping: &Grouping,
    first: usize,
    n: usize,
) -> VSeries {
    let mut out = VSeries::new(grouping.group_labels(&input[first].labels), false, n);
    let mut c = vec![
        0.0f64;
        if matches!(op, AggOp::Sum | AggOp::Avg) {
            n
        } else {
            0
        }
    ];
    let need_mean = matches!(op, AggOp::Avg | AggOp::Stddev | AggOp::Stdvar);
    let mut mean = vec![0.0f64; if need_mean { n } else { 0 }];
    let mut count = vec![0.0f64; n];
    let mut incremental = vec![false; if op == AggOp::Avg { n } else { 0 }];
    let mut values: Vec<Vec<f64>> = if op == AggOp::Quantile {
        vec![Vec::new(); n]
    } else {
        Vec::new()
    };
    for &si in members {
        let s = &input[si];
        if s.drop_name {
            out.drop_name = true;
        }
        for i in 0..n {
            if !s.ok[i] {
                continue;
            }
            let f = s.v[i];
            if !out.ok[i] {
                out.ok[i] = true;
                count[i] = 1.0;
                out.v[i] = f;
                if need_mean {
                    mean[i] = f;
                }
                match op {
                    AggOp::Stddev | AggOp::Stdvar => {
                        out.v[i] = if f.is_nan() || f.is_infinite() {
                            f64::NAN
                        } else {
                            0.0
                        };
                    }
                    AggOp::Quantile => values[i].push(f),
                    AggOp::Group => out.v[i] = 1.0,
                    _ => {}
                }
                continue;
            }
            match op {
                AggOp::Sum => {
                    let (t, cc) = kahan::inc(f, out.v[i], c[i]);
                    out.v[i] = t;
                    c[i] = cc;
                }
                AggOp::Avg => {
                    count[i] += 1.0;
                    let cnt = count[i];
                    if !incremental[i] {
                        let (t, cc) = kahan::inc(f, out.v[i], c[i]);
                        if !t.is_infinite() {
                            out.v[i] = t;
                            c[i] = cc;
                            continue;
                        }
                        incremental[i] = true;
                        mean[i] = out.v[i] / (cnt - 1.0);
                        c[i] /= cnt - 1.0;
                    }
                    let q = (cnt - 1.0) / cnt;
                    let (t, cc) = kahan::inc(f / cnt, q * mean[i], q * c[i]);
                    mean[i] = t;
                    c[i] = cc;
                }
                AggOp::Count => count[i] += 1.0,
                AggOp::Min if out.v[i] > f || out.v[i].is_nan() => out.v[i] = f,
                AggOp::Max if out.v[i] < f || out.v[i].is_nan() => out.v[i] = f,
                AggOp::Stddev | AggOp::Stdvar => {
                    count[i] += 1.0;
                    let delta = f - mean[i];
                    mean[i] += delta / count[i];
                    out.v[i] += delta * (f - mean[i]);
                }
                AggOp::Quantile => values[i].push(f),
                _ => {}
            }
        }
    }
    for i in 0..n {
        if !out.ok[i] {
            continue;
        }
        out.v[i] = match op {
            AggOp::Sum => out.v[i] + c[i],
            AggOp::Avg => {
                if incremental[i] {
                    mean[i] + c[i]
                } else {
                    out.v[i] / count[i] + c[i] / count[i]
                }
            }
            AggOp::Count => count[i],
            AggOp::Stdvar => out.v[i] / count[i],
            AggOp::Stddev => (out.v[i] / count[i]).sqrt(),
            AggOp::Quantile => {
                quantile(param.expect("quantile has a parameter")[i], &mut values[i])
            }
            _ => out.v[i],
        };
    }
    out
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as in Prometheus' vectorByValueHeap.
    values.sort_by(|a, b| {
        if a.is_nan() && b.is_nan() {
            std::cmp::Ordering::Equal
        } else if a.is_nan() {
            std::cmp::Ordering::Less
        } else if b.is_nan() {
            std::cmp::Ordering::Greater
        } else {
            a.partial_cmp(b).expect("not NaN")
        }
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `count_values`: one output series per group and distinct value.
fn count_values(
    grouping: &Grouping,
    value_label: &str,
    input: Vec<VSeries>,
    n: usize,
) -> Result<Vec<VSeries>> {
    let mut grouping_with_value = Grouping {
        without: grouping.without,
        labels: grouping.labels.clone(),
    };
    if !grouping.without {
        grouping_with_value.labels.push(value_label.to_string());
        grouping_with_value.labels.sort();
        grouping_with_value.labels.dedup();
    }
    let mut out: Vec<VSeries> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for i in 0..n {
        let mut step_counts: Vec<(usize, f64)> = Vec::new();
        let mut step_index: HashMap<usize, usize> = HashMap::new();
        for s in &input {
            if !s.ok[i] {
                continue;
            }
            let mut b = s.labels.builder();
            b.set(value_label.to_string(), format::float_f(s.v[i]));
            let metric = b.build();
            let labels = grouping_with_value.group_labels(&metric);
            let next = out.len();
            let k = *index.entry(labels.clone()).or_insert_with(|| next);
            if k == out.len() {
                out.push(VSeries::new(labels, false, n));
            }
            match step_index.get(&k) {
                Some(&j) => step_counts[j].1 += 1.0,
                None => {
                    step_index.insert(k, step_counts.len());
                    step_counts.push((k, 1.0));
                }
            }
        }
        for (k, c) in step_counts {
            out[k].set(i, c);
        }
    }
    merge_same_labels(out)
}
