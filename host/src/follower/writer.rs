//! Writing behind the apply, and the store's closing and fault injection
//! that must wait for it: the batches of snapshot and delta data frames, and
//! of history frames, go to redb on a thread of their own while the next
//! frame is applied to the cache (docs/design.md, "Durability and
//! readiness"; BENCHMARKS.md has what it saves).
//!
//! Only those batches may lag. A sync's data claims no index, and the store
//! that receives it is marked incomplete (or resumable) by a durable write
//! made before it. A history batch carries its claim in the transaction that
//! holds its data, so the store always names some index the follower held,
//! with exactly that index's set; a crash loses only the newest records,
//! which the follower replays, as with `durable_every`. Every other write
//! waits until the batches behind it have landed ([`Behind::drain`]), so
//! writes stay in order; a failed batch behind surfaces there, as the
//! failure of that write, and the follower recovers as from any failed
//! write (the cache goes back to what the store holds).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::FollowerShared;
use crate::storage::{Storage, StorageError, WriteBatch};

/// Bytes of batches queued before the applying thread waits: a few frames
/// of a full sync, or a few hundred live history frames, so that one fsync
/// (which holds the writer for milliseconds) does not stall the apply, while
/// memory stays bounded.
const QUEUED_BYTES: usize = 4 << 20;

/// Batches queued at most, whatever their size.
const QUEUED: usize = 1024;

/// Batches queued together are written as one transaction, up to this many
/// bytes: under a stream of small history frames the writer keeps up with
/// one commit per burst instead of one per frame.
const COALESCE_BYTES: usize = 2 << 20;

/// How long the writer waits for more batches behind a history batch
/// before it writes, up to `COALESCE_BYTES`. Under live churn a history
/// frame holds a few dozen changes to regions all over the key space, and
/// redb writes each leaf page a transaction touches: one transaction per
/// frame wrote a page per change, and the followers' writers took a fifth
/// of a 2-core machine at 50,000 changes/s (BENCHMARKS.md). Nobody waits
/// for these writes (the apply has moved on; the store's claim may lag, as
/// with `durable_every`), and a drain, which closes the queue, ends the wait
/// at once.
const GATHER: Duration = Duration::from_millis(50);

/// What is queued, in bytes, and whether the thread still takes batches.
#[derive(Default)]
struct Budget {
    state: Mutex<(usize, bool)>,
    freed: Condvar,
}

impl Budget {
    /// Wait until `weight` more bytes fit (or nothing is queued, or the
    /// thread stopped), then count them.
    fn take(&self, weight: usize) {
        let mut state = self.state.lock();
        while state.0 > 0 && state.0 + weight > QUEUED_BYTES && !state.1 {
            self.freed.wait(&mut state);
        }
        state.0 += weight;
    }

    fn give(&self, weight: usize) {
        self.state.lock().0 -= weight;
        self.freed.notify_all();
    }

    fn close(&self) {
        self.state.lock().1 = true;
        self.freed.notify_all();
    }
}

/// A writer thread and its queue, alive for one run of batches.
pub(super) struct Behind {
    jobs: SyncSender<(WriteBatch, usize)>,
    budget: Arc<Budget>,
    thread: JoinHandle<Result<(), StorageError>>,
    path: std::path::PathBuf,
}

impl Behind {
    /// A thread writing batches to `storage` in order, stopping at the first
    /// failure.
    pub(super) fn start(storage: Arc<Storage>) -> std::io::Result<Behind> {
        let path = storage.path().to_path_buf();
        let (jobs, queue) = sync_channel::<(WriteBatch, usize)>(QUEUED);
        let budget = Arc::new(Budget::default());
        let thread = std::thread::Builder::new()
            .name("follower-writer".into())
            .spawn({
                let budget = budget.clone();
                move || {
                    let written = write_all(&storage, &queue, &budget);
                    // Nobody may wait for room that will never be freed.
                    budget.close();
                    written
                }
            })?;
        Ok(Behind {
            jobs,
            budget,
            thread,
            path,
        })
    }

    /// Queue `batch`; an error when the thread stopped on a failed write.
    pub(super) fn write(self, batch: WriteBatch) -> Result<Behind, StorageError> {
        let weight = batch.weight();
        self.budget.take(weight);
        match self.jobs.send((batch, weight)) {
            Ok(()) => Ok(self),
            Err(_) => {
                let path = self.path.clone();
                self.drain().and(Err(StorageError::Closed(path)))
            }
        }
    }

    /// Wait until every queued batch has landed; the first failure, if any.
    pub(super) fn drain(self) -> Result<(), StorageError> {
        drop(self.jobs);
        let path = self.path;
        self.thread
            .join()
            .unwrap_or_else(|_| Err(StorageError::Closed(path)))
    }
}

/// The writer thread's loop: each batch, with those queued behind it folded
/// in (`WriteBatch::absorb`), as one transaction, in order.
fn write_all(
    storage: &Storage,
    queue: &Receiver<(WriteBatch, usize)>,
    budget: &Budget,
) -> Result<(), StorageError> {
    let mut held: Option<(WriteBatch, usize)> = None;
    loop {
        let (mut batch, mut weight) = match held.take() {
            Some(next) => next,
            None => match queue.recv() {
                Ok(next) => next,
                Err(_) => return Ok(()),
            },
        };
        // Only history waits (`GATHER`): a sync's data batches arrive
        // faster than they are written, and waiting for them slowed a full
        // sync by a fifth.
        let gather = if batch.next_index.is_some() {
            GATHER
        } else {
            Duration::ZERO
        };
        let until = Instant::now() + gather;
        while weight < COALESCE_BYTES {
            let wait = until.saturating_duration_since(Instant::now());
            let Ok((later, w)) = queue.recv_timeout(wait) else {
                break;
            };
            match batch.absorb(later) {
                Ok(()) => weight += w,
                Err(later) => {
                    held = Some((*later, w));
                    break;
                }
            }
        }
        let written = storage.write(&batch);
        budget.give(weight);
        written?;
    }
}

impl FollowerShared {
    /// Write a full sync's data batch (no claim, into a store marked
    /// incomplete) or a history batch (its data with its claim) on the
    /// writer thread, while the caller goes on.
    pub(super) fn persist_behind(&self, batch: WriteBatch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        if !self.config.write_behind {
            return self.persist(&batch);
        }
        let storage = match (&*self.storage.lock(), &self.config.data_dir) {
            (Some(storage), _) => storage.clone(),
            (None, Some(dir)) => return Err(StorageError::Closed(dir.clone())),
            (None, None) => return Ok(()),
        };
        let mut behind = self.behind.lock();
        let writer = match behind.take() {
            Some(w) => w,
            None => match Behind::start(storage.clone()) {
                Ok(w) => w,
                Err(e) => {
                    // No thread to spare: write it here, as other batches.
                    tracing::warn!(error = %e, "cannot start the writer thread; writing in line");
                    return storage.write(&batch);
                }
            },
        };
        *behind = Some(writer.write(batch)?);
        Ok(())
    }

    /// Wait for the batches written behind; the first failure among them.
    pub(super) fn drain_behind(&self) -> Result<(), StorageError> {
        let writer = self.behind.lock().take();
        writer.map_or(Ok(()), Behind::drain)
    }

    /// Make the store's next `n` writes fail, as a full disk would (fault
    /// injection for tests; a real failure takes the same path).
    pub fn inject_storage_failures(&self, n: u32) {
        if let Some(storage) = &*self.storage.lock() {
            storage.fail_next_writes(n);
        }
    }

    /// Injected storage failures not yet taken by a write (none once the
    /// store is closed).
    pub fn pending_storage_failures(&self) -> u32 {
        self.storage
            .lock()
            .as_ref()
            .map_or(0, |s| s.pending_write_failures())
    }

    /// Close the durable store now (waiting for a write in progress); later
    /// writes fail. Lets a stopped follower's directory be reopened at once
    /// even while stray references to this state remain.
    pub fn close_storage(&self) {
        if let Some(storage) = self.storage.lock().take() {
            // As a crash: what is still queued behind is not written.
            storage.retire();
        }
        let _ = self.drain_behind();
    }
}
