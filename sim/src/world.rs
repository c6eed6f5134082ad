//! One scenario: a leader, its followers and their links, on simulated
//! time, with a seeded scheduler that picks every next event among those
//! that can happen, and the checks made after each one.
//!
//! Checked after every event:
//! - a ready follower serves reads (a read is tried on every follower; one
//!   that is not ready must refuse it, which `read_if_ready` guarantees);
//! - every (index, digest) a ready follower holds is the leader's digest at
//!   that index: no read is ever served from a set the leader never had.
//!
//! At the end the churn and the faults stop, and every follower must come
//! up, sync and hold the leader's set at the leader's index.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regionsync::follower::Announce;
use regionsync::policy_runtime::PolicyRuntime;

use crate::follower::{Kind, SimFollower};
use crate::leader::SimLeader;
use crate::rng::Rng;

/// The policies scenarios run: the real Wasm component, the same policy
/// linked natively, and the native policy with frames of a few regions, so
/// that small scenarios still see multi-frame snapshots, catch-up passes
/// and history split across frames.
pub struct Policies {
    /// The built-in default component, run by wasmtime.
    pub wasm: Arc<PolicyRuntime>,
    /// The default policy, native.
    pub native: Arc<PolicyRuntime>,
    /// The default policy, native, with frames of at most
    /// [`SMALL_FRAMES`] regions.
    pub small_frames: Arc<PolicyRuntime>,
}

/// Regions (or records) in a frame under [`Policies::small_frames`].
pub const SMALL_FRAMES: u32 = 6;

/// Which of [`Policies`] a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// The Wasm component.
    Wasm,
    /// The same policy, native.
    Native,
    /// Native, with small frames.
    SmallFrames,
}

impl Policies {
    /// Load both.
    pub fn load() -> Result<Policies, String> {
        use regionsync::policy_runtime::{PolicySource, WasmRuntime};
        let runtime = |source| -> Result<Arc<PolicyRuntime>, String> {
            let wasm = WasmRuntime::new(Default::default()).map_err(|e| e.to_string())?;
            PolicyRuntime::new(wasm, source)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        };
        let mut small = regionsync_guest::Policy::default_policy();
        small.limits.max_regions = SMALL_FRAMES;
        Ok(Policies {
            wasm: runtime(PolicySource::Builtin("default"))?,
            native: runtime(PolicySource::Native("default"))?,
            small_frames: runtime(PolicySource::Tuned(small))?,
        })
    }
}

/// Which faults a scenario may schedule.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// A follower loses power (and comes back).
    pub crash_follower: bool,
    /// A session's stream is cut.
    pub drop_stream: bool,
    /// A follower's store fails a write.
    pub storage_failure: bool,
    /// The leader restarts (a new term, an empty ring).
    pub restart_leader: bool,
    /// Many changes at once: the ring overflows.
    pub intake_burst: bool,
    /// A follower stops reading for a while (the leader's send may time
    /// out).
    pub stall_reader: bool,
}

/// A scenario, all drawn from its seed.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed everything comes from.
    pub seed: u64,
    /// Regions the leader starts with.
    pub regions: u64,
    /// The leader's ring capacity (small: overflow is common).
    pub ring_capacity: usize,
    /// The followers.
    pub followers: Vec<Kind>,
    /// Events before the churn and faults stop.
    pub events: usize,
    /// The faults it may schedule.
    pub faults: Faults,
    /// The policy it runs.
    pub policy: PolicyKind,
    /// Faults it schedules at most.
    pub max_faults: u32,
}

impl Scenario {
    /// The scenario `seed` names.
    pub fn from_seed(seed: u64) -> Scenario {
        let mut rng = Rng::new(seed ^ 0x5ce7_a410);
        let followers = (0..rng.between(1, 5))
            .map(|_| Kind {
                durable: rng.chance(75),
                announce: match rng.below(10) {
                    0..=5 => Announce::Policy,
                    6 => Announce::NoVerify,
                    _ => Announce::Nothing,
                },
                durable_history: rng.chance(50),
            })
            .collect();
        Scenario {
            seed,
            regions: rng.between(5, 120),
            ring_capacity: rng.between(4, 200) as usize,
            followers,
            events: rng.between(50, 400) as usize,
            faults: Faults {
                crash_follower: rng.chance(50),
                drop_stream: rng.chance(50),
                storage_failure: rng.chance(40),
                restart_leader: rng.chance(40),
                intake_burst: rng.chance(50),
                stall_reader: rng.chance(40),
            },
            policy: match rng.below(4) {
                0 => PolicyKind::Wasm,
                1 => PolicyKind::Native,
                _ => PolicyKind::SmallFrames,
            },
            max_faults: 6,
        }
    }
}

/// Events that can happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// The leader takes a batch of churn.
    Intake(u64),
    /// The leader takes many batches at once.
    Burst,
    /// Follower `i`'s stream on the leader takes a step.
    Step(usize),
    /// The next frame on follower `i`'s link is applied.
    Deliver(usize),
    /// Follower `i` dials the leader.
    Connect(usize),
    /// Time passes.
    Tick(u64),
    /// Follower `i` loses power, and comes back this many ms later.
    Crash(usize, u64),
    /// Crashed follower `i` comes back.
    Up(usize),
    /// Follower `i`'s stream is cut.
    DropStream(usize),
    /// Follower `i`'s next store write fails.
    FailWrite(usize),
    /// The leader restarts.
    RestartLeader,
    /// Follower `i` reads nothing for this many ms.
    Stall(usize, u64),
    /// The leader drops follower `i`'s stream: a send waited too long.
    SendTimeout(usize),
}

impl Event {
    /// The same event as `other`, whatever their parameters (an intake's
    /// size, a tick's length).
    pub fn same_kind(&self, other: &Event) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.target() == other.target()
    }

    /// The follower it is about, if any.
    pub fn target(self) -> Option<usize> {
        match self {
            Event::Step(i)
            | Event::Deliver(i)
            | Event::Connect(i)
            | Event::Crash(i, _)
            | Event::Up(i)
            | Event::DropStream(i)
            | Event::FailWrite(i)
            | Event::Stall(i, _)
            | Event::SendTimeout(i) => Some(i),
            _ => None,
        }
    }

    /// Its kind, for the counts.
    pub fn kind(self) -> &'static str {
        match self {
            Event::Intake(_) => "intake",
            Event::Burst => "intake_burst",
            Event::Step(_) => "stream_step",
            Event::Deliver(_) => "delivery",
            Event::Connect(_) => "connect",
            Event::Tick(_) => "tick",
            Event::Crash(..) => "crash_follower",
            Event::Up(_) => "follower_up",
            Event::DropStream(_) => "drop_stream",
            Event::FailWrite(_) => "storage_failure",
            Event::RestartLeader => "restart_leader",
            Event::Stall(..) => "stall_reader",
            Event::SendTimeout(_) => "send_timeout",
        }
    }
}

/// How a scenario went.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Events, by kind.
    pub events: BTreeMap<&'static str, u64>,
    /// Ready claims checked against the leader.
    pub ready_claims: u64,
    /// Reads answered (by ready followers).
    pub reads_answered: u64,
    /// Reads refused (by followers not ready).
    pub reads_refused: u64,
    /// Why it failed.
    pub failure: Option<String>,
    /// What happened, event by event (when traced).
    pub trace: Vec<String>,
    /// The events picked while churning, in order: the schedule, which
    /// [`replay`] runs again (and the shrinker cuts down).
    pub schedule: Vec<Event>,
}

/// Events allowed for the followers to converge once churn and faults stop.
const CONVERGE_EVENTS: usize = 50_000;

/// Run `scenario` with the events its seed schedules; `trace` records
/// every event.
pub fn run(scenario: &Scenario, policies: &Policies, trace: bool) -> Report {
    World::new(scenario, policies, trace).run(None)
}

/// Run `scenario` with `schedule` as its churning events (each one that
/// cannot happen when its turn comes is skipped), then converge as
/// [`run`] does.
pub fn replay(scenario: &Scenario, policies: &Policies, schedule: &[Event], trace: bool) -> Report {
    World::new(scenario, policies, trace).run(Some(schedule))
}

/// A running scenario, which the scheduler (or a script) drives one event
/// at a time.
pub struct World {
    scenario: Scenario,
    rng: Rng,
    start: Instant,
    now: Instant,
    policy: Arc<PolicyRuntime>,
    leader: SimLeader,
    followers: Vec<SimFollower>,
    report: Report,
    trace: bool,
    faults_left: u32,
}

impl World {
    /// The scenario's cluster, started: the leader seeded, every follower
    /// open and not yet connected.
    pub fn new(scenario: &Scenario, policies: &Policies, trace: bool) -> World {
        let policy = match scenario.policy {
            PolicyKind::Wasm => policies.wasm.clone(),
            PolicyKind::Native => policies.native.clone(),
            PolicyKind::SmallFrames => policies.small_frames.clone(),
        };
        let start = Instant::now();
        let leader = SimLeader::new(
            policy.clone(),
            scenario.regions,
            scenario.ring_capacity,
            scenario.seed,
        );
        let followers = scenario
            .followers
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                SimFollower::new(
                    format!("f{i}"),
                    *kind,
                    &policy,
                    start,
                    scenario.seed.wrapping_add(i as u64),
                )
            })
            .collect();
        World {
            scenario: scenario.clone(),
            rng: Rng::new(scenario.seed),
            start,
            now: start,
            policy,
            leader,
            followers,
            report: Report::default(),
            trace,
            faults_left: scenario.max_faults,
        }
    }

    fn run(mut self, schedule: Option<&[Event]>) -> Report {
        if self.trace {
            let s = self.scenario.clone();
            self.note(format!(
                "scenario {}: {} regions, ring {}, followers {:?}, faults {:?}, policy {:?}",
                s.seed, s.regions, s.ring_capacity, s.followers, s.faults, s.policy
            ));
        }
        let steps = schedule.map_or(self.scenario.events, <[Event]>::len);
        for step in 0..steps {
            let events = self.enabled(true);
            let event = match schedule {
                None => self.pick(&events),
                Some(schedule) => {
                    let wanted = schedule[step];
                    if !events.iter().any(|(_, e)| e.same_kind(&wanted)) {
                        continue;
                    }
                    wanted
                }
            };
            self.report.schedule.push(event);
            if !self.happen(event) {
                return self.report;
            }
        }
        if self.trace {
            self.note("churn and faults stop; waiting for every follower to converge".into());
        }
        // Its own stream of choices: a replayed schedule draws fewer from
        // the first (it picks nothing), and must converge the same way.
        self.rng = Rng::new(self.scenario.seed ^ 0xc0_417e_26e5);
        if let Err(why) = self.converge() {
            self.report.failure = Some(why);
        }
        self.report
    }

    /// With no churn and no fault, let events happen until every follower
    /// holds the leader's set at its index; how many it took, or why not.
    pub fn converge(&mut self) -> Result<usize, String> {
        for n in 0..CONVERGE_EVENTS {
            if self.converged() {
                return Ok(n);
            }
            let events = self.enabled(false);
            let event = self.pick(&events);
            if !self.happen(event) {
                return Err(self.report.failure.clone().unwrap_or_default());
            }
        }
        Err(format!(
            "the followers did not converge on the leader's index {} within {CONVERGE_EVENTS} events: {}",
            self.leader.next_index(),
            self.states().join(", ")
        ))
    }

    /// Each follower as a line: its phase, index and readiness, and whether
    /// it holds the leader's set.
    pub fn states(&self) -> Vec<String> {
        self.followers
            .iter()
            .map(|f| match &f.node {
                Some(n) => {
                    let s = n.state();
                    let held = n.read_regions(|r| (r.applied_next(), r.digest().value()));
                    let set = match self.leader.digest_at(held.0) {
                        Some(d) if d == held.1 => "the leader's set there",
                        Some(_) => "a set the leader never had there",
                        None => "an index the leader never had",
                    };
                    let full_syncs: u64 = n.stats().full_sync_counts().values().sum();
                    format!(
                        "{}: {} at {}, {}, {} regions: {set}; ring {}, full syncs {full_syncs}",
                        f.name,
                        s.phase.as_str(),
                        s.next_index,
                        if s.ready { "ready" } else { "not ready" },
                        n.read_regions(|r| r.len()),
                        n.held(None).ring_len,
                    )
                }
                None => format!("{}: down", f.name),
            })
            .collect()
    }

    /// The leader in a line.
    pub fn leader_state(&self) -> String {
        format!(
            "leader: at {}, {} regions, ring [{}, {}), lineage {}",
            self.leader.next_index(),
            self.leader.regions(),
            self.leader.routing_view().first_index,
            self.leader.routing_view().next_index,
            self.leader.lineage
        )
    }

    /// The names of the followers, by index.
    pub fn follower_index(&self, name: &str) -> Option<usize> {
        self.followers.iter().position(|f| f.name == name)
    }

    /// The events that can happen now (churn and faults included), without
    /// their weights.
    pub fn can_happen(&mut self) -> Vec<Event> {
        self.enabled(true).into_iter().map(|(_, e)| e).collect()
    }

    fn note(&mut self, line: String) {
        let at = self.now.duration_since(self.start);
        self.report
            .trace
            .push(format!("{:>9.3}s  {line}", at.as_secs_f64()));
    }

    /// Events that can happen now, with their weights.
    fn enabled(&mut self, churning: bool) -> Vec<(u32, Event)> {
        let mut events = Vec::new();
        let published = self.leader.next_index();
        let faults = self.scenario.faults;
        let may_fault = churning && self.faults_left > 0;
        if churning {
            events.push((12, Event::Intake(self.rng.between(1, 8))));
            if faults.intake_burst && may_fault {
                events.push((1, Event::Burst));
            }
            if faults.restart_leader && may_fault {
                events.push((1, Event::RestartLeader));
            }
        }
        for (i, f) in self.followers.iter().enumerate() {
            match (&f.node, &f.link) {
                (None, _) => {
                    if f.up_at.is_some_and(|t| self.now >= t) {
                        events.push((10, Event::Up(i)));
                    }
                }
                (Some(_), None) => {
                    if self.now >= f.reconnect_at {
                        events.push((10, Event::Connect(i)));
                    }
                    if faults.crash_follower && may_fault {
                        events.push((1, Event::Crash(i, self.rng.between(10, 5_000))));
                    }
                }
                (Some(_), Some(link)) => {
                    if link.can_step(self.now, published) {
                        events.push((20, Event::Step(i)));
                    }
                    if link.can_deliver(self.now) {
                        events.push((20, Event::Deliver(i)));
                    }
                    if link.send_timed_out(self.now) {
                        events.push((20, Event::SendTimeout(i)));
                    }
                    if may_fault {
                        if faults.crash_follower {
                            events.push((1, Event::Crash(i, self.rng.between(10, 5_000))));
                        }
                        if faults.drop_stream {
                            events.push((1, Event::DropStream(i)));
                        }
                        if faults.storage_failure && f.kind.durable {
                            events.push((1, Event::FailWrite(i)));
                        }
                        if faults.stall_reader && link.stalled_until.is_none() {
                            events.push((1, Event::Stall(i, self.rng.between(100, 30_000))));
                        }
                    }
                }
            }
        }
        if churning {
            let ms = self.rng.between(1, 3_000);
            events.push((3, Event::Tick(ms)));
        } else if events.is_empty() {
            // Nothing can happen before the next timer: go to it.
            let next = self
                .next_timer()
                .unwrap_or(self.now + Duration::from_secs(1));
            let ms = next.saturating_duration_since(self.now).as_millis() as u64;
            events.push((1, Event::Tick(ms.max(1))));
        }
        events
    }

    /// The earliest time something will be able to happen.
    fn next_timer(&self) -> Option<Instant> {
        self.followers
            .iter()
            .flat_map(|f| {
                [
                    f.up_at,
                    (f.node.is_some() && f.link.is_none()).then_some(f.reconnect_at),
                    f.link.as_ref().and_then(|l| l.wakes_at()),
                ]
            })
            .flatten()
            .min()
    }

    fn pick(&mut self, events: &[(u32, Event)]) -> Event {
        let total: u64 = events.iter().map(|(w, _)| u64::from(*w)).sum();
        let mut roll = self.rng.below(total);
        for (w, e) in events {
            if roll < u64::from(*w) {
                return *e;
            }
            roll -= u64::from(*w);
        }
        unreachable!("the roll is below the total")
    }

    /// Carry out `event`, then check; false once a check failed.
    fn happen(&mut self, event: Event) -> bool {
        match self.step(event) {
            Ok(what) => {
                if self.trace {
                    self.note(what);
                }
                true
            }
            Err((what, why)) => {
                if self.trace {
                    self.note(what);
                    self.note(format!("FAILED: {why}"));
                }
                self.report.failure = Some(why);
                false
            }
        }
    }

    /// Carry out `event` and check every follower; what happened, or what
    /// happened and why a check failed then.
    pub fn step(&mut self, event: Event) -> Result<String, (String, String)> {
        *self.report.events.entry(event.kind()).or_default() += 1;
        let what = match event {
            Event::Intake(ops) => {
                let n = self.leader.churn(ops);
                format!(
                    "leader takes {n} changes, now at {}",
                    self.leader.next_index()
                )
            }
            Event::Burst => {
                self.faults_left = self.faults_left.saturating_sub(1);
                let ops = self.scenario.ring_capacity as u64 * 2;
                let n = self.leader.churn(ops);
                format!(
                    "leader takes a burst of {n} changes, now at {}",
                    self.leader.next_index()
                )
            }
            Event::Step(i) => {
                let f = &mut self.followers[i];
                let link = f.link.as_mut().expect("enabled with a link");
                format!("{} stream: {}", f.name, link.step(self.now, &self.leader))
            }
            Event::Deliver(i) => {
                let f = &mut self.followers[i];
                let what = f.deliver(self.now);
                format!("{} {what}", f.name)
            }
            Event::Connect(i) => {
                let f = &mut self.followers[i];
                let what = f.connect(self.now, &self.leader);
                format!("{} {what}", f.name)
            }
            Event::Tick(ms) => {
                self.now += Duration::from_millis(ms);
                format!("{ms} ms pass")
            }
            Event::Crash(i, ms) => {
                self.faults_left = self.faults_left.saturating_sub(1);
                let up = self.now + Duration::from_millis(ms);
                let f = &mut self.followers[i];
                f.crash(up);
                format!("{} loses power", f.name)
            }
            Event::Up(i) => {
                let f = &mut self.followers[i];
                match f.start(&self.policy) {
                    Ok(()) => {
                        let s = f.node.as_ref().expect("started").state();
                        format!(
                            "{} comes back at {} ({}, ready={})",
                            f.name,
                            s.next_index,
                            s.phase.as_str(),
                            s.ready
                        )
                    }
                    Err(e) => {
                        let why = format!("{} cannot open its store after a crash: {e}", f.name);
                        return Err((format!("{} does not come back", f.name), why));
                    }
                }
            }
            Event::DropStream(i) => {
                self.faults_left = self.faults_left.saturating_sub(1);
                let f = &mut self.followers[i];
                let progressed = f.link.as_ref().is_some_and(|l| l.progressed);
                f.session_ended(self.now, progressed);
                format!("{} stream cut", f.name)
            }
            Event::FailWrite(i) => {
                self.faults_left = self.faults_left.saturating_sub(1);
                let f = &self.followers[i];
                f.fail_next_write();
                format!("{}'s next store write fails", f.name)
            }
            Event::Stall(i, ms) => {
                self.faults_left = self.faults_left.saturating_sub(1);
                let until = self.now + Duration::from_millis(ms);
                let f = &mut self.followers[i];
                if let Some(link) = f.link.as_mut() {
                    link.stalled_until = Some(until);
                }
                format!("{} stops reading for {ms} ms", f.name)
            }
            Event::SendTimeout(i) => {
                let f = &mut self.followers[i];
                if let Some(link) = f.link.as_mut() {
                    link.drop_by_leader();
                }
                format!(
                    "{}'s stream dropped by the leader: its send waited too long",
                    f.name
                )
            }
            Event::RestartLeader => {
                self.faults_left = self.faults_left.saturating_sub(1);
                for link in self.followers.iter_mut().filter_map(|f| f.link.as_mut()) {
                    link.leader_stopped();
                }
                self.leader.restart();
                format!(
                    "leader restarts at {}: lineage {}",
                    self.leader.next_index(),
                    self.leader.lineage
                )
            }
        };
        match self.check() {
            Ok(()) => Ok(what),
            Err(why) => Err((what, why)),
        }
    }

    /// Every ready follower holds a set the leader had at its index.
    fn check(&mut self) -> Result<(), String> {
        for f in &self.followers {
            let Some(node) = &f.node else { continue };
            match node.read_if_ready(|s| (s.applied_next(), s.digest().value())) {
                Ok((index, digest)) => {
                    self.report.ready_claims += 1;
                    self.report.reads_answered += 1;
                    let theirs = self.leader.digest_at(index);
                    if theirs != Some(digest) {
                        let state = node.state();
                        return Err(format!(
                            "a ready follower ({}) held digest {digest:032x} at index {index}, the leader had {} there \
                             (its phase {}, index {}, {} regions; the leader's {} regions)",
                            f.name,
                            theirs.map_or("nothing".into(), |d| format!("{d:032x}")),
                            state.phase.as_str(),
                            state.next_index,
                            node.read_regions(|r| r.len()),
                            self.leader.regions(),
                        ) + &self.difference(node));
                    }
                }
                Err(_) => self.report.reads_refused += 1,
            }
        }
        Ok(())
    }

    /// What a follower holds that the leader does not, and the other way
    /// round, region by region: `id v<version> [start, end)`.
    fn difference(&self, node: &regionsync::follower::FollowerShared) -> String {
        let all =
            |s: &regionsync::region_store::RegionStore| -> std::collections::BTreeSet<String> {
                s.scan(b"", b"", usize::MAX)
                    .into_iter()
                    .map(|r| {
                        let r = r.region;
                        let v = r.region_epoch.map_or(0, |e| e.version);
                        format!("{} v{v} [{}, {})", r.id, hex(&r.start_key), hex(&r.end_key))
                    })
                    .collect()
            };
        let ours = node.read_regions(all);
        let theirs = self.leader.read(all);
        format!(
            "; only the follower's: {:?}; only the leader's: {:?}",
            ours.difference(&theirs).collect::<Vec<_>>(),
            theirs.difference(&ours).collect::<Vec<_>>()
        )
    }

    fn converged(&self) -> bool {
        let (index, digest) = (self.leader.next_index(), self.leader.digest());
        self.followers.iter().all(|f| {
            f.node.as_ref().is_some_and(|n| {
                n.read_if_ready(|s| (s.applied_next(), s.digest().value()))
                    .is_ok_and(|held| held == (index, digest))
            })
        })
    }
}

/// A key, short: its first bytes in hex.
fn hex(key: &[u8]) -> String {
    key.iter().take(6).map(|b| format!("{b:02x}")).collect()
}
