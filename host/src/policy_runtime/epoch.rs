//! The wall-clock backstop behind fuel: a thread that moves a wasmtime
//! engine's epoch on, and how many of its ticks make a call's deadline.
//!
//! The ticker wakes once a tick for the whole life of the runtime, whether
//! or not a call runs: at one tick a millisecond an idle node spent a
//! measurable share of a core on it (BENCHMARKS.md, "Kept: the epoch ticker
//! wakes ten times a deadline"), for a precision that only a backstop
//! behind fuel needs.
//! So a tick is a tenth of the deadline, and a call is stopped between its
//! deadline and 1.1 times it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::Engine;

/// Epoch ticks per deadline.
const TICKS_PER_DEADLINE: u32 = 10;

/// The shortest tick, for short deadlines (tests use 10 ms).
const MIN_TICK: Duration = Duration::from_millis(1);

/// The thread moving one engine's epoch on; stopped when dropped.
pub(super) struct Ticker {
    stop: Arc<AtomicBool>,
    /// What a call's deadline is in ticks, from the moment it is set.
    deadline_ticks: u64,
}

impl Ticker {
    /// Tick `engine` often enough for calls bounded by `deadline`.
    pub(super) fn start(engine: &Engine, deadline: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let tick = tick(deadline);
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("policy-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })?;
        }
        Ok(Ticker {
            stop,
            deadline_ticks: deadline_ticks(deadline),
        })
    }

    /// Ticks from now to a call's deadline (`Store::set_epoch_deadline`).
    pub(super) fn deadline_ticks(&self) -> u64 {
        self.deadline_ticks
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How often the ticker for `deadline` wakes.
fn tick(deadline: Duration) -> Duration {
    (deadline / TICKS_PER_DEADLINE).max(MIN_TICK)
}

/// Ticks from now to the deadline: one more than the deadline holds, since
/// the tick under way may be about to end, so that no call is stopped
/// before its deadline.
fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_nanos() / tick(deadline).as_nanos()) as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_in_ticks_is_never_short_and_at_most_a_tick_long() {
        for ms in [1, 3, 10, 15, 100, 250, 1_000, 60_000] {
            let deadline = Duration::from_millis(ms);
            let tick = tick(deadline);
            let ticks = deadline_ticks(deadline) as u32;
            // The tick under way may end at once: one tick fewer elapses.
            let soonest = tick * (ticks - 1);
            let latest = tick * ticks;
            assert!(soonest >= deadline, "{ms} ms: stopped at {soonest:?}");
            assert!(
                latest <= deadline + tick && latest <= deadline * 2,
                "{ms} ms: not stopped until {latest:?}"
            );
            assert!(tick >= MIN_TICK);
        }
    }
}
