use super::*;
use crate::digest::region_hash;
use crate::region_store::tests::{reads, region as keyed};
use crate::region_store::{Outcome, RegionStore, sample};
use regionsync_proto::metapb::{Peer, RegionEpoch};

/// The view says what the decoded region says, field for field.
fn assert_same(view: &RegionView<'_>, r: &Region) {
    assert_eq!(view.id(), r.id);
    assert_eq!(view.conf_ver_and_version(), r.conf_ver_and_version());
    assert_eq!(view.start_key(), r.start_key.as_slice());
    assert_eq!(view.end_key(), r.end_key.as_slice());
    assert_eq!(view.peer_count(), r.peers.len());
    assert_eq!(
        view.peers().collect::<Vec<_>>(),
        RegionFields::peers(r).collect::<Vec<_>>()
    );
    assert_eq!(region_hash(view), region_hash(r));
}

fn regions() -> Vec<Region> {
    let mut all: Vec<Region> = (0..4).map(|i| sample::region(i, 4, 1 + i)).collect();
    let full = Region {
        id: u64::MAX,
        start_key: vec![0xff; 300],
        end_key: vec![0; 1],
        region_epoch: Some(RegionEpoch {
            conf_ver: u64::MAX,
            version: 1 << 35,
        }),
        peers: vec![
            Peer {
                id: 1,
                store_id: 2,
                role: 3,
                is_witness: true,
            },
            Peer::default(),
            Peer {
                id: 1 << 60,
                role: i32::MAX,
                ..Default::default()
            },
        ],
        is_in_flashback: true,
        flashback_start_ts: 77,
    };
    all.push(full);
    // Zeros everywhere prost leaves fields out: an empty region, an epoch
    // of zeros (present but empty), no peers.
    all.push(Region::default());
    all.push(Region {
        id: 9,
        region_epoch: Some(RegionEpoch::default()),
        ..Default::default()
    });
    all
}

#[test]
fn prost_encodings_are_read_as_they_decode() {
    for r in regions() {
        let bytes = r.encode_to_vec();
        let view = RegionView::parse(&bytes).expect("prost's own encoding");
        assert_same(&view, &r);
        assert_eq!(view.decode(), r);
        let incoming = Incoming::Encoded(view);
        assert_eq!(region_hash(&incoming), region_hash(&r));
        assert_eq!(*incoming.encoding(), bytes[..]);
        assert_eq!(*Incoming::Decoded(r.clone()).encoding(), bytes[..]);
        assert_eq!(incoming.into_region(), r);
    }
}

/// Each of these decodes to a region, but is not the encoding prost writes
/// for it, so a store holding it as is would read it wrongly or send on
/// other bytes than it decoded.
#[test]
fn encodings_prost_would_not_write_are_refused() {
    let cases: &[(&str, &[u8])] = &[
        ("fields out of order", &[0x12, 1, b'a', 0x08, 5]),
        ("a field twice", &[0x08, 5, 0x08, 6]),
        ("a zero id written", &[0x08, 0]),
        ("an empty key written", &[0x08, 5, 0x12, 0]),
        ("a varint longer than it needs", &[0x08, 0x85, 0x00]),
        ("a key longer than it needs", &[0x88, 0x00, 5]),
        ("a field this build does not know", &[0x08, 5, 0x32, 0]),
        ("flashback written as 2", &[0x08, 5, 0x38, 2]),
        ("the peers not back to back", &[0x2a, 0, 0x38, 1, 0x2a, 0]),
        ("a witness written as 2", &[0x2a, 2, 0x20, 2]),
        ("peer fields out of order", &[0x2a, 4, 0x10, 1, 0x08, 1]),
        (
            "a negative role",
            &[
                0x2a, 11, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ),
        ("epoch fields out of order", &[0x22, 4, 0x10, 1, 0x08, 1]),
        ("the wrong wire type", &[0x0a, 1, 5]),
        ("a length past the end", &[0x12, 5, b'a']),
        ("a varint past the end", &[0x08, 0x85]),
    ];
    for (why, bytes) in cases {
        assert!(RegionView::parse(bytes).is_none(), "{why}: accepted");
    }
    // The same shapes written as prost writes them are taken.
    for bytes in [&[0x08, 5, 0x12, 1, b'a'][..], &[0x2a, 0, 0x2a, 0, 0x38, 1]] {
        let view = RegionView::parse(bytes).expect("prost's own encoding");
        assert_eq!(view.decode().encode_to_vec(), bytes);
    }
}

/// Random edits of prost's encodings: whatever the view accepts, prost
/// decodes and encodes back to the very same bytes, and the view reads what
/// prost decodes. Both verdicts must occur, or the test shows nothing.
#[test]
fn whatever_is_accepted_is_exactly_prosts_encoding() {
    let originals: Vec<Vec<u8>> = regions().iter().map(|r| r.encode_to_vec()).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below.max(1) as u64) as usize
    };
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..40_000 {
        let mut bytes = originals[round % originals.len()].clone();
        for _ in 0..1 + next(3) {
            let at = next(bytes.len() + 1);
            match next(5) {
                0 if at < bytes.len() => bytes[at] ^= 1 << next(8),
                1 => bytes.insert(at, next(256) as u8),
                2 if at < bytes.len() => _ = bytes.remove(at),
                3 if at < bytes.len() => bytes[at] = next(256) as u8,
                _ => {
                    // Repeat a slice elsewhere (a field written twice).
                    let from = next(bytes.len());
                    let to = (from + 1 + next(8)).min(bytes.len());
                    let piece = bytes[from..to].to_vec();
                    let at = next(bytes.len() + 1);
                    bytes.splice(at..at, piece);
                }
            }
        }
        match RegionView::parse(&bytes) {
            Some(view) => {
                accepted += 1;
                let r = Region::decode(&bytes[..]).expect("accepted bytes decode");
                assert_eq!(r.encode_to_vec(), bytes, "accepted, but not prost's");
                assert_same(&view, &r);
            }
            None => refused += 1,
        }
    }
    assert!(
        accepted > 1_000 && refused > 1_000,
        "{accepted} / {refused}"
    );
}

/// Regions applied as received, in prost's encoding (`view`), do what the
/// same regions decoded do, change for change: a snapshot's run, in-place
/// updates, splits, merges, stale and unchanged ones; the stored bytes and
/// every read agree.
#[test]
fn regions_applied_as_received_do_what_decoded_ones_do() {
    let key = |i: u64| format!("k{i:03}");
    let mut changes: Vec<(Region, u64)> = (0..100u64)
        .map(|i| (keyed(i + 1, &key(i), &key(i + 1), 1, 1), 0))
        .collect();
    for step in 0..300u64 {
        let i = (step * 37) % 97;
        let r = match step % 5 {
            // A new version in place, a leader change, the same region.
            0 => keyed(i + 1, &key(i), &key(i + 1), 2 + step, 1),
            1 => keyed(i + 1, &key(i), &key(i + 1), 1, 1),
            // A split's right half, and a merge over three.
            2 => keyed(
                200 + step,
                &format!("{}5", key(i)),
                &key(i + 1),
                3 + step,
                1,
            ),
            3 => keyed(i + 1, &key(i), &key(i + 3), 4 + step, 2),
            // Stale by version.
            _ => keyed(i + 1, &key(i), &key(i + 1), 0, 1),
        };
        changes.push((r, step % 3));
    }
    let (mut decoded, mut received) = (RegionStore::new(), RegionStore::new());
    let mut seen = std::collections::BTreeMap::new();
    decoded.begin_bulk();
    received.begin_bulk();
    for (n, (r, leader)) in changes.iter().enumerate() {
        let leader = r.peers[0].id * (*leader).min(1);
        let bytes = prost::Message::encode_to_vec(r);
        let view = RegionView::parse(&bytes).expect("prost's own encoding");
        let at = n as u64;
        let outcome = decoded.apply(r, leader, at % 4, at);
        assert_eq!(
            received.apply_incoming(&Incoming::Encoded(view), leader, at % 4, at),
            outcome,
            "change {n}: {r:?}"
        );
        assert_eq!(received.encoded(r.id), decoded.encoded(r.id));
        *seen
            .entry(match outcome {
                Outcome::Applied { removed } if removed.is_empty() => "applied",
                Outcome::Applied { .. } => "applied over others",
                Outcome::Stale => "stale",
                Outcome::Unchanged => "unchanged",
            })
            .or_insert(0) += 1;
    }
    assert_eq!(reads(&received), reads(&decoded));
    assert_eq!(seen.len(), 4, "every kind of change: {seen:?}");
}
