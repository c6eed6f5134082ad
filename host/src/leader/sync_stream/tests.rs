//! The stream machine driven step by step, with no socket and no clock: an
//! in-memory source whose intake the test runs between steps, and a model
//! follower that takes the frames.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regionsync_proto::metapb::Peer;
use regionsync_proto::pdpb::SyncRegionResponse;

use super::machine::{Counted, End, Running, Slot, Source, Step, StreamConfig, StreamMachine};
use crate::history::{HistoryRing, Pin, Record, RingRecord};
use crate::leader::FullSyncOutcome;
use crate::policy_runtime::{PolicyRuntime, PolicySource, RouteCause, SyncRequest, WasmRuntime};
use crate::region_store::RegionStore;
use crate::region_store::sample::region;
use crate::wire::Capabilities;

const REGIONS: u64 = 2_500;

/// A leader's state in memory: the store, the ring, what is published.
struct Memory {
    policy: PolicyRuntime,
    store: RefCell<RegionStore>,
    ring: RefCell<HistoryRing>,
    published: Cell<u64>,
    stopping: Cell<bool>,
    failed: Cell<bool>,
    running: Running,
    completed: Cell<u64>,
    /// Versions each region is at, for the churn.
    versions: RefCell<BTreeMap<u64, u64>>,
}

impl Source for Memory {
    fn cluster_id(&self) -> u64 {
        7
    }
    fn policy(&self) -> &PolicyRuntime {
        &self.policy
    }
    fn stopping(&self) -> bool {
        self.stopping.get()
    }
    fn failed(&self) -> bool {
        self.failed.get()
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
        if running < 4 { Ok(slot) } else { Err(running) }
    }
    fn count_full_sync(&self, _: RouteCause, outcome: FullSyncOutcome) {
        if outcome == FullSyncOutcome::Completed {
            self.completed.set(self.completed.get() + 1);
        }
    }
    fn count(&self, _: Counted) {}
}

impl Memory {
    fn new(ring_capacity: usize) -> Memory {
        let policy = PolicyRuntime::new(
            WasmRuntime::new(Default::default()).unwrap(),
            PolicySource::Native("default"),
        )
        .unwrap();
        let mut store = RegionStore::new();
        for i in 0..REGIONS {
            store.apply(&region(i, REGIONS, 1), 0, 0, 0);
        }
        store.set_applied_next(1);
        Memory {
            policy,
            store: RefCell::new(store),
            ring: RefCell::new(HistoryRing::new(ring_capacity, usize::MAX, 1)),
            published: Cell::new(1),
            stopping: Cell::new(false),
            failed: Cell::new(false),
            running: Running::default(),
            completed: Cell::new(0),
            versions: RefCell::new((0..REGIONS).map(|i| (i, 1)).collect()),
        }
    }

    /// The intake's apply: region `i` one version on, in the store only
    /// (not yet numbered in the ring, nor published).
    fn apply(&self, i: u64) -> RingRecord {
        let version = {
            let mut versions = self.versions.borrow_mut();
            let v = versions.get_mut(&i).unwrap();
            *v += 1;
            *v
        };
        let r = region(i, REGIONS, version);
        let mut store = self.store.borrow_mut();
        let index = store.applied_next();
        store.apply(&r, 0, 0, index);
        store.set_applied_next(index + 1);
        RingRecord::of(&Record::bare(r, Peer::default()))
    }

    /// The intake's commit: number the records in the ring, and publish.
    fn commit(&self, records: Vec<RingRecord>) {
        let mut ring = self.ring.borrow_mut();
        for r in records {
            ring.push(r);
        }
        self.published.set(self.store.borrow().applied_next());
    }

    /// One change, applied, committed and published.
    fn change(&self, i: u64) {
        let record = self.apply(i);
        self.commit(vec![record]);
    }

    /// (id, version) of every region the leader holds.
    fn set(&self) -> BTreeMap<u64, u64> {
        self.versions
            .borrow()
            .iter()
            .map(|(i, v)| (region(*i, REGIONS, 1).id, *v))
            .collect()
    }

    fn machine(&self, caps: Capabilities, start_index: u64) -> StreamMachine {
        let ring = self.ring.borrow().view();
        let route = self.policy.route_request(
            SyncRequest {
                start_index,
                can_delta: caps.delta,
                must_delta: false,
            },
            crate::policy_runtime::RingView {
                delta_floor: self.store.borrow().delta_floor(),
                ..ring
            },
        );
        let config = StreamConfig {
            keepalive: Duration::from_secs(1),
            full_sync_rate: None,
        };
        StreamMachine::new(7, "f".into(), caps, config, route, ring)
    }
}

/// A follower as far as the frames go: region versions by id, and the
/// index of the last frame that claimed one.
#[derive(Default)]
struct Model {
    regions: BTreeMap<u64, u64>,
    claimed: Option<u64>,
    digest: Option<Vec<u8>>,
}

impl Model {
    fn take(&mut self, frame: &SyncRegionResponse) {
        for r in &frame.regions {
            let v = r.region_epoch.as_ref().unwrap().version;
            let held = self.regions.entry(r.id).or_default();
            *held = (*held).max(v);
        }
        if frame.regions.is_empty() {
            self.claimed = Some(frame.start_index);
            self.digest = Some(frame.regionsync_digest.clone()).filter(|d| !d.is_empty());
        }
    }
}

fn caps(delta: bool) -> Capabilities {
    Capabilities {
        delta,
        verify: delta,
        must_delta: false,
        last_term: crate::wire::LastTerm::NotSent,
    }
}

/// PD's full sync: the snapshot holds a change applied but not yet
/// committed, so the completion must not come before that change is
/// published, even though the ring has nothing more to send until then.
#[test]
fn a_pd_full_sync_waits_for_what_its_snapshot_holds_to_be_published() {
    let leader = Memory::new(10_000);
    let mut machine = leader.machine(caps(false), 0);
    let now = Instant::now();
    let mut follower = Model::default();
    // Applied while the snapshot starts, committed only later.
    let pending = vec![leader.apply(3), leader.apply(9)];
    let covers = leader.store.borrow().applied_next();
    let waited = loop {
        match machine.next(now, &leader) {
            Step::Send(frame) => follower.take(&frame.into_message().unwrap()),
            Step::WaitPublished(index) => break index,
            other => panic!("unexpected {other:?} before the pending changes published"),
        }
    };
    assert_eq!(waited, covers, "it waits for the index its snapshot covers");
    assert_eq!(follower.claimed, None, "nothing was claimed yet");
    leader.commit(pending);
    loop {
        match machine.next(now, &leader) {
            Step::Send(frame) => {
                follower.take(&frame.into_message().unwrap());
                if follower.claimed.is_some() {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(follower.claimed, Some(covers));
    assert_eq!(follower.regions, leader.set());
    assert_eq!(leader.completed.get(), 1);
    assert_eq!(machine.cursor(), Some(covers));
}

/// A capable follower's full sync under churn: a change between every two
/// steps. It completes at an index whose digest is the leader's, only once
/// that index is durable, and its set is the leader's there.
#[test]
fn a_full_sync_under_churn_completes_at_a_durable_index_with_the_leaders_set() {
    let leader = Memory::new(100);
    let mut machine = leader.machine(caps(true), 0);
    let now = Instant::now();
    let mut follower = Model::default();
    let mut step = 0u64;
    let mut waited_durable = false;
    let mut held_back = Vec::new();
    loop {
        step += 1;
        // Churn beyond the ring's capacity while the snapshot runs (each
        // step a burst, as the intake's batches are); then one change
        // applied but held back from its commit.
        if step < 4 {
            for k in 0..150 {
                leader.change((step * 1_000 + k * 37) % REGIONS);
            }
        } else if step == 4 {
            held_back.push(leader.apply(11));
        }
        match machine.next(now, &leader) {
            Step::Send(frame) => {
                follower.take(&frame.into_message().unwrap());
                if follower.claimed.is_some() {
                    break;
                }
            }
            Step::WaitDurable(index) => {
                assert_eq!(index, leader.store.borrow().applied_next());
                assert!(leader.published() < index);
                waited_durable = true;
                leader.commit(std::mem::take(&mut held_back));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(waited_durable, "the completion never waited for its commit");
    let at = leader.store.borrow().applied_next();
    assert_eq!(follower.claimed, Some(at));
    assert_eq!(
        follower.digest,
        Some(crate::wire::digest_bytes(
            leader.store.borrow().digest().value()
        ))
    );
    assert_eq!(follower.regions, leader.set());
    assert_eq!(leader.running.now(), 0, "the slot is freed");
    assert_eq!(leader.completed.get(), 1);
}

/// An idle live stream sends a keepalive at its time, on the clock it is
/// given, and none before; a change wakes it with the record instead.
#[test]
fn an_idle_stream_keeps_alive_on_the_time_it_is_given() {
    let leader = Memory::new(100);
    leader.change(1);
    let next = leader.published();
    let mut machine = leader.machine(caps(false), next);
    let t0 = Instant::now();
    let Step::Send(frame) = machine.next(t0, &leader) else {
        panic!("an up-to-date stream says so first")
    };
    assert_eq!(frame.into_message().unwrap().start_index, next);
    let until = match machine.next(t0, &leader) {
        Step::Idle {
            until,
            or_published,
        } => {
            assert_eq!(or_published, Some(next + 1));
            until
        }
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(until, t0 + Duration::from_secs(1));
    assert!(matches!(
        machine.next(t0 + Duration::from_millis(999), &leader),
        Step::Idle { .. }
    ));
    let Step::Send(keepalive) = machine.next(until, &leader) else {
        panic!("no keepalive at its time")
    };
    let keepalive = keepalive.into_message().unwrap();
    assert!(keepalive.regions.is_empty());
    assert_eq!(keepalive.start_index, next);
    leader.change(2);
    let Step::Send(record) = machine.next(until, &leader) else {
        panic!("a change is sent at once")
    };
    let record = record.into_message().unwrap();
    assert_eq!((record.start_index, record.regions.len()), (next, 1));
}

/// A PD full sync whose pin breaks (the ring overflowed under it) ends
/// RESOURCE_EXHAUSTED rather than claiming a set it could not finish.
#[test]
fn a_pd_full_sync_whose_catch_up_left_the_ring_ends_exhausted() {
    let leader = Memory::new(4);
    let mut machine = leader.machine(caps(false), 0);
    let now = Instant::now();
    let Step::Send(_) = machine.next(now, &leader) else {
        panic!("the first snapshot frame")
    };
    for i in 0..10 {
        leader.change(i);
    }
    let end = loop {
        match machine.next(now, &leader) {
            Step::Send(frame) => {
                let frame = frame.into_message().unwrap();
                assert!(
                    !(frame.regions.is_empty() && frame.start_index > 0),
                    "a completion after the pin broke"
                );
            }
            Step::End(end) => break end,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(matches!(end, End::Exhausted(_)), "{end:?}");
    assert_eq!(leader.running.now(), 0, "the slot is freed");
}

/// A stop ends any phase at the next step; a failed store ends a live one.
#[test]
fn a_stop_or_a_failure_ends_the_stream() {
    let leader = Memory::new(100);
    let mut machine = leader.machine(caps(true), 0);
    let now = Instant::now();
    assert!(matches!(machine.next(now, &leader), Step::Send(_)));
    leader.stopping.set(true);
    assert!(matches!(
        machine.next(now, &leader),
        Step::End(End::Stopped)
    ));
    assert_eq!(leader.running.now(), 0, "the slot is freed");

    let leader = Memory::new(100);
    let mut machine = leader.machine(caps(false), leader.published());
    assert!(matches!(machine.next(now, &leader), Step::Send(_)));
    leader.failed.set(true);
    assert!(matches!(machine.next(now, &leader), Step::End(End::Failed)));
}

/// A paced snapshot asks to idle until its rate allows the next frame.
#[test]
fn a_paced_snapshot_idles_until_its_rate_allows_the_next_frame() {
    let leader = Memory::new(100);
    let mut machine = leader.machine(caps(true), 0);
    machine.config.full_sync_rate = Some(100_000);
    let t0 = Instant::now();
    let Step::Send(first) = machine.next(t0, &leader) else {
        panic!("the first snapshot frame")
    };
    let due = t0 + Duration::from_secs_f64(first.encoded_len() as f64 / 100_000.0);
    match machine.next(t0, &leader) {
        Step::Idle {
            until,
            or_published: None,
        } => assert_eq!(until, due),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(machine.next(due, &leader), Step::Send(_)));
}

/// PD's full sync leaves out of its snapshot what changed since its pin:
/// that region comes once, in the ring's record, so the follower never
/// holds a newer copy that would make it ignore the record as stale (and
/// with it the regions the record's range took away). Found by the
/// simulator (`sim/tests/scenarios.rs`, `seeds_that_found_defects_pass`).
#[test]
fn a_pd_snapshot_leaves_out_what_changed_since_its_pin() {
    let leader = Memory::new(10_000);
    let mut machine = leader.machine(caps(false), 0);
    let now = Instant::now();
    let Step::Send(first) = machine.next(now, &leader) else {
        panic!("the first snapshot frame")
    };
    let first = first.into_message().unwrap();
    let changed = region(2_000, REGIONS, 1).id;
    assert!(
        first.regions.iter().all(|r| r.id != changed),
        "a later chunk"
    );
    leader.change(2_000);
    let mut follower = Model::default();
    follower.take(&first);
    let mut copies = Vec::new();
    loop {
        match machine.next(now, &leader) {
            Step::Send(frame) => {
                let frame = frame.into_message().unwrap();
                copies.extend(
                    frame
                        .regions
                        .iter()
                        .filter(|r| r.id == changed)
                        .map(|r| (frame.start_index, r.region_epoch.unwrap().version)),
                );
                follower.take(&frame);
                if follower.claimed.is_some() {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        copies,
        vec![(1, 2)],
        "once, as the ring's record at the pin"
    );
    assert_eq!(follower.regions, leader.set());
}
