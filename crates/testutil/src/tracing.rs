//! Log events captured in a test, to check what a component logs without a process.

use std::sync::{Arc, Mutex};

/// A `tracing` subscriber that keeps every event as one line: its level, then each field as
/// ` name=value` in the order recorded (the message is the field `message`). Install it with
/// `tracing::subscriber::with_default` around the code under test (events of other threads
/// are not seen).
#[derive(Debug, Default, Clone)]
pub struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    /// The lines recorded so far.
    ///
    /// # Panics
    ///
    /// If a thread panicked while recording.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("recorder lock").clone()
    }
}

struct Line(String);

impl tracing::field::Visit for Line {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {}={value:?}", field.name());
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        self.0.lock().expect("recorder lock").push(line.0);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
