//! Waiting for something a test cannot be told about, only look at: the one
//! poll loop every harness, test and benchmark uses. Production code never
//! polls; it waits on the node's own signals.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Ask `probe` every `every` until it answers `Some`, and return that; `None`
/// once `within` has passed (the probe is asked at least once).
pub async fn poll_until<T, F, Fut>(within: Duration, every: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe().await {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// Whether `cond` comes to hold within `within` (looked at every 5 ms).
pub async fn holds_within(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    poll_until(within, Duration::from_millis(5), || {
        std::future::ready(cond().then_some(()))
    })
    .await
    .is_some()
}

/// Wait until `cond` holds, or fail the test naming `what`.
pub async fn eventually(what: &str, within: Duration, cond: impl FnMut() -> bool) {
    assert!(
        holds_within(within, cond).await,
        "timed out after {within:?} waiting for {what}"
    );
}

/// [`eventually`] for code that runs no async runtime (a plain `#[test]`
/// over processes): the same wait, on a runtime of its own.
pub fn eventually_blocking(what: &str, within: Duration, cond: impl FnMut() -> bool) {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
        .block_on(eventually(what, within, cond));
}

/// [`eventually`] for a condition that has to ask over the network (a
/// node's status): looked at every 10 ms.
pub async fn eventually_async<F: Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> F,
) {
    let held = poll_until(within, Duration::from_millis(10), || {
        let asked = cond();
        async move { asked.await.then_some(()) }
    })
    .await;
    assert!(
        held.is_some(),
        "timed out after {within:?} waiting for {what}"
    );
}
