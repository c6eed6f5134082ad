//! The simulated leader: the real store, ring, intake step, routing and
//! stream machines, with what the leader's tasks would do (take a batch,
//! publish it) done by the scheduler. Its commits are durable before they
//! are published, as the real intake's are, so a restart keeps its store
//! and starts a new leadership (a new term in its lineage) with an empty
//! ring.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use regionsync::history::{HistoryRing, Pin, Record};
use regionsync::leader::FullSyncOutcome;
use regionsync::leader::intake::apply_changes;
use regionsync::leader::sync_stream::{Counted, Running, Slot, Source};
use regionsync::lineage::Lineage;
use regionsync::policy_runtime::{PolicyRuntime, RingView, RouteCause};
use regionsync::region_store::RegionStore;
use regionsync_harness::load::Generator;

/// The cluster every simulated node belongs to.
pub const CLUSTER_ID: u64 = 4_242;

/// The simulated leader.
pub struct SimLeader {
    policy: Arc<PolicyRuntime>,
    store: RefCell<RegionStore>,
    ring: RefCell<HistoryRing>,
    published: Cell<u64>,
    stopping: Cell<bool>,
    running: Running,
    ring_capacity: usize,
    flow_divisor: u64,
    /// The leaderships its index passed through.
    pub lineage: Lineage,
    term: u64,
    /// The digest of its set at every index it ever held.
    digests: HashMap<u64, u128>,
    generator: Generator,
    /// Heartbeats sent but not yet arrived: PD hears a split's two regions
    /// from two stores, in either order and apart, so the leader's set has
    /// gaps and stale reports like a real one's.
    in_transit: Vec<regionsync_proto::pdpb::RegionHeartbeatRequest>,
    rng: crate::rng::Rng,
}

impl SimLeader {
    /// A leader seeded with `regions` regions from the churn generator.
    pub fn new(policy: Arc<PolicyRuntime>, regions: u64, ring_capacity: usize, seed: u64) -> Self {
        // As a fresh leader opens its store (`leader::Leader::start`).
        let mut store = RegionStore::new();
        store.set_applied_next(1);
        store.set_delta_floor(1);
        let mut generator = Generator::new(CLUSTER_ID, regions, seed);
        let term = 1;
        let mut leader = SimLeader {
            policy,
            digests: HashMap::from([(1, store.digest().value())]),
            store: RefCell::new(store),
            ring: RefCell::new(HistoryRing::new(ring_capacity, usize::MAX, 1)),
            published: Cell::new(1),
            stopping: Cell::new(false),
            running: Running::default(),
            ring_capacity,
            flow_divisor: 1_000,
            lineage: Lineage::default().continued(term, 1),
            term,
            generator: Generator::new(CLUSTER_ID, 1, 0),
            in_transit: Vec::new(),
            rng: crate::rng::Rng::new(seed ^ 0x1ea_de12),
        };
        let all = generator.all();
        leader.generator = generator;
        leader.take(all);
        leader
    }

    /// `ops` churn operations (splits, merges, moves, flow), as one batch:
    /// a fifth of their heartbeats arrive in a later batch, and each held
    /// back arrives with even odds.
    pub fn churn(&mut self, ops: u64) -> usize {
        let mut heartbeats = Vec::new();
        let held = std::mem::take(&mut self.in_transit);
        for hb in held {
            if self.rng.chance(50) {
                heartbeats.push(hb);
            } else {
                self.in_transit.push(hb);
            }
        }
        for _ in 0..ops {
            for hb in self.generator.churn() {
                if self.rng.chance(20) {
                    self.in_transit.push(hb);
                } else {
                    heartbeats.push(hb);
                }
            }
        }
        self.take(heartbeats)
    }

    /// The intake's work on one batch: apply, number, publish. Returns the
    /// records it made.
    fn take(&mut self, heartbeats: Vec<regionsync_proto::pdpb::RegionHeartbeatRequest>) -> usize {
        let changes = heartbeats.into_iter().filter_map(Record::from_heartbeat);
        let applied = apply_changes(
            &mut self.store.borrow_mut(),
            changes,
            self.flow_divisor,
            true,
        );
        let n = applied.records.len();
        {
            let mut ring = self.ring.borrow_mut();
            for r in applied.records {
                ring.push(r);
            }
        }
        self.digests.extend(applied.digests);
        self.published.set(self.store.borrow().applied_next());
        n
    }

    /// The leader restarts: its store is durable, its ring starts empty, and
    /// it leads in a new term. Removals were kept in memory only, so the
    /// reloaded store can name them from its index on (`leader::load`).
    pub fn restart(&mut self) {
        let next = self.next_index();
        self.store.borrow_mut().set_delta_floor(next);
        self.term += 1;
        self.lineage = self.lineage.continued(self.term, next);
        *self.ring.borrow_mut() = HistoryRing::new(self.ring_capacity, usize::MAX, next);
        self.stopping.set(false);
    }

    /// The index its next change gets.
    pub fn next_index(&self) -> u64 {
        self.store.borrow().applied_next()
    }

    /// Its set's digest now.
    pub fn digest(&self) -> u128 {
        self.store.borrow().digest().value()
    }

    /// Its set's digest when it was at `index`, if it ever was.
    pub fn digest_at(&self, index: u64) -> Option<u128> {
        self.digests.get(&index).copied()
    }

    /// Read its store.
    pub fn read<R>(&self, read: impl FnOnce(&RegionStore) -> R) -> R {
        read(&self.store.borrow())
    }

    /// Regions it holds.
    pub fn regions(&self) -> usize {
        self.store.borrow().len()
    }

    /// The ring as routing sees it: with the store's delta floor.
    pub fn routing_view(&self) -> RingView {
        RingView {
            delta_floor: self.store.borrow().delta_floor(),
            ..self.ring.borrow().view()
        }
    }

    /// Running full syncs.
    pub fn running_full_syncs(&self) -> u32 {
        self.running.now()
    }
}

impl Source for SimLeader {
    fn cluster_id(&self) -> u64 {
        CLUSTER_ID
    }

    fn policy(&self) -> &PolicyRuntime {
        &self.policy
    }

    fn stopping(&self) -> bool {
        self.stopping.get()
    }

    fn failed(&self) -> bool {
        false
    }

    fn published(&self) -> u64 {
        self.published.get()
    }

    fn store<R>(&self, read: impl FnOnce(&RegionStore) -> R) -> R {
        read(&self.store.borrow())
    }

    fn ring<R>(&self, read: impl FnOnce(&HistoryRing) -> R) -> R {
        read(&self.ring.borrow())
    }

    fn pin(&self) -> Arc<Pin> {
        self.ring.borrow_mut().pin()
    }

    fn full_sync_slot(&self) -> Result<Slot, u32> {
        let (slot, running) = self.running.take();
        if self.policy.admit_full_sync(running) {
            Ok(slot)
        } else {
            Err(running)
        }
    }

    fn count_full_sync(&self, _: RouteCause, _: FullSyncOutcome) {}

    fn count(&self, _: Counted) {}
}
