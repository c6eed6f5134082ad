use super::*;

fn frame(start_index: u64, region_count: u32) -> FrameHeader {
    FrameHeader::plain(false, start_index, region_count)
}

fn delta_frame(start_index: u64, region_count: u32, digest: DigestCheck) -> FrameHeader {
    FrameHeader {
        announced: AnnouncedSync::Delta,
        digest,
        ..frame(start_index, region_count)
    }
}

/// A store part-way through a delta from `next`.
fn resumable_at(next: u64) -> FollowerState {
    FollowerState {
        resumable: true,
        ..FollowerState::opened(next, false)
    }
}

fn complete_at(next: u64) -> FollowerState {
    FollowerState::opened(next, true)
}

#[test]
fn a_new_follower_asks_for_zero() {
    let p = Policy::default_policy();
    let plan = p.on_connect(FollowerState::opened(0, false));
    assert_eq!(plan.start_index, 0);
    assert!(!plan.state.ready);
}

#[test]
fn an_incomplete_store_asks_for_zero_whatever_its_index() {
    let p = Policy::default_policy();
    let plan = p.on_connect(FollowerState::opened(5_000, false));
    assert_eq!(plan.start_index, 0);
}

#[test]
fn a_complete_store_resumes_from_its_index_and_stays_ready() {
    let p = Policy::default_policy();
    let mut s = complete_at(77);
    s.ready = true;
    s.phase = FollowerPhase::Streaming;
    let plan = p.on_connect(s);
    assert_eq!(plan.start_index, 77);
    assert_eq!(plan.state.phase, FollowerPhase::Awaiting);
    assert!(plan.state.ready);
}

#[test]
fn forced_full_sync_asks_for_zero() {
    let p = Policy::default_policy();
    let mut s = complete_at(77);
    s.force_full_sync = true;
    assert_eq!(p.on_connect(s).start_index, 0);
}

#[test]
fn an_error_header_changes_nothing_and_reconnects() {
    let p = Policy::default_policy();
    for phase in [
        FollowerPhase::Awaiting,
        FollowerPhase::Snapshot,
        FollowerPhase::Streaming,
    ] {
        let mut s = complete_at(9);
        s.phase = phase;
        let d = p.on_frame(s, FrameHeader::plain(true, 0, 3));
        assert_eq!(d.state, s);
        assert_eq!(d.kind, FrameKind::Error);
        assert_eq!(d.reconnect, Some(ReconnectReason::ErrorHeader));
        assert_eq!(d.apply_from, None);
        assert!(!d.reset_store);
        assert_eq!(d.claim_index, None);
    }
}

#[test]
fn full_sync_resets_applies_and_claims_only_at_completion() {
    let p = Policy::default_policy();
    let s = p.on_connect(complete_at(40)).state;
    let d = p.on_frame(s, frame(0, 1_000));
    assert_eq!(d.kind, FrameKind::SnapshotStart);
    assert!(d.reset_store);
    assert_eq!(d.apply_from, Some(0));
    assert_eq!(d.claim_index, None);
    assert!(!d.record_history);
    assert!(!d.state.complete && !d.state.ready);

    let d = p.on_frame(d.state, frame(1_000, 10));
    assert_eq!(d.kind, FrameKind::SnapshotData);
    assert!(!d.reset_store);
    assert_eq!(d.apply_from, Some(0));
    assert_eq!(d.state.snapshot_regions, 1_010);
    assert_eq!(d.claim_index, None);
    assert_eq!(
        d.state.next_index, 0,
        "snapshot frames do not move the index"
    );

    // A catch-up frame carries a record index; still just data.
    let d = p.on_frame(d.state, frame(500, 2));
    assert_eq!(d.kind, FrameKind::SnapshotData);
    assert!(!d.state.ready);

    let d = p.on_frame(d.state, frame(502, 0));
    assert_eq!(d.kind, FrameKind::Completion);
    assert_eq!(d.claim_index, Some(502));
    assert_eq!(d.state.next_index, 502);
    assert!(d.state.complete && d.state.ready);
    assert_eq!(d.state.phase, FollowerPhase::Streaming);
}

#[test]
fn an_empty_snapshot_is_one_empty_frame_then_completion() {
    let p = Policy::default_policy();
    let s = p.on_connect(FollowerState::opened(0, false)).state;
    let d = p.on_frame(s, frame(0, 0));
    assert_eq!(d.kind, FrameKind::SnapshotStart);
    assert!(d.reset_store);
    assert_eq!(d.apply_from, None);
    let d = p.on_frame(d.state, frame(1, 0));
    assert_eq!(d.kind, FrameKind::Completion);
    assert_eq!(d.claim_index, Some(1));
}

#[test]
fn up_to_date_makes_a_complete_follower_ready() {
    let p = Policy::default_policy();
    let s = p.on_connect(complete_at(50)).state;
    assert!(!s.ready);
    let d = p.on_frame(s, frame(50, 0));
    assert_eq!(d.kind, FrameKind::Keepalive);
    assert!(d.state.ready);
    assert_eq!(d.claim_index, None);
    assert_eq!(d.reconnect, None);
}

#[test]
fn history_applies_records_and_advances_the_index() {
    let p = Policy::default_policy();
    let s = p.on_connect(complete_at(50)).state;
    let d = p.on_frame(s, frame(50, 1_000));
    assert_eq!(d.kind, FrameKind::History);
    assert_eq!(d.apply_from, Some(0));
    assert!(d.record_history);
    assert_eq!(d.claim_index, Some(1_050));
    assert_eq!(d.state.next_index, 1_050);
    assert!(!d.state.ready, "not ready until the replay catches up");
    let d = p.on_frame(d.state, frame(1_050, 0));
    assert!(d.state.ready);
}

#[test]
fn overlapping_records_apply_only_the_new_tail() {
    let p = Policy::default_policy();
    let mut s = complete_at(60);
    s.phase = FollowerPhase::Streaming;
    let d = p.on_frame(s, frame(55, 10));
    assert_eq!(d.apply_from, Some(5));
    assert_eq!(d.claim_index, Some(65));
    let d = p.on_frame(s, frame(50, 10));
    assert_eq!(d.kind, FrameKind::Duplicate);
    assert_eq!(d.apply_from, None);
    assert_eq!(d.state, s);
}

#[test]
fn a_gap_reconnects_from_the_same_index_under_default() {
    let p = Policy::default_policy();
    let mut s = complete_at(60);
    s.phase = FollowerPhase::Streaming;
    let d = p.on_frame(s, frame(70, 1));
    assert_eq!(d.reconnect, Some(ReconnectReason::Gap));
    assert_eq!(d.apply_from, None);
    assert!(!d.state.force_full_sync);
    assert_eq!(p.on_connect(d.state).start_index, 60);
    let d = p.on_frame(s, frame(70, 0));
    assert_eq!(d.reconnect, Some(ReconnectReason::Gap));
    let d = p.on_frame(s, frame(20, 0));
    assert_eq!(d.reconnect, Some(ReconnectReason::UnexpectedFrame));
}

#[test]
fn a_gap_means_full_sync_under_conservative() {
    let p = Policy::conservative();
    let mut s = complete_at(60);
    s.phase = FollowerPhase::Streaming;
    let d = p.on_frame(s, frame(70, 1));
    assert_eq!(d.reconnect, Some(ReconnectReason::Gap));
    assert!(d.state.force_full_sync);
    assert_eq!(p.on_connect(d.state).start_index, 0);
    let d = p.on_frame(s, frame(55, 10));
    assert_eq!(d.reconnect, Some(ReconnectReason::UnexpectedFrame));
    assert!(d.state.force_full_sync);
}

#[test]
fn records_for_an_incomplete_store_force_a_full_sync() {
    let p = Policy::default_policy();
    let mut s = FollowerState::opened(60, false);
    s.phase = FollowerPhase::Streaming;
    let d = p.on_frame(s, frame(60, 3));
    assert_eq!(d.apply_from, None);
    assert_eq!(d.reconnect, Some(ReconnectReason::UnexpectedFrame));
    assert_eq!(p.on_connect(d.state).start_index, 0);
}

#[test]
fn an_index_overflow_is_unexpected_not_a_panic() {
    let p = Policy::default_policy();
    let mut s = complete_at(u64::MAX - 1);
    s.phase = FollowerPhase::Streaming;
    let d = p.on_frame(s, frame(u64::MAX - 1, 5));
    assert_eq!(d.reconnect, Some(ReconnectReason::UnexpectedFrame));
}

#[test]
fn admission_and_limits_differ_between_policies() {
    let d = Policy::default_policy();
    let c = Policy::conservative();
    assert!(d.admit_full_sync(3) && !d.admit_full_sync(4));
    assert!(c.admit_full_sync(0) && !c.admit_full_sync(1));
    assert_eq!(d.limits().max_regions, 1_000);
    assert!(c.limits().max_regions < d.limits().max_regions);
}

#[test]
fn a_delta_keeps_the_store_marks_it_resumable_and_claims_only_at_completion() {
    let p = Policy::default_policy();
    let plan = p.on_connect(complete_at(40));
    assert!(plan.ask_delta && plan.ask_verify);
    assert_eq!(plan.start_index, 40);
    let d = p.on_frame(plan.state, delta_frame(40, 700, DigestCheck::Absent));
    assert_eq!(d.kind, FrameKind::DeltaStart);
    assert!(d.begin_delta && !d.reset_store);
    assert_eq!(d.apply_from, Some(0));
    assert!(!d.record_history);
    assert_eq!(d.claim_index, None);
    assert_eq!(d.state.phase, FollowerPhase::Delta);
    assert_eq!(
        d.state.next_index, 40,
        "a delta keeps its base until completion"
    );
    assert!(d.state.resumable && !d.state.complete && !d.state.ready);

    let d = p.on_frame(d.state, delta_frame(40, 20, DigestCheck::Absent));
    assert_eq!(d.kind, FrameKind::DeltaData);
    assert_eq!(d.apply_from, Some(0));
    let d = p.on_frame(d.state, delta_frame(900, 0, DigestCheck::Matched));
    assert_eq!(d.kind, FrameKind::Completion);
    assert_eq!(d.claim_index, Some(900));
    assert!(d.state.complete && d.state.ready && !d.state.resumable);
}

#[test]
fn a_store_part_way_through_a_delta_asks_to_finish_it() {
    let p = Policy::default_policy();
    let s = resumable_at(40);
    let plan = p.on_connect(s);
    assert_eq!(plan.start_index, 40);
    assert!(plan.ask_delta);
    // Conservative takes no deltas: the partial set can only be replaced.
    assert_eq!(Policy::conservative().on_connect(s).start_index, 0);
    // A delta offered to a store with no index to add to is refused.
    let d = p.on_frame(
        FollowerState::opened(40, false),
        delta_frame(40, 3, DigestCheck::Absent),
    );
    assert_eq!(d.kind, FrameKind::Unexpected);
    assert!(d.state.force_full_sync);
}

#[test]
fn a_completion_whose_digest_differs_clears_the_store_and_asks_for_a_full_sync() {
    let p = Policy::default_policy();
    for before in [FollowerPhase::Snapshot, FollowerPhase::Delta] {
        let mut s = FollowerState::opened(0, false);
        s.phase = before;
        s.resumable = before == FollowerPhase::Delta;
        let d = p.on_frame(s, delta_frame(500, 0, DigestCheck::Mismatched));
        assert_eq!(d.kind, FrameKind::VerifyFailed);
        assert!(d.reset_store);
        assert_eq!(d.claim_index, None);
        assert_eq!(d.reconnect, Some(ReconnectReason::VerifyFailed));
        assert!(!d.state.ready && !d.state.complete && d.state.force_full_sync);
        assert_eq!(p.on_connect(d.state).start_index, 0);
    }
}

/// Issue #30 item 6: for a store part-way through a delta, an empty first
/// delta frame is the completion (nothing changed since its base); it must
/// not open a delta phase whose completion the next keepalive, which
/// carries no digest, would then claim unverified.
#[test]
fn an_empty_first_delta_frame_completes_a_resumable_store_too() {
    let p = Policy::default_policy();
    let plan = p.on_connect(resumable_at(40));
    let d = p.on_frame(plan.state, delta_frame(40, 0, DigestCheck::Matched));
    assert_eq!(d.kind, FrameKind::Completion);
    assert_eq!(d.claim_index, Some(40));
    assert!(d.state.complete && d.state.ready && !d.state.resumable);
    // And a digest that differs refuses it, as for a complete store.
    let d = p.on_frame(plan.state, delta_frame(40, 0, DigestCheck::Mismatched));
    assert_eq!(d.kind, FrameKind::VerifyFailed);
    assert_eq!(d.claim_index, None);
}
