//! Which regions are refused before they reach a store (docs/protocol.md §2):
//! the leader answers a malformed heartbeat with `INVALID_VALUE` naming the
//! reason, and a follower skips a malformed region a leader sent.

use crate::digest::RegionFields;

/// Why a region is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedRegion {
    /// A heartbeat that carries no region at all.
    #[error("heartbeat without a region")]
    Absent,
    /// Region id 0 is never a region.
    #[error("region id 0")]
    ZeroId,
    /// A region with no peers cannot be served by anyone.
    #[error("region {0} has no peers")]
    NoPeers(u64),
    /// `start_key >= end_key` with a bounded end: an empty or inverted range.
    #[error(
        "region {id} has start_key {} >= end_key {}",
        show_key(start),
        show_key(end)
    )]
    EmptyRange {
        /// The region.
        id: u64,
        /// Its start key.
        start: Vec<u8>,
        /// Its end key.
        end: Vec<u8>,
    },
}

/// Refuse a region no store should hold (decoded, or read from its
/// encoding).
pub fn check_region(r: &impl RegionFields) -> Result<(), MalformedRegion> {
    let (id, start, end) = (r.id(), r.start_key(), r.end_key());
    if id == 0 {
        return Err(MalformedRegion::ZeroId);
    }
    if r.peer_count() == 0 {
        return Err(MalformedRegion::NoPeers(id));
    }
    if !end.is_empty() && start >= end {
        return Err(MalformedRegion::EmptyRange {
            id,
            start: start.to_vec(),
            end: end.to_vec(),
        });
    }
    Ok(())
}

/// A key for log lines: printable ASCII as is, the rest escaped.
pub fn show_key(k: &[u8]) -> String {
    k.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use regionsync_proto::metapb::Region;

    fn region(id: u64, start: &str, end: &str) -> Region {
        crate::region_store::tests::region(id, start, end, 1, 1)
    }

    #[test]
    fn malformed_regions_are_named_with_the_reason() {
        assert_eq!(
            check_region(&region(0, "a", "b")),
            Err(MalformedRegion::ZeroId)
        );
        let mut r = region(5, "a", "b");
        r.peers.clear();
        assert_eq!(check_region(&r), Err(MalformedRegion::NoPeers(5)));
        assert_eq!(
            check_region(&r).unwrap_err().to_string(),
            "region 5 has no peers"
        );
        let err = check_region(&region(6, "b", "a")).unwrap_err();
        assert!(matches!(err, MalformedRegion::EmptyRange { id: 6, .. }));
        assert_eq!(err.to_string(), "region 6 has start_key b >= end_key a");
        assert!(check_region(&region(7, "b", "")).is_ok());
    }
}
