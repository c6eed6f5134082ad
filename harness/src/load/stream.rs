//! Heartbeats generated as they are sent, so that a load of a million
//! regions starts at once and holds one heartbeat at a time, not a list.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use regionsync_proto::pdpb::RegionHeartbeatRequest;

use super::Generator;

/// How long a load runs after seeding the regions.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// This many churn operations.
    Operations(u64),
    /// For this long.
    Duration(Duration),
}

/// Heartbeats generated as they are sent: first one per region of the
/// model if `seed_all`, then churn until `limit` operations or the
/// deadline, at most `rate` per second (0: as fast as the leader takes
/// them). `sent` counts what left.
pub fn stream(
    generator: Arc<parking_lot::Mutex<Generator>>,
    seed_all: bool,
    limit: Limit,
    rate: u64,
    sent: Arc<AtomicU64>,
) -> impl tokio_stream::Stream<Item = RegionHeartbeatRequest> + Send + 'static {
    let started = Instant::now();
    let mut queue: VecDeque<RegionHeartbeatRequest> = VecDeque::new();
    let mut seeding = if seed_all {
        generator.lock().regions.keys().next().copied().map(|k| k..)
    } else {
        None
    };
    let mut ops = 0u64;
    futures::stream::unfold((), move |()| {
        let generator = generator.clone();
        let sent = sent.clone();
        let next = (|| {
            if let Some(hb) = queue.pop_front() {
                return Some(hb);
            }
            let mut g = generator.lock();
            if let Some(range) = seeding.take() {
                let mut it = g.regions.range(range);
                if let Some((_, r)) = it.next() {
                    let hb = g.heartbeat(r);
                    seeding = it.next().map(|(k, _)| *k..);
                    return Some(hb);
                }
            }
            let done = match limit {
                Limit::Operations(n) => ops >= n,
                Limit::Duration(d) => started.elapsed() >= d,
            };
            if done {
                return None;
            }
            ops += 1;
            queue.extend(g.churn());
            queue.pop_front()
        })();
        let i = sent.load(Ordering::Relaxed);
        async move {
            let hb = next?;
            if rate > 0 {
                let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            sent.fetch_add(1, Ordering::Relaxed);
            Some((hb, ()))
        }
    })
}
