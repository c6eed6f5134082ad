//! Writing a full sync's data behind the apply, and the store's closing and
//! fault injection that must wait for it: the batches of snapshot and
//! delta data frames go to redb on a thread of their own while the next
//! frame is applied to the cache (docs/design.md, "Durability and
//! readiness"; BENCHMARKS.md has what it saves).
//!
//! Only those batches may lag: they claim no index, and the store that
//! receives them is marked incomplete (or resumable) by a durable write made
//! before them, so a crash or a failed write loses nothing the store claims.
//! Every other write waits until the batches behind it have landed
//! ([`Behind::drain`]), so writes stay in order and a claim is only ever
//! made over data that is on disk; a failed batch behind surfaces there, as
//! the failure of that write, and the follower recovers as from any failed
//! write.

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::FollowerShared;
use crate::storage::{Storage, StorageError, WriteBatch};

/// Batches queued before the applying thread waits: enough to cover a
/// commit's jitter, few enough to bound memory (a batch is one frame).
const QUEUED: usize = 4;

/// A writer thread and its queue, alive for one run of data frames.
pub(super) struct Behind {
    jobs: SyncSender<WriteBatch>,
    thread: JoinHandle<Result<(), StorageError>>,
    path: std::path::PathBuf,
}

impl Behind {
    /// A thread writing batches to `storage` in order, stopping at the first
    /// failure.
    pub(super) fn start(storage: Arc<Storage>) -> std::io::Result<Behind> {
        let path = storage.path().to_path_buf();
        let (jobs, queue) = sync_channel::<WriteBatch>(QUEUED);
        let thread = std::thread::Builder::new()
            .name("follower-writer".into())
            .spawn(move || {
                for batch in queue {
                    storage.write(&batch)?;
                }
                Ok(())
            })?;
        Ok(Behind { jobs, thread, path })
    }

    /// Queue `batch`; an error when the thread stopped on a failed write.
    pub(super) fn write(self, batch: WriteBatch) -> Result<Behind, StorageError> {
        match self.jobs.send(batch) {
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

impl FollowerShared {
    /// Write a full sync's data batch (no claim, into a store marked
    /// incomplete) on the writer thread, while the caller goes on (`writer`).
    pub(super) fn persist_behind(&self, batch: WriteBatch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
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
