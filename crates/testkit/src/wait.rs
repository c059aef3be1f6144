//! Polling with a deadline, for tests that wait for something to happen: a server to become
//! ready, a log line, a health check. Every helper checks every [`INTERVAL`] and, when time runs
//! out, panics with `timed out after … waiting for <what>` (plus, for the `_or` forms, what
//! `context()` says then, e.g. a log), so a timeout reads as a sentence. Never a fixed sleep: a
//! test waits exactly as long as its condition takes.
//!
//! The functions here are async (tokio); [`blocking`] has the same ones for synchronous tests.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked.
pub const INTERVAL: Duration = Duration::from_millis(100);

#[track_caller]
fn timed_out(what: &str, timeout: Duration, context: String) -> ! {
    if context.is_empty() {
        panic!("timed out after {timeout:?} waiting for {what}")
    }
    panic!("timed out after {timeout:?} waiting for {what}\n{context}")
}

/// Poll `check` until it returns `Some`, for at most `timeout`; `None` when time ran out.
pub async fn poll<T, Fut>(timeout: Duration, mut check: impl FnMut() -> Fut) -> Option<T>
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Poll `check` until it returns `Some` and return the value; panics after `timeout`, naming
/// `what` ("the server to be ready").
pub async fn wait_for<T, Fut>(what: &str, timeout: Duration, check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    wait_for_or(what, timeout, check, String::new).await
}

/// Like [`wait_for`], adding `context()` (a log, the last answer) to the failure message.
pub async fn wait_for_or<T, Fut>(
    what: &str,
    timeout: Duration,
    check: impl FnMut() -> Fut,
    context: impl FnOnce() -> String,
) -> T
where
    Fut: Future<Output = Option<T>>,
{
    match poll(timeout, check).await {
        Some(value) => value,
        None => timed_out(what, timeout, context()),
    }
}

/// Poll `condition` until it holds; panics after `timeout`, naming `what`.
pub async fn wait_until<Fut>(what: &str, timeout: Duration, mut condition: impl FnMut() -> Fut)
where
    Fut: Future<Output = bool>,
{
    let check = || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    };
    wait_for(what, timeout, check).await
}

/// The same helpers for synchronous tests (the thread sleeps between checks).
pub mod blocking {
    use std::time::{Duration, Instant};

    use super::{timed_out, INTERVAL};

    /// Poll `check` until it returns `Some`, for at most `timeout`; `None` when time ran out.
    pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check() {
                return Some(value);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(INTERVAL);
        }
    }

    /// Poll `check` until it returns `Some` and return the value; panics after `timeout`.
    #[track_caller]
    pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
        wait_for_or(what, timeout, check, String::new)
    }

    /// Like [`wait_for`], adding `context()` (a log, say) to the failure message.
    #[track_caller]
    pub fn wait_for_or<T>(
        what: &str,
        timeout: Duration,
        check: impl FnMut() -> Option<T>,
        context: impl FnOnce() -> String,
    ) -> T {
        match poll(timeout, check) {
            Some(value) => value,
            None => timed_out(what, timeout, context()),
        }
    }

    /// Poll `condition` until it holds; panics after `timeout`, naming `what`.
    #[track_caller]
    pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
        wait_for(what, timeout, || condition().then_some(()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waits_until_the_condition_holds() {
        let mut n = 0;
        let got = wait_for("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            let n = n;
            async move { (n >= 3).then_some(n) }
        })
        .await;
        assert_eq!(got, 3);
        assert_eq!(blocking::poll(Duration::ZERO, || None::<()>), None);
    }

    #[test]
    fn a_timeout_names_what_was_awaited_and_the_context() {
        let panic = std::panic::catch_unwind(|| {
            blocking::wait_for_or("the moon", Duration::ZERO, || None::<()>, || "log".into())
        })
        .err()
        .and_then(|p| p.downcast_ref::<String>().cloned());
        assert_eq!(
            panic.as_deref(),
            Some("timed out after 0ns waiting for the moon\nlog")
        );
    }
}
