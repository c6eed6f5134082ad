//! A simulated follower: the real `FollowerShared` (policy phases, apply,
//! lineage, readiness, the redb store) on a simulated disk, opened without
//! a task and written in line, and its session with the leader: the real
//! handshake on both sides and the leader's stream machine, joined by a
//! bounded in-memory link.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regionsync::follower::session::Backoff;
use regionsync::follower::{Announce, FollowerConfig, FollowerShared};
use regionsync::leader::frames;
use regionsync::leader::sync_stream::{End, Step, StreamConfig, StreamMachine, route_stream};
use regionsync::policy_runtime::{AnnouncedSync, PolicyRuntime};
use regionsync::storage::{SimDisk, Storage};
use regionsync::wire::{Frame, LastTerm};

use crate::leader::{CLUSTER_ID, SimLeader};

/// Frames a link holds between the leader's stream and the follower: the
/// stream's queue and what the transport buffers, in frames.
pub const LINK_FRAMES: usize = 6;

/// The keepalive interval both sides use.
pub const KEEPALIVE: Duration = Duration::from_secs(10);

/// How long the leader's stream waits for room on a full link before it
/// drops the stream (`LeaderConfig::send_timeout`).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What kind of follower.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// It has a (simulated) disk; otherwise it is cache-only.
    pub durable: bool,
    /// What it announces beyond PD's protocol.
    pub announce: Announce,
    /// Every history commit is durable (else only completions are).
    pub durable_history: bool,
}

/// What a link carries to the follower.
pub enum Delivery {
    /// A frame.
    Frame(Frame),
    /// The stream ended with a gRPC status (RESOURCE_EXHAUSTED), or closed.
    Closed(&'static str),
}

/// What the leader's stream waits for before its next step.
#[derive(Debug, Clone, Copy)]
enum Wait {
    Published(u64),
    Idle { until: Instant, or: Option<u64> },
}

/// One session: the leader's stream machine and the link to the follower.
pub struct Link {
    machine: StreamMachine,
    /// The index the follower asked for.
    asked: u64,
    announced: AnnouncedSync,
    in_flight: VecDeque<Delivery>,
    wait: Option<Wait>,
    /// The machine ended: nothing more is sent.
    ended: bool,
    /// The follower took a frame of this session.
    pub progressed: bool,
    /// Since when the link has been full (the leader's send waits).
    full_since: Option<Instant>,
    /// The follower reads nothing from the link until then (a stalled
    /// reader: a slow disk, a paused process).
    pub stalled_until: Option<Instant>,
    /// The route, for the trace.
    pub route: &'static str,
}

impl Link {
    /// The leader's stream can take a step now.
    pub fn can_step(&self, now: Instant, published: u64) -> bool {
        if self.ended || self.in_flight.len() >= LINK_FRAMES {
            return false;
        }
        match self.wait {
            None => true,
            Some(Wait::Published(i)) => published >= i,
            Some(Wait::Idle { until, or }) => now >= until || or.is_some_and(|i| published >= i),
        }
    }

    /// Something waits for the follower, and it reads.
    pub fn can_deliver(&self, now: Instant) -> bool {
        !self.in_flight.is_empty() && self.stalled_until.is_none_or(|t| now >= t)
    }

    /// The leader's send has waited on a full link for its whole bound.
    pub fn send_timed_out(&self, now: Instant) -> bool {
        !self.ended && self.full_since.is_some_and(|t| now >= t + SEND_TIMEOUT)
    }

    /// The leader stops: the stream sends the "server stopped" frame after
    /// what is queued, then closes (`leader::Leader::shutdown`).
    pub fn leader_stopped(&mut self) {
        if !self.ended {
            self.ended = true;
            self.full_since = None;
            self.in_flight
                .push_back(Delivery::Frame(frames::stopped(CLUSTER_ID).into()));
            self.in_flight.push_back(Delivery::Closed("eof"));
        }
    }

    /// The leader drops the stream whose send timed out: what is on the
    /// link is still delivered, then the stream ends.
    pub fn drop_by_leader(&mut self) {
        self.ended = true;
        self.full_since = None;
        self.in_flight.push_back(Delivery::Closed("eof"));
    }

    /// When the link next changes on its own: an idle stream wakes, a
    /// stalled reader reads again, a waiting send times out.
    pub fn wakes_at(&self) -> Option<Instant> {
        let idle = match self.wait {
            Some(Wait::Idle { until, .. }) if !self.ended => Some(until),
            _ => None,
        };
        let timeout = self
            .full_since
            .filter(|_| !self.ended)
            .map(|t| t + SEND_TIMEOUT);
        [idle, self.stalled_until, timeout]
            .into_iter()
            .flatten()
            .min()
    }

    /// One step of the leader's stream. Returns what it did, for the trace.
    pub fn step(&mut self, now: Instant, leader: &SimLeader) -> String {
        self.wait = None;
        match self.machine.next(now, leader) {
            Step::Send(frame) => {
                let what = describe(&frame);
                self.in_flight.push_back(Delivery::Frame(frame));
                if self.in_flight.len() >= LINK_FRAMES {
                    self.full_since.get_or_insert(now);
                }
                what
            }
            Step::WaitPublished(i) | Step::WaitDurable(i) => {
                self.wait = Some(Wait::Published(i));
                format!("wait for {i}")
            }
            Step::Idle {
                until,
                or_published,
            } => {
                self.wait = Some(Wait::Idle {
                    until,
                    or: or_published,
                });
                "idle".into()
            }
            Step::End(end) => {
                self.ended = true;
                // What the task sends on each end (`leader::sync_stream`).
                match &end {
                    End::Stopped => self
                        .in_flight
                        .push_back(Delivery::Frame(frames::stopped(CLUSTER_ID).into())),
                    End::Failed => self.in_flight.push_back(Delivery::Frame(
                        frames::error(CLUSTER_ID, "the leader cannot persist changes").into(),
                    )),
                    _ => {}
                }
                let closed = match end {
                    End::Exhausted(_) | End::Refused => "resource_exhausted",
                    _ => "eof",
                };
                self.in_flight.push_back(Delivery::Closed(closed));
                format!("end {end:?}")
            }
        }
    }
}

fn describe(frame: &Frame) -> String {
    let message = frame.clone().into_message();
    if let Some(e) = message
        .as_ref()
        .ok()
        .and_then(|m| m.header.as_ref()?.error.as_ref())
    {
        return format!("error frame ({})", e.message);
    }
    match message {
        Ok(m) if m.regions.is_empty() => format!("frame at {} (no regions)", m.start_index),
        Ok(m) => format!("frame at {} ({} regions)", m.start_index, m.regions.len()),
        Err(e) => format!("undecodable frame: {e}"),
    }
}

/// A simulated follower.
pub struct SimFollower {
    /// Its name.
    pub name: String,
    /// What kind.
    pub kind: Kind,
    disk: Option<SimDisk>,
    /// The running node; `None` while it is down.
    pub node: Option<Arc<FollowerShared>>,
    /// Its session with the leader, if one is open.
    pub link: Option<Link>,
    /// When it may dial again.
    pub reconnect_at: Instant,
    backoff: Backoff,
    /// When a crashed follower comes back.
    pub up_at: Option<Instant>,
}

impl SimFollower {
    /// A new follower, started at `now`.
    pub fn new(
        name: String,
        kind: Kind,
        policy: &Arc<PolicyRuntime>,
        now: Instant,
        seed: u64,
    ) -> SimFollower {
        let mut f = SimFollower {
            name,
            kind,
            disk: kind.durable.then(SimDisk::new),
            node: None,
            link: None,
            reconnect_at: now,
            backoff: Backoff::new(seed),
            up_at: None,
        };
        f.start(policy).expect("a new simulated follower starts");
        f
    }

    fn config(&self) -> FollowerConfig {
        let mut config = FollowerConfig::new("sim://leader", None);
        config.name = self.name.clone();
        config.cluster_id = Some(CLUSTER_ID);
        config.history_capacity = 64;
        config.keepalive = KEEPALIVE;
        config.announce = self.kind.announce;
        config.write_behind = false;
        config.durable_every = if self.kind.durable_history {
            Duration::ZERO
        } else {
            Duration::MAX
        };
        config
    }

    /// Open the node on its disk (or empty, cache-only).
    pub fn start(&mut self, policy: &Arc<PolicyRuntime>) -> Result<(), String> {
        let config = self.config();
        let node = match &self.disk {
            Some(disk) => {
                let storage = Storage::in_memory(disk.clone()).map_err(|e| e.to_string())?;
                FollowerShared::open_on(config, policy.clone(), storage)
            }
            None => FollowerShared::open_detached(config, policy.clone()),
        }
        .map_err(|e| e.to_string())?;
        self.node = Some(node);
        self.up_at = None;
        Ok(())
    }

    /// The machine loses power: the node and its session are gone, and its
    /// disk keeps only what was synced. It comes back at `up_at`.
    pub fn crash(&mut self, up_at: Instant) {
        // The image first: dropping the node closes its database, and a
        // clean close syncs what a power loss would have lost.
        self.disk = self.disk.as_ref().map(SimDisk::after_power_loss);
        self.link = None;
        self.node = None;
        self.up_at = Some(up_at);
    }

    /// Open a session with `leader`: the follower's hello, the leader's
    /// routing, the follower's reading of the answer.
    pub fn connect(&mut self, now: Instant, leader: &SimLeader) -> String {
        let Some(node) = self.node.clone() else {
            return "down".into();
        };
        let plan = node.begin_stream();
        let hello = node.hello(&plan, CLUSTER_ID);
        let routing = route_stream(
            node.policy(),
            &leader.lineage,
            leader.routing_view(),
            hello.start_index(),
            hello.caps,
        );
        let caps = routing.caps;
        let route = regionsync::wire::route_label(routing.route.action);
        // The metadata the service adds (`service::sync_stream`).
        let lineage = (caps.last_term != LastTerm::NotSent && !leader.lineage.is_empty())
            .then(|| leader.lineage.to_string());
        let announced = match node.accepted(caps.any().then_some(route), lineage.as_deref()) {
            Ok(a) => a,
            Err(e) => {
                self.session_ended(now, false);
                return format!("store error on accept: {e}");
            }
        };
        let config = StreamConfig {
            keepalive: KEEPALIVE,
            full_sync_rate: None,
        };
        let machine = StreamMachine::new(
            CLUSTER_ID,
            self.name.clone(),
            caps,
            config,
            routing.route,
            leader.routing_view(),
        );
        self.link = Some(Link {
            machine,
            asked: hello.start_index(),
            announced,
            in_flight: VecDeque::new(),
            wait: None,
            ended: false,
            progressed: false,
            full_since: None,
            stalled_until: None,
            route,
        });
        format!(
            "asks from {} ({}), routed {route}{}",
            hello.start_index(),
            caps.to_header(),
            routing
                .diverged
                .map_or(String::new(), |t| format!(" (diverged: term {t})"))
        )
    }

    /// Deliver the next thing on the link. Returns what happened.
    pub fn deliver(&mut self, now: Instant) -> String {
        let (Some(node), Some(link)) = (self.node.clone(), self.link.as_mut()) else {
            return "nothing".into();
        };
        let Some(delivery) = link.in_flight.pop_front() else {
            return "nothing".into();
        };
        link.full_since = None;
        if link.stalled_until.is_some_and(|t| now >= t) {
            link.stalled_until = None;
        }
        match delivery {
            Delivery::Closed(why) => {
                let progressed = link.progressed;
                self.session_ended(now, progressed);
                format!("stream closed ({why})")
            }
            Delivery::Frame(frame) => {
                let what = describe(&frame);
                let message = match frame.into_message() {
                    Ok(m) => m,
                    Err(e) => return format!("undecodable: {e}"),
                };
                let (asked, announced) = (link.asked, link.announced);
                match node.receive(message, asked, announced) {
                    Ok(None) => {
                        link.progressed = true;
                        format!("applied {what}")
                    }
                    Ok(Some(ended)) => {
                        self.session_ended(now, true);
                        format!("applied {what}; reconnects ({})", ended.reason.as_str())
                    }
                    Err(e) => {
                        self.session_ended(now, true);
                        format!("store error on {what}: {e}")
                    }
                }
            }
        }
    }

    /// The session is gone (either side): dial again after the policy's
    /// backoff.
    pub fn session_ended(&mut self, now: Instant, progressed: bool) {
        self.link = None;
        let delay = match &self.node {
            Some(n) => self.backoff.after(n.policy(), progressed),
            None => Duration::ZERO,
        };
        self.reconnect_at = now + delay;
    }

    /// Make its store's next write fail (a full disk).
    pub fn fail_next_write(&self) -> bool {
        match (&self.node, self.kind.durable) {
            (Some(node), true) => {
                node.inject_storage_failures(1);
                true
            }
            _ => false,
        }
    }
}
