//! Waiting on events, never on a clock: tasks counted until they have let go
//! of everything they hold, and conditions checked again each time they may
//! have changed.
//!
//! Why a count of our own rather than the tasks' join handles: a role that
//! hands its state over needs every task that shares it to have dropped its
//! handle, and a task is counted here until its future, with everything it
//! captured, is gone (finished, or dropped when aborted).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// A count of live tasks, to wait until none is left.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    live: Arc<watch::Sender<usize>>,
}

/// One live task in a [`Tasks`] count, until dropped.
#[derive(Debug)]
pub struct TaskToken(Arc<watch::Sender<usize>>);

impl Drop for TaskToken {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Tasks {
    /// Count one more task until the token is dropped.
    pub fn token(&self) -> TaskToken {
        self.live.send_modify(|n| *n += 1);
        TaskToken(self.live.clone())
    }

    /// Spawn `task`, counted until its future has been dropped.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token();
        tokio::spawn(async move {
            let _token = token;
            // Declared after the token, so dropped before it, whether the
            // task finishes or is dropped mid-way.
            let mut task = Box::pin(task);
            (&mut task).await;
        })
    }

    /// Tasks live now.
    pub fn live(&self) -> usize {
        *self.live.borrow()
    }

    /// Wait until no task is left, at most `bound`; whether none is.
    pub async fn idle_within(&self, bound: Duration) -> bool {
        let mut live = self.live.subscribe();
        tokio::time::timeout(bound, live.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }
}

/// Wait until `done()` holds, checking it again each time `changed` is
/// notified, until `deadline`; whether it held. The waiter is registered
/// before each check, so a notification between the check and the wait is
/// never lost.
pub async fn wait_until(
    changed: &Notify,
    deadline: tokio::time::Instant,
    mut done: impl FnMut() -> bool,
) -> bool {
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task is counted until what it captured is dropped, also when it is
    /// aborted mid-way: the handle it held is free once the count is 0.
    #[tokio::test]
    async fn a_task_is_counted_until_what_it_holds_is_dropped() {
        let tasks = Tasks::default();
        let held = Arc::new(());
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let mine = held.clone();
        tasks.spawn(async move {
            let _ = finished.await;
            drop(mine);
        });
        let mine = held.clone();
        let aborted = tasks.spawn(async move {
            let _mine = mine;
            std::future::pending::<()>().await;
        });
        assert_eq!(tasks.live(), 2);
        assert!(!tasks.idle_within(Duration::from_millis(20)).await);
        finish.send(()).unwrap();
        aborted.abort();
        assert!(tasks.idle_within(Duration::from_secs(5)).await);
        assert_eq!(Arc::strong_count(&held), 1, "a task still holds it");
    }

    #[tokio::test]
    async fn a_condition_is_checked_again_when_notified() {
        let changed = Arc::new(Notify::new());
        let value = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (c, v) = (changed.clone(), value.clone());
        tokio::spawn(async move {
            for i in 1..=5 {
                v.store(i, std::sync::atomic::Ordering::Release);
                c.notify_waiters();
                tokio::task::yield_now().await;
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        assert!(
            wait_until(&changed, deadline, || value
                .load(std::sync::atomic::Ordering::Acquire)
                == 5)
            .await
        );
        let soon = tokio::time::Instant::now() + Duration::from_millis(20);
        assert!(!wait_until(&changed, soon, || false).await);
    }
}
