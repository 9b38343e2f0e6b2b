//! Binary operators: arithmetic, comparisons (filtering or `bool`), `atan2`, and the set
//! operators, with vector matching (`on`, `ignoring`, `group_left`, `group_right`).
//!
//! Matching signatures are computed once per series, turned into dense ordinals, and each
//! step is then array indexing. When every signature is unique on both sides (the common
//! case) the pairing is fixed for all steps and computed once.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use strata_model::labels::METRIC_NAME;
use strata_model::{Labels, LabelsBuilder};

use super::{Evaluator, Steps, VSeries, Val, drop_metric_labels, merge_same_labels};
use crate::error::{Error, Result, exec_err};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eql,
    Neq,
    Gtr,
    Lss,
    Gte,
    Lte,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub(crate) fn parse(s: &str) -> Result<BinOp> {
        Ok(match s {
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Mod,
            "^" => BinOp::Pow,
            "atan2" => BinOp::Atan2,
            "==" => BinOp::Eql,
            "!=" => BinOp::Neq,
            ">" => BinOp::Gtr,
            "<" => BinOp::Lss,
            ">=" => BinOp::Gte,
            "<=" => BinOp::Lte,
            "and" => BinOp::And,
            "or" => BinOp::Or,
            "unless" => BinOp::Unless,
            other => {
                return Err(Error::BadQuery(format!(
                    "unsupported binary operator {other:?}"
                )));
            }
        })
    }

    fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eql | BinOp::Neq | BinOp::Gtr | BinOp::Lss | BinOp::Gte | BinOp::Lte
        )
    }

    /// Operators that change what a metric means, so its name (and type, unit) goes.
    fn changes_metric_schema(self) -> bool {
        matches!(
            self,
            BinOp::Add
                | BinOp::Sub
                | BinOp::Mul
                | BinOp::Div
                | BinOp::Pow
                | BinOp::Mod
                | BinOp::Atan2
        )
    }
}

/// `lhs op rhs` for floats: the value and whether a comparison keeps the element.
#[inline]
pub(crate) fn apply(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Mod => (l % r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Atan2 => (l.atan2(r), true),
        BinOp::Eql => (l, l == r),
        BinOp::Neq => (l, l != r),
        BinOp::Gtr => (l, l > r),
        BinOp::Lss => (l, l < r),
        BinOp::Gte => (l, l >= r),
        BinOp::Lte => (l, l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => (f64::NAN, false),
    }
}

/// The matching parameters of a vector-vector operation.
struct Matching {
    on: bool,
    labels: Vec<String>,
    card: Card,
    include: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

impl Matching {
    fn from_expr(b: &BinaryExpr) -> Matching {
        let mut m = Matching {
            on: false,
            labels: Vec::new(),
            card: Card::OneToOne,
            include: Vec::new(),
        };
        if let Some(modifier) = &b.modifier {
            match &modifier.matching {
                Some(LabelModifier::Include(l)) => {
                    m.on = true;
                    m.labels = l.labels.clone();
                }
                Some(LabelModifier::Exclude(l)) => m.labels = l.labels.clone(),
                None => {}
            }
            match &modifier.card {
                VectorMatchCardinality::ManyToOne(l) => {
                    m.card = Card::ManyToOne;
                    m.include = l.labels.clone();
                }
                VectorMatchCardinality::OneToMany(l) => {
                    m.card = Card::OneToMany;
                    m.include = l.labels.clone();
                }
                _ => {}
            }
        }
        m.labels.sort();
        m.labels.dedup();
        m
    }

    /// The matching signature of a label set.
    fn signature(&self, l: &Labels, out: &mut Vec<u8>) {
        out.clear();
        for label in l {
            let keep = if self.on {
                self.labels.binary_search(&label.name).is_ok()
            } else {
                label.name != METRIC_NAME && self.labels.binary_search(&label.name).is_err()
            };
            if keep {
                out.extend_from_slice(label.name.as_bytes());
                out.push(0xff);
                out.extend_from_slice(label.value.as_bytes());
                out.push(0xff);
            }
        }
    }

    /// The labels a match group is named by in error messages (`MatchLabels`).
    fn match_labels(&self, l: &Labels) -> Labels {
        Labels::from_sorted(
            l.iter()
                .filter(|label| {
                    if self.on {
                        self.labels.binary_search(&label.name).is_ok()
                    } else {
                        label.name != METRIC_NAME && self.labels.binary_search(&label.name).is_err()
                    }
                })
                .cloned()
                .collect(),
        )
    }
}

/// Dense ordinals for the signatures of both sides.
fn ordinals(m: &Matching, lhs: &[VSeries], rhs: &[VSeries]) -> (Vec<u32>, Vec<u32>, usize) {
    let mut map: crate::fxhash::FxHashMap<Vec<u8>, u32> = Default::default();
    let mut buf = Vec::new();
    let mut ord = |s: &VSeries| {
        m.signature(&s.labels, &mut buf);
        match map.get(&buf) {
            Some(&o) => o,
            None => {
                let o = map.len() as u32;
                map.insert(buf.clone(), o);
                o
            }
        }
    };
    let l: Vec<u32> = lhs.iter().map(&mut ord).collect();
    let r: Vec<u32> = rhs.iter().map(&mut ord).collect();
    let n = map.len();
    (l, r, n)
}

impl Evaluator<'_> {
    pub(crate) fn eval_binary(&mut self, b: &BinaryExpr, steps: Steps) -> Result<Val> {
        let op = BinOp::parse(&b.op.to_string())?;
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        if let Some(m) = &b.modifier
            && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
        {
            return Err(Error::BadQuery(
                "the fill modifiers of binary operators are experimental and not supported".into(),
            ));
        }
        let lhs = self.eval(&b.lhs, steps)?;
        let rhs = self.eval(&b.rhs, steps)?;
        match (lhs, rhs) {
            (Val::Scalar(mut l), Val::Scalar(r)) => {
                for (x, &y) in l.iter_mut().zip(&r) {
                    let (v, keep) = apply(op, *x, y);
                    *x = if op.is_comparison() {
                        if keep { 1.0 } else { 0.0 }
                    } else {
                        v
                    };
                }
                Ok(Val::Scalar(l))
            }
            (Val::Vector(v), Val::Scalar(s)) => self
                .vector_scalar(op, v, &s, false, return_bool)
                .map(Val::Vector),
            (Val::Scalar(s), Val::Vector(v)) => self
                .vector_scalar(op, v, &s, true, return_bool)
                .map(Val::Vector),
            (Val::Vector(l), Val::Vector(r)) => {
                let m = Matching::from_expr(b);
                match op {
                    BinOp::And | BinOp::Or | BinOp::Unless => {
                        set_op(op, &m, l, r, steps.len()).map(Val::Vector)
                    }
                    _ => self
                        .vector_vector(op, &m, l, r, return_bool, steps.len())
                        .map(Val::Vector),
                }
            }
            _ => Err(Error::BadQuery(
                "binary expression must contain only scalar and instant vector types".into(),
            )),
        }
    }

    fn vector_scalar(
        &mut self,
        op: BinOp,
        mut v: Vec<VSeries>,
        s: &[f64],
        swap: bool,
        return_bool: bool,
    ) -> Result<Vec<VSeries>> {
        let drop = op.changes_metric_schema() || return_bool;
        for series in &mut v {
            for i in 0..series.v.len() {
                if !series.ok[i] {
                    continue;
                }
                let x = series.v[i];
                let (l, r) = if swap { (s[i], x) } else { (x, s[i]) };
                let (mut val, mut keep) = apply(op, l, r);
                if op.is_comparison() {
                    // The vector element's value is kept, whichever side it was on.
                    val = x;
                }
                if return_bool {
                    val = if keep { 1.0 } else { 0.0 };
                    keep = true;
                }
                if keep {
                    series.v[i] = val;
                } else {
                    series.ok[i] = false;
                }
            }
            if drop {
                if !self.opts.delayed_name_removal {
                    series.labels = drop_metric_labels(&series.labels);
                }
                series.drop_name = true;
            }
        }
        merge_same_labels(v)
    }

    fn vector_vector(
        &mut self,
        op: BinOp,
        m: &Matching,
        lhs: Vec<VSeries>,
        rhs: Vec<VSeries>,
        return_bool: bool,
        n: usize,
    ) -> Result<Vec<VSeries>> {
        if lhs.is_empty() || rhs.is_empty() {
            return Ok(Vec::new());
        }
        let (lsig, rsig, nsigs) = ordinals(m, &lhs, &rhs);
        // For one-to-many, the right side is the "many" side: swap so that `many` is
        // iterated and `one` is looked up, and swap the operands back when computing.
        let swapped = m.card == Card::OneToMany;
        let (many, many_sig, one, one_sig) = if swapped {
            (&rhs, &rsig, &lhs, &lsig)
        } else {
            (&lhs, &lsig, &rhs, &rsig)
        };
        let delayed = self.opts.delayed_name_removal;

        // Fast path: every signature occurs at most once on each side, so each "many"
        // series has at most one partner for all steps and no matching error can occur.
        let unique = all_unique(many_sig, nsigs) && all_unique(one_sig, nsigs);
        if unique {
            const NO: usize = usize::MAX;
            let mut one_by_sig = vec![NO; nsigs];
            for (oi, &g) in one_sig.iter().enumerate() {
                one_by_sig[g as usize] = oi;
            }
            let mut out = Vec::new();
            for (mi, ms) in many.iter().enumerate() {
                let oi = one_by_sig[many_sig[mi] as usize];
                if oi == NO {
                    continue;
                }
                let os = &one[oi];
                let mut lb = result_metric(&ms.labels, &os.labels, op, m);
                if return_bool && !delayed {
                    lb = drop_metric_labels(&lb);
                }
                let drop_name = return_bool || (op.is_comparison() && ms.drop_name);
                let mut series = VSeries::new(lb, drop_name, n);
                for i in 0..n {
                    if !(ms.ok[i] && os.ok[i]) {
                        continue;
                    }
                    let (fl, fr) = if swapped {
                        (os.v[i], ms.v[i])
                    } else {
                        (ms.v[i], os.v[i])
                    };
                    let (mut val, keep) = apply(op, fl, fr);
                    if return_bool {
                        val = if keep { 1.0 } else { 0.0 };
                    } else if !keep {
                        continue;
                    }
                    series.set(i, val);
                }
                out.push(series);
            }
            return merge_same_labels(out);
        }

        let mut out: Vec<VSeries> = Vec::new();
        let mut pair_out: HashMap<(usize, usize), usize> = HashMap::new();
        let mut label_ids: HashMap<Labels, usize> = HashMap::new();
        let mut out_label_id: Vec<usize> = Vec::new();
        let mut result_labels = |mi: usize, oi: usize, out: &mut Vec<VSeries>| -> (usize, usize) {
            if let Some(&k) = pair_out.get(&(mi, oi)) {
                return (k, out_label_id[k]);
            }
            let ml = &many[mi];
            let ol = &one[oi];
            let mut lb = result_metric(&ml.labels, &ol.labels, op, m);
            if return_bool && !delayed {
                lb = drop_metric_labels(&lb);
            }
            let nid = label_ids.len();
            let id = *label_ids.entry(lb.clone()).or_insert(nid);
            let drop_name = return_bool || (op.is_comparison() && ml.drop_name);
            let k = out.len();
            out.push(VSeries::new(lb, drop_name, n));
            out_label_id.push(id);
            pair_out.insert((mi, oi), k);
            (k, id)
        };

        const NONE: u32 = u32::MAX;
        let mut one_at: Vec<u32> = vec![NONE; nsigs];
        let mut matched_step: Vec<u32> = vec![NONE; nsigs];
        let mut inserted: HashSet<(u32, usize)> = HashSet::new();
        for i in 0..n {
            // The "one" side at this step, by signature; a repeated signature is
            // many-to-many matching.
            for (oi, s) in one.iter().enumerate() {
                if !s.ok[i] {
                    continue;
                }
                let sig = one_sig[oi] as usize;
                if one_at[sig] != NONE {
                    let prev = &one[one_at[sig] as usize];
                    let side = if swapped { "left" } else { "right" };
                    let err = format!(
                        "found duplicate series for the match group {} on the {side} hand-side \
                         of the operation: [{}, {}];many-to-many matching not allowed: matching \
                         labels must be unique on one side",
                        m.match_labels(&s.labels),
                        s.labels,
                        prev.labels
                    );
                    return Err(exec_err(err));
                }
                one_at[sig] = oi as u32;
            }
            inserted.clear();
            for (mi, s) in many.iter().enumerate() {
                if !s.ok[i] {
                    continue;
                }
                let sig = many_sig[mi] as usize;
                let oi = one_at[sig];
                if oi == NONE {
                    continue;
                }
                let oi = oi as usize;
                let (fl, fr) = if swapped {
                    (one[oi].v[i], s.v[i])
                } else {
                    (s.v[i], one[oi].v[i])
                };
                let (mut val, keep) = apply(op, fl, fr);
                if return_bool {
                    val = if keep { 1.0 } else { 0.0 };
                }
                let (k, label_id) = result_labels(mi, oi, &mut out);
                if m.card == Card::OneToOne {
                    if matched_step[sig] == i as u32 {
                        return Err(exec_err(
                            "multiple matches for labels: many-to-one matching must be explicit \
                             (group_left/group_right)",
                        ));
                    }
                    matched_step[sig] = i as u32;
                } else if !inserted.insert((sig as u32, label_id)) {
                    return Err(exec_err(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
                if !keep && !return_bool {
                    continue;
                }
                out[k].set(i, val);
            }
            for (oi, s) in one.iter().enumerate() {
                if s.ok[i] {
                    one_at[one_sig[oi] as usize] = NONE;
                }
            }
        }
        merge_same_labels(out)
    }
}

/// Whether no signature ordinal repeats.
fn all_unique(sigs: &[u32], nsigs: usize) -> bool {
    let mut seen = vec![false; nsigs];
    sigs.iter()
        .all(|&g| !std::mem::replace(&mut seen[g as usize], true))
}

/// The labels of a vector-vector result element (Prometheus' `resultMetric`).
fn result_metric(many: &Labels, one: &Labels, op: BinOp, m: &Matching) -> Labels {
    let base = if op.changes_metric_schema() {
        drop_metric_labels(many)
    } else {
        many.clone()
    };
    let mut lb: LabelsBuilder = base.builder();
    if m.card == Card::OneToOne {
        if m.on {
            for l in base.iter() {
                if m.labels.binary_search(&l.name).is_err() {
                    lb.remove(&l.name);
                }
            }
        } else {
            for name in &m.labels {
                lb.remove(name);
            }
        }
    }
    for name in &m.include {
        match one.get(name) {
            Some(v) if !v.is_empty() => {
                lb.set(name.clone(), v.to_string());
            }
            _ => {
                lb.remove(name);
            }
        }
    }
    lb.build()
}

/// `and`, `or`, `unless`, step by step on signature ordinals.
fn set_op(
    op: BinOp,
    m: &Matching,
    lhs: Vec<VSeries>,
    rhs: Vec<VSeries>,
    n: usize,
) -> Result<Vec<VSeries>> {
    let (lsig, rsig, nsigs) = ordinals(m, &lhs, &rhs);
    const NONE: u32 = u32::MAX;
    match op {
        BinOp::And | BinOp::Unless => {
            let mut lhs = lhs;
            let mut present = vec![NONE; nsigs];
            for i in 0..n {
                for (j, s) in rhs.iter().enumerate() {
                    if s.ok[i] {
                        present[rsig[j] as usize] = i as u32;
                    }
                }
                for (j, s) in lhs.iter_mut().enumerate() {
                    if s.ok[i] {
                        let has = present[lsig[j] as usize] == i as u32;
                        if has != (op == BinOp::And) {
                            s.ok[i] = false;
                        }
                    }
                }
            }
            merge_same_labels(lhs)
        }
        _ => {
            let mut present = vec![NONE; nsigs];
            let mut rhs = rhs;
            for i in 0..n {
                for (j, s) in lhs.iter().enumerate() {
                    if s.ok[i] {
                        present[lsig[j] as usize] = i as u32;
                    }
                }
                for (j, s) in rhs.iter_mut().enumerate() {
                    if s.ok[i] && present[rsig[j] as usize] == i as u32 {
                        s.ok[i] = false;
                    }
                }
            }
            let mut out = lhs;
            out.extend(rhs);
            merge_same_labels(out)
        }
    }
}
