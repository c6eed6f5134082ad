//! The client-side commands a person runs against nodes: feeding a leader
//! ([`load`]), the end-to-end demos ([`demo`]; [`demo_ha`] on a real etcd,
//! with [`ha_cluster`]'s node processes), the admin client behind
//! `regionsync status` and `regionsync policy swap` ([`admin_client`]), and the
//! policy author's tools (`policy check`, `vectors`, `policy new`).
//!
//! These are the binary's edge: they report errors with `anyhow`, as the
//! binary does, and live in the library only so that tests and benchmarks
//! can drive them.

pub mod admin_client;
pub mod check;
pub mod demo;
pub mod demo_ha;
pub mod ha_cluster;
pub mod load;
pub mod policy_new;
pub mod ports;
pub mod vectors;
pub mod workload;
