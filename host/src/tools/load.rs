//! A region heartbeat generator with realistic churn: what `regionsync load`
//! and the demo feed a leader.
//!
//! It keeps a model of the cluster's regions (a partition of the key space)
//! and turns each operation into the heartbeats TiKV would send: a split
//! reports both halves with a bumped version, a merge reports the survivor
//! covering both ranges, a leader transfer or a conf change reports the
//! region with its new leader or peers, a flow update reports new stats.
//! Because the model follows the epoch rules, every heartbeat it sends is
//! one the leader must accept, so "accepted" can be checked exactly.

use std::time::{Duration, Instant};

use anyhow::Context;
use regionsync_proto::metapb::{Peer, Region, RegionEpoch};
use regionsync_proto::pdpb::pd_client::PdClient;
use regionsync_proto::pdpb::{RegionHeartbeatRequest, RequestHeader, ScanRegionsRequest};
use tonic::transport::Channel;

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
struct ModelRegion {
    id: u64,
    start: u64,
    end: u64,
    version: u64,
    conf_ver: u64,
    peers: Vec<Peer>,
    leader: usize,
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

/// The model cluster and the heartbeats that describe its changes.
pub struct Generator {
    cluster_id: u64,
    regions: Vec<ModelRegion>,
    next_id: u64,
    next_peer: u64,
    rng: Rng,
    /// What the churn did so far.
    pub counts: ChurnCounts,
}

const STORES: u64 = 5;

impl Generator {
    /// A model of `n` regions evenly splitting the key space.
    pub fn new(cluster_id: u64, n: u64, seed: u64) -> Self {
        let n = n.max(1);
        let step = u64::MAX / 4 / n;
        let mut g = Generator {
            cluster_id,
            regions: Vec::with_capacity(n as usize),
            next_id: 1,
            next_peer: 1_000_000_000,
            rng: Rng::new(seed),
            counts: ChurnCounts::default(),
        };
        for i in 0..n {
            let peers = g.new_peers(i);
            let r = ModelRegion {
                id: g.next_id,
                start: i * step,
                end: if i + 1 == n { 0 } else { (i + 1) * step },
                version: 1,
                conf_ver: 1,
                peers,
                leader: 0,
            };
            g.next_id += 1;
            g.regions.push(r);
        }
        g
    }

    /// A model that continues from the regions a leader holds (a second run
    /// on the same data), or `None` if they are not this generator's.
    pub fn resume(cluster_id: u64, existing: Vec<(Region, Peer)>, seed: u64) -> Option<Self> {
        let mut regions = Vec::with_capacity(existing.len());
        for (r, leader) in existing {
            let epoch = r.region_epoch.unwrap_or_default();
            regions.push(ModelRegion {
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
            });
        }
        regions.sort_by_key(|r| r.start);
        let next_id = regions.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let next_peer = regions
            .iter()
            .flat_map(|r| r.peers.iter().map(|p| p.id))
            .max()
            .unwrap_or(1_000_000_000)
            + 1;
        Some(Generator {
            cluster_id,
            regions,
            next_id,
            next_peer,
            rng: Rng::new(seed),
            counts: ChurnCounts::default(),
        })
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

    fn heartbeat(&self, r: &ModelRegion, bytes_written: u64) -> RegionHeartbeatRequest {
        let region = r.region();
        RegionHeartbeatRequest {
            header: Some(RequestHeader {
                cluster_id: self.cluster_id,
                ..Default::default()
            }),
            leader: region.peers.get(r.leader).copied(),
            region: Some(region),
            bytes_written,
            keys_written: bytes_written / 64,
            approximate_size: 96 << 20,
            ..Default::default()
        }
    }

    /// One heartbeat per region of the model, with fresh flow figures.
    pub fn all(&mut self) -> Vec<RegionHeartbeatRequest> {
        let flows: Vec<u64> = (0..self.regions.len())
            .map(|_| self.rng.below(1 << 20))
            .collect();
        self.regions
            .iter()
            .zip(flows)
            .map(|(r, f)| self.heartbeat(r, f))
            .collect()
    }

    /// One churn operation, as the heartbeats it causes.
    pub fn churn(&mut self) -> Vec<RegionHeartbeatRequest> {
        let i = self.rng.below(self.regions.len() as u64) as usize;
        let roll = self.rng.below(100);
        let flow = self.rng.below(1 << 24);
        if roll < 5 {
            if let Some(out) = self.split(i, flow) {
                return out;
            }
        } else if roll < 10 && self.regions.len() > 1 {
            let i = i.min(self.regions.len() - 2);
            return self.merge(i, flow);
        } else if roll < 35 {
            let r = &mut self.regions[i];
            r.leader = (r.leader + 1) % r.peers.len();
            self.counts.leader_transfers += 1;
            return vec![self.heartbeat(&self.regions[i], flow)];
        } else if roll < 40 {
            self.next_peer += 1;
            let store = 1 + self.rng.below(STORES);
            let r = &mut self.regions[i];
            let slot = (r.leader + 1) % r.peers.len();
            r.peers[slot] = Peer {
                id: self.next_peer,
                store_id: store,
                ..Default::default()
            };
            r.conf_ver += 1;
            self.counts.conf_changes += 1;
            return vec![self.heartbeat(&self.regions[i], flow)];
        }
        self.counts.flow_updates += 1;
        vec![self.heartbeat(&self.regions[i], flow)]
    }

    fn split(&mut self, i: usize, flow: u64) -> Option<Vec<RegionHeartbeatRequest>> {
        let r = self.regions[i].clone();
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
        };
        self.next_id += 1;
        let out = vec![self.heartbeat(&right, flow), self.heartbeat(&left, flow)];
        self.regions[i] = left;
        self.regions.insert(i + 1, right);
        self.counts.splits += 1;
        Some(out)
    }

    fn merge(&mut self, i: usize, flow: u64) -> Vec<RegionHeartbeatRequest> {
        let gone = self.regions.remove(i + 1);
        let survivor = &mut self.regions[i];
        survivor.end = gone.end;
        survivor.version = survivor.version.max(gone.version) + 1;
        self.counts.merges += 1;
        vec![self.heartbeat(&self.regions[i], flow)]
    }

    /// The model's regions, for checking a node against it.
    pub fn regions(&self) -> Vec<Region> {
        self.regions.iter().map(ModelRegion::region).collect()
    }
}

/// Connect to a leader with a clear error.
pub async fn connect(url: &str) -> anyhow::Result<PdClient<Channel>> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .with_context(|| format!("{url:?} is not a valid URL"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("the leader at {url} does not answer"))?;
    Ok(PdClient::new(channel).max_decoding_message_size(crate::wire::MAX_MESSAGE_BYTES))
}

/// Every region a node serves, with its leader, paging like a PD client.
pub async fn scan_all(
    client: &mut PdClient<Channel>,
    cluster_id: u64,
) -> anyhow::Result<Vec<(Region, Peer)>> {
    let mut out = Vec::new();
    let mut start = Vec::new();
    loop {
        let page = client
            .scan_regions(ScanRegionsRequest {
                header: Some(RequestHeader {
                    cluster_id,
                    ..Default::default()
                }),
                start_key: start.clone(),
                limit: 10_000,
                ..Default::default()
            })
            .await
            .context("scanning the node's regions")?
            .into_inner();
        let last_end = page.region_metas.last().map(|r| r.end_key.clone());
        out.extend(
            page.regions
                .into_iter()
                .filter_map(|r| Some((r.region?, r.leader.unwrap_or_default()))),
        );
        match last_end {
            Some(end) if !end.is_empty() => start = end,
            _ => return Ok(out),
        }
    }
}

/// Send heartbeats on one stream, at most `rate` per second (0: as fast as
/// the leader takes them; the stream's flow control paces the sender).
pub async fn send(
    client: &mut PdClient<Channel>,
    heartbeats: Vec<RegionHeartbeatRequest>,
    rate: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let paced = tokio_stream::StreamExt::then(
        tokio_stream::iter(heartbeats.into_iter().enumerate()),
        move |(i, hb)| async move {
            if rate > 0 {
                let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            hb
        },
    );
    let mut responses = client
        .region_heartbeat(paced)
        .await
        .context("opening a RegionHeartbeat stream")?
        .into_inner();
    // The leader answers only refusals; the stream ends when it has read
    // everything we sent.
    while let Some(resp) = responses.message().await.context("heartbeat stream")? {
        if let Some(err) = resp.header.and_then(|h| h.error) {
            anyhow::bail!("the leader refused a heartbeat: {}", err.message);
        }
    }
    Ok(())
}
