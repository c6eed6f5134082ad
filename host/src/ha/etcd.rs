//! The node's side of etcd: who leads, and campaigning for it with a lease,
//! the way PD's own leadership works (a key created in a transaction only if
//! absent, bound to a lease the winner keeps alive). The election itself is
//! etcd's: one transaction succeeds, the rest see the key.
//!
//! Two keys per cluster, under `/regionsync/<cluster id>/`:
//! - `leader`: the winner's name and gRPC URL, bound to its lease, so it
//!   disappears when the winner stops keeping the lease alive. Its revision
//!   is the leadership's *term* (`crate::lineage`).
//! - `term`: rewritten by every winner in the same transaction; its revision
//!   is the newest term. A campaign succeeds only while it still names the
//!   term the candidate holds, so only a node holding the newest
//!   leadership's records can win (a node that is behind by a whole
//!   leadership, or holds an old leader's unreplicated tail, cannot).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::leader::fence::Moment;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use serde::{Deserialize, Serialize};

use crate::leader::Fence;

/// An etcd call failed (unreachable, timed out, refused).
#[derive(Debug, thiserror::Error)]
#[error("etcd at {endpoints}: {action}")]
pub struct EtcdError {
    /// The endpoints dialled.
    pub endpoints: String,
    /// What was being done.
    pub action: &'static str,
    /// What the client said.
    #[source]
    pub source: etcd_client::Error,
}

/// The leader as published under the `leader` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Its node name.
    pub name: String,
    /// Its gRPC URL (what followers dial and `GetMembers` reports).
    pub url: String,
    /// Its term: the key's revision (not stored in the value).
    #[serde(skip)]
    pub term: u64,
}

/// Where a node that may campaign stands: the newest term it holds records
/// of and its index. Announced under `candidates/<name>`, bound to a lease
/// of the election's TTL, so a node that went away stops counting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Its node name.
    pub name: String,
    /// The newest term whose records it holds (`FollowerShared::held_term`).
    pub term: u64,
    /// Its index.
    pub next_index: u64,
}

/// The announced position, other than `me`'s, that holds more of the
/// newest term than `me` does (the furthest such): while there is one, `me`
/// does not campaign, so the node with the most of the newest term's
/// records wins and none of them is lost.
pub fn ahead_of<'a>(me: &Position, announced: &'a [Position]) -> Option<&'a Position> {
    announced
        .iter()
        .filter(|p| p.name != me.name && (p.term, p.next_index) > (me.term, me.next_index))
        .max_by_key(|p| (p.term, p.next_index))
}

/// What etcd says of the cluster now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The current leader, if any.
    pub leader: Option<Published>,
    /// The newest term any leader won (`None`: no node ever led this
    /// cluster through etcd).
    pub newest_term: Option<u64>,
    /// etcd's revision when read (a watch from the next one misses nothing).
    pub revision: i64,
}

/// A won leadership: its term and the fence its lease keeps open.
pub struct Leadership {
    /// The term (etcd revision of the win).
    pub term: u64,
    /// The lease the `leader` key is bound to.
    pub lease: i64,
    /// Open while the lease surely holds; the leader's intake checks it.
    pub fence: Arc<Fence>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// The node's etcd client for one cluster.
#[derive(Clone)]
pub struct Coordinator {
    client: Client,
    endpoints: String,
    leader_key: String,
    term_key: String,
    candidates_prefix: String,
    /// The last call succeeded (for status).
    reachable: Arc<AtomicBool>,
}

/// Each etcd call is bounded: a node must notice an unreachable etcd well
/// within a lease.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

impl Coordinator {
    /// A client of `endpoints` for `cluster_id`'s keys. Dials lazily: an
    /// etcd that is down now is retried by every later call.
    pub async fn connect(endpoints: &[String], cluster_id: u64) -> Result<Self, EtcdError> {
        let joined = endpoints.join(",");
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let options = ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_timeout(CALL_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), CALL_TIMEOUT);
        let client = Client::connect(&urls, Some(options))
            .await
            .map_err(|source| EtcdError {
                endpoints: joined.clone(),
                action: "connect",
                source,
            })?;
        let prefix = format!("/regionsync/{cluster_id}/");
        Ok(Coordinator {
            client,
            endpoints: joined,
            leader_key: format!("{prefix}leader"),
            term_key: format!("{prefix}term"),
            candidates_prefix: format!("{prefix}candidates/"),
            reachable: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// The last etcd call succeeded.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn note<T>(
        &self,
        action: &'static str,
        r: Result<T, etcd_client::Error>,
    ) -> Result<T, EtcdError> {
        self.reachable.store(r.is_ok(), Ordering::Relaxed);
        r.map_err(|source| EtcdError {
            endpoints: self.endpoints.clone(),
            action,
            source,
        })
    }

    /// Who leads, and the newest term, in one read.
    pub async fn observe(&self) -> Result<Observed, EtcdError> {
        let mut kv = self.client.kv_client();
        let txn = Txn::new().and_then([
            TxnOp::get(self.leader_key.as_str(), None),
            TxnOp::get(self.term_key.as_str(), None),
        ]);
        let resp = self.note("read the leader", kv.txn(txn).await)?;
        let mut observed = Observed {
            revision: resp.header().map_or(0, |h| h.revision()),
            ..Default::default()
        };
        for op in resp.op_responses() {
            let etcd_client::TxnOpResponse::Get(get) = op else {
                continue;
            };
            for kv in get.kvs() {
                if kv.key() == self.leader_key.as_bytes() {
                    match serde_json::from_slice::<Published>(kv.value()) {
                        Ok(mut p) => {
                            p.term = u64::try_from(kv.mod_revision()).unwrap_or(0);
                            observed.leader = Some(p);
                        }
                        Err(e) => tracing::warn!(
                            key = %self.leader_key, error = %e,
                            "the leader key holds something else than a regionsync leader; ignored"
                        ),
                    }
                } else if kv.key() == self.term_key.as_bytes() {
                    observed.newest_term = u64::try_from(kv.mod_revision()).ok();
                }
            }
        }
        Ok(observed)
    }

    /// Wait until the leader key changes after `revision` (or `bound`
    /// passes, or the watch fails: the caller observes again either way).
    pub async fn wait_for_change(&self, revision: i64, bound: Duration) {
        let mut watch = self.client.watch_client();
        let from = WatchOptions::new().with_start_revision(revision + 1);
        let watched = tokio::time::timeout(
            CALL_TIMEOUT,
            watch.watch(self.leader_key.as_str(), Some(from)),
        );
        let Ok(Ok(mut stream)) = watched.await else {
            tokio::time::sleep(bound.min(Duration::from_millis(200))).await;
            return;
        };
        let _ = tokio::time::timeout(bound, async {
            while let Ok(Some(resp)) = stream.message().await {
                if !resp.events().is_empty() || resp.canceled() {
                    return;
                }
            }
        })
        .await;
    }

    /// Campaign once: win only if nobody leads and the newest term is still
    /// `held_term` (`None`: only if no node ever led). `None` when another
    /// won or the cluster moved on.
    pub async fn campaign(
        &self,
        me: &Published,
        held_term: Option<u64>,
        ttl: Duration,
    ) -> Result<Option<Leadership>, EtcdError> {
        let mut lease_client = self.client.lease_client();
        let ttl_secs = lease_secs(ttl);
        // The fence counts from before the grant: etcd's lease runs from
        // when it received the request, which is later.
        let asked = Moment::now();
        let grant = self.note("grant a lease", lease_client.grant(ttl_secs, None).await)?;
        let lease = grant.id();
        let granted = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(0));
        let term_guard = match held_term {
            Some(t) => Compare::mod_revision(
                self.term_key.as_str(),
                CompareOp::Equal,
                i64::try_from(t).unwrap_or(i64::MAX),
            ),
            None => Compare::create_revision(self.term_key.as_str(), CompareOp::Equal, 0),
        };
        let value = serde_json::to_vec(me).expect("a leader record serialises");
        let txn = Txn::new()
            .when([
                Compare::create_revision(self.leader_key.as_str(), CompareOp::Equal, 0),
                term_guard,
            ])
            .and_then([
                TxnOp::put(
                    self.leader_key.as_str(),
                    value,
                    Some(PutOptions::new().with_lease(lease)),
                ),
                TxnOp::put(self.term_key.as_str(), me.name.as_bytes(), None),
            ]);
        let mut kv = self.client.kv_client();
        let resp = match self.note("campaign", kv.txn(txn).await) {
            Ok(r) => r,
            Err(e) => {
                let _ = lease_client.revoke(lease).await;
                return Err(e);
            }
        };
        if !resp.succeeded() {
            let _ = lease_client.revoke(lease).await;
            return Ok(None);
        }
        let term = resp
            .header()
            .map_or(0, |h| u64::try_from(h.revision()).unwrap_or(0));
        let fence = Arc::new(Fence::until(asked + fenced(granted)));
        let keeper = tokio::spawn(keep_alive(self.clone(), lease, fence.clone()));
        Ok(Some(Leadership {
            term,
            lease,
            fence,
            keeper,
        }))
    }

    /// Announce where this node stands before it campaigns, for `ttl`.
    pub async fn announce(&self, me: &Position, ttl: Duration) -> Result<(), EtcdError> {
        let mut lease_client = self.client.lease_client();
        let ttl_secs = lease_secs(ttl);
        let lease = self
            .note("grant a lease", lease_client.grant(ttl_secs, None).await)?
            .id();
        let value = serde_json::to_vec(me).expect("a position serialises");
        let key = format!("{}{}", self.candidates_prefix, me.name);
        let mut kv = self.client.kv_client();
        self.note(
            "announce a candidate",
            kv.put(key, value, Some(PutOptions::new().with_lease(lease)))
                .await,
        )?;
        Ok(())
    }

    /// Every position announced and still held.
    pub async fn positions(&self) -> Result<Vec<Position>, EtcdError> {
        let mut kv = self.client.kv_client();
        let got = self.note(
            "read the candidates",
            kv.get(
                self.candidates_prefix.as_str(),
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await,
        )?;
        Ok(got
            .kvs()
            .iter()
            .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
            .collect())
    }

    /// Give a leadership up: the fence closes first, then the lease goes, so
    /// that the next leader can win at once instead of after the lease's TTL.
    pub async fn resign(&self, leadership: Leadership) {
        leadership.fence.close();
        leadership.keeper.abort();
        let mut lease_client = self.client.lease_client();
        if let Err(e) = self.note(
            "revoke the lease",
            lease_client.revoke(leadership.lease).await,
        ) {
            tracing::warn!(error = %crate::error_chain(&e), "could not revoke the lease; the next leader waits for it to expire");
        }
    }
}

/// A lease TTL in etcd's whole seconds (at least one).
fn lease_secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX)
}

/// How long a grant of `ttl` keeps the fence open: the TTL less a margin
/// for the time the request took to reach etcd and clocks' rates.
fn fenced(ttl: Duration) -> Duration {
    ttl.saturating_sub((ttl / 10).max(Duration::from_millis(200)))
}

/// Keep the lease alive every third of its TTL; each answer moves the fence
/// to TTL after the request was sent. An answer of TTL 0 (the lease is
/// gone) closes the fence; so does silence, once the fence's time runs out.
async fn keep_alive(etcd: Coordinator, lease: i64, fence: Arc<Fence>) {
    let mut stream = None;
    loop {
        let Some(left) = fence.remaining() else {
            return;
        };
        if !fence.holds() {
            return;
        }
        let period = (left / 3).clamp(Duration::from_millis(100), Duration::from_secs(1));
        if stream.is_none() {
            let mut lease_client = etcd.client.lease_client();
            let opened = tokio::time::timeout(CALL_TIMEOUT, lease_client.keep_alive(lease)).await;
            match opened {
                Ok(Ok(pair)) => stream = Some(pair),
                Ok(Err(e)) => {
                    etcd.reachable.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, "cannot keep the lease alive; retrying");
                    tokio::time::sleep(period).await;
                    continue;
                }
                Err(_) => {
                    etcd.reachable.store(false, Ordering::Relaxed);
                    tokio::time::sleep(period).await;
                    continue;
                }
            }
        }
        let (keeper, answers) = stream.as_mut().expect("just opened");
        let sent = Moment::now();
        let answered = tokio::time::timeout(CALL_TIMEOUT, async {
            keeper.keep_alive().await?;
            answers.message().await
        })
        .await;
        match answered {
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                etcd.reachable.store(true, Ordering::Relaxed);
                let ttl = Duration::from_secs(u64::try_from(answer.ttl()).unwrap_or(0));
                if !fence.extend(sent + fenced(ttl)) {
                    // Answered after the fence lapsed: another node may have
                    // won meanwhile. The lapse is final (`leader::fence`).
                    tracing::error!(
                        lease,
                        "lease keepalive answered after the fence lapsed; leadership is given up"
                    );
                    return;
                }
            }
            Ok(Ok(Some(_))) => {
                tracing::error!(lease, "etcd says the lease has expired; leadership is lost");
                fence.close();
                return;
            }
            other => {
                etcd.reachable.store(false, Ordering::Relaxed);
                tracing::warn!(
                    lease, left_ms = fence.remaining().unwrap_or_default().as_millis() as u64,
                    answer = ?other.map(|r| r.map(|_| ())), "lease keepalive unanswered"
                );
                stream = None;
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// The key range of a cluster's election, for tools that clean up.
pub fn prefix(cluster_id: u64) -> String {
    format!("/regionsync/{cluster_id}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(name: &str, term: u64, next_index: u64) -> Position {
        Position {
            name: name.into(),
            term,
            next_index,
        }
    }

    /// Issue #30 item 3: among nodes fit to lead, the one holding the most
    /// of the newest term campaigns; the others wait for it.
    #[test]
    fn only_the_node_furthest_in_the_newest_term_campaigns() {
        let all = [at("a", 12, 150), at("b", 12, 120), at("c", 7, 400)];
        assert_eq!(ahead_of(&all[0], &all), None);
        assert_eq!(ahead_of(&all[1], &all), Some(&all[0]));
        assert_eq!(ahead_of(&all[2], &all), Some(&all[0]));
        // Alone, or level with another: campaign (etcd picks one).
        assert_eq!(ahead_of(&at("a", 12, 150), &[]), None);
        assert_eq!(ahead_of(&at("b", 12, 150), &all), None);
    }
}
