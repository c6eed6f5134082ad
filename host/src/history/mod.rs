//! The history ring: the last N accepted region changes, numbered by a
//! monotonically increasing index, readable as [first_index, next_index).
//!
//! Bounded in records and in bytes (docs/protocol.md §2, §7): whichever bound
//! is reached first evicts the oldest record. Each follower stream keeps its own cursor
//! outside the ring (PD #10715 had one shared cursor). A full sync *pins* the
//! ring from its start index: if the ring must overwrite a record a pin still
//! needs, the pin is marked broken at once, so the stream learns immediately
//! that its catch-up is lost (and ends with RESOURCE_EXHAUSTED) instead of
//! streaming the rest of a useless snapshot, and records are never silently
//! overwritten under a reader (PD #10734).
//!
//! Records are kept encoded ([`RingRecord`], `encoded`): what a history
//! frame sends, at about a third of a decoded record's memory.

mod encoded;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use regionsync_guest::RingView;
use regionsync_proto::metapb::{Peer, Region};
use regionsync_proto::pdpb::{PeerStats, RegionHeartbeatRequest, RegionStat};

pub use encoded::{Part, RingRecord, frame_len};

/// One change: the region as it became, with its leader and flow. What a
/// heartbeat proposes to the intake; once accepted, the ring keeps it
/// encoded ([`RingRecord`]) and the sync frames carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The region as it became.
    pub region: Region,
    /// Its leader peer (id 0 when unknown).
    pub leader: Peer,
    /// Its flow statistics.
    pub stats: RegionStat,
    /// Its peers that are down, with for how long.
    pub down_peers: Vec<PeerStats>,
    /// Its peers that are behind.
    pub pending_peers: Vec<Peer>,
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
            down_peers: req.down_peers,
            pending_peers: req.pending_peers,
        })
    }

    /// A record of just a region and its leader (no flow, no peer states).
    pub fn bare(region: Region, leader: Peer) -> Self {
        Record {
            region,
            leader,
            stats: RegionStat::default(),
            down_peers: Vec::new(),
            pending_peers: Vec::new(),
        }
    }
}

/// Fingerprint of what a change carries besides the region, as far as it
/// makes a record (PD's `needSync` rule): its leader, its down and pending
/// peers, and its bytes written and read rounded half-up to multiples of
/// `flow_divisor` (10^`--flow-round-digits`; 1 keeps them exact). Keys
/// written/read, approximate size and keys make no record. Leader intake and
/// follower apply use the same function.
pub fn fingerprint(record: &Record, flow_divisor: u64) -> u64 {
    fingerprint_of(
        &record.leader,
        &record.stats,
        &record.down_peers,
        &record.pending_peers,
        flow_divisor,
    )
}

/// [`fingerprint`] of a record's parts, for a caller that has them without
/// a record (a follower applying a snapshot builds none).
pub fn fingerprint_of(
    leader: &Peer,
    stats: &RegionStat,
    down_peers: &[PeerStats],
    pending_peers: &[Peer],
    flow_divisor: u64,
) -> u64 {
    let round = |v: u64| {
        let d = flow_divisor.max(1);
        (v.saturating_add(d / 2) / d).saturating_mul(d)
    };
    let mut h = crate::digest::Gather::default();
    for word in [
        leader.id,
        leader.store_id,
        round(stats.bytes_written),
        round(stats.bytes_read),
    ] {
        h.update(&word.to_le_bytes());
    }
    for d in down_peers {
        let p = d.peer.unwrap_or_default();
        // Down time is not part of the state: it grows every heartbeat.
        h.update(&p.id.to_le_bytes());
    }
    h.update(&[0xff]);
    for p in pending_peers {
        h.update(&p.id.to_le_bytes());
    }
    h.digest()
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
    /// Each record with when it was pushed (for the change rate) and its
    /// size in a frame (kept, so that neither eviction nor every stream's
    /// read walks the record again).
    records: VecDeque<(RingRecord, Instant, usize)>,
    first_index: u64,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    pins: Vec<Arc<Pin>>,
}

/// Records the change rate is measured over: enough to smooth a burst, few
/// enough to follow a change of load within seconds.
const RATE_WINDOW: usize = 4_096;

impl HistoryRing {
    /// An empty ring whose next record gets `next_index` (after a restart,
    /// first_index == next_index, docs/protocol.md §2).
    /// `max_bytes` bounds the records' encoded size (0: no bound).
    pub fn new(capacity: usize, max_bytes: usize, next_index: u64) -> Self {
        let capacity = capacity.max(1);
        HistoryRing {
            records: VecDeque::with_capacity(capacity.min(1 << 16)),
            first_index: next_index,
            capacity,
            max_bytes: if max_bytes == 0 {
                usize::MAX
            } else {
                max_bytes
            },
            bytes: 0,
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
    /// Encoded bytes of the records held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The ring as the policy sees it, with no delta floor (the store, not
    /// the ring, knows that; see `RegionStore::delta_floor`).
    pub fn view(&self) -> RingView {
        RingView {
            first_index: self.first_index,
            next_index: self.next_index(),
            capacity: self.capacity as u64,
            delta_floor: 0,
        }
    }

    /// How long the ring would hold a record at the current change rate:
    /// what it can hold (its record bound, or its byte bound at the current
    /// record size) over the changes per second of the last few thousand
    /// records. `None` before there is a rate to measure.
    pub fn seconds_covered(&self, now: Instant) -> Option<f64> {
        let n = self.records.len().min(RATE_WINDOW);
        let (_, since, _) = self.records.get(self.records.len().checked_sub(n)?)?;
        let span = now
            .saturating_duration_since(*since)
            .max(Duration::from_millis(1));
        let rate = n as f64 / span.as_secs_f64();
        let mean_bytes = self.bytes as f64 / self.records.len().max(1) as f64;
        let holds = (self.capacity as f64).min(self.max_bytes as f64 / mean_bytes.max(1.0));
        Some(holds / rate)
    }

    /// Append a record; returns its index. Overwrites the oldest when full,
    /// breaking any pin that still needed it.
    pub fn push(&mut self, record: RingRecord) -> u64 {
        let size = record.frame_len();
        self.bytes += size;
        self.records.push_back((record, Instant::now(), size));
        while self.records.len() > self.capacity
            || (self.bytes > self.max_bytes && self.records.len() > 1)
        {
            let evicted = self.first_index;
            let (_, _, size) = self.records.pop_front().expect("more than one record");
            self.bytes -= size;
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
        self.next_index() - 1
    }

    /// The same records under new bounds (a role taking over a ring that
    /// another role's settings sized); pins stay with the old ring.
    pub fn rebounded(mut self, capacity: usize, max_bytes: usize) -> Self {
        let mut ring = HistoryRing::new(capacity, max_bytes, self.first_index);
        for (record, at, _) in self.records.drain(..) {
            ring.push(record);
            if let Some(last) = ring.records.back_mut() {
                last.1 = at;
            }
        }
        ring
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
    pub fn read(&self, start: u64, count: usize, max_bytes: usize) -> Vec<RingRecord> {
        if start < self.first_index || start >= self.next_index() {
            return Vec::new();
        }
        let offset = (start - self.first_index) as usize;
        let mut bytes = 0;
        let mut out = Vec::with_capacity(count.min(self.records.len() - offset));
        for (r, _, size) in self.records.iter().skip(offset).take(count) {
            let size = *size;
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
mod tests;
