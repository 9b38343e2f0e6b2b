//! `histogram_quantile` and `histogram_fraction` over classic histograms (`le` buckets).

use std::collections::HashMap;

use strata_model::Labels;
use strata_model::labels::METRIC_NAME;

use super::aggr::go_g;
use super::{Evaluator, VSeries, merge_same_labels};
use crate::error::Result;

/// One classic bucket: upper bound and cumulative count.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    upper: f64,
    count: f64,
}

/// Go's `strconv.ParseFloat` for the bucket bounds that occur in practice.
fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim_start_matches('+');
    match t.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if s.is_empty() || s.contains('_') {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Prometheus' `almost.Equal`.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

fn sort_and_coalesce(buckets: &mut Vec<Bucket>) {
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => out.push(*b),
        }
    }
    *buckets = out;
}

/// The φ-quantile of classic buckets, and whether monotonicity had to be forced.
fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return (f64::NAN, false);
    }
    sort_and_coalesce(buckets);
    // Ignore tiny float noise between neighbours, and remove decreases.
    let mut forced = false;
    let mut prev = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) {
            b.count = prev;
            continue;
        }
        if curr < prev {
            b.count = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    if buckets.len() < 2 {
        return (f64::NAN, false);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, false);
    }
    let mut rank = q * observations;
    let last = buckets.len() - 1;
    let b = buckets[..last].partition_point(|x| x.count < rank);
    if b == last {
        return (buckets[last - 1].upper, forced);
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return (buckets[0].upper, forced);
    }
    let (mut start, end, mut count) = (0.0, buckets[b].upper, buckets[b].count);
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

/// The fraction of observations between `lower` and `upper`.
fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return f64::NAN;
    }
    sort_and_coalesce(buckets);
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, b) in buckets.iter().enumerate() {
        let lb = if i == 0 {
            if b.upper > 0.0 {
                0.0
            } else {
                f64::NEG_INFINITY
            }
        } else {
            buckets[i - 1].upper
        };
        let ub = b.upper;
        // Inside a bucket of infinite width there is nothing to interpolate: a bound
        // there counts as the bucket's finite edge.
        let at = |v: f64| -> f64 {
            if lb == f64::NEG_INFINITY {
                b.count
            } else if ub == f64::INFINITY {
                rank
            } else {
                rank + (b.count - rank) * (v - lb) / (ub - lb)
            }
        };
        if !lower_set && lb >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lb >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lb < lower && ub > lower {
            lower_rank = at(lower);
            lower_set = true;
        }
        if !upper_set && lb < upper && ub > upper {
            upper_rank = at(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// Buckets grouped per histogram at one step: group index → buckets.
struct Grouped {
    /// Output labels (without `le` and the metric name) per group.
    labels: Vec<Labels>,
    /// Member series and their bucket bound, per group.
    members: Vec<Vec<(usize, f64)>>,
}

impl Evaluator<'_> {
    fn group_buckets(&mut self, v: &[VSeries]) -> Grouped {
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut g = Grouped {
            labels: Vec::new(),
            members: Vec::new(),
        };
        for (si, s) in v.iter().enumerate() {
            let le = s.labels.get("le").unwrap_or("");
            let Some(upper) = parse_go_float(le) else {
                let name = if self.opts.delayed_name_removal {
                    s.labels.get(METRIC_NAME).unwrap_or("")
                } else {
                    ""
                };
                if !s.is_empty() {
                    self.annos.warn(format!(
                        "bucket label \"le\" is missing or has a malformed value of {le:?} for \
                         metric name {name:?}"
                    ));
                }
                continue;
            };
            let mut b = s.labels.builder();
            b.remove("le");
            let sig = b.build();
            let next = index.len();
            let k = *index.entry(sig.clone()).or_insert(next);
            if k == g.labels.len() {
                let mut out = sig.builder();
                out.remove(METRIC_NAME);
                g.labels.push(out.build());
                g.members.push(Vec::new());
            }
            g.members[k].push((si, upper));
        }
        g
    }

    pub(crate) fn histogram_quantile(
        &mut self,
        q: &[f64],
        v: Vec<VSeries>,
        n: usize,
    ) -> Result<Vec<VSeries>> {
        let mut bad = std::collections::BTreeSet::new();
        let g = self.group_buckets(&v);
        let mut out: Vec<VSeries> = g
            .labels
            .iter()
            .map(|l| VSeries::new(l.clone(), true, n))
            .collect();
        let mut buckets = Vec::new();
        let mut forced_any = false;
        for i in 0..n {
            let qi = q[i];
            if qi.is_nan() || !(0.0..=1.0).contains(&qi) {
                bad.insert(go_g(qi));
            }
            for (k, members) in g.members.iter().enumerate() {
                buckets.clear();
                for &(si, upper) in members {
                    if let Some(c) = v[si].get(i) {
                        buckets.push(Bucket { upper, count: c });
                    }
                }
                if buckets.is_empty() {
                    continue;
                }
                let (val, forced) = bucket_quantile(qi, &mut buckets);
                forced_any |= forced;
                out[k].set(i, val);
            }
        }
        for b in bad {
            self.annos
                .warn(format!("quantile value should be between 0 and 1, got {b}"));
        }
        if forced_any {
            self.annos.info(
                "input to histogram_quantile needed to be fixed for monotonicity (see \
                 https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) \
                 for metric name \"\"",
            );
        }
        merge_same_labels(out)
    }

    pub(crate) fn histogram_fraction(
        &mut self,
        lower: &[f64],
        upper: &[f64],
        v: Vec<VSeries>,
        n: usize,
    ) -> Result<Vec<VSeries>> {
        let g = self.group_buckets(&v);
        let mut out: Vec<VSeries> = g
            .labels
            .iter()
            .map(|l| VSeries::new(l.clone(), true, n))
            .collect();
        let mut buckets = Vec::new();
        for i in 0..n {
            for (k, members) in g.members.iter().enumerate() {
                buckets.clear();
                for &(si, up) in members {
                    if let Some(c) = v[si].get(i) {
                        buckets.push(Bucket {
                            upper: up,
                            count: c,
                        });
                    }
                }
                if buckets.is_empty() {
                    continue;
                }
                out[k].set(i, bucket_fraction(lower[i], upper[i], &mut buckets));
            }
        }
        merge_same_labels(out)
    }
}
