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
//!
//! Built for a million regions: the model is ordered by start key with an
//! index for picking a region at random, so a split or a merge costs
//! O(log n); heartbeats are generated as they are sent ([`Generator::stream`]),
//! never gathered into a list first. Flow moves as a cluster's does: most
//! heartbeats move it a little (below PD's rounding, so they make no record),
//! a minority by more.

mod generator;
mod stream;

use std::time::{Duration, Instant};

use anyhow::Context;
use regionsync_proto::metapb::{Peer, Region};
use regionsync_proto::pdpb::pd_client::PdClient;
use regionsync_proto::pdpb::{RegionHeartbeatRequest, RequestHeader, ScanRegionsRequest};
use tonic::transport::Channel;

pub use generator::{ChurnCounts, Generator};
pub use stream::{Limit, stream};

/// Connect to a leader with a clear error.
pub async fn connect(url: &str) -> anyhow::Result<PdClient<Channel>> {
    connect_with(url, None).await
}

/// Connect to a leader, over TLS when `tls` is given.
pub async fn connect_with(
    url: &str,
    tls: Option<&regionsync::tls::Tls>,
) -> anyhow::Result<PdClient<Channel>> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .with_context(|| format!("{url:?} is not a valid URL"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.client())
            .with_context(|| format!("cannot use TLS for {url}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("the leader at {url} does not answer"))?;
    Ok(PdClient::new(channel).max_decoding_message_size(regionsync::wire::MAX_MESSAGE_BYTES))
}

/// The cluster's leader, asked of each of `nodes` in turn (GetMembers), as
/// a PD client finds it: its URL, a client of it, and the cluster id.
/// Retries until `within` passes (an election may be under way).
pub async fn find_leader(
    nodes: &[String],
    tls: Option<&regionsync::tls::Tls>,
    within: Duration,
) -> anyhow::Result<(String, PdClient<Channel>, u64)> {
    let deadline = Instant::now() + within;
    let mut last = anyhow::anyhow!("no node was asked");
    loop {
        for node in nodes {
            let asked = async {
                let mut client = connect_with(node, tls).await?;
                let members = client
                    .get_members(regionsync_proto::pdpb::GetMembersRequest::default())
                    .await
                    .with_context(|| format!("{node} answers no GetMembers"))?
                    .into_inner();
                let cluster_id = members.header.map_or(0, |h| h.cluster_id);
                let url = members
                    .leader
                    .and_then(|m| m.client_urls.into_iter().next())
                    .with_context(|| format!("{node} knows no leader right now"))?;
                let mut client = if &url == node {
                    client
                } else {
                    connect_with(&url, tls).await?
                };
                // A node may still name a leader that just went away: only
                // one that names itself leads.
                let itself = client
                    .get_members(regionsync_proto::pdpb::GetMembersRequest::default())
                    .await
                    .with_context(|| format!("the leader {url} answers no GetMembers"))?
                    .into_inner()
                    .leader
                    .and_then(|m| m.client_urls.into_iter().next());
                anyhow::ensure!(
                    itself.as_ref() == Some(&url),
                    "{url} does not lead (any more)"
                );
                anyhow::Ok((url, client, cluster_id))
            };
            match asked.await {
                Ok(found) => return Ok(found),
                Err(e) => last = e,
            }
        }
        if Instant::now() > deadline {
            return Err(last.context(format!(
                "no leader found among {} within {within:?}",
                nodes.join(",")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every region a node serves, with its leader, paging like a PD client.
pub async fn scan_all(
    client: &mut PdClient<Channel>,
    cluster_id: u64,
) -> anyhow::Result<Vec<(Region, Peer)>> {
    let mut out = Vec::new();
    let mut pages = scan_pages(client.clone(), cluster_id);
    while let Some(page) = pages.recv().await {
        out.extend(page?);
    }
    Ok(out)
}

/// The regions a node serves, page by page in key order as they arrive, so
/// that a caller can start on the first before the last is read. An empty
/// node gives one empty page.
pub fn scan_pages(
    mut client: PdClient<Channel>,
    cluster_id: u64,
) -> tokio::sync::mpsc::Receiver<anyhow::Result<Vec<(Region, Peer)>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
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
                .context("scanning the node's regions");
            let page = match page {
                Ok(p) => p.into_inner(),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let last_end = page.region_metas.last().map(|r| r.end_key.clone());
            let regions = page
                .regions
                .into_iter()
                .filter_map(|r| Some((r.region?, r.leader.unwrap_or_default())))
                .collect();
            if tx.send(Ok(regions)).await.is_err() {
                return;
            }
            match last_end {
                Some(end) if !end.is_empty() => start = end,
                _ => return,
            }
        }
    });
    rx
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
    send_stream(client, paced).await
}

/// Send a stream of heartbeats on one RegionHeartbeat call, until it ends
/// and the leader has read it all; a refusal is an error.
pub async fn send_stream(
    client: &mut PdClient<Channel>,
    heartbeats: impl tokio_stream::Stream<Item = RegionHeartbeatRequest> + Send + 'static,
) -> anyhow::Result<()> {
    let mut responses = client
        .region_heartbeat(heartbeats)
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
