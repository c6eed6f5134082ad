use super::*;

fn rec(id: u64) -> RingRecord {
    RingRecord::of(&Record::bare(
        Region {
            id,
            ..Default::default()
        },
        Peer::default(),
    ))
}

#[test]
fn indexes_continue_from_the_start_and_the_ring_stays_bounded() {
    let mut ring = HistoryRing::new(3, 0, 10);
    assert_eq!((ring.first_index(), ring.next_index()), (10, 10));
    for id in 0..5 {
        assert_eq!(ring.push(rec(id)), 10 + id);
    }
    assert_eq!(
        (ring.first_index(), ring.next_index(), ring.len()),
        (12, 15, 3)
    );
    let got: Vec<u64> = ring
        .read(12, 10, usize::MAX)
        .iter()
        .map(|r| r.decode().region.id)
        .collect();
    assert_eq!(got, vec![2, 3, 4]);
    assert!(ring.read(11, 10, usize::MAX).is_empty());
    assert!(ring.read(15, 10, usize::MAX).is_empty());
    assert_eq!(ring.read(13, 1, usize::MAX).len(), 1);
}

#[test]
fn reads_respect_the_byte_bound_but_return_at_least_one() {
    let mut ring = HistoryRing::new(10, 0, 1);
    for id in 1..=5 {
        ring.push(rec(id));
    }
    let one = ring.read(1, 1, usize::MAX)[0].frame_len();
    assert_eq!(ring.read(1, 5, one * 2).len(), 2);
    assert_eq!(ring.read(1, 5, 1).len(), 1);
}

#[test]
fn a_pin_breaks_when_its_records_are_overwritten() {
    let mut ring = HistoryRing::new(3, 0, 1);
    ring.push(rec(1));
    let pin = ring.pin();
    assert_eq!(pin.from(), 2);
    ring.push(rec(2));
    ring.push(rec(3));
    ring.push(rec(4)); // evicts index 1: not pinned
    assert!(!pin.is_broken());
    ring.push(rec(5)); // evicts index 2: pinned
    assert!(pin.is_broken());
}

#[test]
fn a_released_pin_is_forgotten() {
    let mut ring = HistoryRing::new(2, 0, 1);
    let pin = ring.pin();
    drop(pin);
    for id in 0..5 {
        ring.push(rec(id));
    }
    assert!(ring.pins.is_empty());
}

#[test]
fn a_byte_bound_evicts_like_a_record_bound_and_breaks_pins() {
    let one = rec(1).frame_len();
    let mut ring = HistoryRing::new(1_000, one * 3, 1);
    let pin = ring.pin();
    for id in 1..=3 {
        ring.push(rec(id));
    }
    assert_eq!((ring.first_index(), ring.len()), (1, 3));
    assert!(!pin.is_broken());
    ring.push(rec(4));
    assert_eq!((ring.first_index(), ring.len()), (2, 3));
    assert_eq!(ring.bytes(), one * 3);
    assert!(pin.is_broken());
    // A record larger than the bound is still kept, alone.
    let mut tiny = HistoryRing::new(10, 1, 1);
    tiny.push(rec(1));
    tiny.push(rec(2));
    assert_eq!((tiny.first_index(), tiny.len()), (2, 1));
}

#[test]
fn coverage_is_what_the_ring_holds_over_the_change_rate() {
    let mut ring = HistoryRing::new(100, 0, 1);
    assert_eq!(ring.seconds_covered(Instant::now()), None);
    let start = Instant::now();
    for id in 1..=10 {
        ring.push(rec(id));
    }
    // 10 records over (at most) the time since `start`, a ring of 100:
    // at least ten times that time.
    let later = Instant::now() + Duration::from_secs(1);
    let covered = ring.seconds_covered(later).unwrap();
    let span = later.duration_since(start).as_secs_f64();
    assert!(covered >= 10.0 * span * 0.99, "{covered} for {span}");
}

#[test]
fn flow_within_rounding_leaves_the_fingerprint_alone() {
    let mut a = Record::bare(
        Region::default(),
        Peer {
            id: 7,
            store_id: 1,
            ..Default::default()
        },
    );
    a.stats.bytes_written = 12_345;
    let mut b = a.clone();
    b.stats.bytes_written = 12_499; // rounds to 12,000 with 3 digits
    b.stats.keys_written = 99; // keys never count
    assert_eq!(fingerprint(&a, 1_000), fingerprint(&b, 1_000));
    assert_ne!(fingerprint(&a, 1), fingerprint(&b, 1));
    b.stats.bytes_written = 12_500; // rounds to 13,000
    assert_ne!(fingerprint(&a, 1_000), fingerprint(&b, 1_000));
    let mut c = a.clone();
    c.pending_peers.push(Peer {
        id: 9,
        ..Default::default()
    });
    assert_ne!(fingerprint(&a, 1_000), fingerprint(&c, 1_000));
    let mut d = a.clone();
    d.leader.id = 8;
    assert_ne!(fingerprint(&a, 1_000), fingerprint(&d, 1_000));
}
