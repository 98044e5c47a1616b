//! libsignal's store traits are async; Tessera's stores are synchronous (SQLite in the vault,
//! used under the lock the caller holds), so the futures libsignal returns over them never wait
//! on anything. They are run to their end here — not polled once and given up on, which would
//! turn a future libsignal that yields once into spurious `Busy` errors.

use std::future::Future;

/// Runs a future over Tessera's synchronous stores to its end.
pub(crate) trait RunToEnd: Future + Sized {
    /// Its output, however many polls that takes (it never waits for I/O: see the module).
    fn run_to_end(self) -> Self::Output {
        futures_executor::block_on(self)
    }
}

impl<F: Future> RunToEnd for F {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A future that is pending on its first poll (and wakes itself) still finishes.
    #[test]
    fn a_future_that_yields_once_runs_to_its_end() {
        let mut polled = false;
        let yields_once = std::future::poll_fn(move |cx| {
            if polled {
                std::task::Poll::Ready(7)
            } else {
                polled = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        });
        assert_eq!(yields_once.run_to_end(), 7);
    }
}
