use super::*;
use regionsync_proto::metapb::RegionEpoch;

/// Region `id` over [start, end) with the given epoch and one peer.
pub(crate) fn region(id: u64, start: &str, end: &str, version: u64, conf_ver: u64) -> Region {
    Region {
        id,
        start_key: start.as_bytes().to_vec(),
        end_key: end.as_bytes().to_vec(),
        region_epoch: Some(RegionEpoch { conf_ver, version }),
        peers: vec![Peer {
            id: id * 100,
            store_id: 1,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn ids(s: &RegionStore) -> Vec<u64> {
    s.scan(b"", b"", 0).iter().map(|r| r.region.id).collect()
}

#[test]
fn split_replaces_the_parent_and_merge_removes_the_children() {
    let mut s = RegionStore::new();
    assert_eq!(
        s.apply(&region(1, "", "", 1, 1), 0, 0, 0),
        Outcome::Applied { removed: vec![] }
    );
    // Split: 1 keeps [a.., m), 2 takes [m, ..).
    assert!(matches!(
        s.apply(&region(2, "m", "", 2, 1), 0, 0, 0),
        Outcome::Applied { .. }
    ));
    assert_eq!(ids(&s), vec![2], "the parent overlapped the new right half");
    assert!(matches!(
        s.apply(&region(1, "", "m", 2, 1), 0, 0, 0),
        Outcome::Applied { .. }
    ));
    assert_eq!(ids(&s), vec![1, 2]);
    // Merge: 1 absorbs 2.
    assert_eq!(
        s.apply(&region(1, "", "", 3, 1), 0, 0, 0),
        Outcome::Applied { removed: vec![2] }
    );
    assert_eq!(ids(&s), vec![1]);
    assert!(s.get(2).is_none());
}

/// A region removed at some epoch, reported again late at that epoch or an
/// older one into a range nothing covers now, is stale: its epoch never
/// goes back. A follower that got the newer copy would otherwise keep
/// ignoring the older one the leader took (found by the simulator,
/// `sim/tests/scenarios.rs`, seed 14173829497894769854). A newer epoch of
/// it is taken, and brings it back.
#[test]
fn a_removed_region_reported_late_at_an_older_epoch_is_stale() {
    let mut s = RegionStore::new();
    s.apply(&region(1, "a", "f", 4, 1), 0, 0, 1);
    s.apply(&region(2, "f", "z", 4, 1), 0, 0, 2);
    // 2 absorbs 1, then splits right-derived: [a, f) is a gap for now.
    assert_eq!(
        s.apply(&region(2, "a", "z", 5, 1), 0, 0, 3),
        Outcome::Applied { removed: vec![1] }
    );
    s.apply(&region(2, "f", "z", 6, 1), 0, 0, 4);
    assert_eq!(s.apply(&region(1, "a", "f", 3, 1), 0, 0, 5), Outcome::Stale);
    assert_eq!(s.apply(&region(1, "a", "f", 4, 1), 0, 0, 5), Outcome::Stale);
    assert_eq!(ids(&s), vec![2]);
    assert_eq!(s.removed_since(0), vec![1]);
    assert!(matches!(
        s.apply(&region(1, "a", "f", 7, 1), 0, 0, 5),
        Outcome::Applied { .. }
    ));
    assert_eq!((ids(&s), s.removed_since(0)), (vec![1, 2], vec![]));
}

#[test]
fn stale_updates_are_ignored() {
    let mut s = RegionStore::new();
    s.apply(&region(1, "a", "m", 5, 5), 0, 0, 0);
    assert_eq!(s.apply(&region(1, "a", "m", 4, 5), 0, 0, 0), Outcome::Stale);
    assert_eq!(s.apply(&region(1, "a", "m", 5, 4), 0, 0, 0), Outcome::Stale);
    // An overlapping region with an older version than what it overlaps.
    assert_eq!(s.apply(&region(9, "b", "c", 3, 9), 0, 0, 0), Outcome::Stale);
    assert_eq!(ids(&s), vec![1]);
}

#[test]
fn unchanged_unless_region_leader_or_flow_changes() {
    let mut s = RegionStore::new();
    let r = region(1, "a", "m", 1, 1);
    s.apply(&r, 100, 7, 0);
    assert_eq!(s.apply(&r, 100, 7, 0), Outcome::Unchanged);
    assert!(matches!(s.apply(&r, 0, 7, 0), Outcome::Applied { .. }));
    assert!(matches!(s.apply(&r, 0, 8, 0), Outcome::Applied { .. }));
    assert_eq!(s.len(), 1);
}

#[test]
fn lookups_by_key_and_scans_respect_ranges() {
    let mut s = RegionStore::new();
    s.apply(&region(1, "", "g", 1, 1), 100, 0, 0);
    s.apply(&region(2, "g", "p", 1, 1), 0, 0, 0);
    s.apply(&region(3, "p", "", 1, 1), 0, 0, 0);
    assert_eq!(s.get_by_key(b"a").unwrap().region.id, 1);
    assert_eq!(s.get_by_key(b"g").unwrap().region.id, 2);
    assert_eq!(s.get_by_key(b"zzz").unwrap().region.id, 3);
    assert_eq!(s.get(1).unwrap().leader.id, 100);
    assert_eq!(s.get(2).unwrap().leader.id, 0);
    let scanned: Vec<u64> = s.scan(b"h", b"q", 0).iter().map(|r| r.region.id).collect();
    assert_eq!(scanned, vec![2, 3]);
    assert_eq!(s.scan(b"", b"", 2).len(), 2);
    let mut gap = RegionStore::new();
    gap.apply(&region(1, "a", "c", 1, 1), 0, 0, 0);
    assert!(gap.get_by_key(b"d").is_none());
}

#[test]
fn chunks_cover_the_set_once_in_key_order() {
    use prost::Message;
    let mut s = RegionStore::new();
    for i in 0..25u64 {
        let (a, b) = (format!("k{i:03}"), format!("k{:03}", i + 1));
        let mut r = region(i + 1, &a, &b, 1, 1);
        r.peers.push(Peer {
            id: 7_000 + i,
            store_id: 2,
            ..Default::default()
        });
        // Leaders: unknown, the first peer, the second peer.
        let leader = [0, r.peers[0].id, r.peers[1].id][i as usize % 3];
        s.apply(&r, leader, 0, 0);
    }
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = s.chunk_after(after.as_deref(), 10, usize::MAX);
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 10);
        after = Some(chunk.last().unwrap().start_key.to_vec());
        for r in chunk {
            // The encodings are the stored region and its leader, as the
            // decoding reads give them.
            let region = Region::decode(r.region).unwrap();
            let stored = s.get(region.id).unwrap();
            assert_eq!(
                (&region, r.start_key),
                (&stored.region, &region.start_key[..])
            );
            assert_eq!(Peer::decode(r.leader).unwrap(), stored.leader);
            seen.push(region.id);
        }
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    assert_eq!(s.chunk_after(None, 1000, 1).len(), 1, "at least one region");
}

#[test]
fn digest_and_size_follow_the_set() {
    let mut a = RegionStore::new();
    a.apply(&region(1, "", "m", 1, 1), 0, 0, 0);
    a.apply(&region(2, "m", "", 1, 1), 0, 0, 0);
    let mut b = RegionStore::new();
    b.apply(&region(1, "", "", 1, 1), 0, 0, 0);
    b.apply(&region(2, "m", "", 2, 1), 0, 0, 0);
    b.apply(&region(1, "", "m", 2, 1), 0, 0, 0);
    b.apply(&region(2, "m", "", 1, 1), 0, 0, 0); // stale: ignored
    assert_ne!(a.digest(), b.digest(), "versions differ");
    let mut c = RegionStore::new();
    c.apply(&region(2, "m", "", 2, 1), 0, 0, 0);
    c.apply(&region(1, "", "m", 2, 1), 0, 0, 0);
    assert_eq!(b.digest(), c.digest());
    assert_eq!(b.encoded_bytes(), c.encoded_bytes());
    c.clear();
    assert_eq!(c.digest(), SetDigest::default());
}

#[test]
fn a_bulk_load_equals_one_by_one_inserts_and_tolerates_collisions() {
    let regions: Vec<Region> = (0..100u64)
        .map(|i| {
            region(
                100 - i,
                &format!("k{i:03}"),
                &format!("k{:03}", i + 1),
                1,
                1,
            )
        })
        .collect();
    let mut loader = Loader::default();
    let mut one_by_one = RegionStore::new();
    for r in &regions {
        loader.add(r, r.peers[0].id, 0);
        one_by_one.apply(r, r.peers[0].id, 0, 0);
    }
    let bulk = loader.finish();
    assert_eq!(bulk.digest(), one_by_one.digest());
    assert_eq!(bulk.scan(b"", b"", 0), one_by_one.scan(b"", b"", 0));
    assert_eq!(bulk.get(7).unwrap().leader.id, 700);
    assert_eq!(bulk.get_by_key(b"k050").unwrap().region.id, 50);

    // Two regions claiming one start key: the greater id stays, whichever
    // came first (a leader loads in id order).
    for ids in [[1, 2], [2, 1]] {
        let mut loader = Loader::default();
        loader.add(&region(ids[0], "a", "b", 1, 1), 0, 0);
        loader.add(&region(ids[1], "a", "c", 1, 1), 0, 0);
        let store = loader.finish();
        assert_eq!(store.len(), 1);
        assert_eq!(store.get_by_key(b"a").unwrap().region.id, 2);
        assert_eq!(store.digest(), {
            let mut one = RegionStore::new();
            one.apply(
                &region(2, "a", if ids[1] == 2 { "c" } else { "b" }, 1, 1),
                0,
                0,
                0,
            );
            one.digest()
        });
    }
    // An id read twice: its later copy stays.
    let mut loader = Loader::default();
    loader.add(&region(1, "a", "b", 1, 1), 0, 0);
    loader.add(&region(1, "a", "c", 2, 1), 0, 0);
    let store = loader.finish();
    assert_eq!(
        (store.len(), store.get(1).unwrap().region.end_key),
        (1, b"c".to_vec())
    );
}

/// Same-range updates take the in-place path; whatever path each update
/// takes, the store ends equal (regions, key lookups, digest, size) to one
/// loaded in bulk from the same final set.
#[test]
fn in_place_updates_keep_the_store_equal_to_a_bulk_load_of_its_set() {
    let mut s = RegionStore::new();
    let keys = ["", "c", "f", "j", "p", "t"];
    for (i, w) in keys.windows(2).enumerate() {
        s.apply(&region(i as u64 + 1, w[0], w[1], 1, 1), 0, 0, 0);
    }
    s.apply(&region(9, "t", "", 1, 1), 0, 0, 0);
    let mut seed = 7u64;
    for step in 0..2_000u64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pick = (seed >> 33) % 6;
        let current = s.scan(b"", b"", 0);
        let target = &current[pick as usize % current.len()];
        let mut r = target.region.clone();
        r.region_epoch = Some(RegionEpoch {
            conf_ver: 1,
            version: r.region_epoch.unwrap().version + 1,
        });
        r.peers[0].store_id = step % 5;
        let mid = [r.start_key.clone(), b"\x00".to_vec()].concat();
        if step % 97 == 0 && (r.end_key.is_empty() || mid < r.end_key) {
            // Now and then a split, so both paths interleave.
            let mut right = r.clone();
            right.id = 100 + step;
            right.start_key = mid.clone();
            r.end_key = mid;
            s.apply(&right, 0, 0, 0);
        }
        let out = s.apply(&r, 0, 0, step);
        assert!(matches!(out, Outcome::Applied { .. }), "{step}: {out:?}");
    }
    let mut loader = Loader::default();
    for sr in s.scan(b"", b"", 0) {
        loader.add(&sr.region, 0, 0);
    }
    let bulk = loader.finish();
    assert_eq!(s.digest(), bulk.digest());
    assert_eq!(s.encoded_bytes(), bulk.encoded_bytes());
    assert_eq!(ids(&s), ids(&bulk));
    for sr in s.scan(b"", b"", 0) {
        let key = sr.region.start_key.clone();
        assert_eq!(s.get_by_key(&key).unwrap().region, sr.region);
        assert_eq!(s.get(sr.region.id).unwrap().region, sr.region);
    }
}

/// Every read the store offers, as one comparable value.
pub(crate) fn reads(s: &RegionStore) -> impl PartialEq + std::fmt::Debug {
    let all = s.scan(b"", b"", 0);
    let by_key: Vec<_> = ["", "k", "k020", "k0205", "k099", "zz"]
        .iter()
        .map(|k| s.get_by_key(k.as_bytes()).map(|r| r.region.id))
        .collect();
    let by_id: Vec<_> = (0..=110).map(|id| s.get(id).map(|r| r.region)).collect();
    let mut chunks = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = s.chunk_after(after.as_deref(), 7, usize::MAX);
        let Some(last) = chunk.last() else { break };
        after = Some(last.start_key.to_vec());
        chunks.push(chunk.iter().map(|r| r.region.to_vec()).collect::<Vec<_>>());
    }
    (
        (s.len(), s.digest(), s.encoded_bytes(), all),
        (by_key, by_id, chunks),
        (
            s.scan(b"k010", b"k015", 0).len(),
            s.changed_since(0, Some(40), 25),
            s.encoded(33).map(<[u8]>::to_vec),
        ),
    )
}

/// A snapshot taken in bulk reads the same before it settles, after, and
/// as the same regions applied one by one; the first region that does not
/// follow the run settles it, and the store goes on from there.
#[test]
fn a_snapshot_taken_in_bulk_reads_like_one_applied_region_by_region() {
    // Ids out of key order, as a real cluster's are.
    let snapshot: Vec<Region> = (0..100u64)
        .map(|i| {
            let end = if i == 99 {
                String::new()
            } else {
                format!("k{:03}", i + 1)
            };
            let start = if i == 0 {
                String::new()
            } else {
                format!("k{i:03}")
            };
            region((i * 37) % 101 + 1, &start, &end, 1, 1)
        })
        .collect();
    let mut bulk = RegionStore::new();
    let mut plain = RegionStore::new();
    bulk.begin_bulk();
    for r in &snapshot {
        assert_eq!(
            bulk.apply(r, r.peers[0].id, 0, 0),
            plain.apply(r, r.peers[0].id, 0, 0)
        );
        assert_eq!(bulk.encoded(r.id), plain.encoded(r.id));
    }
    assert!(!bulk.run.is_empty(), "the snapshot went into the run");
    assert_eq!(
        reads(&bulk),
        reads(&plain),
        "a run reads as the set it holds"
    );
    let mut settled = RegionStore::new();
    settled.begin_bulk();
    for r in &snapshot {
        settled.apply(r, r.peers[0].id, 0, 0);
    }
    settled.settle();
    assert!(settled.run.is_empty() && !settled.bulk);
    assert_eq!(reads(&settled), reads(&plain));

    // A catch-up's split settles the run, then applies as usual.
    let split = region(500, "k0205", "k021", 2, 1);
    assert_eq!(bulk.apply(&split, 0, 0, 9), plain.apply(&split, 0, 0, 9));
    assert!(bulk.run.is_empty() && !bulk.bulk);
    assert_eq!(reads(&bulk), reads(&plain));
    assert_eq!(bulk.changed_since(9, None, usize::MAX).0, vec![500]);
    // A store that is not empty does not take a run.
    bulk.begin_bulk();
    assert!(!bulk.bulk);
}

/// An id sent twice within one snapshot (only a broken leader does that)
/// keeps its later copy, as the durable store keyed by id does, with the
/// digest and size of the set that results.
#[test]
fn an_id_sent_twice_in_a_run_keeps_its_later_copy() {
    let mut s = RegionStore::new();
    s.begin_bulk();
    for r in [
        region(1, "a", "b", 1, 1),
        region(2, "b", "c", 1, 1),
        region(1, "c", "d", 1, 1),
    ] {
        assert_eq!(s.apply(&r, 0, 0, 0), Outcome::Applied { removed: vec![] });
    }
    assert_eq!(s.get(1).unwrap().region.start_key, b"c");
    s.settle();
    let mut want = RegionStore::new();
    want.apply(&region(2, "b", "c", 1, 1), 0, 0, 0);
    want.apply(&region(1, "c", "d", 1, 1), 0, 0, 0);
    assert_eq!(reads(&s), reads(&want));
}

/// Issue #30 item 9: a scan stops at its byte budget (one region at
/// least), in key order from the start key's region, instead of decoding
/// its whole limit under the read lock and cutting afterwards.
#[test]
fn a_scan_within_a_byte_budget_stops_there() {
    let mut s = RegionStore::new();
    for i in 0..100u64 {
        let (start, end) = (format!("k{i:04}"), format!("k{:04}", i + 1));
        s.apply(&region(i + 1, &start, &end, 1, 1), 0, 0, i);
    }
    let one = prost::Message::encoded_len(&s.scan(b"", b"", 1)[0].region);
    let all = s.scan_within(b"", b"", 0, usize::MAX);
    assert_eq!(all.len(), 100);
    let cut = s.scan_within(b"k0010", b"", 0, one * 7);
    assert!((6..=7).contains(&cut.len()), "{} regions", cut.len());
    assert_eq!(cut[0].region.id, 11);
    assert!(
        cut.windows(2)
            .all(|w| w[0].region.end_key == w[1].region.start_key)
    );
    assert_eq!(
        s.scan_within(b"", b"", 0, 1).len(),
        1,
        "one region at least"
    );
    assert_eq!(s.scan_within(b"", b"", 3, usize::MAX).len(), 3);
}
