//! Engine behaviour the conformance scripts do not cover: the default (non-delayed) name
//! removal, feature gating, refusal of native histograms, deadlines, and block-backed
//! storage agreeing with in-memory storage.

use strata_model::Labels;
use strata_promql::{BlockStorage, Engine, EngineOptions, Error, MemStorage, QueryContext, Value};
use strata_tsdb::{BlockWriter, BlockWriterOptions};

fn storage() -> MemStorage {
    let mut s = MemStorage::new();
    for (name, step) in [("a_total", 1.0), ("b_total", 2.0)] {
        let l = Labels::from_pairs(&[("__name__", name), ("job", "x")]);
        for i in 0..20 {
            s.add(&l, i * 15_000 + 7, i as f64 * step);
        }
    }
    s
}

fn vector(v: &Value) -> Vec<(String, f64)> {
    match v {
        Value::Vector(s) => s.iter().map(|s| (s.labels.to_string(), s.v)).collect(),
        other => panic!("not a vector: {other:?}"),
    }
}

#[test]
fn names_are_dropped_at_once_by_default() {
    let e = Engine::default();
    let s = storage();
    let ctx = QueryContext::new();
    // Both rates lose their names and collide: an error without delayed name removal.
    let err = e
        .instant(
            &s,
            r#"rate({__name__=~"a_total|b_total"}[1m])"#,
            200_000,
            &ctx,
        )
        .unwrap_err();
    assert!(err.to_string().contains("same labelset"), "{err}");
    assert_eq!(err.error_type(), "execution");
    // Grouping by __name__ after rate sees no name at all.
    let out = e
        .instant(&s, "sum by (__name__) (rate(a_total[1m]))", 200_000, &ctx)
        .unwrap();
    let v = vector(&out.value);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, "{}");
    // With delayed removal the same query keeps the name until the end.
    let delayed = Engine::new(EngineOptions {
        delayed_name_removal: true,
        ..EngineOptions::default()
    });
    let out = delayed
        .instant(&s, "sum by (__name__) (a_total)", 200_000, &ctx)
        .unwrap();
    assert_eq!(vector(&out.value)[0].0, r#"{__name__="a_total"}"#);
}

#[test]
fn experimental_functions_need_the_feature() {
    let s = storage();
    let ctx = QueryContext::new();
    let err = Engine::default()
        .instant(&s, r#"sort_by_label(a_total, "job")"#, 100_000, &ctx)
        .unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    assert!(err.to_string().contains("not enabled"), "{err}");
    let err = Engine::default()
        .instant(&s, "limitk(1, a_total)", 100_000, &ctx)
        .unwrap_err();
    assert!(
        err.to_string().contains("promql-experimental-functions"),
        "{err}"
    );
    let on = Engine::new(EngineOptions {
        experimental_functions: true,
        ..EngineOptions::default()
    });
    assert!(on.instant(&s, "limitk(1, a_total)", 100_000, &ctx).is_ok());
}

#[test]
fn native_histograms_are_refused_clearly() {
    let mut s = MemStorage::new();
    let l = Labels::from_pairs(&[("__name__", "h")]);
    s.add_native_histogram(&l, 1000);
    let err = Engine::default()
        .instant(&s, "h", 2000, &QueryContext::new())
        .unwrap_err();
    assert!(matches!(err, Error::NativeHistogram(_)));
    assert!(
        err.to_string()
            .contains("native histograms are not supported"),
        "{err}"
    );
}

#[test]
fn deadlines_and_cancellation() {
    let s = storage();
    let ctx = QueryContext::with_timeout(std::time::Duration::ZERO);
    let err = Engine::default()
        .instant(&s, "a_total", 1000, &ctx)
        .unwrap_err();
    assert_eq!(err.error_type(), "timeout");
    let ctx = QueryContext::new();
    ctx.cancel();
    let err = Engine::default()
        .instant(&s, "a_total", 1000, &ctx)
        .unwrap_err();
    assert_eq!(err.error_type(), "canceled");
}

#[test]
fn huge_intermediate_results_are_refused() {
    let err = Engine::default()
        .instant(
            &storage(),
            "max_over_time(a_total[100y:1s])",
            1000,
            &QueryContext::new(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in expression evaluation"
    );
}

#[test]
fn range_queries_reject_range_vectors() {
    let err = Engine::default()
        .range(
            &storage(),
            "a_total[5m]",
            0,
            60_000,
            15_000,
            &QueryContext::new(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
    );
}

#[test]
fn a_range_query_over_one_step_answers_a_matrix() {
    // Prometheus answers `query_range` with a matrix even when start == end; a query
    // frontend that cuts a range into parts relies on it.
    let ctx = QueryContext::new();
    for q in ["a_total", "1 + 1", "sum(a_total)"] {
        let out = Engine::default()
            .range(&storage(), q, 60_000, 60_000, 15_000, &ctx)
            .unwrap();
        assert!(
            matches!(out.value, Value::Matrix(_)),
            "{q}: {:?}",
            out.value
        );
        let out = Engine::default()
            .instant(&storage(), q, 60_000, &ctx)
            .unwrap();
        assert!(
            matches!(out.value, Value::Vector(_) | Value::Scalar { .. }),
            "{q}: {:?}",
            out.value
        );
    }
}

#[test]
fn blocks_answer_like_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut mem = MemStorage::new();
    let mut w = BlockWriter::new(dir.path(), BlockWriterOptions::default()).unwrap();
    let mut all: Vec<(Labels, Vec<(i64, f64)>)> = (0..50)
        .map(|i| {
            let l = Labels::from_pairs(&[
                ("__name__", "m_total"),
                ("i", &format!("{i:03}")),
                ("g", &format!("{}", i % 4)),
            ]);
            let samples: Vec<(i64, f64)> = (0..400)
                .map(|k| {
                    (
                        k * 15_000 + 123,
                        (k * (i + 1)) as f64 + if k > 200 { -5.0 } else { 0.0 },
                    )
                })
                .collect();
            (l, samples)
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (l, s) in &all {
        w.add_series(l, s).unwrap();
        for &(t, v) in s {
            mem.add(l, t, v);
        }
    }
    w.finish().unwrap();
    let blocks = BlockStorage::open_dir(dir.path()).unwrap();
    let e = Engine::default();
    let ctx = QueryContext::new();
    for q in [
        "m_total",
        "sum by (g) (rate(m_total[5m]))",
        "max_over_time(m_total[2m])",
        "histogram_quantile(0.9, sum by (g) (rate(m_total[5m])))",
        "topk(3, m_total)",
        "m_total / on(i) group_left m_total",
    ] {
        let a = e.range(&mem, q, 600_000, 5_000_000, 60_000, &ctx).unwrap();
        let b = e
            .range(&blocks, q, 600_000, 5_000_000, 60_000, &ctx)
            .unwrap();
        assert_eq!(a.value, b.value, "{q}");
    }
}

#[test]
fn sliding_max_matches_a_full_scan() {
    // max_over_time slides a deque; quantile_over_time(1, ...) scans each window in full
    // (sorting NaN first), which gives the same maximum of the non-NaN values.
    let mut s = MemStorage::new();
    let mut x: u64 = 42;
    for series in 0..20 {
        let l = Labels::from_pairs(&[("__name__", "g"), ("s", &series.to_string())]);
        for k in 0..500i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match x % 17 {
                0 => f64::NAN,
                1 => -0.0,
                _ => (x % 1000) as f64 - 500.0,
            };
            s.add(&l, k * 10_000 + 3, v);
        }
    }
    let e = Engine::default();
    let ctx = QueryContext::new();
    let a = e
        .range(&s, "max_over_time(g[2m])", 0, 5_000_000, 7_000, &ctx)
        .unwrap();
    let b = e
        .range(
            &s,
            "quantile_over_time(1, g[2m])",
            0,
            5_000_000,
            7_000,
            &ctx,
        )
        .unwrap();
    let (Value::Matrix(a), Value::Matrix(b)) = (a.value, b.value) else {
        panic!("matrices expected")
    };
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.labels, y.labels);
        for (p, q) in x.points.iter().zip(&y.points) {
            assert_eq!(p.0, q.0);
            assert!(p.1 == q.1 || (p.1.is_nan() && q.1.is_nan()), "{p:?} {q:?}");
        }
    }
}

#[test]
fn windows_computed_together_match_windows_computed_alone() {
    // A range query computes many windows per series together (sum_over_time four at a
    // time, rate's extrapolation as one batch); instant queries compute one window each.
    let mut s = MemStorage::new();
    let mut x: u64 = 7;
    for series in 0..5 {
        let l = Labels::from_pairs(&[("__name__", "c_total"), ("s", &series.to_string())]);
        let mut v = 0.0f64;
        for k in 0..300i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v += (x % 1000) as f64 * 1e-3 + 1e12 * (x.is_multiple_of(7) as u8 as f64);
            if x.is_multiple_of(97) {
                v = 0.5;
            }
            // Special values exercise the compensation's NaN and infinity rules.
            let sample = match x % 211 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => -1e308,
                _ => v,
            };
            s.add(&l, k * 15_000 + 11, sample);
        }
    }
    let e = Engine::default();
    let ctx = QueryContext::new();
    for q in [
        "sum_over_time(c_total[3m])",
        "rate(c_total[2m])",
        "increase(c_total[5m])",
        "delta(c_total[1m])",
        "deriv(c_total[3m])",
        "deriv(c_total[1m])",
        "predict_linear(c_total[2m], 60)",
    ] {
        let out = e.range(&s, q, 300_000, 4_000_000, 37_000, &ctx).unwrap();
        let Value::Matrix(m) = out.value else {
            panic!("matrix")
        };
        for series in &m {
            for &(t, v) in &series.points {
                let one = e.instant(&s, q, t, &ctx).unwrap();
                let Value::Vector(vec) = one.value else {
                    panic!("vector")
                };
                let got = vec.iter().find(|x| x.labels == series.labels).unwrap().v;
                assert_eq!(got.to_bits(), v.to_bits(), "{q} at {t}");
            }
        }
    }
}
