//! The regionsync sync policy: every decision of the region syncer as a pure
//! function of the state and event the host passes in (docs/protocol.md §5).
//!
//! This crate is the sans-IO half of the system, in the spirit of raft-rs's
//! `RawNode` and quinn-proto: no clock, no randomness, no I/O, no globals. The
//! host owns sockets, storage and time, calls in with a snapshot of what it
//! knows, and gets back the new state and what to do. The same code runs two
//! ways: linked natively into the host, and compiled to a `wasm32-wasip2`
//! component (see `component`) that the host loads and can swap at run time.
//! Keeping one implementation for both is what makes the differential test
//! between them meaningful.
//!
//! The types here mirror `wit/policy.wit` one to one; the WIT file is the
//! contract and documents every field.
#![cfg_attr(target_arch = "wasm32", no_std)]
#![warn(missing_docs)]

extern crate alloc;

mod backoff;
mod follower;
pub mod invariants;
mod routing;
mod sdk;
pub mod splitmix;
mod stream;
mod types;
mod wit_conversions;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod component;

pub use sdk::SyncPolicy;
pub use types::*;

/// The WIT package version this library implements; the host checks a
/// component against it.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// Frame bounds the protocol fixes as the ceiling for every policy: PD followers
/// refuse messages over their receive limit, so no policy may exceed these.
pub const MAX_FRAME_REGIONS: u32 = 1_000;
/// See [`MAX_FRAME_REGIONS`]: 4 MiB per frame keeps well below PD's 8 MiB.
pub const MAX_FRAME_BYTES: u64 = 4 * 1024 * 1024;

/// The knobs that tell one shipped policy from another. Every decision is a
/// method on this, so a policy is data plus the shared logic below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Name reported by `describe`.
    pub name: &'static str,
    /// Version reported by `describe`.
    pub version: &'static str,
    /// Route every request that is not up to date to a full sync, and treat
    /// any gap seen by a follower as a reason for a full sync.
    pub gaps_mean_full_sync: bool,
    /// How many full syncs may stream at once on a leader.
    pub max_concurrent_full_syncs: u32,
    /// First reconnect delay.
    pub backoff_base_ms: u64,
    /// Growth per attempt, in tenths (16 = x1.6).
    pub backoff_growth_tenths: u64,
    /// Ceiling of the reconnect delay before jitter.
    pub backoff_max_ms: u64,
    /// Jitter as a percentage of the delay, drawn both ways.
    pub backoff_jitter_percent: u64,
    /// Bounds of one frame.
    pub limits: FrameLimits,
}

impl Policy {
    /// The behaviour of docs/protocol.md §2-§3, with PD's reconnect backoff.
    pub const fn default_policy() -> Self {
        Policy {
            name: "default",
            version: "0.2.0",
            gaps_mean_full_sync: false,
            max_concurrent_full_syncs: 4,
            backoff_base_ms: 1_000,
            backoff_growth_tenths: 16,
            backoff_max_ms: 3_000,
            backoff_jitter_percent: 20,
            limits: FrameLimits {
                max_regions: MAX_FRAME_REGIONS,
                max_bytes: MAX_FRAME_BYTES,
            },
        }
    }

    /// Trades bandwidth for simplicity: any gap means a full sync, one full
    /// sync at a time, slower reconnects.
    pub const fn conservative() -> Self {
        Policy {
            name: "conservative",
            version: "0.2.0",
            gaps_mean_full_sync: true,
            max_concurrent_full_syncs: 1,
            backoff_base_ms: 2_000,
            backoff_growth_tenths: 20,
            backoff_max_ms: 10_000,
            backoff_jitter_percent: 20,
            limits: FrameLimits {
                max_regions: 500,
                max_bytes: 2 * 1024 * 1024,
            },
        }
    }

    /// A shipped policy by name.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "default" => Some(Self::default_policy()),
            "conservative" => Some(Self::conservative()),
            _ => None,
        }
    }

    /// Name and version.
    pub fn describe(&self) -> PolicyInfo {
        PolicyInfo {
            name: self.name.into(),
            version: self.version.into(),
        }
    }

    /// Bounds of one frame.
    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    /// May another full sync start while `running` are streaming?
    pub fn admit_full_sync(&self, running: u32) -> bool {
        running < self.max_concurrent_full_syncs
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn contract_version_matches_the_wit_package() {
        let wit = include_str!("../../wit/policy.wit");
        let want = format!("package regionsync:policy@{};", super::CONTRACT_VERSION);
        assert!(
            wit.lines().any(|l| l.trim() == want),
            "wit/policy.wit does not declare {want}"
        );
    }
}
