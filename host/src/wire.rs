//! Wire facts both roles share (docs/protocol.md §1): the message size limit,
//! response headers, and how a node presents itself as a PD member.
//!
//! Kept apart from the gRPC service so that the follower's client side and
//! the leader's frames can use them without depending on the server.

use bytes::Bytes;
use prost::Message;
use regionsync_proto::pdpb::{Member, ResponseHeader, SyncRegionResponse};

/// Largest gRPC message a node accepts or sends: a 4 MiB frame plus headroom,
/// and no more than the 8 MiB a PD follower accepts.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// One frame of a sync stream: a message, or the encoding of one
/// (`leader::frames::snapshot_encoded`; `service::sync_route` sends it as it
/// is).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Encoded by tonic (boxed: frames wait in per-stream queues, and most
    /// are encodings).
    Message(Box<SyncRegionResponse>),
    /// A `SyncRegionResponse` encoding, sent as it is.
    Encoded(Bytes),
}

impl Frame {
    /// Its size on the wire (before gRPC's framing).
    pub fn encoded_len(&self) -> usize {
        match self {
            Frame::Message(m) => m.encoded_len(),
            Frame::Encoded(b) => b.len(),
        }
    }

    /// The frame as a message (decoding an encoded one).
    pub fn into_message(self) -> Result<SyncRegionResponse, prost::DecodeError> {
        match self {
            Frame::Message(m) => Ok(*m),
            Frame::Encoded(b) => SyncRegionResponse::decode(b),
        }
    }
}

impl From<SyncRegionResponse> for Frame {
    fn from(m: SyncRegionResponse) -> Self {
        Frame::Message(Box::new(m))
    }
}

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

/// gRPC request metadata in which a regionsync follower announces what it
/// takes beyond PD's protocol (docs/protocol.md §7): a comma-separated list
/// of [`Capabilities`] names. A PD follower sends none and gets exactly PD's
/// frames.
pub const CAPABILITIES_HEADER: &str = "regionsync-capabilities";

/// gRPC response metadata in which the leader tells such a follower which
/// sync the stream is: `full-sync`, `delta`, `history` or `up-to-date`.
pub const ROUTE_HEADER: &str = "regionsync-route";

/// gRPC request metadata in which a regionsync follower says which term
/// wrote its last record (`crate::lineage`): a number, or anything else when
/// it does not know. A follower that sends none is not checked (PD).
pub const TERM_HEADER: &str = "regionsync-term";

/// gRPC response metadata in which a leader elected through etcd gives a
/// follower that sent [`TERM_HEADER`] its lineage (`term@index,...`).
pub const LINEAGE_HEADER: &str = "regionsync-lineage";

/// What a follower said of its last record's term.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LastTerm {
    /// Nothing (a PD follower): its history is taken on trust, as PD does.
    #[default]
    NotSent,
    /// This term wrote it.
    Known(u64),
    /// It cannot say (its lineage was forgotten): it cannot resume.
    Unknown,
}

impl LastTerm {
    /// From the header's value, if there is one.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            None => LastTerm::NotSent,
            Some(v) => v.trim().parse().map_or(LastTerm::Unknown, LastTerm::Known),
        }
    }

    /// The header's value ([`TERM_HEADER`]), if one is sent.
    pub fn header(self) -> Option<String> {
        match self {
            LastTerm::NotSent => None,
            LastTerm::Known(t) => Some(t.to_string()),
            LastTerm::Unknown => Some("unknown".into()),
        }
    }
}

/// The route a leader announces ([`ROUTE_HEADER`]) for a routing action.
pub fn route_label(action: crate::policy_runtime::RouteAction) -> &'static str {
    use crate::policy_runtime::RouteAction;
    match action {
        RouteAction::FullSync => "full-sync",
        RouteAction::Delta(_) => "delta",
        RouteAction::History(_) => "history",
        RouteAction::UpToDate => "up-to-date",
    }
}

/// What a follower takes the announced route ([`ROUTE_HEADER`]) to mean;
/// none announced (or one it does not know) is PD's protocol.
pub fn announced_sync(label: Option<&str>) -> crate::policy_runtime::AnnouncedSync {
    use crate::policy_runtime::AnnouncedSync;
    match label {
        Some("full-sync") => AnnouncedSync::Full,
        Some("delta") => AnnouncedSync::Delta,
        Some("history" | "up-to-date") => AnnouncedSync::History,
        _ => AnnouncedSync::None,
    }
}

/// What a follower announced it takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Delta syncs, and full syncs caught up from the store.
    pub delta: bool,
    /// A digest on completion frames, to check its copy against.
    pub verify: bool,
    /// Its store is part-way through a delta from the requested index: only
    /// a delta from there, or a full sync, can complete it.
    pub must_delta: bool,
    /// The term of its last record ([`TERM_HEADER`], apart from the list).
    pub last_term: LastTerm,
}

impl Capabilities {
    /// Parse the header's value; unknown names are ignored (a newer follower
    /// may know more).
    pub fn parse(value: &str) -> Self {
        let mut caps = Capabilities::default();
        for name in value.split(',').map(str::trim) {
            match name {
                "delta" => caps.delta = true,
                "verify" => caps.verify = true,
                "delta-resume" => caps.must_delta = true,
                _ => {}
            }
        }
        caps
    }

    /// The header's value; empty when there is nothing to announce.
    pub fn to_header(self) -> String {
        let names = [
            (self.delta, "delta"),
            (self.verify, "verify"),
            (self.must_delta, "delta-resume"),
        ];
        names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The follower speaks regionsync's extensions at all.
    pub fn any(self) -> bool {
        self.delta || self.verify
    }
}

/// The digest field of a completion frame, as bytes.
pub fn digest_bytes(digest: u128) -> Vec<u8> {
    digest.to_le_bytes().to_vec()
}

/// The digest a completion frame carries, if it carries a well-formed one.
pub fn digest_of(bytes: &[u8]) -> Option<u128> {
    Some(u128::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_round_trip_and_ignore_unknown_names() {
        let caps = Capabilities {
            delta: true,
            verify: true,
            must_delta: false,
            last_term: LastTerm::NotSent,
        };
        assert_eq!(Capabilities::parse(&caps.to_header()), caps);
        assert_eq!(LastTerm::parse(None), LastTerm::NotSent);
        assert_eq!(LastTerm::parse(Some("17")), LastTerm::Known(17));
        assert_eq!(LastTerm::parse(Some("forgotten")), LastTerm::Unknown);
        assert_eq!(
            Capabilities::parse("verify, teleport"),
            Capabilities {
                verify: true,
                ..Default::default()
            }
        );
        assert!(!Capabilities::parse("").any());
        assert_eq!(digest_of(&digest_bytes(42)), Some(42));
        assert_eq!(digest_of(&[1, 2, 3]), None);
    }
}
