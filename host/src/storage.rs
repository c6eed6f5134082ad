//! Durable state in an embedded redb database under `--data-dir`: the
//! regions, the next index, the kept cluster id and the sync-complete marker.
//!
//! Every change goes through one [`WriteBatch`] committed as one redb
//! transaction, so regions, index and marker can never disagree on disk: a
//! store that claims an index holds all of that index's regions. A full sync
//! starts with a batch that clears the regions and the marker together, and
//! only the completion batch sets the marker again (SPEC §3).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use parking_lot::Mutex;
use prost::Message;
use redb::{
    Database, Durability, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition,
};
use regionsync_proto::metapb::Region;

/// id -> leader peer id (8 bytes, little endian) then the region's encoding.
const REGIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("regions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Bump when the meaning of the tables changes; an older store is refused
/// with a clear error rather than misread.
pub const LAYOUT_VERSION: u64 = 1;

const KEY_LAYOUT: &str = "layout_version";
const KEY_NEXT_INDEX: &str = "next_index";
const KEY_CLUSTER_ID: &str = "cluster_id";
const KEY_COMPLETE: &str = "complete";

pub const FILE_NAME: &str = "regionsync.redb";

/// What the store says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub next_index: u64,
    pub cluster_id: Option<u64>,
    /// The regions form a complete set for `next_index`.
    pub complete: bool,
}

/// One atomic change of the durable state.
#[derive(Debug, Default)]
pub struct WriteBatch {
    /// Remove every region first (a full sync starts).
    pub reset: bool,
    /// Region writes, applied in order: a region removed and re-added in
    /// one batch must end up present (a pending write reordered after a
    /// delete once brought a removed region back in PD).
    pub ops: Vec<RegionOp>,
    pub next_index: Option<u64>,
    pub complete: Option<bool>,
    pub cluster_id: Option<u64>,
    /// fsync before returning. Without it the batch may be lost in a crash,
    /// never torn; use it only where a lost batch is harmless (a full sync's
    /// data, which an incomplete marker already disowns).
    pub durable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionOp {
    /// (id, leader peer id, region encoding).
    Put(u64, u64, Vec<u8>),
    Delete(u64),
}

impl WriteBatch {
    /// Put a region already encoded (as the region store keeps it).
    pub fn put_encoded(&mut self, id: u64, leader_id: u64, blob: &[u8]) {
        self.ops.push(RegionOp::Put(id, leader_id, blob.to_vec()));
    }

    pub fn delete(&mut self, id: u64) {
        self.ops.push(RegionOp::Delete(id));
    }

    pub fn is_empty(&self) -> bool {
        !self.reset
            && self.ops.is_empty()
            && self.next_index.is_none()
            && self.complete.is_none()
            && self.cluster_id.is_none()
    }
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
}

pub struct Storage {
    handle: Mutex<Handle>,
    path: PathBuf,
}

/// Regions live in memory already; redb's page cache only needs to carry
/// the write path (its default would hold a whole loaded store again).
fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(16 << 20);
    builder
}

fn open_read_write(path: &Path) -> anyhow::Result<Database> {
    builder()
        .create(path)
        .map_err(|e| anyhow!("cannot open store {}: {e}", path.display()))
}

impl Storage {
    /// Open (or create) the store in `dir`, refusing another layout.
    pub fn open(dir: &Path) -> anyhow::Result<Storage> {
        if dir.exists() && !dir.is_dir() {
            bail!(
                "data directory {} is a file, not a directory",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let handle = if path.exists() {
            match builder().open_read_only(&path) {
                Ok(db) => Handle::ReadOnly(db),
                // E.g. a store that needs repair after a crash: only a
                // read-write open repairs it.
                Err(_) => Handle::ReadWrite(open_read_write(&path)?),
            }
        } else {
            Handle::ReadWrite(open_read_write(&path)?)
        };
        let storage = Storage {
            handle: Mutex::new(handle),
            path,
        };
        storage.check_layout()?;
        Ok(storage)
    }

    fn begin_read(&self) -> anyhow::Result<ReadTransaction> {
        match &*self.handle.lock() {
            Handle::ReadOnly(db) => Ok(db.begin_read()?),
            Handle::ReadWrite(db) => Ok(db.begin_read()?),
            Handle::Closed => bail!("store {} is closed", self.path.display()),
        }
    }

    /// Run `f` with a read-write database, reopening for writing if needed.
    fn with_writer<T>(&self, f: impl FnOnce(&Database) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let mut handle = self.handle.lock();
        if !matches!(*handle, Handle::ReadWrite(_)) {
            *handle = Handle::Closed; // release the read-only handle first
            *handle = Handle::ReadWrite(open_read_write(&self.path)?);
        }
        match &*handle {
            Handle::ReadWrite(db) => f(db),
            _ => unreachable!("just opened for writing"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuse another layout. Reads only, unless the store is new: opening a
    /// store must not change its file (a refused follower keeps its store
    /// byte for byte).
    fn check_layout(&self) -> anyhow::Result<()> {
        let found = {
            let txn = self.begin_read()?;
            let layout = match txn.open_table(META) {
                Ok(meta) => meta.get(KEY_LAYOUT)?.map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            };
            let has_regions = match txn.open_table(REGIONS) {
                Ok(regions) => regions.first()?.is_some(),
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => return Err(e.into()),
            };
            (layout, has_regions)
        };
        match found {
            (Some(LAYOUT_VERSION), _) => Ok(()),
            (Some(other), _) => bail!(
                "store {} has layout version {other}, this build reads version {LAYOUT_VERSION}",
                self.path.display()
            ),
            (None, true) => bail!(
                "store {} has regions but no layout version (an older layout); \
                 move it away to start afresh",
                self.path.display()
            ),
            (None, false) => self.with_writer(|db| {
                let txn = db.begin_write()?;
                txn.open_table(META)?.insert(KEY_LAYOUT, LAYOUT_VERSION)?;
                txn.open_table(REGIONS)?;
                txn.commit()?;
                Ok(())
            }),
        }
    }

    pub fn meta(&self) -> anyhow::Result<Meta> {
        let txn = self.begin_read()?;
        let meta = txn.open_table(META)?;
        let get = |k| -> anyhow::Result<Option<u64>> { Ok(meta.get(k)?.map(|v| v.value())) };
        Ok(Meta {
            next_index: get(KEY_NEXT_INDEX)?.unwrap_or(0),
            cluster_id: get(KEY_CLUSTER_ID)?,
            complete: get(KEY_COMPLETE)? == Some(1),
        })
    }

    /// Every stored region with its leader peer id. A record that does not
    /// decode is an error naming it, not a panic.
    pub fn load_regions(&self, mut f: impl FnMut(Region, u64)) -> anyhow::Result<usize> {
        let txn = self.begin_read()?;
        let table = txn.open_table(REGIONS)?;
        let mut n = 0;
        for entry in table.iter()? {
            let (id, value) = entry?;
            let (id, value) = (id.value(), value.value());
            if value.len() < 8 {
                bail!("store {}: region {id} is truncated", self.path.display());
            }
            let leader = u64::from_le_bytes(value[..8].try_into().unwrap());
            let region = Region::decode(&value[8..]).map_err(|e| {
                anyhow!(
                    "store {}: region {id} does not decode: {e}",
                    self.path.display()
                )
            })?;
            if region.id != id {
                bail!(
                    "store {}: region under key {id} says id {}",
                    self.path.display(),
                    region.id
                );
            }
            f(region, leader);
            n += 1;
        }
        Ok(n)
    }

    /// Make every earlier non-durable commit durable (an empty durable
    /// commit): a clean stop keeps the newest index, not the last fsynced one.
    /// A store never written since it was opened has nothing to flush,
    /// and is left untouched.
    pub fn flush(&self) -> anyhow::Result<()> {
        if let Handle::ReadWrite(db) = &*self.handle.lock() {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.commit()?;
        }
        Ok(())
    }

    /// Apply one batch as one transaction.
    pub fn write(&self, batch: &WriteBatch) -> anyhow::Result<()> {
        self.with_writer(|db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(if batch.durable {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            {
                if batch.reset {
                    txn.delete_table(REGIONS)?;
                }
                let mut regions = txn.open_table(REGIONS)?;
                let mut value = Vec::new();
                for op in &batch.ops {
                    match op {
                        RegionOp::Put(id, leader, blob) => {
                            value.clear();
                            value.extend_from_slice(&leader.to_le_bytes());
                            value.extend_from_slice(blob);
                            regions.insert(*id, value.as_slice())?;
                        }
                        RegionOp::Delete(id) => {
                            regions.remove(*id)?;
                        }
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
            }
            txn.commit()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(batch: &mut WriteBatch, region: &Region, leader_id: u64) {
        batch.put_encoded(region.id, leader_id, &region.encode_to_vec());
    }

    fn region(id: u64) -> Region {
        Region {
            id,
            start_key: vec![id as u8],
            ..Default::default()
        }
    }

    #[test]
    fn batches_survive_reopen_and_reset_clears_everything() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path()).unwrap();
            assert_eq!(s.meta().unwrap(), Meta::default());
            let mut b = WriteBatch {
                next_index: Some(7),
                complete: Some(true),
                cluster_id: Some(42),
                durable: true,
                ..Default::default()
            };
            put(&mut b, &region(1), 10);
            put(&mut b, &region(2), 0);
            s.write(&b).unwrap();
            let mut d = WriteBatch {
                durable: true,
                ..Default::default()
            };
            d.delete(2);
            put(&mut d, &region(3), 30);
            // Removed and re-added in one batch: present afterwards.
            d.delete(1);
            put(&mut d, &region(1), 10);
            s.write(&d).unwrap();
        }
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(
            s.meta().unwrap(),
            Meta {
                next_index: 7,
                cluster_id: Some(42),
                complete: true
            }
        );
        let mut got = Vec::new();
        s.load_regions(|r, l| got.push((r.id, l))).unwrap();
        assert_eq!(got, vec![(1, 10), (3, 30)]);
        s.write(&WriteBatch {
            reset: true,
            complete: Some(false),
            next_index: Some(0),
            durable: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.load_regions(|_, _| {}).unwrap(), 0);
        assert!(!s.meta().unwrap().complete);
        assert_eq!(s.meta().unwrap().cluster_id, Some(42));
    }

    #[test]
    fn opening_and_reading_leave_the_file_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path()).unwrap();
            let mut b = WriteBatch {
                next_index: Some(3),
                durable: true,
                ..Default::default()
            };
            put(&mut b, &region(1), 0);
            s.write(&b).unwrap();
        }
        let file = dir.path().join(FILE_NAME);
        let before = std::fs::read(&file).unwrap();
        {
            let s = Storage::open(dir.path()).unwrap();
            s.meta().unwrap();
            s.load_regions(|_, _| {}).unwrap();
        }
        assert!(std::fs::read(&file).unwrap() == before);
    }

    #[test]
    fn a_data_dir_that_is_a_file_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let err = Storage::open(f.path()).err().unwrap().to_string();
        assert!(err.contains("is a file"), "{err}");
    }

    #[test]
    fn another_layout_is_refused_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path()).unwrap();
            s.with_writer(|db| {
                let txn = db.begin_write()?;
                txn.open_table(META)?.insert(KEY_LAYOUT, 99)?;
                txn.commit()?;
                Ok(())
            })
            .unwrap();
        }
        let err = Storage::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("layout version 99"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"this is not a database at all").unwrap();
        let err = format!("{:#}", Storage::open(dir.path()).err().unwrap());
        assert!(err.contains("cannot open store"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path()).unwrap();
            s.with_writer(|db| {
                let txn = db.begin_write()?;
                txn.open_table(REGIONS)?.insert(5, &[1u8, 2, 3][..])?;
                txn.commit()?;
                Ok(())
            })
            .unwrap();
        }
        let s = Storage::open(dir.path()).unwrap();
        let err = s.load_regions(|_, _| {}).unwrap_err().to_string();
        assert!(err.contains("region 5 is truncated"), "{err}");
    }
}
