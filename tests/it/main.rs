//! The integration tests that run in this process, in one binary: real
//! nodes over real gRPC and real redb, the real Wasm components, and the
//! fault scenarios. A module per suite.

mod decision_tables;
mod fault_injection;
mod follower_sync;
mod fuzz_inputs;
mod hostile_answers;
mod leader_sync;
mod policy_containment;
mod policy_differential;
mod policy_shadow;
mod sync_under_churn;
mod wire_limits;
