//! Tasks a call spawns for its own work (decoding frames, reading chunks, building frames).
//!
//! Why a wrapper: a bare [`tokio::task::JoinHandle`] detaches its task when dropped, so a call
//! that is cancelled (its client went away, a sibling failed, the query hit its timeout) would
//! leave its helpers running to the end, holding memory and CPU that belong to no one. And a
//! panic in a helper is a bug in the code it runs: it should surface in the call, as if that
//! code had run inline, not turn into an error message a client reads.

use std::future::Future;

use tokio::task::JoinHandle;

/// A task spawned on the current Tokio runtime, aborted when this handle is dropped.
#[derive(Debug)]
pub struct CallTask<T>(JoinHandle<T>);

impl<T: Send + 'static> CallTask<T> {
    /// Spawns `work` on the current runtime (panics outside one, as [`tokio::spawn`] does).
    pub fn spawn(work: impl Future<Output = T> + Send + 'static) -> Self {
        CallTask(tokio::spawn(work))
    }

    /// Waits for the task's output. A panic in the task resumes here; `None` means the task
    /// was cancelled before it finished (its runtime is shutting down).
    pub async fn join(&mut self) -> Option<T> {
        match (&mut self.0).await {
            Ok(out) => Some(out),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }
}

impl<T> Drop for CallTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn join_gives_the_output() {
        let mut t = CallTask::spawn(async { 7 });
        assert_eq!(t.join().await, Some(7));
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_task() {
        let finished = Arc::new(AtomicBool::new(false));
        let f = finished.clone();
        let t = CallTask::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            f.store(true, Ordering::SeqCst);
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(t);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            !finished.load(Ordering::SeqCst),
            "the task ran on after its handle was dropped"
        );
    }

    #[tokio::test]
    async fn a_panic_in_the_task_resumes_in_the_caller() {
        let mut t = CallTask::spawn(async {
            if std::hint::black_box(true) {
                panic!("helper bug");
            }
        });
        let caught = tokio::spawn(async move { t.join().await }).await;
        let err = caught.expect_err("the panic reached the joining task");
        assert!(err.is_panic());
        let msg = err.into_panic();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"helper bug"));
    }
}
