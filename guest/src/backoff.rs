//! Reconnect backoff (docs/protocol.md §3; PD: 1 s base, x1.6, max 3 s,
//! jitter 0.2).
//!
//! Integer arithmetic only, and the jitter comes from a seed the host passes,
//! so native and Wasm give the same delay for the same inputs and a test can
//! replay any schedule.

use crate::Policy;
use crate::splitmix::mix;

impl Policy {
    /// Delay before reconnect attempt `attempt` (0 = first retry), in ms.
    pub fn backoff(&self, attempt: u32, seed: u64) -> u64 {
        let mut delay = self.backoff_base_ms.min(self.backoff_max_ms);
        for _ in 0..attempt {
            if delay >= self.backoff_max_ms {
                break;
            }
            delay =
                (delay.saturating_mul(self.backoff_growth_tenths) / 10).min(self.backoff_max_ms);
        }
        let span = delay * self.backoff_jitter_percent / 100;
        let offset = mix(seed) % (2 * span + 1);
        delay - span + offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_grows_by_1_6_up_to_3_s_within_20_percent() {
        let p = Policy::default_policy();
        let centres = [1_000u64, 1_600, 2_560, 3_000, 3_000];
        for (attempt, centre) in centres.iter().enumerate() {
            for seed in 0..200u64 {
                let d = p.backoff(attempt as u32, seed);
                assert!(
                    d >= centre * 8 / 10 && d <= centre * 12 / 10,
                    "attempt {attempt} seed {seed}: {d} ms outside 20% of {centre}"
                );
            }
        }
        assert!(p.backoff(u32::MAX, 7) <= 3_600);
    }

    #[test]
    fn jitter_depends_on_the_seed_only() {
        let p = Policy::default_policy();
        assert_eq!(p.backoff(2, 42), p.backoff(2, 42));
        let distinct: std::collections::BTreeSet<u64> = (0..50).map(|s| p.backoff(0, s)).collect();
        assert!(distinct.len() > 10, "jitter barely varies: {distinct:?}");
    }

    #[test]
    fn conservative_waits_longer() {
        let d = Policy::default_policy();
        let c = Policy::conservative();
        assert!(c.backoff(0, 1) > d.backoff(0, 1) * 12 / 10);
        assert!(c.backoff(10, 1) >= 8_000);
    }
}
