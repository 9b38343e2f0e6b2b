//! Warnings and infos a query returns next to its result (Prometheus' `annotations`).

use std::collections::BTreeSet;

/// The annotations of one query: deduplicated, in a stable order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Annotations {
    /// `PromQL warning: ...` messages.
    pub warnings: BTreeSet<String>,
    /// `PromQL info: ...` messages.
    pub infos: BTreeSet<String>,
}

impl Annotations {
    pub(crate) fn warn(&mut self, msg: impl std::fmt::Display) {
        self.warnings.insert(format!("PromQL warning: {msg}"));
    }

    pub(crate) fn info(&mut self, msg: impl std::fmt::Display) {
        self.infos.insert(format!("PromQL info: {msg}"));
    }

    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.warnings.is_empty() && self.infos.is_empty()
    }
}
