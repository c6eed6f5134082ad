//! The conservative policy: any gap means a full sync, one full sync at a
//! time, smaller frames and slower reconnects. It is tuning only: the same
//! logic as the default policy, read with other knobs.
#![cfg_attr(target_arch = "wasm32", no_std)]

use regionsync_guest::{Policy, SyncPolicy};

/// The conservative policy.
#[derive(Debug, Default, Clone, Copy)]
pub struct Conservative;

impl SyncPolicy for Conservative {
    fn knobs(&self) -> Policy {
        Policy::conservative()
    }
}

regionsync_guest::export_policy!(Conservative);
