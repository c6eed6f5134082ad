//! The checks a scenario runs: on each follower all along ([`watch`]), and
//! against the oracle at the end ([`judge`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use regionsync_proto::pdpb::{GetRegionRequest, RequestHeader};

use super::oracle;

/// What watching one follower saw: reads answered, reads refused, and the
/// (index, digest) pairs it was ready with.
type Watched = (u64, u64, Vec<(u64, u128)>);

/// The continuous checks on one follower, until stopped.
pub struct Watch {
    pub stop: Arc<AtomicBool>,
    /// Which follower, started when (for a failure's message).
    label: String,
    task: tokio::task::JoinHandle<Result<Watched, String>>,
}

/// A claim: (index, digest, who made it and when).
pub type Claim = (u64, u128, String);

pub fn watch(
    follower: Arc<regionsync::follower::FollowerShared>,
    url: String,
    cluster: u64,
    label: String,
) -> Watch {
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let (mut answered, mut refused) = (0u64, 0u64);
            let mut claims = Vec::new();
            let mut client = None;
            while !stop.load(Ordering::Relaxed) {
                // A ready follower's index and set, read together (the
                // state changes under the store's lock).
                {
                    let store = follower.store.read();
                    let state = *follower.state.lock();
                    if state.ready {
                        if !state.complete {
                            return Err(format!("ready but incomplete: {state:?}"));
                        }
                        let c = (state.next_index, store.digest().value());
                        if claims.last() != Some(&c) {
                            claims.push(c);
                        }
                    }
                }
                // A read over gRPC answers only while ready.
                if client.is_none() {
                    client = regionsync_proto::pdpb::pd_client::PdClient::connect(url.clone())
                        .await
                        .ok();
                }
                if let Some(c) = client.as_mut() {
                    let before = follower.is_ready();
                    let answer = c
                        .get_region(GetRegionRequest {
                            header: Some(RequestHeader {
                                cluster_id: cluster,
                                ..Default::default()
                            }),
                            region_key: b"k".to_vec(),
                            ..Default::default()
                        })
                        .await;
                    let after = follower.is_ready();
                    match answer {
                        Ok(_) if !before && !after => {
                            return Err("a read was answered while not ready".into());
                        }
                        Ok(_) => answered += 1,
                        Err(_) => refused += 1,
                    }
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            Ok((answered, refused, claims))
        }
    });
    Watch { stop, label, task }
}

/// Every ready claim the oracle can judge must be what the leader had;
/// returns how many it judged.
pub fn judge(seen: &oracle::Seen, claims: &[Claim]) -> Result<u64, String> {
    if let Some(a) = seen.anomalies.first() {
        return Err(format!("the leader broke its numbering: {a}"));
    }
    if let Some(c) = seen.changed.first() {
        return Err(format!("the leader's set at one index changed: {c}"));
    }
    let mut checked = 0;
    for (index, digest, who) in claims {
        let (index, digest) = (*index, *digest);
        if let Some(&had) = seen.digests.get(&index) {
            if had != digest {
                return Err(format!(
                    "{who} held digest {digest:032x} at index {index} while ready, \
                     the leader had {had:032x} there"
                ));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

pub async fn collect(
    w: Watch,
    claims: &Mutex<Vec<Claim>>,
    reads: &(AtomicU64, AtomicU64),
) -> Result<(), String> {
    let (answered, refused, c) = w.task.await.map_err(|e| e.to_string())??;
    reads.0.fetch_add(answered, Ordering::Relaxed);
    reads.1.fetch_add(refused, Ordering::Relaxed);
    let label = w.label;
    claims.lock().extend(
        c.into_iter()
            .enumerate()
            .map(|(k, (i, d))| (i, d, format!("{label}, its claim #{k}"))),
    );
    Ok(())
}
