//! High availability: a node started with `--etcd` leads or follows as etcd
//! decides, and changes role without a restart (docs/protocol.md §8).
//!
//! - [`etcd`]: who leads, and campaigning with a lease (etcd's election, as
//!   PD's; nothing here elects);
//! - [`switch`]: the node as the service and the admin interface see it,
//!   whichever role it plays;
//! - this module: the supervisor that moves the node between roles.
//!
//! The rules, each for a failure seen in PD or in replication generally:
//! - only a node whose copy is complete (it claims an index) and holds the
//!   newest leadership's records campaigns (PD #10843: an empty member won and
//!   served nothing); a never-led cluster's first leader is the exception,
//!   preferring a node with data;
//! - the winner continues its own numbering from its warm store and ring
//!   (`handover`), so the others resume from it by history;
//! - an old leader's intake is fenced by its lease (`leader::fence`) and
//!   closes before etcd can let another win; a follower whose records came
//!   from a leadership the winner did not continue gets a full sync
//!   (`lineage`).

pub mod etcd;
pub mod switch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::follower::{Follower, FollowerConfig};
use crate::leader::{Leader, LeaderConfig};
use crate::node::{FollowerNode, LeaderNode, NodeError};
use crate::policy_runtime::PolicyRuntime;
use crate::server::GrpcServer;
use crate::service::PdService;
use crate::status::HaStatus;

pub use etcd::{Coordinator, EtcdError, Observed, Published};
pub use switch::{Role, Switch};

/// How a node under etcd runs.
#[derive(Debug, Clone)]
pub struct HaConfig {
    /// etcd's client URLs.
    pub etcd: Vec<String>,
    /// The cluster (its election keys are under `/regionsync/<id>/`).
    pub cluster_id: u64,
    /// The leadership lease's TTL: a leader that dies is replaced after at
    /// most about this long.
    pub lease_ttl: Duration,
    /// In a cluster that never had a leader, a node with an empty store
    /// waits this long before campaigning, so that one with data wins.
    pub bootstrap_grace: Duration,
    /// The leader role's settings (its term and fence are set per win).
    pub leader: LeaderConfig,
    /// The follower role's settings (its leader URL comes from etcd).
    pub follower: FollowerConfig,
}

/// Why a node under etcd cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// etcd's client could not be made.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The node's store or server refused.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// A node under etcd, serving on its listener.
pub struct HaNode {
    /// What the service and the admin interface see.
    pub switch: Arc<Switch>,
    server: GrpcServer,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl HaNode {
    /// Open the store as a follower, serve on `listener`, and start taking
    /// part in the election.
    pub async fn start(
        config: HaConfig,
        policy: Arc<PolicyRuntime>,
        listener: tokio::net::TcpListener,
    ) -> Result<HaNode, HaError> {
        let addr = listener.local_addr().map_err(NodeError::Listener)?;
        let tls = config.leader.tls.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let advertise = format!("{scheme}://{addr}");
        let etcd = Coordinator::connect(&config.etcd, config.cluster_id).await?;
        let mut follower_config = config.follower.clone();
        follower_config.leader = String::new();
        follower_config.cluster_id = Some(config.cluster_id);
        let follower = Follower::start(follower_config, policy.clone())
            .map_err(|e| HaError::Node(e.into()))?;
        let switch = Arc::new(Switch::new(
            config.leader.name.clone(),
            advertise.clone(),
            config.cluster_id,
            policy.clone(),
            HaStatus {
                etcd: config.etcd.clone(),
                ..Default::default()
            },
        ));
        switch.set(Role::Follower(Arc::new(FollowerNode {
            shared: follower.shared.clone(),
            advertise: advertise.clone(),
        })));
        let server = GrpcServer::spawn(listener, PdService::leader(switch.clone()), tls.as_ref())
            .map_err(NodeError::from)?;
        let (stop, stopped) = watch::channel(false);
        let supervisor = Supervisor {
            config,
            policy,
            etcd,
            switch: switch.clone(),
            advertise,
            started: Instant::now(),
        };
        let task = tokio::spawn(supervisor.run(follower, stopped));
        Ok(HaNode {
            switch,
            server,
            stop,
            task,
        })
    }

    /// The gRPC address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// A clean stop: a leader resigns (so another wins at once, not after
    /// the lease's TTL) and says "server stopped" to its streams; a follower
    /// flushes its store.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        if tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .is_err()
        {
            tracing::warn!("the node did not stop its role within 10 s");
        }
        self.server.stop(Duration::from_secs(1)).await;
    }
}

/// The role being played, with what it needs to stop.
enum Playing {
    Follower(Follower),
    Leader(Leader, etcd::Leadership),
}

struct Supervisor {
    config: HaConfig,
    policy: Arc<PolicyRuntime>,
    etcd: Coordinator,
    switch: Arc<Switch>,
    advertise: String,
    started: Instant,
}

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

    async fn run(self, follower: Follower, mut stop: watch::Receiver<bool>) {
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
                follower.shared.point_at("");
                match fit {
                    Ok(guard) => self.campaign(follower, guard, since, stop).await,
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
        let state = *shared.state.lock();
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
                let empty = shared.store.read().is_empty() && state.next_index == 0;
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
        let empty_start = guard.is_none() && !follower.shared.state.lock().complete;
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
                    ha.waiting = None;
                }
                tracing::info!(
                    term = won.term, next_index = shared.ring.read().next_index(),
                    regions = shared.store.read().len(), took = ?took,
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
        let mut config = self.config.follower.clone();
        config.leader = String::new();
        config.cluster_id = Some(self.config.cluster_id);
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
            if leader
                .shared
                .failed
                .load(std::sync::atomic::Ordering::Acquire)
            {
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
        self.switch.set(Role::Changing);
        self.etcd.resign(won).await;
        {
            let mut ha = self.switch.ha.lock();
            ha.step_downs += 1;
            ha.leader = String::new();
            ha.leader_url = String::new();
        }
        let handover = leader.hand_over().await;
        Playing::Follower(self.start_follower(handover).await)
    }

    async fn stop(&self, playing: Playing) {
        self.switch.set(Role::Changing);
        match playing {
            Playing::Follower(f) => f.shutdown().await,
            Playing::Leader(l, won) => {
                tracing::info!(term = won.term, "stopping: resigning the leadership first");
                // The fence closes before anything else, so that no change
                // is taken after another node may have won.
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
