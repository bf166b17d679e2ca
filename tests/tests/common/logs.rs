//! What code logs through `tracing`, as a user's `tracing-subscriber`
//! fmt layer writes it: for the tests that check a log line is there, or
//! that a secret is not.

use std::sync::{Arc, Mutex};

/// A writer the fmt subscriber logs into, shared with the test.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` and returns its value and what it logged at debug level and
/// above, as tracing-subscriber's fmt layer writes it (no colours, no
/// time), on this thread.
pub fn logged<R>(f: impl FnOnce() -> R) -> (R, String) {
    let buffer = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .with_writer({
            let buffer = buffer.clone();
            move || buffer.clone()
        })
        .finish();
    let value = tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().unwrap().clone();
    (value, String::from_utf8(bytes).unwrap())
}
