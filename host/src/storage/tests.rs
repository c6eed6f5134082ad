use super::*;
use redb::ReadableTableMetadata;

fn put(batch: &mut WriteBatch, region: &Region, leader_id: u64) {
    batch.put_encoded(region.id, leader_id, 0, &region.encode_to_vec());
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
            complete: true,
            delta_floor: None,
            resumable: false,
        }
    );
    let mut got = Vec::new();
    s.load_regions(|r, l, _| got.push((r.id, l))).unwrap();
    assert_eq!(got, vec![(1, 10), (3, 30)]);
    s.write(&WriteBatch {
        reset: true,
        complete: Some(false),
        next_index: Some(0),
        durable: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.load_regions(|_, _, _| {}).unwrap(), 0);
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
        s.load_regions(|_, _, _| {}).unwrap();
    }
    assert!(std::fs::read(&file).unwrap() == before);
}

#[test]
fn a_creation_cut_short_leaves_no_store_and_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    // What a process killed while redb wrote a new file's header left.
    let unfinished = dir.path().join(format!("{FILE_NAME}.new"));
    std::fs::write(&unfinished, b"\0\0\0half a header").unwrap();
    assert!(!dir.path().join(FILE_NAME).exists());
    let storage = Storage::open(dir.path()).unwrap();
    let meta = storage.meta().unwrap();
    assert!(!meta.complete);
    assert!(!unfinished.exists(), "the unfinished file is gone");
    assert!(dir.path().join(FILE_NAME).exists());
    drop(storage);
    Storage::open(dir.path()).unwrap();
}

#[test]
fn a_data_dir_that_is_a_file_is_refused() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let err = Storage::open(f.path()).err().unwrap();
    assert!(matches!(err, StorageError::NotADirectory(_)), "{err}");
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
    let err = Storage::open(dir.path()).err().unwrap();
    assert!(
        matches!(
            err,
            StorageError::Layout {
                found: Some(99),
                want: LAYOUT_VERSION,
                ..
            }
        ),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), b"this is not a database at all").unwrap();
    let err = Storage::open(dir.path()).err().unwrap();
    assert!(
        matches!(
            err,
            StorageError::Damaged { .. } | StorageError::Io { action: "open", .. }
        ),
        "{err}"
    );

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
    let err = s.load_regions(|_, _, _| {}).unwrap_err();
    assert!(
        matches!(&err, StorageError::Damaged { detail, .. } if detail == "region 5 is truncated"),
        "{err}"
    );
}

/// A store as an older build left it: next index 40, `meta`, and regions 1
/// to 3 stored as `value` makes them.
fn older_store(path: &std::path::Path, meta: &[(&str, u64)], value: impl Fn(u64) -> Vec<u8>) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(META).unwrap();
        table.insert(KEY_NEXT_INDEX, 40).unwrap();
        for (key, v) in meta {
            table.insert(*key, *v).unwrap();
        }
        let mut regions = txn.open_table(REGIONS).unwrap();
        for id in 1..=3u64 {
            regions.insert(id, value(id).as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
}

#[test]
fn a_layout_1_store_is_read_as_is_and_upgraded_at_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    // A store as layout 1 wrote it: leader id, then the encoding.
    older_store(&path, &[(KEY_LAYOUT, 1), (KEY_COMPLETE, 1)], |id| {
        let mut value = (id * 10).to_le_bytes().to_vec();
        value.extend_from_slice(&region(id).encode_to_vec());
        value
    });
    let before = std::fs::read(&path).unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let mut got = Vec::new();
    s.load_regions(|r, l, changed| got.push((r.id, l, changed)))
        .unwrap();
    assert_eq!(got, vec![(1, 10, 0), (2, 20, 0), (3, 30, 0)]);
    assert_eq!(s.meta().unwrap().delta_floor, None);
    assert!(
        std::fs::read(&path).unwrap() == before,
        "reading changed the file"
    );
    // The first write upgrades: every region keeps its leader, gains change
    // index 0, and changes are tracked from the store's index on.
    let mut b = WriteBatch {
        durable: true,
        ..Default::default()
    };
    b.put_encoded(4, 40, 41, &region(4).encode_to_vec());
    s.write(&b).unwrap();
    drop(s);
    let s = Storage::open(dir.path()).unwrap();
    let mut got = Vec::new();
    s.load_regions(|r, l, changed| got.push((r.id, l, changed)))
        .unwrap();
    assert_eq!(got, vec![(1, 10, 0), (2, 20, 0), (3, 30, 0), (4, 40, 41)]);
    let meta = s.meta().unwrap();
    assert_eq!((meta.delta_floor, meta.next_index), (Some(40), 40));
}

/// The rows and chunks the store holds: (rows, chunks, tombstones).
fn tables(s: &Storage) -> (u64, u64, u64) {
    let txn = s.begin_read().unwrap();
    let rows = txn.open_table(REGIONS).unwrap().len().unwrap();
    let len = |t| match txn.open_table(t) {
        Ok(t) => t.len().unwrap(),
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => panic!("{e}"),
    };
    let gone = match txn.open_table(snapshot::GONE) {
        Ok(t) => t.len().unwrap(),
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => panic!("{e}"),
    };
    (rows, len(snapshot::SNAPSHOT), gone)
}

fn loaded(s: &Storage) -> std::collections::BTreeMap<u64, (u64, u64)> {
    let mut got = std::collections::BTreeMap::new();
    s.load_regions(|r, l, changed| {
        // A later copy wins, as the loader keeps it.
        got.insert(r.id, (l, changed));
    })
    .unwrap();
    got
}

/// Random batches over a small id space, as a full sync and what follows it
/// write them: a reset, snapshot batches (some ids sent twice), then rows,
/// removals, restarts and completions. After every step the store loads
/// what a plain map of the same writes holds; chunks are used while they
/// may be, and the tombstones never outnumber the snapshot's records.
#[test]
fn a_snapshot_kept_as_chunks_loads_as_the_writes_it_took() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Storage::open(dir.path()).unwrap();
    let mut model = std::collections::BTreeMap::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut chunked, mut folded) = (0, 0);
    for step in 0..1_500u64 {
        let mut b = WriteBatch::default();
        match next(10) {
            0 => {
                b.reset = true;
                model.clear();
                // A reset and the start of its snapshot in one batch, as
                // the writer may fold them.
                b.snapshot = next(2) == 0;
            }
            1..=4 => b.snapshot = true,
            5 => b.complete = Some(true),
            6 => {
                drop(s);
                s = Storage::open(dir.path()).unwrap();
                continue;
            }
            _ => {}
        }
        let removals = !b.snapshot || next(4) == 0;
        for _ in 0..next(12) {
            let id = 1 + next(40);
            if removals && next(3) == 0 {
                b.delete(id);
                model.remove(&id);
            } else {
                let (leader, changed) = (next(5), step);
                b.put_encoded(id, leader, changed, &region(id).encode_to_vec());
                model.insert(id, (leader, changed));
            }
        }
        let before = tables(&s).1;
        s.write(&b).unwrap();
        let (_, chunks, gone) = tables(&s);
        chunked += usize::from(chunks > before);
        folded += usize::from(before > 0 && chunks == 0 && !b.reset);
        assert_eq!(loaded(&s), model, "step {step}");
        let records = s
            .begin_read()
            .unwrap()
            .open_table(META)
            .unwrap()
            .get("snapshot_records")
            .unwrap()
            .map_or(0, |v| v.value());
        assert!(
            gone <= records,
            "step {step}: {gone} tombstones, {records} records"
        );
    }
    assert!(chunked >= 20, "chunks were written {chunked} times");
    assert!(folded > 0, "the snapshot was never folded");
    drop(s);
    assert_eq!(loaded(&Storage::open(dir.path()).unwrap()), model);
}

#[test]
fn a_layout_2_store_gains_only_its_version_at_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    older_store(&path, &[(KEY_LAYOUT, 2), (KEY_DELTA_FLOOR, 30)], |id| {
        layout::join_value(id * 10, id + 30, &region(id).encode_to_vec())
    });
    let s = Storage::open(dir.path()).unwrap();
    let want: std::collections::BTreeMap<u64, (u64, u64)> =
        (1..=3).map(|id| (id, (id * 10, id + 30))).collect();
    assert_eq!(loaded(&s), want);
    s.write(&WriteBatch {
        next_index: Some(41),
        durable: true,
        ..Default::default()
    })
    .unwrap();
    drop(s);
    let s = Storage::open(dir.path()).unwrap();
    assert_eq!(loaded(&s), want);
    let layout = s.begin_read().unwrap().open_table(META).unwrap();
    let layout = layout.get(KEY_LAYOUT).unwrap().map(|v| v.value());
    assert_eq!(layout, Some(LAYOUT_VERSION));
    assert_eq!(s.meta().unwrap().delta_floor, Some(30));
}

/// A simulated disk loses what was committed without an fsync when power
/// is lost, and keeps every durable commit: redb recovers to the last one.
#[test]
fn a_simulated_power_loss_keeps_the_durable_commits_only() {
    let disk = SimDisk::new();
    let storage = Storage::in_memory(disk.clone()).unwrap();
    let commit = |next: u64, durable: bool| {
        storage
            .write(&WriteBatch {
                next_index: Some(next),
                complete: Some(true),
                durable,
                ..Default::default()
            })
            .unwrap()
    };
    commit(5, true);
    commit(9, false);
    assert_eq!(storage.meta().unwrap().next_index, 9);
    let after = Storage::in_memory(disk.after_power_loss()).unwrap();
    assert_eq!(
        after.meta().unwrap().next_index,
        5,
        "the unsynced commit survived"
    );
    commit(12, true);
    drop(storage);
    let after = Storage::in_memory(disk.after_power_loss()).unwrap();
    assert_eq!(after.meta().unwrap().next_index, 12);
}
