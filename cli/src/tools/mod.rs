//! The client-side commands a person runs against nodes or components: the
//! end-to-end demos ([`demo`]; [`demo_ha`] on a real etcd), and the policy
//! author's tools (`policy check`, `policy new`, the simulated
//! [`workload`] of `policy diff`).

pub mod check;
pub mod demo;
pub mod demo_ha;
pub mod policy_new;
pub mod workload;
