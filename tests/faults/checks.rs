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
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // A ready follower's index and set, read together (the
                // state changes under the store's lock).
                {
                    let held = follower.held(None);
                    if held.ready {
                        if !held.complete {
                            return Err(format!("ready but incomplete: {held:?}"));
                        }
                        let c = (held.next_index, held.digest.value());
                        if claims.last() != Some(&c) {
                            claims.push(c);
                        }
                    }
                }
                // A read over gRPC answers only while ready, with a region
                // that covers the key, and with what the follower holds;
                // the follower's state on each side of the read is a claim
                // judged like the others.
                if client.is_none() {
                    client = regionsync_proto::pdpb::pd_client::PdClient::connect(url.clone())
                        .await
                        .ok();
                }
                if let Some(c) = client.as_mut() {
                    reads += 1;
                    let key = if reads.is_multiple_of(2) {
                        Vec::new()
                    } else {
                        format!("k{:08}", reads.wrapping_mul(2_654_435_761) % 100_000_000)
                            .into_bytes()
                    };
                    let before = sample(&follower, &key);
                    let answer = c
                        .get_region(GetRegionRequest {
                            header: Some(RequestHeader {
                                cluster_id: cluster,
                                ..Default::default()
                            }),
                            region_key: key.clone(),
                            ..Default::default()
                        })
                        .await;
                    let after = sample(&follower, &key);
                    for s in [&before, &after] {
                        let c = (s.next_index, s.digest);
                        if s.ready && claims.last() != Some(&c) {
                            claims.push(c);
                        }
                    }
                    match answer {
                        Ok(answer) => {
                            check_answer(&key, &answer.into_inner(), &before, &after)?;
                            answered += 1;
                        }
                        Err(status) => {
                            // Refused as not ready by a follower that was
                            // ready, at one state, on both sides of the
                            // read: readiness it does not honour.
                            let still = before.ready
                                && after.ready
                                && (before.next_index, before.digest)
                                    == (after.next_index, after.digest);
                            if still && status.code() == tonic::Code::Unavailable {
                                return Err(format!(
                                    "a ready follower (index {}) refused a read: {}",
                                    after.next_index,
                                    status.message()
                                ));
                            }
                            refused += 1;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            Ok((answered, refused, claims))
        }
    });
    Watch { stop, label, task }
}

/// A follower's state around a read, sampled on its side: ready, its
/// index, its set's digest, and what its store holds for the key.
struct Sampled {
    ready: bool,
    next_index: u64,
    digest: u128,
    holds: Option<(u64, Vec<u8>, Vec<u8>)>,
}

fn sample(follower: &regionsync::follower::FollowerShared, key: &[u8]) -> Sampled {
    let held = follower.held(Some(key));
    Sampled {
        ready: held.ready,
        next_index: held.next_index,
        digest: held.digest.value(),
        holds: held
            .covering
            .map(|r| (r.region.id, r.region.start_key, r.region.end_key)),
    }
}

/// An answered read: the follower was ready on one side of it at least; the
/// region covers the key; and a follower whose state did not move around
/// the read answered exactly what its store holds (so a missing region is
/// one its set, judged against the leader's, does not have).
fn check_answer(
    key: &[u8],
    answer: &regionsync_proto::pdpb::GetRegionResponse,
    before: &Sampled,
    after: &Sampled,
) -> Result<(), String> {
    if !before.ready && !after.ready {
        return Err("a read was answered while not ready".into());
    }
    let got = answer
        .region
        .as_ref()
        .map(|r| (r.id, r.start_key.clone(), r.end_key.clone()));
    if let Some((id, start, end)) = &got
        && (start.as_slice() > key || (!end.is_empty() && end.as_slice() <= key))
    {
        return Err(format!(
            "a read of key {key:?} was answered with region {id} [{start:?}, {end:?}), which does not cover it"
        ));
    }
    let still = before.ready
        && after.ready
        && before.next_index == after.next_index
        && before.digest == after.digest;
    if still && got != after.holds {
        return Err(format!(
            "a read of key {key:?} at index {} was answered with {got:?}, the follower holds {:?}",
            after.next_index, after.holds
        ));
    }
    Ok(())
}

/// Every ready claim must be judged, and be what the leader had; returns how
/// many were judged.
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
        } else {
            // The leader's tap records every index it publishes, and the
            // leader's first state: an index nobody recorded was never the
            // leader's.
            return Err(format!(
                "{who} claimed index {index} (digest {digest:032x}) while ready; the leader \
                 never published that index (recorded up to {})",
                seen.last_index()
            ));
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
