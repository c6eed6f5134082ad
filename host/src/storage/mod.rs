//! Durable state in an embedded redb database under `--data-dir`: the
//! regions, the next index, the kept cluster id and the sync-complete marker.
//!
//! Every change goes through one [`WriteBatch`] committed as one redb
//! transaction, so regions, index and marker can never disagree on disk: a
//! store that claims an index holds all of that index's regions. A full sync
//! starts with a batch that clears the regions and the marker together, and
//! only the completion batch sets the marker again (docs/protocol.md §3).

mod batch;
mod error;
mod layout;
mod sim_disk;
mod snapshot;

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use prost::Message;
use redb::{
    Database, Durability, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition,
};
use regionsync_proto::metapb::Region;

use crate::lineage::{Lineage, TermStart};

pub use batch::{RegionOp, RegionWrites, WriteBatch};
pub use error::StorageError;
use layout::{split_value, upgrade};
pub use sim_disk::SimDisk;

type Result<T> = std::result::Result<T, StorageError>;

/// id -> leader peer id (8 bytes, little endian), the index of the region's
/// last change (8 bytes, little endian; layout 2 on), then its encoding.
/// From layout 3 on, a full sync's snapshot is kept apart, in chunks
/// (`snapshot`), and this table holds what was written after it.
const REGIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("regions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// first index -> term: the leaderships the regions' index passed through
/// (`crate::lineage`). Absent in stores that never had one; older builds
/// ignore it, so the layout stays 2.
const LINEAGE: TableDefinition<u64, u64> = TableDefinition::new("lineage");

/// Bump when the meaning of the tables changes; an older store is refused
/// with a clear error rather than misread.
pub const LAYOUT_VERSION: u64 = 3;

/// The oldest layout this build still reads; it upgrades it in place at the
/// first write (never at open: a node that refuses to sync must leave its
/// store as it was).
pub const OLDEST_LAYOUT: u64 = 1;

const KEY_LAYOUT: &str = "layout_version";
const KEY_NEXT_INDEX: &str = "next_index";
const KEY_CLUSTER_ID: &str = "cluster_id";
const KEY_COMPLETE: &str = "complete";
const KEY_DELTA_FLOOR: &str = "delta_floor";
const KEY_RESUMABLE: &str = "resumable";

/// The store's file name inside the data directory.
pub const FILE_NAME: &str = "regionsync.redb";

/// What the store says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// The index the regions are complete for (or were, before a reset).
    pub next_index: u64,
    /// The kept cluster id, once known.
    pub cluster_id: Option<u64>,
    /// The regions form a complete set for `next_index`.
    pub complete: bool,
    /// Oldest index from which the regions' change indexes are complete,
    /// once set.
    pub delta_floor: Option<u64>,
    /// Incomplete only because a delta from `next_index` was under way.
    pub resumable: bool,
}

/// An existing store is opened read-only and reopened for writing only at
/// the first write: a node that refuses to sync (another cluster) must leave
/// its store byte for byte as it was, and even a clean read-write open and
/// close rewrites redb's header.
enum Handle {
    ReadOnly(ReadOnlyDatabase),
    ReadWrite(Database),
    /// Between the two, or after a failed reopen.
    Closed,
    /// Closed for good: its role stopped and another opens the file.
    Retired,
}

/// The durable store of one node.
pub struct Storage {
    handle: Mutex<Handle>,
    path: PathBuf,
    /// The layout the file has (an older one is upgraded at the first write).
    layout: Mutex<u64>,
    /// Writes still to fail on purpose (fault injection; see
    /// [`Storage::fail_next_writes`]).
    failing: std::sync::atomic::AtomicU32,
    /// Reset, and nothing but snapshot chunks written since: a snapshot
    /// batch may still be kept as a chunk (`snapshot`). Closed at open.
    chunks_open: std::sync::atomic::AtomicBool,
}

/// Regions live in memory already; redb's page cache only needs to carry
/// the write path (its default would hold a whole loaded store again). A
/// load, an intake or a full sync fills it whatever its size, so a smaller
/// cache is memory off every node's peak, down to the size below which the
/// leader's in-line commit reads the region table's leaves from the file
/// and the live path slows (BENCHMARKS.md, "Kept: redb's page cache 6 MiB").
fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(6 << 20);
    builder
}

fn open_read_write(path: &Path) -> Result<Database> {
    builder()
        .create(path)
        .map_err(|e| StorageError::from_db(path, "open", e))
}

/// A new store file appears whole or not at all. redb writes its header
/// after creating the file, so a process killed in between would leave a
/// file that is not a database, and every later start would refuse it. The
/// store is therefore created beside its name, made durable, and renamed into
/// place; a creation cut short leaves only the `.new` file, which the next
/// creation replaces.
fn create_whole(dir: &Path, path: &Path) -> Result<Database> {
    let fresh = dir.join(format!("{FILE_NAME}.new"));
    let io = |action: &'static str| move |e: std::io::Error| StorageError::from_db(path, action, e);
    match std::fs::remove_file(&fresh) {
        Ok(()) => {
            tracing::warn!(file = %fresh.display(), "discarding a store whose creation was cut short")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove an unfinished store")(e)),
    }
    drop(
        builder()
            .create(&fresh)
            .map_err(|e| StorageError::from_db(&fresh, "create", e))?,
    );
    std::fs::File::open(&fresh)
        .and_then(|f| f.sync_all())
        .map_err(io("sync a new store"))?;
    std::fs::rename(&fresh, path).map_err(io("put a new store in place"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync the data directory"))?;
    open_read_write(path)
}

impl Storage {
    /// Open (or create) the store in `dir`, refusing another layout.
    pub fn open(dir: &Path) -> Result<Storage> {
        if dir.exists() && !dir.is_dir() {
            return Err(StorageError::NotADirectory(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::from_db(dir, "create the data directory", e))?;
        let path = dir.join(FILE_NAME);
        let handle = if path.exists() {
            match builder().open_read_only(&path) {
                Ok(db) => Handle::ReadOnly(db),
                // E.g. a store that needs repair after a crash: only a
                // read-write open repairs it.
                Err(_) => Handle::ReadWrite(open_read_write(&path)?),
            }
        } else {
            Handle::ReadWrite(create_whole(dir, &path)?)
        };
        Self::checked(handle, path)
    }

    /// A store on a simulated disk (`SimDisk`): created when the disk is
    /// empty, opened (and recovered, as after a crash) when it is not.
    pub fn in_memory(disk: SimDisk) -> Result<Storage> {
        let path = PathBuf::from("(simulated disk)");
        let db = builder()
            .create_with_backend(disk)
            .map_err(|e| StorageError::from_db(&path, "open", e))?;
        Self::checked(Handle::ReadWrite(db), path)
    }

    /// The store behind `handle`, once its layout is checked.
    fn checked(handle: Handle, path: PathBuf) -> Result<Storage> {
        let storage = Storage {
            handle: Mutex::new(handle),
            path,
            layout: Mutex::new(LAYOUT_VERSION),
            failing: std::sync::atomic::AtomicU32::new(0),
            chunks_open: std::sync::atomic::AtomicBool::new(false),
        };
        storage.check_layout()?;
        Ok(storage)
    }

    fn begin_read(&self) -> Result<ReadTransaction> {
        let txn = match &*self.handle.lock() {
            Handle::ReadOnly(db) => db.begin_read(),
            Handle::ReadWrite(db) => db.begin_read(),
            Handle::Closed | Handle::Retired => {
                return Err(StorageError::Closed(self.path.clone()));
            }
        };
        txn.map_err(|e| self.fail("read", e))
    }

    /// A database failure of this store while doing `action`.
    fn fail(&self, action: &'static str, e: impl Into<redb::Error>) -> StorageError {
        StorageError::from_db(&self.path, action, e)
    }

    /// Run `f` with a read-write database, reopening for writing if needed.
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&Database) -> std::result::Result<T, redb::Error>,
    ) -> Result<T> {
        let mut handle = self.handle.lock();
        if matches!(*handle, Handle::Retired) {
            return Err(StorageError::Closed(self.path.clone()));
        }
        if !matches!(*handle, Handle::ReadWrite(_)) {
            *handle = Handle::Closed; // release the read-only handle first
            *handle = Handle::ReadWrite(open_read_write(&self.path)?);
        }
        match &*handle {
            Handle::ReadWrite(db) => f(db).map_err(|e| self.fail("write", e)),
            _ => unreachable!("just opened for writing"),
        }
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuse another layout. Reads only, unless the store is new: opening a
    /// store must not change its file (a refused follower keeps its store
    /// byte for byte).
    fn check_layout(&self) -> Result<()> {
        let found = {
            let txn = self.begin_read()?;
            let read = |e| self.fail("read the layout", e);
            let layout = match txn.open_table(META) {
                Ok(meta) => meta.get(KEY_LAYOUT).map_err(read)?.map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(self.fail("read the layout", e)),
            };
            let mut has_regions = false;
            for table in [REGIONS, snapshot::SNAPSHOT] {
                has_regions |= match txn.open_table(table) {
                    Ok(rows) => rows.first().map_err(read)?.is_some(),
                    Err(redb::TableError::TableDoesNotExist(_)) => false,
                    Err(e) => return Err(self.fail("read the layout", e)),
                };
            }
            (layout, has_regions)
        };
        let refuse = |found| StorageError::Layout {
            path: self.path.clone(),
            found,
            want: LAYOUT_VERSION,
        };
        match found {
            (Some(v), _) if (OLDEST_LAYOUT..=LAYOUT_VERSION).contains(&v) => {
                *self.layout.lock() = v;
                Ok(())
            }
            (Some(other), _) => Err(refuse(Some(other))),
            (None, true) => Err(refuse(None)),
            (None, false) => self.with_writer(|db| {
                let txn = db.begin_write()?;
                txn.open_table(META)?.insert(KEY_LAYOUT, LAYOUT_VERSION)?;
                txn.open_table(REGIONS)?;
                txn.commit()?;
                Ok(())
            }),
        }
    }

    /// What the store says about itself.
    pub fn meta(&self) -> Result<Meta> {
        let txn = self.begin_read()?;
        let meta = txn.open_table(META).map_err(|e| self.fail("read", e))?;
        let get = |k| -> Result<Option<u64>> {
            Ok(meta
                .get(k)
                .map_err(|e| self.fail("read", e))?
                .map(|v| v.value()))
        };
        Ok(Meta {
            next_index: get(KEY_NEXT_INDEX)?.unwrap_or(0),
            cluster_id: get(KEY_CLUSTER_ID)?,
            complete: get(KEY_COMPLETE)? == Some(1),
            delta_floor: get(KEY_DELTA_FLOOR)?,
            resumable: get(KEY_RESUMABLE)? == Some(1),
        })
    }

    /// The leaderships the store's index passed through (empty for static
    /// roles and stores that never had any).
    pub fn lineage(&self) -> Result<Lineage> {
        let txn = self.begin_read()?;
        let table = match txn.open_table(LINEAGE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Lineage::default()),
            Err(e) => return Err(self.fail("read the lineage", e)),
        };
        let mut starts = Vec::new();
        for entry in table.iter().map_err(|e| self.fail("read the lineage", e))? {
            let (first_index, term) = entry.map_err(|e| self.fail("read the lineage", e))?;
            starts.push(TermStart {
                term: term.value(),
                first_index: first_index.value(),
            });
        }
        Ok(Lineage::from_starts(starts))
    }

    /// Every stored region with its leader peer id and the index of its last
    /// change (0 where the layout did not keep it). A record that does not
    /// decode is an error naming it, not a panic.
    pub fn load_regions(&self, mut f: impl FnMut(Region, u64, u64)) -> Result<usize> {
        let layout = *self.layout.lock();
        let txn = self.begin_read()?;
        let table = txn
            .open_table(REGIONS)
            .map_err(|e| self.fail("read the regions", e))?;
        let damaged = |detail: String| StorageError::Damaged {
            path: self.path.clone(),
            detail,
        };
        let mut n = 0;
        let mut load = |id: u64, value: &[u8]| {
            let Some((leader, changed, encoded)) = split_value(value, layout) else {
                return Err(damaged(format!("region {id} is truncated")));
            };
            let region = Region::decode(encoded)
                .map_err(|e| damaged(format!("region {id} does not decode: {e}")))?;
            if region.id != id {
                return Err(damaged(format!(
                    "region under key {id} says id {}",
                    region.id
                )));
            }
            f(region, leader, changed);
            n += 1;
            Ok(())
        };
        // The snapshot first: the rows written after it win.
        snapshot::for_each(self, &txn, &mut load)?;
        let iter = table.iter().map_err(|e| self.fail("read the regions", e))?;
        for entry in iter {
            let (id, value) = entry.map_err(|e| self.fail("read the regions", e))?;
            load(id.value(), value.value())?;
        }
        Ok(n)
    }

    /// Close the file for good, whoever still holds this handle (a role
    /// that stopped while a straggler kept a reference): later reads and
    /// writes fail, and the next role can open the file.
    pub fn retire(&self) {
        *self.handle.lock() = Handle::Retired;
    }

    /// Make every earlier non-durable commit durable (an empty durable
    /// commit): a clean stop keeps the newest index, not the last fsynced one.
    /// A store never written since it was opened has nothing to flush,
    /// and is left untouched.
    pub fn flush(&self) -> Result<()> {
        if let Handle::ReadWrite(db) = &*self.handle.lock() {
            let flush = || -> std::result::Result<(), redb::Error> {
                let mut txn = db.begin_write()?;
                txn.set_durability(Durability::Immediate)?;
                txn.commit()?;
                Ok(())
            };
            flush().map_err(|e| self.fail("flush", e))?;
        }
        Ok(())
    }

    /// Make the next `n` writes fail as a full disk would, before they touch
    /// the file: for fault-injection tests, which then exercise the same
    /// path as a real I/O error.
    pub fn fail_next_writes(&self, n: u32) {
        self.failing.store(n, std::sync::atomic::Ordering::Release);
    }

    /// Injected failures not yet taken by a write: a test's evidence that
    /// its fault fired.
    pub fn pending_write_failures(&self) -> u32 {
        self.failing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Apply one batch as one transaction.
    pub fn write(&self, batch: &WriteBatch) -> Result<()> {
        let injected = self
            .failing
            .fetch_update(
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
                |n| n.checked_sub(1),
            )
            .is_ok();
        if injected {
            let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
            return Err(self.fail("write", redb::Error::Io(full)));
        }
        use std::sync::atomic::Ordering::{Acquire, Release};
        // Only the snapshot's data, while nothing else was written since the
        // reset, goes into a chunk: `snapshot`'s precedence needs every row
        // to be newer than every chunk.
        let chunk = batch
            .writes
            .only_packed()
            .filter(|_| batch.snapshot && (batch.reset || self.chunks_open.load(Acquire)));
        let as_chunk = chunk.is_some();
        // The chunks stay open only after a reset or a chunk that landed (a
        // failed write closes them: rows are always right).
        let open = (batch.reset || self.chunks_open.load(Acquire))
            && (as_chunk || batch.writes.is_empty());
        self.chunks_open.store(false, Release);
        let layout = *self.layout.lock();
        self.with_writer(|db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(if batch.durable {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            {
                if layout < LAYOUT_VERSION {
                    upgrade(&txn, layout)?;
                }
                if batch.reset {
                    txn.delete_table(REGIONS)?;
                    txn.open_table(REGIONS)?; // empty, not absent
                    snapshot::clear(&txn)?;
                }
                if let Some((records, count)) = chunk {
                    snapshot::append(&txn, records, count)?;
                } else if !batch.writes.is_empty() {
                    let records = snapshot::records(&txn)?;
                    let has_snapshot = records > 0;
                    let mut regions = txn.open_table(REGIONS)?;
                    for (id, value) in batch.writes.packed_puts() {
                        regions.insert(id, value)?;
                    }
                    for op in batch.writes.ops() {
                        match op {
                            RegionOp::Put(id, value) => {
                                regions.insert(*id, value.as_slice())?;
                            }
                            RegionOp::Delete(id) => {
                                regions.remove(*id)?;
                                if has_snapshot {
                                    snapshot::bury(&txn, *id)?;
                                }
                            }
                        }
                    }
                    drop(regions);
                    if has_snapshot {
                        snapshot::fold_if_due(&txn, records)?;
                    }
                }
                let mut meta = txn.open_table(META)?;
                if let Some(i) = batch.next_index {
                    meta.insert(KEY_NEXT_INDEX, i)?;
                }
                if let Some(c) = batch.complete {
                    meta.insert(KEY_COMPLETE, u64::from(c))?;
                }
                if let Some(id) = batch.cluster_id {
                    meta.insert(KEY_CLUSTER_ID, id)?;
                }
                if let Some(floor) = batch.delta_floor {
                    meta.insert(KEY_DELTA_FLOOR, floor)?;
                }
                if let Some(r) = batch.resumable {
                    meta.insert(KEY_RESUMABLE, u64::from(r))?;
                }
                if let Some(lineage) = &batch.lineage {
                    txn.delete_table(LINEAGE)?;
                    let mut table = txn.open_table(LINEAGE)?;
                    for s in lineage.starts() {
                        table.insert(s.first_index, s.term)?;
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })?;
        *self.layout.lock() = LAYOUT_VERSION;
        // A completion ends the snapshot: later writes are rows.
        let open = open && batch.complete != Some(true);
        self.chunks_open.store(open, Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
