//! Automatic rollback: a policy that keeps failing after a swap is replaced
//! by the one it replaced, without waiting for an operator.
//!
//! One failed call is answered by the built-in policy for that decision (see
//! `PolicyRuntime::decide`), so a rare bad answer costs nothing. A policy
//! that fails `failures` times within `window` is broken, not unlucky: each
//! of its calls now costs a failed call plus a built-in one, and its counters
//! hide real trouble. Going back to the previous policy is the operator's
//! own last known good choice.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// When to roll back: `failures` failed calls within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackRule {
    /// Failed calls that trigger a rollback (0 never rolls back).
    pub failures: u32,
    /// The window they must fall in.
    pub window: Duration,
}

impl Default for RollbackRule {
    fn default() -> Self {
        RollbackRule {
            failures: 20,
            window: Duration::from_secs(60),
        }
    }
}

/// Failures of the active policy, counted in a sliding window.
#[derive(Debug)]
pub(super) struct FailureWindow {
    rule: RollbackRule,
    recent: Mutex<VecDeque<Instant>>,
}

impl FailureWindow {
    pub(super) fn new(rule: RollbackRule) -> Self {
        FailureWindow {
            rule,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Count one failure now; true when the rule says roll back (the window
    /// starts afresh then).
    pub(super) fn failed(&self) -> bool {
        if self.rule.failures == 0 {
            return false;
        }
        let now = Instant::now();
        let mut recent = self.recent.lock();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.rule.window)
        {
            recent.pop_front();
        }
        recent.push_back(now);
        if recent.len() >= self.rule.failures as usize {
            recent.clear();
            true
        } else {
            false
        }
    }

    /// A new policy starts with a clean record.
    pub(super) fn clear(&self) {
        self.recent.lock().clear();
    }

    pub(super) fn rule(&self) -> RollbackRule {
        self.rule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_back_at_the_threshold_within_the_window_only() {
        let w = FailureWindow::new(RollbackRule {
            failures: 3,
            window: Duration::from_secs(60),
        });
        assert!(!w.failed());
        assert!(!w.failed());
        assert!(w.failed());
        assert!(!w.failed(), "the window starts afresh after a rollback");
        let never = FailureWindow::new(RollbackRule {
            failures: 0,
            window: Duration::from_secs(60),
        });
        assert!((0..100).all(|_| !never.failed()));
        let short = FailureWindow::new(RollbackRule {
            failures: 2,
            window: Duration::from_millis(1),
        });
        assert!(!short.failed());
        std::thread::sleep(Duration::from_millis(5));
        assert!(!short.failed(), "an old failure has left the window");
    }
}
