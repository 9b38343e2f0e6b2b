//! Functions over instant vectors and scalars, and the dispatch of every function call.

use promql_parser::parser::{Call, Expr, VectorSelector};
use strata_model::Labels;
use strata_model::labels::METRIC_NAME;

use super::aggr::go_sort;
use super::rangefn::{RangeFn, absent_labels};
use super::{Evaluator, Steps, VSeries, Val, drop_metric_labels, merge_same_labels};
use crate::error::{Error, Result, exec_err};

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

fn string_arg(e: &Expr) -> Result<String> {
    match unwrap_parens(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => Err(Error::BadQuery("expected a string literal argument".into())),
    }
}

/// Go's `math.Max`: NaN wins, except that +Inf wins over everything.
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_positive() { a } else { b }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`: NaN wins, except that -Inf wins over everything.
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

fn simple_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

impl Evaluator<'_> {
    /// Drops the metric name now, or marks it for dropping at the end (delayed removal).
    fn drop_name(&self, s: &mut VSeries) {
        if !self.opts.delayed_name_removal {
            s.labels = drop_metric_labels(&s.labels);
        }
        s.drop_name = true;
    }

    pub(crate) fn eval_call(&mut self, call: &Call, steps: Steps) -> Result<Val> {
        let name = call.func.name;
        let args = &call.args.args;
        if let Some(i) = args.iter().position(|a| {
            matches!(
                unwrap_parens(a),
                Expr::MatrixSelector(_) | Expr::Subquery(_)
            )
        }) {
            let f = RangeFn::parse(name)
                .ok_or_else(|| Error::BadQuery(format!("function {name:?} is not supported")))?;
            return self.eval_range_call(f, call, i, steps);
        }
        let n = steps.len();
        match name {
            "time" => Ok(Val::Scalar(
                (0..n).map(|i| steps.t(i) as f64 / 1000.0).collect(),
            )),
            "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; n])),
            "vector" => {
                let s = self.eval_scalar(&args[0], steps)?;
                let mut out = VSeries::new(Labels::empty(), false, n);
                for (i, v) in s.into_iter().enumerate() {
                    out.set(i, v);
                }
                Ok(Val::Vector(vec![out]))
            }
            "scalar" => {
                self.set_hints(Some(name.into()), None);
                let v = self.eval_vector(&args[0], steps)?;
                Ok(Val::Scalar(
                    (0..n)
                        .map(|i| {
                            let mut it = v.iter().filter_map(|s| s.get(i));
                            match (it.next(), it.next()) {
                                (Some(x), None) => x,
                                _ => f64::NAN,
                            }
                        })
                        .collect(),
                ))
            }
            "label_replace" => self.label_replace(args, steps),
            "label_join" => self.label_join(args, steps),
            "absent" => {
                self.set_hints(Some(name.into()), None);
                let v = self.eval_vector(&args[0], steps)?;
                let mut out = VSeries::new(absent_labels(&args[0])?, false, n);
                for i in 0..n {
                    if !v.iter().any(|s| s.ok[i]) {
                        out.set(i, 1.0);
                    }
                }
                Ok(Val::Vector(if out.is_empty() {
                    Vec::new()
                } else {
                    vec![out]
                }))
            }
            "timestamp" => {
                let mut v = match unwrap_parens(&args[0]) {
                    Expr::VectorSelector(vs) => {
                        // With `@`, Prometheus looks at the `@` time itself, ignoring
                        // `offset`.
                        let sel;
                        let vs: &VectorSelector = if vs.at.is_some() {
                            sel = VectorSelector {
                                offset: None,
                                ..vs.clone()
                            };
                            &sel
                        } else {
                            vs
                        };
                        self.eval_vector_selector(vs, steps, Some(name.into()), None, true)?
                    }
                    other => {
                        let mut v = self.eval_vector(other, steps)?;
                        for s in &mut v {
                            for i in 0..n {
                                if s.ok[i] {
                                    s.v[i] = steps.t(i) as f64 / 1000.0;
                                }
                            }
                        }
                        v
                    }
                };
                for s in &mut v {
                    self.drop_name(s);
                }
                merge_same_labels(v).map(Val::Vector)
            }
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
                let mut v = self.eval_vector(&args[0], steps)?;
                if !steps.is_instant() {
                    self.annos.warn(
                        "sort is ineffective for range queries since results are always \
                         ordered by labels",
                    );
                    return Ok(Val::Vector(v));
                }
                v.retain(|s| s.ok[0]);
                match name {
                    "sort" => go_sort(&mut v, |a, b| b.v[0].is_nan() || a.v[0] < b.v[0]),
                    "sort_desc" => go_sort(&mut v, |a, b| b.v[0].is_nan() || a.v[0] > b.v[0]),
                    _ => {
                        let labels: Vec<String> = args[1..]
                            .iter()
                            .map(|a| string_arg(a))
                            .collect::<Result<_>>()?;
                        let desc = name == "sort_by_label_desc";
                        v.sort_by(|a, b| {
                            let ord = label_order(&a.labels, &b.labels, &labels);
                            if desc { ord.reverse() } else { ord }
                        });
                    }
                }
                Ok(Val::Vector(v))
            }
            "histogram_quantile" => {
                let q = self.eval_scalar(&args[0], steps)?;
                self.set_hints(Some(name.into()), None);
                let v = self.eval_vector(&args[1], steps)?;
                self.histogram_quantile(&q, v, n).map(Val::Vector)
            }
            "histogram_fraction" => {
                let lower = self.eval_scalar(&args[0], steps)?;
                let upper = self.eval_scalar(&args[1], steps)?;
                self.set_hints(Some(name.into()), None);
                let v = self.eval_vector(&args[2], steps)?;
                self.histogram_fraction(&lower, &upper, v, n)
                    .map(Val::Vector)
            }
            "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
            | "histogram_stdvar" => {
                // These read native histograms only; float samples give no output.
                self.set_hints(Some(name.into()), None);
                let _ = self.eval_vector(&args[0], steps)?;
                Ok(Val::Vector(Vec::new()))
            }
            "round" | "clamp" | "clamp_max" | "clamp_min" => {
                self.set_hints(Some(name.into()), None);
                let mut v = self.eval_vector(&args[0], steps)?;
                let p: Vec<Vec<f64>> = args[1..]
                    .iter()
                    .map(|a| self.eval_scalar(a, steps))
                    .collect::<Result<_>>()?;
                for s in &mut v {
                    for i in 0..n {
                        if !s.ok[i] {
                            continue;
                        }
                        let x = s.v[i];
                        let (lo, hi) = match name {
                            "clamp" => (p[0][i], p[1][i]),
                            "clamp_max" => (f64::NEG_INFINITY, p[0][i]),
                            "clamp_min" => (p[0][i], f64::INFINITY),
                            _ => (0.0, 0.0),
                        };
                        if name == "round" {
                            let to_nearest = p.first().map_or(1.0, |p| p[i]);
                            let inv = 1.0 / to_nearest;
                            s.v[i] = (x * inv + 0.5).floor() / inv;
                        } else if hi < lo {
                            s.ok[i] = false;
                        } else {
                            s.v[i] = go_max(lo, go_min(hi, x));
                        }
                    }
                    self.drop_name(s);
                }
                merge_same_labels(v).map(Val::Vector)
            }
            "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour"
            | "minute" | "month" | "year" => {
                let f = date_fn(name);
                if args.is_empty() {
                    let mut out = VSeries::new(Labels::empty(), false, n);
                    for i in 0..n {
                        out.set(i, f(steps.t(i).div_euclid(1000)));
                    }
                    return Ok(Val::Vector(vec![out]));
                }
                self.set_hints(Some(name.into()), None);
                let mut v = self.eval_vector(&args[0], steps)?;
                for s in &mut v {
                    for i in 0..n {
                        if s.ok[i] {
                            s.v[i] = f(go_int64(s.v[i]));
                        }
                    }
                    self.drop_name(s);
                }
                merge_same_labels(v).map(Val::Vector)
            }
            "start" => Ok(Val::Scalar(vec![self.query_start as f64 / 1000.0; n])),
            "end" => Ok(Val::Scalar(vec![self.query_end as f64 / 1000.0; n])),
            "range" => Ok(Val::Scalar(vec![
                (self.query_end - self.query_start) as f64
                    / 1000.0;
                n
            ])),
            "step" => Ok(Val::Scalar(vec![self.query_step as f64 / 1000.0; n])),
            "min_of" | "max_of" => {
                let a = self.eval_scalar(&args[0], steps)?;
                let b = self.eval_scalar(&args[1], steps)?;
                let f = if name == "min_of" { go_min } else { go_max };
                Ok(Val::Scalar(
                    a.iter().zip(&b).map(|(x, y)| f(*x, *y)).collect(),
                ))
            }
            "histogram_quantiles" => {
                self.set_hints(Some(name.into()), None);
                let v = self.eval_vector(&args[0], steps)?;
                let label = string_arg(&args[1])?;
                let mut out = Vec::new();
                for a in &args[2..] {
                    let q = self.eval_scalar(a, steps)?;
                    let qs = {
                        let mut s = super::aggr::go_g(q[0]);
                        if !s.contains(['e', '.']) && !q[0].is_nan() && !q[0].is_infinite() {
                            s.push_str(".0");
                        }
                        s
                    };
                    for mut s in self.histogram_quantile(&q, v.clone(), n)? {
                        let mut b = s.labels.builder();
                        b.set(label.clone(), qs.clone());
                        s.labels = b.build();
                        out.push(s);
                    }
                }
                merge_same_labels(out).map(Val::Vector)
            }
            "info" | "integral" | "start_timestamp" => Err(Error::BadQuery(format!(
                "function {name:?} is experimental and not supported"
            ))),
            _ => {
                let Some(f) = simple_fn(name) else {
                    return Err(Error::BadQuery(format!(
                        "function {name:?} is not supported"
                    )));
                };
                self.set_hints(Some(name.into()), None);
                let mut v = self.eval_vector(&args[0], steps)?;
                for s in &mut v {
                    for i in 0..n {
                        if s.ok[i] {
                            s.v[i] = f(s.v[i]);
                        }
                    }
                    self.drop_name(s);
                }
                merge_same_labels(v).map(Val::Vector)
            }
        }
    }

    fn label_replace(&mut self, args: &[Box<Expr>], steps: Steps) -> Result<Val> {
        let dst = string_arg(&args[1])?;
        let repl = string_arg(&args[2])?;
        let src = string_arg(&args[3])?;
        let re_str = string_arg(&args[4])?;
        let re = regex::Regex::new(&format!("^(?s:{re_str})$")).map_err(|_| {
            exec_err(format!(
                "invalid regular expression in label_replace(): {re_str}"
            ))
        })?;
        if dst.is_empty() {
            return Err(exec_err(format!(
                "invalid destination label name in label_replace(): {dst}"
            )));
        }
        let mut v = self.eval_vector(&args[0], steps)?;
        for s in &mut v {
            let src_val = s.labels.get(&src).unwrap_or("").to_string();
            if let Some(caps) = re.captures(&src_val) {
                let mut res = String::new();
                caps.expand(&repl, &mut res);
                let mut b = s.labels.builder();
                b.set(dst.clone(), res);
                s.labels = b.build();
                if dst == METRIC_NAME {
                    s.drop_name = false;
                }
            }
        }
        merge_same_labels(v).map(Val::Vector)
    }

    fn label_join(&mut self, args: &[Box<Expr>], steps: Steps) -> Result<Val> {
        let dst = string_arg(&args[1])?;
        let sep = string_arg(&args[2])?;
        let mut srcs = Vec::new();
        for a in &args[3..] {
            let s = string_arg(a)?;
            if s.is_empty() {
                return Err(exec_err(format!(
                    "invalid source label name in label_join(): {s}"
                )));
            }
            srcs.push(s);
        }
        if dst.is_empty() {
            return Err(exec_err(format!(
                "invalid destination label name in label_join(): {dst}"
            )));
        }
        let mut v = self.eval_vector(&args[0], steps)?;
        for s in &mut v {
            let joined = srcs
                .iter()
                .map(|l| s.labels.get(l).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(&sep);
            let mut b = s.labels.builder();
            b.set(dst.clone(), joined);
            s.labels = b.build();
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
        }
        merge_same_labels(v).map(Val::Vector)
    }
}

/// `sort_by_label` order: natural order of the listed labels, then the full label sets.
fn label_order(a: &Labels, b: &Labels, names: &[String]) -> std::cmp::Ordering {
    for l in names {
        let (x, y) = (a.get(l).unwrap_or(""), b.get(l).unwrap_or(""));
        if x == y {
            continue;
        }
        return if natural_less(x, y) {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        };
    }
    a.cmp(b)
}

/// Splits a string into runs of digits and runs of non-digits.
fn chunks(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut start = 0;
    for i in 1..=b.len() {
        if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
            if start < i {
                out.push(&s[start..i]);
            }
            start = i;
        }
    }
    out
}

/// Natural ordering ("a2" before "a10"), as the `natsort` package Prometheus uses defines
/// it.
fn natural_less(a: &str, b: &str) -> bool {
    let (ca, cb) = (chunks(a), chunks(b));
    for (i, x) in ca.iter().enumerate() {
        if i >= cb.len() {
            return false;
        }
        let y = cb[i];
        match (x.parse::<i64>(), y.parse::<i64>()) {
            (Ok(xi), Ok(yi)) => {
                if xi == yi {
                    if i == ca.len() - 1 {
                        return true;
                    } else if i == cb.len() - 1 {
                        return false;
                    }
                    continue;
                }
                return xi < yi;
            }
            _ => {
                if *x == y {
                    if i == ca.len() - 1 {
                        return true;
                    } else if i == cb.len() - 1 {
                        return false;
                    }
                    continue;
                }
                return *x < y;
            }
        }
    }
    false
}

/// Go's `int64(f)` on amd64: truncation, and the minimum int64 for NaN and out-of-range
/// values.
fn go_int64(f: f64) -> i64 {
    if f.is_nan() || !(-9.223372036854776e18..9.223372036854776e18).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// Civil date (year, month 1-12, day 1-31) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
    }
}

fn date_fn(name: &str) -> fn(i64) -> f64 {
    match name {
        "days_in_month" => |s| {
            let (y, m, _) = civil_from_days(s.div_euclid(86_400));
            days_in(y, m) as f64
        },
        "day_of_month" => |s| civil_from_days(s.div_euclid(86_400)).2 as f64,
        "day_of_week" => |s| (s.div_euclid(86_400) + 4).rem_euclid(7) as f64,
        "day_of_year" => |s| {
            let (y, m, d) = civil_from_days(s.div_euclid(86_400));
            ((1..m).map(|mm| days_in(y, mm)).sum::<u32>() + d) as f64
        },
        "hour" => |s| (s.rem_euclid(86_400) / 3600) as f64,
        "minute" => |s| (s.rem_euclid(3600) / 60) as f64,
        "month" => |s| civil_from_days(s.div_euclid(86_400)).1 as f64,
        _ => |s| civil_from_days(s.div_euclid(86_400)).0 as f64,
    }
}

/// XXH64 with seed 0: the hash Prometheus' `labels.Hash` uses, needed to reproduce
/// `limit_ratio`'s sampling.
pub(crate) fn xxhash64(input: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;
    fn round(acc: u64, lane: u64) -> u64 {
        acc.wrapping_add(lane.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1)
    }
    fn merge(acc: u64, v: u64) -> u64 {
        (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
    }
    let read64 = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let read32 = |b: &[u8]| u64::from(u32::from_le_bytes(b[..4].try_into().expect("4 bytes")));
    let len = input.len();
    let mut p = input;
    let mut h: u64;
    if len >= 32 {
        let mut v1 = P1.wrapping_add(P2);
        let mut v2 = P2;
        let mut v3 = 0u64;
        let mut v4 = 0u64.wrapping_sub(P1);
        while p.len() >= 32 {
            v1 = round(v1, read64(&p[0..]));
            v2 = round(v2, read64(&p[8..]));
            v3 = round(v3, read64(&p[16..]));
            v4 = round(v4, read64(&p[24..]));
            p = &p[32..];
        }
        h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        h = merge(h, v1);
        h = merge(h, v2);
        h = merge(h, v3);
        h = merge(h, v4);
    } else {
        h = P5;
    }
    h = h.wrapping_add(len as u64);
    while p.len() >= 8 {
        h ^= round(0, read64(p));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        p = &p[8..];
    }
    if p.len() >= 4 {
        h ^= read32(p).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        p = &p[4..];
    }
    for &b in p {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^= h >> 32;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxhash_vectors() {
        assert_eq!(xxhash64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash64(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxhash64(b"abc"), 0x44BC_2CF5_AD77_0999);
        assert_eq!(
            xxhash64(b"Nobody inspects the spammish repetition"),
            0xFBCE_A83C_8A37_8BF1
        );
    }

    #[test]
    fn natural_order() {
        assert!(natural_less("a2", "a10"));
        assert!(!natural_less("a10", "a2"));
        assert!(natural_less("abc", "abd"));
    }

    #[test]
    fn dates() {
        // 2020-02-29T13:45:00Z
        let s = 1_582_983_900;
        assert_eq!(date_fn("year")(s), 2020.0);
        assert_eq!(date_fn("month")(s), 2.0);
        assert_eq!(date_fn("day_of_month")(s), 29.0);
        assert_eq!(date_fn("days_in_month")(s), 29.0);
        assert_eq!(date_fn("day_of_year")(s), 60.0);
        assert_eq!(date_fn("hour")(s), 13.0);
        assert_eq!(date_fn("minute")(s), 45.0);
        assert_eq!(date_fn("day_of_week")(s), 6.0);
    }
}
