//! Wire facts both roles share (docs/protocol.md §1): the message size limit,
//! response headers, and how a node presents itself as a PD member.
//!
//! Kept apart from the gRPC service so that the follower's client side and
//! the leader's frames can use them without depending on the server.

use regionsync_proto::pdpb::{Member, ResponseHeader};

/// Largest gRPC message a node accepts or sends: a 4 MiB frame plus headroom,
/// and no more than the 8 MiB a PD follower accepts.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// A response header for `cluster_id` without an error.
pub fn ok_header(cluster_id: u64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        cluster_id,
        error: None,
    })
}

/// A node as a PD member: its name, a stable id from the name, its URL.
pub fn member(name: &str, url: &str) -> Member {
    Member {
        name: name.to_string(),
        member_id: xxhash_rust::xxh3::xxh3_64(name.as_bytes()),
        client_urls: vec![url.to_string()],
        peer_urls: vec![url.to_string()],
        binary_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}
