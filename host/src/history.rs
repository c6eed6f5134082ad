//! The history ring: the last N accepted region changes, numbered by a
//! monotonically increasing index, readable as [first_index, next_index).
//!
//! Bounded in records (docs/protocol.md §2); each follower stream keeps its own cursor
//! outside the ring (PD #10715 had one shared cursor). A full sync *pins* the
//! ring from its start index: if the ring must overwrite a record a pin still
//! needs, the pin is marked broken at once, so the stream learns immediately
//! that its catch-up is lost (and ends with RESOURCE_EXHAUSTED) instead of
//! streaming the rest of a useless snapshot, and records are never silently
//! overwritten under a reader (PD #10734).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prost::Message;
use regionsync_guest::RingView;
use regionsync_proto::metapb::{Peer, Region};
use regionsync_proto::pdpb::{RegionHeartbeatRequest, RegionStat};

/// One change: the region as it became, with its leader and flow. What a
/// heartbeat proposes to the intake, and, once accepted, what the ring keeps
/// and the sync frames carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The region as it became.
    pub region: Region,
    /// Its leader peer (id 0 when unknown).
    pub leader: Peer,
    /// Its flow statistics.
    pub stats: RegionStat,
}

impl Record {
    /// The change a heartbeat proposes; `None` when it carries no region.
    pub fn from_heartbeat(req: RegionHeartbeatRequest) -> Option<Self> {
        let stats = RegionStat {
            bytes_written: req.bytes_written,
            bytes_read: req.bytes_read,
            keys_written: req.keys_written,
            keys_read: req.keys_read,
        };
        Some(Record {
            region: req.region?,
            leader: req.leader.unwrap_or_default(),
            stats,
        })
    }

    /// Bytes this record adds to a frame (region, leader and stats).
    pub fn encoded_len(&self) -> usize {
        self.region.encoded_len() + self.leader.encoded_len() + self.stats.encoded_len() + 8
    }
}

/// Fingerprint of what a change carries besides the region (its leader and
/// flow), so that the region store can tell a leader or flow change from a
/// repeat. Leader intake and follower apply must agree on it.
pub fn fingerprint(leader: &Peer, stats: &RegionStat) -> u64 {
    let fields = [
        leader.id,
        leader.store_id,
        stats.bytes_written,
        stats.bytes_read,
        stats.keys_written,
        stats.keys_read,
    ];
    let mut buf = [0u8; 48];
    for (chunk, f) in buf.chunks_exact_mut(8).zip(fields) {
        chunk.copy_from_slice(&f.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&buf)
}

/// Held by a full sync from its start until its catch-up is sent.
#[derive(Debug)]
pub struct Pin {
    from: u64,
    broken: AtomicBool,
}

impl Pin {
    /// The first index the pin protects.
    pub fn from(&self) -> u64 {
        self.from
    }

    /// A record at or after `from` was overwritten: the catch-up is lost.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }
}

/// The ring of one node (leader or follower: both number like the leader).
pub struct HistoryRing {
    records: VecDeque<Arc<Record>>,
    first_index: u64,
    capacity: usize,
    pins: Vec<Arc<Pin>>,
}

impl HistoryRing {
    /// An empty ring whose next record gets `next_index` (after a restart,
    /// first_index == next_index, docs/protocol.md §2).
    pub fn new(capacity: usize, next_index: u64) -> Self {
        let capacity = capacity.max(1);
        HistoryRing {
            records: VecDeque::with_capacity(capacity.min(1 << 20)),
            first_index: next_index,
            capacity,
            pins: Vec::new(),
        }
    }

    /// Oldest readable index.
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Index the next record gets.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.records.len() as u64
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No records held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Most records held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The ring as the policy sees it.
    pub fn view(&self) -> RingView {
        RingView {
            first_index: self.first_index,
            next_index: self.next_index(),
            capacity: self.capacity as u64,
        }
    }

    /// Append a record; returns its index. Overwrites the oldest when full,
    /// breaking any pin that still needed it.
    pub fn push(&mut self, record: Arc<Record>) -> u64 {
        if self.records.len() == self.capacity {
            let evicted = self.first_index;
            self.records.pop_front();
            self.first_index += 1;
            self.pins.retain(|pin| {
                // Only the ring holds it: the stream has let go.
                if Arc::strong_count(pin) == 1 {
                    return false;
                }
                if pin.from <= evicted {
                    pin.broken.store(true, Ordering::Release);
                    return false;
                }
                true
            });
        }
        self.records.push_back(record);
        self.next_index() - 1
    }

    /// Pin from the current next index.
    pub fn pin(&mut self) -> Arc<Pin> {
        self.pins.retain(|p| Arc::strong_count(p) > 1);
        let pin = Arc::new(Pin {
            from: self.next_index(),
            broken: AtomicBool::new(false),
        });
        self.pins.push(pin.clone());
        pin
    }

    /// Records [start, start + count), cut short to stay within `max_bytes`
    /// (at least one record); empty if `start` is outside the ring.
    pub fn read(&self, start: u64, count: usize, max_bytes: usize) -> Vec<Arc<Record>> {
        if start < self.first_index || start >= self.next_index() {
            return Vec::new();
        }
        let offset = (start - self.first_index) as usize;
        let mut bytes = 0;
        let mut out = Vec::with_capacity(count.min(self.records.len() - offset));
        for r in self.records.iter().skip(offset).take(count) {
            let size = r.encoded_len();
            if !out.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            out.push(r.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64) -> Arc<Record> {
        Arc::new(Record {
            region: Region {
                id,
                ..Default::default()
            },
            leader: Peer::default(),
            stats: RegionStat::default(),
        })
    }

    #[test]
    fn indexes_continue_from_the_start_and_the_ring_stays_bounded() {
        let mut ring = HistoryRing::new(3, 10);
        assert_eq!((ring.first_index(), ring.next_index()), (10, 10));
        for id in 0..5 {
            assert_eq!(ring.push(rec(id)), 10 + id);
        }
        assert_eq!(
            (ring.first_index(), ring.next_index(), ring.len()),
            (12, 15, 3)
        );
        let got: Vec<u64> = ring
            .read(12, 10, usize::MAX)
            .iter()
            .map(|r| r.region.id)
            .collect();
        assert_eq!(got, vec![2, 3, 4]);
        assert!(ring.read(11, 10, usize::MAX).is_empty());
        assert!(ring.read(15, 10, usize::MAX).is_empty());
        assert_eq!(ring.read(13, 1, usize::MAX).len(), 1);
    }

    #[test]
    fn reads_respect_the_byte_bound_but_return_at_least_one() {
        let mut ring = HistoryRing::new(10, 1);
        for id in 1..=5 {
            ring.push(rec(id));
        }
        let one = ring.read(1, 1, usize::MAX)[0].encoded_len();
        assert_eq!(ring.read(1, 5, one * 2).len(), 2);
        assert_eq!(ring.read(1, 5, 1).len(), 1);
    }

    #[test]
    fn a_pin_breaks_when_its_records_are_overwritten() {
        let mut ring = HistoryRing::new(3, 1);
        ring.push(rec(1));
        let pin = ring.pin();
        assert_eq!(pin.from(), 2);
        ring.push(rec(2));
        ring.push(rec(3));
        ring.push(rec(4)); // evicts index 1: not pinned
        assert!(!pin.is_broken());
        ring.push(rec(5)); // evicts index 2: pinned
        assert!(pin.is_broken());
    }

    #[test]
    fn a_released_pin_is_forgotten() {
        let mut ring = HistoryRing::new(2, 1);
        let pin = ring.pin();
        drop(pin);
        for id in 0..5 {
            ring.push(rec(id));
        }
        assert!(ring.pins.is_empty());
    }
}
