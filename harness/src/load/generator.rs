//! The model cluster behind `regionsync load`: regions as a partition of the
//! key space, and the heartbeats each churn operation causes (see the
//! module above for why it is built this way).

use std::collections::{BTreeMap, HashMap};

use regionsync_proto::metapb::{Peer, Region, RegionEpoch};
use regionsync_proto::pdpb::{RegionHeartbeatRequest, RequestHeader};

/// Keys are `k` + 20 decimal digits: ordered like their numbers.
fn key(n: u64) -> Vec<u8> {
    if n == 0 {
        Vec::new()
    } else {
        format!("k{n:020}").into_bytes()
    }
}

fn parse_key(k: &[u8]) -> Option<u64> {
    if k.is_empty() {
        return Some(0);
    }
    std::str::from_utf8(k.strip_prefix(b"k")?)
        .ok()?
        .parse()
        .ok()
}

/// One region of the model: [start, end) in key numbers (end 0: +infinity).
#[derive(Debug, Clone)]
pub(super) struct ModelRegion {
    id: u64,
    start: u64,
    end: u64,
    version: u64,
    conf_ver: u64,
    peers: Vec<Peer>,
    leader: usize,
    /// Bytes written in the last interval.
    flow: u64,
}

impl ModelRegion {
    fn region(&self) -> Region {
        Region {
            id: self.id,
            start_key: key(self.start),
            end_key: if self.end == 0 {
                Vec::new()
            } else {
                key(self.end)
            },
            region_epoch: Some(RegionEpoch {
                conf_ver: self.conf_ver,
                version: self.version,
            }),
            peers: self.peers.clone(),
            ..Default::default()
        }
    }
}

/// Seeded, so that a run is replayable from its seed.
type Rng = regionsync_guest::splitmix::SplitMix64;

/// What a churn step did, for the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChurnCounts {
    /// Regions split in two.
    pub splits: u64,
    /// Neighbours merged.
    pub merges: u64,
    /// Leaders moved to another peer.
    pub leader_transfers: u64,
    /// Peers replaced (conf_ver bumped).
    pub conf_changes: u64,
    /// New flow statistics reported.
    pub flow_updates: u64,
}

impl ChurnCounts {
    /// Churn operations so far.
    pub fn operations(&self) -> u64 {
        self.splits + self.merges + self.leader_transfers + self.conf_changes + self.flow_updates
    }
}

/// The model cluster and the heartbeats that describe its changes.
pub struct Generator {
    cluster_id: u64,
    /// The model, by start key.
    pub(super) regions: BTreeMap<u64, ModelRegion>,
    /// Every start key, for picking a region at random in O(1).
    starts: Vec<u64>,
    /// Where each start key is in `starts`.
    slot: HashMap<u64, usize>,
    next_id: u64,
    next_peer: u64,
    rng: Rng,
    /// What the churn did so far.
    pub counts: ChurnCounts,
}

const STORES: u64 = 5;

impl Generator {
    fn empty(cluster_id: u64, seed: u64) -> Self {
        Generator {
            cluster_id,
            regions: BTreeMap::new(),
            starts: Vec::new(),
            slot: HashMap::new(),
            next_id: 1,
            next_peer: 1_000_000_000,
            rng: Rng::new(seed),
            counts: ChurnCounts::default(),
        }
    }

    /// A model of `n` regions evenly splitting the key space.
    pub fn new(cluster_id: u64, n: u64, seed: u64) -> Self {
        let n = n.max(1);
        let step = u64::MAX / 4 / n;
        let mut g = Self::empty(cluster_id, seed);
        for i in 0..n {
            let peers = g.new_peers(i);
            let flow = g.rng.below(1 << 20);
            let id = g.next_id;
            g.next_id += 1;
            g.insert(ModelRegion {
                id,
                start: i * step,
                end: if i + 1 == n { 0 } else { (i + 1) * step },
                version: 1,
                conf_ver: 1,
                peers,
                leader: 0,
                flow,
            });
        }
        g
    }

    /// A model that continues from the regions a leader holds (a second run
    /// on the same data), or `None` if they are not this generator's.
    pub fn resume(cluster_id: u64, existing: Vec<(Region, Peer)>, seed: u64) -> Option<Self> {
        let mut g = Self::empty(cluster_id, seed);
        g.extend(existing)?;
        Some(g)
    }

    /// Add the next regions of a leader's (in key order, after every region
    /// the model has), or `None` if they are not this generator's. Churn
    /// may run on the model meanwhile: it never moves the boundary between
    /// the regions added and those still to come (a merge needs its right
    /// neighbour in the model), so the leader's next page starts right after
    /// the model's last region whatever churn did before it.
    pub fn extend(&mut self, existing: Vec<(Region, Peer)>) -> Option<()> {
        let g = self;
        if g.regions.is_empty() {
            // The leader's regions arrive while churn runs, so new ids cannot
            // follow the largest one seen: a later page may hold it. They
            // come from a window of their own, far above any id a fresh
            // model gives, picked by the seed.
            let window = (1u64 << 56) + (g.rng.below(1 << 20) << 32);
            g.next_id = window;
            g.next_peer = window;
        }
        for (r, leader) in existing {
            let epoch = r.region_epoch.unwrap_or_default();
            let flow = g.rng.below(1 << 20);
            g.insert(ModelRegion {
                id: r.id,
                start: parse_key(&r.start_key)?,
                end: if r.end_key.is_empty() {
                    0
                } else {
                    parse_key(&r.end_key)?
                },
                version: epoch.version,
                conf_ver: epoch.conf_ver,
                leader: r.peers.iter().position(|p| p.id == leader.id).unwrap_or(0),
                peers: r.peers,
                flow,
            });
        }
        Some(())
    }

    fn insert(&mut self, r: ModelRegion) {
        if !self.regions.contains_key(&r.start) {
            self.slot.insert(r.start, self.starts.len());
            self.starts.push(r.start);
        }
        self.regions.insert(r.start, r);
    }

    fn remove(&mut self, start: u64) -> Option<ModelRegion> {
        let r = self.regions.remove(&start)?;
        let at = self.slot.remove(&start).expect("indexed");
        self.starts.swap_remove(at);
        if let Some(&moved) = self.starts.get(at) {
            self.slot.insert(moved, at);
        }
        Some(r)
    }

    /// Regions in the model.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// No regions in the model.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    fn new_peers(&mut self, salt: u64) -> Vec<Peer> {
        (0..3)
            .map(|s| {
                self.next_peer += 1;
                Peer {
                    id: self.next_peer,
                    store_id: 1 + (salt + s) % STORES,
                    ..Default::default()
                }
            })
            .collect()
    }

    pub(super) fn heartbeat(&self, r: &ModelRegion) -> RegionHeartbeatRequest {
        let region = r.region();
        RegionHeartbeatRequest {
            header: Some(RequestHeader {
                cluster_id: self.cluster_id,
                ..Default::default()
            }),
            leader: region.peers.get(r.leader).copied(),
            region: Some(region),
            bytes_written: r.flow,
            keys_written: r.flow / 64,
            approximate_size: 96 << 20,
            ..Default::default()
        }
    }

    /// One heartbeat per region of the model, in key order.
    pub fn all(&mut self) -> Vec<RegionHeartbeatRequest> {
        self.regions.values().map(|r| self.heartbeat(r)).collect()
    }

    /// A region's flow moves: mostly by a little (under a thousand bytes,
    /// which PD's rounding to three digits mostly hides), sometimes a lot.
    fn move_flow(&mut self, start: u64) {
        let big = self.rng.below(5) == 0;
        let delta = if big {
            1_000 + self.rng.below(1 << 16)
        } else {
            self.rng.below(400)
        };
        let r = self.regions.get_mut(&start).expect("in the model");
        r.flow = if self.rng.below(2) == 0 {
            r.flow.saturating_add(delta)
        } else {
            r.flow.saturating_sub(delta)
        };
    }

    /// One churn operation, as the heartbeats it causes.
    pub fn churn(&mut self) -> Vec<RegionHeartbeatRequest> {
        let pick = self.rng.below(self.starts.len() as u64) as usize;
        let start = self.starts[pick];
        let roll = self.rng.below(100);
        self.move_flow(start);
        if roll < 5 {
            if let Some(out) = self.split(start) {
                return out;
            }
        } else if roll < 10 && self.regions.len() > 1 {
            if let Some(out) = self.merge(start) {
                return out;
            }
        } else if roll < 35 {
            let r = self.regions.get_mut(&start).expect("picked");
            r.leader = (r.leader + 1) % r.peers.len();
            self.counts.leader_transfers += 1;
        } else if roll < 40 {
            self.next_peer += 1;
            let store = 1 + self.rng.below(STORES);
            let next_peer = self.next_peer;
            let r = self.regions.get_mut(&start).expect("picked");
            let slot = (r.leader + 1) % r.peers.len();
            r.peers[slot] = Peer {
                id: next_peer,
                store_id: store,
                ..Default::default()
            };
            r.conf_ver += 1;
            self.counts.conf_changes += 1;
        } else {
            self.counts.flow_updates += 1;
        }
        vec![self.heartbeat(&self.regions[&start])]
    }

    fn split(&mut self, start: u64) -> Option<Vec<RegionHeartbeatRequest>> {
        let r = self.regions[&start].clone();
        let end = if r.end == 0 { u64::MAX / 2 } else { r.end };
        if end - r.start < 2 {
            return None;
        }
        let mid = r.start + (end - r.start) / 2;
        let mut left = r.clone();
        left.end = mid;
        left.version += 1;
        let peers = self.new_peers(self.next_id);
        let right = ModelRegion {
            id: self.next_id,
            start: mid,
            end: r.end,
            version: r.version + 1,
            conf_ver: 1,
            peers,
            leader: 0,
            flow: r.flow / 2,
        };
        self.next_id += 1;
        let out = vec![self.heartbeat(&right), self.heartbeat(&left)];
        self.insert(left);
        self.insert(right);
        self.counts.splits += 1;
        Some(out)
    }

    /// The region at `start` absorbs its right neighbour.
    fn merge(&mut self, start: u64) -> Option<Vec<RegionHeartbeatRequest>> {
        let (&next, _) = self.regions.range((start + 1)..).next()?;
        let gone = self.remove(next).expect("just found");
        let survivor = self.regions.get_mut(&start).expect("picked");
        survivor.end = gone.end;
        survivor.version = survivor.version.max(gone.version) + 1;
        self.counts.merges += 1;
        Some(vec![self.heartbeat(&self.regions[&start])])
    }

    /// The model's regions, for checking a node against it.
    pub fn regions(&self) -> Vec<Region> {
        self.regions.values().map(ModelRegion::region).collect()
    }
}
