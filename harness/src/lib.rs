//! regionsync-harness: what everything that drives regionsync nodes from
//! outside shares (the integration tests, `regionsync bench`, the examples
//! and the demos): one of each, so that a fix to a harness is made once.
//!
//! - [`cluster`]: nodes in this process on loopback, regions and
//!   heartbeats to feed them, waiting for a follower to catch up;
//! - [`proxy`]: the one fault-injecting TCP proxy (cut, partition, stall,
//!   throttle, late answers, retarget);
//! - [`ports`]: free loopback ports for nodes started as processes;
//! - [`eventually`]: the one poll-until for what a test can only look at;
//! - [`process`], [`etcd`], [`ha_cluster`]: node processes of the binary,
//!   a real etcd, and three nodes electing through it;
//! - [`load`] (the heartbeat generator and PD client behind `regionsync
//!   load`), [`admin_client`] (the admin interface's client behind
//!   `regionsync status`), [`vectors`] (the policy's conformance vectors).
//!
//! Errors are `anyhow`: a harness reports to a person or a test, never to
//! code that branches on them.

pub mod admin_client;
pub mod cluster;
pub mod etcd;
pub mod eventually;
pub mod ha_cluster;
pub mod load;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod vectors;
