//! The lease fence: a leader elected through etcd accepts changes only while
//! its lease surely holds (docs/protocol.md §8).
//!
//! etcd expires a lease `ttl` after it *received* the last keepalive; the
//! leader extends its fence to `ttl` after it *sent* that keepalive, less a
//! margin. The fence therefore closes before etcd can let anyone else win,
//! whatever happens to the network in between: an old leader cut off from
//! etcd stops taking changes before the new one starts. A static leader's
//! fence never closes.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Nanoseconds since this process's clock base; `u64::MAX`: never closes.
const OPEN: u64 = u64::MAX;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn nanos(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base()).as_nanos()).unwrap_or(OPEN - 1)
}

/// Until when the leader may accept changes.
#[derive(Debug)]
pub struct Fence {
    deadline: AtomicU64,
}

impl Default for Fence {
    fn default() -> Self {
        Fence::open()
    }
}

impl Fence {
    /// A fence that never closes (a static leader).
    pub fn open() -> Self {
        Fence {
            deadline: AtomicU64::new(OPEN),
        }
    }

    /// A fence that holds until `deadline` unless extended.
    pub fn until(deadline: Instant) -> Self {
        let _ = base();
        Fence {
            deadline: AtomicU64::new(nanos(deadline)),
        }
    }

    /// Move the deadline to `deadline`, never back (a late keepalive answer
    /// must not shorten a newer one's grant) and never once closed.
    pub fn extend(&self, deadline: Instant) {
        let to = nanos(deadline);
        let _ = self
            .deadline
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now != 0 && now != OPEN && to > now).then_some(to)
            });
    }

    /// Close now, for good: the lease is lost or given up.
    pub fn close(&self) {
        self.deadline.store(0, Ordering::Release);
    }

    /// Changes may be accepted now.
    pub fn holds(&self) -> bool {
        match self.deadline.load(Ordering::Acquire) {
            OPEN => true,
            0 => false,
            d => nanos(Instant::now()) < d,
        }
    }

    /// Time left before it closes (`None`: never closes).
    pub fn remaining(&self) -> Option<Duration> {
        match self.deadline.load(Ordering::Acquire) {
            OPEN => None,
            d => Some(Duration::from_nanos(
                d.saturating_sub(nanos(Instant::now())),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_holds_until_its_deadline_and_only_moves_forward() {
        let now = Instant::now();
        let f = Fence::until(now + Duration::from_secs(60));
        assert!(f.holds());
        f.extend(now + Duration::from_secs(1));
        assert!(f.remaining().unwrap() > Duration::from_secs(30));
        f.extend(now + Duration::from_secs(120));
        assert!(f.remaining().unwrap() > Duration::from_secs(90));
        f.close();
        assert!(!f.holds());
        f.extend(now + Duration::from_secs(500));
        assert!(!f.holds(), "a closed fence stays closed");
        let past = Fence::until(now);
        assert!(!past.holds());
        assert!(Fence::open().holds());
        assert_eq!(Fence::open().remaining(), None);
    }
}
