//! Selections started before evaluation ([`Storage::select_early`]).
//!
//! The engine learns a query's selections by evaluating it once over a storage that has no
//! series and only records what it is asked for. The same code computes the selections'
//! matchers and hints in both passes, so the real evaluation asks for exactly what was
//! recorded; a selection is handed over only when its matchers and hints are equal, so a
//! recorded selection that the real pass does not ask for (evaluation that depends on the
//! data) can cost an unused request, never a wrong answer.

use std::sync::Mutex;

use promql_parser::parser::Expr;
use strata_model::{Labels, Matcher};

use crate::StorageError;
use crate::engine::{EngineOptions, QueryContext};
use crate::eval::{Evaluator, Steps};
use crate::storage::{SelectBatches, SelectHints, SelectResult, Storage};

type Selection = (Vec<Matcher>, SelectHints);

/// A storage without series that records the selections asked of it, in order.
#[derive(Debug, Default)]
struct Recorder {
    selects: Mutex<Vec<Selection>>,
}

impl Storage for Recorder {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        self.selects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((matchers.to_vec(), hints.clone()));
        Ok(SelectResult::default())
    }

    fn label_names(&self, _: &[Vec<Matcher>], _: i64, _: i64) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    fn label_values(
        &self,
        _: &str,
        _: &[Vec<Matcher>],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    fn series_labels(
        &self,
        _: &[Vec<Matcher>],
        _: i64,
        _: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(Vec::new())
    }
}

/// `inner` with the selections started early: [`Storage::select_batches`] hands over a
/// started selection with equal matchers and hints (each once), and asks `inner` otherwise.
/// Dropping it drops the selections nobody took, which stops them.
pub(crate) struct Started<'a> {
    inner: &'a dyn Storage,
    started: Mutex<Vec<(Selection, Result<SelectBatches, StorageError>)>>,
}

impl std::fmt::Debug for Started<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.started.lock().map_or(0, |s| s.len());
        f.debug_struct("Started")
            .field("inner", &self.inner)
            .field("waiting", &n)
            .finish()
    }
}

/// Records the selections of `expr` over `steps` and starts those `storage` can start early.
pub(crate) fn start<'a>(
    storage: &'a dyn Storage,
    opts: &EngineOptions,
    ctx: &QueryContext,
    expr: &Expr,
    steps: Steps,
) -> Started<'a> {
    let recorder = Recorder::default();
    let step = if steps.is_instant() { 0 } else { steps.step };
    let mut ev = Evaluator::new(&recorder, opts, ctx, steps.start, steps.end, step);
    // An error here is the real evaluation's to report; the selections before it still count.
    let _ = ev.eval(expr, steps);
    let selects = recorder
        .selects
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let started = selects
        .into_iter()
        .filter_map(|(m, h)| storage.select_early(&m, &h).map(|r| ((m, h), r)))
        .collect();
    Started {
        inner: storage,
        started: Mutex::new(started),
    }
}

impl Started<'_> {
    /// Started selections nobody has taken yet.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.started.lock().map_or(0, |s| s.len())
    }
}

impl Storage for Started<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectResult, StorageError> {
        self.inner.select(matchers, hints)
    }

    fn select_batches(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SelectBatches, StorageError> {
        let taken = {
            let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
            started
                .iter()
                .position(|((m, h), _)| m.as_slice() == matchers && h == hints)
                .map(|i| started.remove(i).1)
        };
        match taken {
            Some(r) => r,
            None => self.inner.select_batches(matchers, hints),
        }
    }

    fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.inner.label_names(matcher_sets, mint, maxt)
    }

    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.inner.label_values(name, matcher_sets, mint, maxt)
    }

    fn series_labels(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        self.inner.series_labels(matcher_sets, mint, maxt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    /// A [`MemStorage`] that starts every selection early, counting them.
    #[derive(Debug, Default)]
    struct Eager {
        data: MemStorage,
        early: std::sync::atomic::AtomicUsize,
    }

    impl Storage for Eager {
        fn selects_early(&self) -> bool {
            true
        }

        fn select_early(
            &self,
            m: &[Matcher],
            h: &SelectHints,
        ) -> Option<Result<SelectBatches, StorageError>> {
            self.early
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Some(self.select_batches(m, h))
        }

        fn select(&self, m: &[Matcher], h: &SelectHints) -> Result<SelectResult, StorageError> {
            self.data.select(m, h)
        }

        fn label_names(
            &self,
            s: &[Vec<Matcher>],
            a: i64,
            b: i64,
        ) -> Result<Vec<String>, StorageError> {
            self.data.label_names(s, a, b)
        }

        fn label_values(
            &self,
            n: &str,
            s: &[Vec<Matcher>],
            a: i64,
            b: i64,
        ) -> Result<Vec<String>, StorageError> {
            self.data.label_values(n, s, a, b)
        }

        fn series_labels(
            &self,
            s: &[Vec<Matcher>],
            a: i64,
            b: i64,
        ) -> Result<Vec<Labels>, StorageError> {
            self.data.series_labels(s, a, b)
        }
    }

    #[test]
    fn every_selection_starts_early_and_is_taken_once() {
        let storage = Eager::default();
        let opts = EngineOptions::default();
        let ctx = QueryContext::new();
        let expr = promql_parser::parser::parse("rate(a[5m]) / on() b + a offset 1m + a").unwrap();
        let steps = Steps {
            start: 600_000,
            end: 1_200_000,
            step: 60_000,
        };
        let started = start(&storage, &opts, &ctx, &expr, steps);
        assert_eq!(storage.early.load(std::sync::atomic::Ordering::Relaxed), 4);
        let mut ev = Evaluator::new(&started, &opts, &ctx, steps.start, steps.end, steps.step);
        ev.eval(&expr, steps).unwrap();
        assert_eq!(
            started.waiting(),
            0,
            "evaluation took every early selection"
        );
    }

    #[test]
    fn a_selection_not_started_is_asked_of_the_storage() {
        let storage = Eager::default();
        let started = Started {
            inner: &storage,
            started: Mutex::new(Vec::new()),
        };
        let hints = SelectHints::default();
        let m = vec![Matcher::equal("__name__", "a")];
        assert!(started.select_batches(&m, &hints).is_ok());
        assert_eq!(storage.early.load(std::sync::atomic::Ordering::Relaxed), 0);
        // A started selection with other hints is not handed over for these.
        let other = SelectHints {
            start: 1,
            ..SelectHints::default()
        };
        let pre = storage.select_batches(&m, &other);
        started
            .started
            .lock()
            .unwrap()
            .push(((m.clone(), other), pre));
        assert!(started.select_batches(&m, &hints).is_ok());
        assert_eq!(started.waiting(), 1);
    }
}
