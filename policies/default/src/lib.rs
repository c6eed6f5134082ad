//! The default policy: the protocol's behaviour (docs/protocol.md §2-§3)
//! with PD's reconnect backoff. It overrides nothing: every provided method
//! of `SyncPolicy` is the default behaviour, so this crate is the whole of
//! what it takes to ship a policy.
#![cfg_attr(target_arch = "wasm32", no_std)]

use regionsync_guest::SyncPolicy;

/// The default policy.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultPolicy;

impl SyncPolicy for DefaultPolicy {}

regionsync_guest::export_policy!(DefaultPolicy);
