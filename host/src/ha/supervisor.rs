//! The supervisor: one task per node under etcd that moves it between
//! roles (docs/protocol.md §8). As a follower it observes etcd, follows
//! whoever leads and campaigns when nobody does and it is fit to; as a
//! leader it watches its lease and its key, and steps down when either is
//! lost. Every role change goes through `Role::Changing`, so that nothing
//! is served from a set being handed over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::etcd::{self, Coordinator, EtcdError, Observed, Position, Published};
use super::{HaConfig, Role, Switch};
use crate::follower::Follower;
use crate::leader::Leader;
use crate::policy_runtime::PolicyRuntime;
use crate::role::{FollowerNode, LeaderNode};

/// The role being played, with what it needs to stop.
enum Playing {
    Follower(Follower),
    Leader(Leader, etcd::Leadership),
}

pub(super) struct Supervisor {
    pub(super) config: HaConfig,
    pub(super) policy: Arc<PolicyRuntime>,
    pub(super) etcd: Coordinator,
    pub(super) switch: Arc<Switch>,
    pub(super) advertise: String,
    pub(super) started: Instant,
}

/// How long a leader that hands over waits for its followers to take what
/// it accepted: a second is many frames, and a slow follower must not hold
/// the cluster leaderless.
const HANDOVER_DRAIN: Duration = Duration::from_secs(1);

/// How long a follower that saw the leader go waits for the old leader's
/// stream to end before it campaigns (a resigning leader closes it within
/// its hand-over drain and its shutdown bound).
const SESSION_END: Duration = Duration::from_millis(1_500);

/// How long a node that announced its position waits for the others'
/// before it compares: they noticed the leader gone within a watch's delay.
const ANNOUNCE_SETTLE: Duration = Duration::from_millis(300);

/// How often a node re-reads etcd when nothing wakes it earlier.
const OBSERVE_EVERY: Duration = Duration::from_secs(1);

impl Supervisor {
    fn me(&self) -> Published {
        Published {
            name: self.config.leader.name.clone(),
            url: self.advertise.clone(),
            term: 0,
        }
    }

    pub(super) async fn run(self, follower: Follower, mut stop: watch::Receiver<bool>) {
        let mut playing = Playing::Follower(follower);
        // When this node first saw no leader (for the promotion's time).
        let mut leaderless_since: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                self.stop(playing).await;
                return;
            }
            playing = match playing {
                Playing::Follower(f) => self.follow(f, &mut leaderless_since, &mut stop).await,
                Playing::Leader(l, leadership) => self.lead(l, leadership, &mut stop).await,
            };
        }
    }

    /// One round as a follower: observe etcd, follow whoever leads, and
    /// campaign when nobody does and this node is fit to.
    async fn follow(
        &self,
        follower: Follower,
        leaderless_since: &mut Option<Instant>,
        stop: &mut watch::Receiver<bool>,
    ) -> Playing {
        let observed = match self.etcd.observe().await {
            Ok(o) => o,
            Err(e) => {
                self.note_etcd_down(&e);
                // Keep following the last known leader meanwhile.
                wait_or_stop(stop, Duration::from_millis(250)).await;
                return Playing::Follower(follower);
            }
        };
        let fit = self.fitness(&follower, &observed);
        {
            let mut ha = self.switch.ha.lock();
            ha.etcd_reachable = true;
            ha.held_term = follower.shared.held_term();
            ha.eligible = fit.is_ok();
            ha.waiting = fit.as_ref().err().cloned();
            ha.term = observed.leader.as_ref().map_or(0, |l| l.term);
            ha.leader = observed
                .leader
                .as_ref()
                .map_or_else(String::new, |l| l.name.clone());
            ha.leader_url = observed
                .leader
                .as_ref()
                .map_or_else(String::new, |l| l.url.clone());
        }
        match &observed.leader {
            Some(leader) if leader.url != self.advertise => {
                *leaderless_since = None;
                follower.shared.point_at(&leader.url);
                self.switch.ha.lock().waiting = None;
                tokio::select! {
                    _ = self.etcd.wait_for_change(observed.revision, OBSERVE_EVERY) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
                Playing::Follower(follower)
            }
            Some(_) => {
                // Our own key from a previous life of this node: its lease
                // is gone with that process and the key expires with it.
                follower.shared.point_at("");
                self.switch.ha.lock().waiting =
                    Some("a previous run of this node still holds the leader key; waiting for its lease to expire".into());
                wait_or_stop(stop, Duration::from_millis(200)).await;
                Playing::Follower(follower)
            }
            None => {
                let since = *leaderless_since.get_or_insert_with(Instant::now);
                match fit {
                    Ok(guard) => {
                        // The old leader's stream stays open until it closes
                        // it: what it sent before resigning is applied
                        // first, so that this node leads with all of it.
                        follower.shared.session_ended_within(SESSION_END).await;
                        if let Some(ahead) = self.one_ahead(&follower, stop).await {
                            tracing::info!(
                                ahead = %ahead.name, their_index = ahead.next_index, term = ahead.term,
                                "not campaigning: another node holds more of the newest term"
                            );
                            self.switch.ha.lock().waiting = Some(format!(
                                "{} holds more of term {} (index {}); it campaigns first",
                                ahead.name, ahead.term, ahead.next_index
                            ));
                            tokio::select! {
                                _ = self.etcd.wait_for_change(observed.revision, OBSERVE_EVERY) => {}
                                _ = stop.wait_for(|s| *s) => {}
                            }
                            return Playing::Follower(follower);
                        }
                        self.campaign(follower, guard, since, stop).await
                    }
                    Err(why) => {
                        tracing::debug!(reason = %why, "not campaigning");
                        tokio::select! {
                            _ = self.etcd.wait_for_change(observed.revision, Duration::from_millis(250)) => {}
                            _ = stop.wait_for(|s| *s) => {}
                        }
                        Playing::Follower(follower)
                    }
                }
            }
        }
    }

    /// Whether this node may campaign now, and with which term guard (the
    /// term etcd must still name as newest); why not, in words, otherwise.
    fn fitness(&self, follower: &Follower, observed: &Observed) -> Result<Option<u64>, String> {
        let shared = &follower.shared;
        let state = shared.state();
        let held = shared.held_term();
        match observed.newest_term {
            // Complete: the store claims an index, holding exactly a set the
            // leader had there (a completion was verified, history replayed
            // in order). After a restart it is not *ready* until a leader
            // confirms it, but with no leader left to ask, a complete copy
            // of the newest term is what the cluster has.
            Some(newest) if !state.complete || state.force_full_sync => Err(format!(
                "its copy is not complete ({}); only a complete node may lead (newest term {newest})",
                state.phase.as_str()
            )),
            Some(newest) if held != newest => Err(format!(
                "it holds records of term {held}, not of the newest term {newest}; it must sync from a leader of that term first"
            )),
            Some(newest) => Ok(Some(newest)),
            // Nobody ever led this cluster through etcd.
            None if state.complete => Ok(None),
            None => {
                let empty = shared.read_regions(|s| s.is_empty()) && state.next_index == 0;
                if !empty {
                    Err("its copy is incomplete; only a complete or empty store may lead a new cluster".into())
                } else if self.started.elapsed() < self.config.bootstrap_grace {
                    Err("the cluster never had a leader; an empty node gives a node with data time to win first".into())
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// Announce this node's position, give the others a moment to announce
    /// theirs, and name one that holds more of the newest term, if any
    /// (`etcd::ahead_of`). An etcd that cannot be asked names none: the
    /// term guard of the campaign still holds.
    async fn one_ahead(
        &self,
        follower: &Follower,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Position> {
        let me = Position {
            name: self.config.leader.name.clone(),
            term: follower.shared.held_term(),
            next_index: follower.shared.state().next_index,
        };
        if let Err(e) = self.etcd.announce(&me, self.config.lease_ttl).await {
            self.note_etcd_down(&e);
            return None;
        }
        wait_or_stop(stop, ANNOUNCE_SETTLE).await;
        match self.etcd.positions().await {
            Ok(all) => etcd::ahead_of(&me, &all).cloned(),
            Err(e) => {
                self.note_etcd_down(&e);
                None
            }
        }
    }

    async fn campaign(
        &self,
        follower: Follower,
        guard: Option<u64>,
        leaderless_since: Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Playing {
        let won = match self
            .etcd
            .campaign(&self.me(), guard, self.config.lease_ttl)
            .await
        {
            Ok(Some(won)) => won,
            Ok(None) => return Playing::Follower(follower),
            Err(e) => {
                self.note_etcd_down(&e);
                wait_or_stop(stop, Duration::from_millis(250)).await;
                return Playing::Follower(follower);
            }
        };
        tracing::info!(
            term = won.term,
            lease = won.lease,
            "won the election; taking over as leader"
        );
        self.switch.set(Role::Changing);
        let empty_start = guard.is_none() && !follower.shared.state().complete;
        let leader = if empty_start {
            follower.shutdown().await;
            self.start_leader(None, &won)
        } else {
            match follower.hand_over().await {
                Some(handover) => self.start_leader(Some(handover), &won),
                None => Err("its copy stopped being complete before the hand-over".into()),
            }
        };
        match leader {
            Ok(leader) => {
                let took = leaderless_since.elapsed();
                let shared = leader.shared.clone();
                self.switch.set(Role::Leader(Arc::new(LeaderNode {
                    shared: shared.clone(),
                    advertise: self.advertise.clone(),
                })));
                {
                    let mut ha = self.switch.ha.lock();
                    ha.elections_won += 1;
                    ha.term = won.term;
                    ha.held_term = won.term;
                    ha.leader = self.config.leader.name.clone();
                    ha.leader_url = self.advertise.clone();
                    ha.last_promotion_ms = Some(took.as_millis() as u64);
                    ha.promoted_at_unix_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_millis() as u64);
                    ha.waiting = None;
                }
                tracing::info!(
                    term = won.term, next_index = shared.held(None).next_index,
                    regions = shared.held(None).regions, took = ?took,
                    "leading: serving intake and SyncRegions from this node's store and ring"
                );
                Playing::Leader(leader, won)
            }
            Err(why) => {
                tracing::error!(reason = %why, "cannot lead after winning; resigning");
                self.etcd.resign(won).await;
                Playing::Follower(self.start_follower(None).await)
            }
        }
    }

    fn start_leader(
        &self,
        handover: Option<crate::handover::Handover>,
        won: &etcd::Leadership,
    ) -> Result<Leader, String> {
        let mut config = self.config.leader.clone();
        config.cluster_id = Some(self.config.cluster_id);
        config.term = Some(won.term);
        config.fence = won.fence.clone();
        // Without a hand-over this node leads as an empty node of a cluster
        // nobody led (`fitness`): a partial copy left on disk by a crash
        // mid-sync is not what it was elected with.
        config.clear_incomplete = handover.is_none();
        let started = match handover {
            Some(h) => Leader::start_from(config, self.policy.clone(), h),
            None => Leader::start(config, self.policy.clone()),
        };
        started.map_err(|e| crate::error_chain(&e))
    }

    /// Start following, from a handed-over store or from disk. A store that
    /// cannot even be opened leaves the node nothing to serve: it says so in
    /// its log and status and keeps trying.
    async fn start_follower(&self, mut handover: Option<crate::handover::Handover>) -> Follower {
        let config = self.config.follower_role();
        loop {
            let started = match handover.take() {
                Some(h) => Follower::start_from(config.clone(), self.policy.clone(), h),
                None => Follower::start(config.clone(), self.policy.clone()),
            };
            match started {
                Ok(f) => {
                    self.switch.set(Role::Follower(Arc::new(FollowerNode {
                        shared: f.shared.clone(),
                        advertise: self.advertise.clone(),
                    })));
                    return f;
                }
                Err(e) => {
                    tracing::error!(error = %crate::error_chain(&e), "cannot open the store to follow; retrying");
                    self.switch.ha.lock().waiting = Some(format!("cannot open its store: {e}"));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Lead until the lease lapses, the leader fails, etcd names another,
    /// or the node stops; then step down to follow.
    async fn lead(
        &self,
        leader: Leader,
        won: etcd::Leadership,
        stop: &mut watch::Receiver<bool>,
    ) -> Playing {
        let why = loop {
            if !won.fence.holds() {
                break "its lease lapsed (etcd unreachable or the lease expired)".to_string();
            }
            if leader.shared.is_failed() {
                break "it cannot persist changes".to_string();
            }
            match self.etcd.observe().await {
                Ok(o) => {
                    self.switch.ha.lock().etcd_reachable = true;
                    match o.leader {
                        Some(l) if l.term == won.term => {}
                        Some(l) => {
                            break format!("etcd names {} (term {}) as leader", l.name, l.term);
                        }
                        None => break "its leader key is gone".to_string(),
                    }
                }
                Err(e) => self.note_etcd_down(&e),
            }
            // Wake before the fence closes, to step down at once.
            let nap = won
                .fence
                .remaining()
                .unwrap_or(Duration::MAX)
                .min(Duration::from_millis(200));
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = stop.wait_for(|s| *s) => return Playing::Leader(leader, won),
            }
        };
        tracing::warn!(reason = %why, term = won.term, "stepping down from leader");
        // As at a clean stop: the followers take what was accepted first
        // (a lapsed lease has closed the fence already).
        leader.shared.close_and_drain(HANDOVER_DRAIN).await;
        {
            // Before the role changes: a refusal from here on must not name
            // this node as the leader.
            let mut ha = self.switch.ha.lock();
            ha.step_downs += 1;
            ha.leader = String::new();
            ha.leader_url = String::new();
        }
        self.switch.set(Role::Changing);
        self.etcd.resign(won).await;
        let handover = leader.hand_over().await;
        Playing::Follower(self.start_follower(handover).await)
    }

    async fn stop(&self, playing: Playing) {
        self.switch.set(Role::Changing);
        match playing {
            Playing::Follower(f) => f.shutdown().await,
            Playing::Leader(l, won) => {
                tracing::info!(
                    term = won.term,
                    "stopping: fencing the intake, then resigning"
                );
                // The fence closes before anything else, so that no change
                // is taken after another node may have won; the followers
                // then get what was accepted, so that the next leader has
                // it all; only then does the lease go.
                l.shared.close_and_drain(HANDOVER_DRAIN).await;
                self.etcd.resign(won).await;
                l.shutdown().await;
            }
        }
    }

    fn note_etcd_down(&self, e: &EtcdError) {
        tracing::warn!(error = %crate::error_chain(e), "etcd unreachable");
        self.switch.ha.lock().etcd_reachable = false;
    }
}

async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}
