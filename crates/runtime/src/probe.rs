use std::sync::{Arc, Mutex};

/// Health and readiness of a component. Cheap to clone; clones share state.
#[derive(Clone, Debug, Default)]
pub struct Prober {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    healthy: bool,
    ready: bool,
    /// Why the component is not ready (shown on `/-/ready`).
    reason: String,
}

impl Prober {
    /// A prober that is neither healthy nor ready yet.
    pub fn new() -> Self {
        Prober::default()
    }

    pub fn set_healthy(&self) {
        self.inner.lock().expect("prober lock").healthy = true;
    }

    pub fn set_ready(&self) {
        let mut s = self.inner.lock().expect("prober lock");
        s.ready = true;
        s.reason.clear();
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        let mut s = self.inner.lock().expect("prober lock");
        s.ready = false;
        s.reason = reason.into();
    }

    pub fn is_healthy(&self) -> bool {
        self.inner.lock().expect("prober lock").healthy
    }

    pub fn is_ready(&self) -> bool {
        self.inner.lock().expect("prober lock").ready
    }

    /// The reason given with the last `set_not_ready` (empty when ready).
    pub fn reason(&self) -> String {
        self.inner.lock().expect("prober lock").reason.clone()
    }
}
