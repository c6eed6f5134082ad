//! The follower's progress line on a terminal during a full sync.

use std::sync::Arc;

/// A progress line on the terminal while a full sync runs: regions received
/// and the rate (the protocol does not announce the snapshot's total).
pub async fn show_full_sync_progress(shared: Arc<regionsync::follower::FollowerShared>) {
    use regionsync::policy_runtime::FollowerPhase;
    use std::sync::atomic::Ordering;
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} full sync from the leader: {pos} regions received ({per_sec}, {elapsed})",
    )
    .expect("a valid template");
    let mut bar: Option<indicatif::ProgressBar> = None;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let syncing = shared.state().phase == FollowerPhase::Snapshot;
        let received = shared.stats().snapshot_progress.load(Ordering::Relaxed);
        match (&bar, syncing) {
            (None, true) => {
                let b = indicatif::ProgressBar::new_spinner().with_style(style.clone());
                b.set_position(received);
                bar = Some(b);
            }
            (Some(b), true) => b.set_position(received),
            (Some(b), false) => {
                b.set_position(received);
                b.finish_and_clear();
                bar = None;
            }
            (None, false) => {}
        }
    }
}
