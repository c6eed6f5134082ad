//! The lease fence: a leader elected through etcd accepts changes only while
//! its lease surely holds (docs/protocol.md §8).
//!
//! etcd expires a lease `ttl` after it *received* the last keepalive; the
//! leader extends its fence to `ttl` after it *sent* that keepalive, less a
//! margin. The fence therefore closes before etcd can let anyone else win,
//! whatever happens to the network in between: an old leader cut off from
//! etcd stops taking changes before the new one starts. A static leader's
//! fence never closes.
//!
//! A lapse is final. Once the deadline has passed, another node may have
//! won; an answer to a keepalive that arrives after that (etcd electing its
//! own leader can hold answers for a second) must not reopen the fence, or
//! the intake would accept and publish changes next to a new leader. The
//! node steps down instead (`ha::supervisor`).
//!
//! The clock is CLOCK_BOOTTIME where there is one: it goes on while the
//! machine (or VM) is suspended, as etcd's lease clock on another machine
//! does. `Instant` (CLOCK_MONOTONIC) stops during a suspend, so after a
//! resume a fence on it would still hold for a lease long expired.

use std::ops::Add;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Nanoseconds on the fence's clock; `u64::MAX`: never closes.
const OPEN: u64 = u64::MAX;
/// Closed for good (explicitly, or found lapsed).
const CLOSED: u64 = 0;
/// The latest moment a fence can name.
const LATEST: u64 = u64::MAX - 1;

/// A point in time on the fence's clock (CLOCK_BOOTTIME on Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(u64);

impl Moment {
    /// Now, on the clock that counts suspended time.
    pub fn now() -> Moment {
        Moment(boot_nanos().clamp(1, LATEST))
    }

    /// The moment `nanos` after the clock's origin (tests).
    pub fn from_nanos(nanos: u64) -> Moment {
        Moment(nanos.clamp(1, LATEST))
    }
}

impl Add<Duration> for Moment {
    type Output = Moment;
    fn add(self, d: Duration) -> Moment {
        let d = u64::try_from(d.as_nanos()).unwrap_or(LATEST);
        Moment(self.0.saturating_add(d).min(LATEST))
    }
}

#[cfg(target_os = "linux")]
fn boot_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on
    // every Linux since 2.6.39.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
fn boot_nanos() -> u64 {
    // Elsewhere the monotonic clock is the best there is.
    use std::sync::OnceLock;
    use std::time::Instant;
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(LATEST - 1) + 1
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
    pub fn until(deadline: Moment) -> Self {
        Fence {
            deadline: AtomicU64::new(deadline.0),
        }
    }

    /// Move the deadline to `deadline`: never back (a late keepalive answer
    /// must not shorten a newer one's grant), never once closed, and never
    /// once the deadline has passed (the lapse is final). `false` when the
    /// fence no longer holds.
    pub fn extend(&self, deadline: Moment) -> bool {
        self.extend_at(deadline, Moment::now())
    }

    fn extend_at(&self, deadline: Moment, now: Moment) -> bool {
        let to = deadline.0;
        let mut held = true;
        let _ = self
            .deadline
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                held = d == OPEN || (d != CLOSED && now.0 < d);
                (held && d != OPEN && to > d).then_some(to)
            });
        if !held {
            self.close();
        }
        held
    }

    /// Close now, for good: the lease is lost or given up.
    pub fn close(&self) {
        self.deadline.store(CLOSED, Ordering::Release);
    }

    /// Changes may be accepted now.
    pub fn holds(&self) -> bool {
        self.holds_at(Moment::now())
    }

    fn holds_at(&self, now: Moment) -> bool {
        match self.deadline.load(Ordering::Acquire) {
            OPEN => true,
            CLOSED => false,
            d if now.0 < d => true,
            _ => {
                // Found lapsed: closed from here on, whatever answers later.
                self.close();
                false
            }
        }
    }

    /// Time left before it closes (`None`: never closes).
    pub fn remaining(&self) -> Option<Duration> {
        match self.deadline.load(Ordering::Acquire) {
            OPEN => None,
            d => Some(Duration::from_nanos(d.saturating_sub(Moment::now().0))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_holds_until_its_deadline_and_only_moves_forward() {
        let now = Moment::now();
        let f = Fence::until(now + Duration::from_secs(60));
        assert!(f.holds());
        assert!(f.extend(now + Duration::from_secs(1)));
        assert!(f.remaining().unwrap() > Duration::from_secs(30));
        assert!(f.extend(now + Duration::from_secs(120)));
        assert!(f.remaining().unwrap() > Duration::from_secs(90));
        f.close();
        assert!(!f.holds());
        assert!(!f.extend(now + Duration::from_secs(500)));
        assert!(!f.holds(), "a closed fence stays closed");
        let past = Fence::until(now);
        assert!(!past.holds());
        assert!(Fence::open().holds());
        assert_eq!(Fence::open().remaining(), None);
    }

    /// Issue #30 item 1: a keepalive sent before the deadline and answered
    /// after it (etcd electing its own leader) must not reopen the fence.
    #[test]
    fn a_lapsed_fence_is_not_reopened_by_a_late_answer() {
        let t0 = Moment::from_nanos(1_000_000_000);
        let f = Fence::until(t0 + Duration::from_secs(2));
        let sent = t0 + Duration::from_millis(1_900);
        let answered = t0 + Duration::from_millis(2_600);
        // Nobody looked at the fence between its deadline and the answer.
        assert!(
            !f.extend_at(sent + Duration::from_secs(2), answered),
            "an answer after the deadline reopened the fence"
        );
        assert!(!f.holds_at(answered));
        assert!(
            !f.holds_at(t0),
            "a lapse is final, even read at an earlier time"
        );
    }

    #[test]
    fn the_fence_clock_counts_like_a_clock() {
        let a = Moment::now();
        std::thread::sleep(Duration::from_millis(20));
        let b = Moment::now();
        assert!(b.0 - a.0 >= 20_000_000, "{a:?} -> {b:?}");
    }
}
