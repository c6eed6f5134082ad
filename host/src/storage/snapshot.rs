//! A full sync's snapshot kept as a few large chunks instead of a row per
//! region: inserting a million rows one by one into redb's B-tree cost the
//! follower's writer thread about 0.87 s of CPU per million regions, the
//! largest single cost of a full sync (BENCHMARKS.md); a chunk of a couple
//! of MiB is one insert.
//!
//! Three tables hold the regions, read in this order of precedence:
//! 1. `regions` (id -> value): every write not taken as a chunk. It wins
//!    over the snapshot.
//! 2. `gone` (id): regions removed while the snapshot had chunks; their
//!    copy in a chunk is ignored.
//! 3. `snapshot` (sequence -> chunk of records, `batch::pack`'s): a
//!    later chunk, and a later record, wins over an earlier one.
//!
//! The precedence is only true if every row of `regions` and `gone` is newer
//! than every chunk. So a chunk is written only between a reset and the
//! first write of anything else ([`super::Storage`] keeps that state; after
//! a restart it starts closed), and only for a batch the caller marks as a
//! snapshot's data in key order (`WriteBatch::snapshot`).
//!
//! Tombstones are bounded: once `gone` holds more rows than the snapshot has
//! records, the snapshot is folded into `regions` and both go, a cost paid
//! at most once per as many removals.

use std::collections::HashSet;

use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use super::batch::unpack;
use super::{META, REGIONS, Storage, StorageError};

/// sequence -> chunk of records.
pub(super) const SNAPSHOT: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshot");
/// Ids removed since the snapshot was written.
pub(super) const GONE: TableDefinition<u64, ()> = TableDefinition::new("gone");
/// Records in the snapshot's chunks.
const KEY_SNAPSHOT_RECORDS: &str = "snapshot_records";

/// Drop the snapshot and its tombstones (a reset).
pub(super) fn clear(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.delete_table(SNAPSHOT)?;
    txn.delete_table(GONE)?;
    txn.open_table(META)?.remove(KEY_SNAPSHOT_RECORDS)?;
    Ok(())
}

/// Append `chunk`, `count` packed records (`batch::unpack`), as one chunk.
pub(super) fn append(txn: &WriteTransaction, chunk: &[u8], count: u64) -> Result<(), redb::Error> {
    let mut table = txn.open_table(SNAPSHOT)?;
    let next = table.last()?.map_or(0, |(seq, _)| seq.value() + 1);
    table.insert(next, chunk)?;
    let total = records(txn)? + count;
    txn.open_table(META)?.insert(KEY_SNAPSHOT_RECORDS, total)?;
    Ok(())
}

/// Records in the stored snapshot: 0 when there is none (then removals need
/// no tombstones). Read from `meta`, so that a store without a snapshot is
/// not given an empty table of chunks.
pub(super) fn records(txn: &WriteTransaction) -> Result<u64, redb::Error> {
    let meta = txn.open_table(META)?;
    Ok(meta.get(KEY_SNAPSHOT_RECORDS)?.map_or(0, |v| v.value()))
}

/// Mark `id` removed, over its copy in a chunk.
pub(super) fn bury(txn: &WriteTransaction, id: u64) -> Result<(), redb::Error> {
    txn.open_table(GONE)?.insert(id, ())?;
    Ok(())
}

/// Fold the snapshot of `records` into `regions` once its tombstones
/// outnumber them, so that neither grows without bound under removals.
pub(super) fn fold_if_due(txn: &WriteTransaction, records: u64) -> Result<(), redb::Error> {
    let buried = txn.open_table(GONE)?.len()?;
    if buried <= records {
        return Ok(());
    }
    tracing::info!(
        records,
        buried,
        "folding the stored snapshot into the region table: more regions were removed since it was written than it holds"
    );
    {
        let snapshot = txn.open_table(SNAPSHOT)?;
        let gone = txn.open_table(GONE)?;
        let mut regions = txn.open_table(REGIONS)?;
        // Newest first, so that the first copy of an id met is the one that
        // counts, and an older one finds it in `regions` already.
        for chunk in snapshot.iter()?.rev() {
            let (seq, chunk) = chunk?;
            let mut newest_first =
                records_of(chunk.value(), seq.value()).map_err(redb::Error::Corrupted)?;
            newest_first.reverse();
            for (id, value) in newest_first {
                if regions.get(id)?.is_none() && gone.get(id)?.is_none() {
                    regions.insert(id, value)?;
                }
            }
        }
    }
    clear(txn)
}

/// Call `f` with every snapshot record that no row of `regions` or `gone`
/// overrides, in write order: (id, value). A later copy of an id in the
/// snapshot is called after the earlier (the loader keeps the later).
pub(super) fn for_each(
    storage: &Storage,
    txn: &ReadTransaction,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let fail = |e: redb::Error| storage.fail("read the snapshot", e);
    let snapshot = match txn.open_table(SNAPSHOT) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(fail(e.into())),
    };
    let gone: HashSet<u64> = match txn.open_table(GONE) {
        Ok(t) => t
            .iter()
            .map_err(|e| fail(e.into()))?
            .map(|entry| entry.map(|(id, _)| id.value()))
            .collect::<Result<_, _>>()
            .map_err(|e| fail(e.into()))?,
        Err(redb::TableError::TableDoesNotExist(_)) => HashSet::new(),
        Err(e) => return Err(fail(e.into())),
    };
    let regions = txn.open_table(REGIONS).map_err(|e| fail(e.into()))?;
    let overridden = !regions.is_empty().map_err(|e| fail(e.into()))?;
    for chunk in snapshot.iter().map_err(|e| fail(e.into()))? {
        let (seq, chunk) = chunk.map_err(|e| fail(e.into()))?;
        let records =
            records_of(chunk.value(), seq.value()).map_err(|detail| StorageError::Damaged {
                path: storage.path.clone(),
                detail,
            })?;
        for (id, value) in records {
            let newer = overridden && regions.get(id).map_err(|e| fail(e.into()))?.is_some();
            if !newer && !gone.contains(&id) {
                f(id, value)?;
            }
        }
    }
    Ok(())
}

/// The records of chunk `seq`, in order.
fn records_of(chunk: &[u8], seq: u64) -> Result<Vec<(u64, &[u8])>, String> {
    unpack(chunk)
        .collect::<Result<_, _>>()
        .map_err(|at| format!("snapshot chunk {seq} is cut short at byte {at}"))
}
