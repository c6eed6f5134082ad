//! Property-based fuzzing (proptest, stable Rust) of every input a node
//! takes from outside: frames a follower receives, heartbeats a leader
//! takes, and requests to the admin interface, each as structured values
//! (near the edges the code decides on) and as arbitrary bytes. Properties:
//! nothing panics; an input that is refused changes nothing (the size limit
//! and unknown fields are `wire_limits.rs`); after a crash a follower's
//! store holds a state the follower held. Each test prints its case count;
//! a failure prints proptest's minimal input and its seed
//! (`PROPTEST_CASES`/`PROPTEST_RNG_SEED` replay and widen a run).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message;
use regionsync::follower::{FollowerConfig, FollowerShared};
use regionsync::policy_runtime::AnnouncedSync;
use regionsync_harness::cluster::{converged, follower_config, start_follower};
use regionsync_harness::cluster::{leader_config, start_leader};
use regionsync_harness::load;
use regionsync_proto::metapb::{Peer, Region, RegionEpoch};
use regionsync_proto::pdpb::{
    self, ErrorType, RegionHeartbeatRequest, RequestHeader, ResponseHeader, SyncRegionResponse,
};

fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Regions near the edges: few ids (so they collide), short keys from a
/// small alphabet (so ranges overlap, touch and invert), any epoch.
fn region() -> impl Strategy<Value = Region> {
    let key = proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), any::<u8>()], 0..4);
    (
        0u64..40,
        key.clone(),
        key,
        0u64..4,
        0u64..4,
        proptest::collection::vec((0u64..100, 0u64..5), 0..4),
    )
        .prop_map(|(id, start, end, conf_ver, version, peers)| Region {
            id,
            start_key: start,
            end_key: end,
            region_epoch: (conf_ver + version > 0).then_some(RegionEpoch { conf_ver, version }),
            peers: peers
                .into_iter()
                .map(|(id, store_id)| Peer {
                    id,
                    store_id,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
}

#[derive(Debug, Clone)]
struct Frame {
    frame: SyncRegionResponse,
    announced: AnnouncedSync,
    /// The follower must leave it alone (error header, other cluster).
    refused: bool,
}

const CLUSTER: u64 = 7;

fn frame() -> impl Strategy<Value = Frame> {
    (
        prop_oneof![Just(0u8), Just(0), Just(0), Just(1), Just(2)],
        prop_oneof![Just(0u64), 1u64..8, any::<u64>()],
        proptest::collection::vec(region(), 0..6),
        0usize..8,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        0usize..4,
    )
        .prop_map(
            |(trouble, start_index, regions, leaders, digest, announced)| {
                let header = match trouble {
                    1 => ResponseHeader {
                        cluster_id: CLUSTER,
                        error: Some(pdpb::Error {
                            r#type: ErrorType::Unknown as i32,
                            message: "fuzzed".into(),
                        }),
                    },
                    2 => ResponseHeader {
                        cluster_id: CLUSTER + 1,
                        error: None,
                    },
                    _ => ResponseHeader {
                        cluster_id: CLUSTER,
                        error: None,
                    },
                };
                // Leaders sometimes as many as the regions, sometimes not.
                let region_leaders = (0..leaders)
                    .map(|i| Peer {
                        id: i as u64,
                        store_id: 1,
                        ..Default::default()
                    })
                    .collect();
                Frame {
                    frame: SyncRegionResponse {
                        header: Some(header),
                        regions,
                        start_index,
                        region_leaders,
                        regionsync_digest: digest.unwrap_or_default(),
                        ..Default::default()
                    },
                    announced: AnnouncedSync::ALL[announced],
                    refused: trouble != 0,
                }
            },
        )
}

/// Frames at random, or a well-formed full sync and then frames at random:
/// half the cases reach a complete store, which the crash check is for.
fn frames() -> impl Strategy<Value = Vec<Frame>> {
    let synced = (
        proptest::collection::vec(region(), 1..6),
        1u64..50,
        proptest::collection::vec(frame(), 0..10),
    )
        .prop_map(|(regions, at, rest)| {
            let ok = |start_index, regions| Frame {
                frame: SyncRegionResponse {
                    header: Some(ResponseHeader {
                        cluster_id: CLUSTER,
                        error: None,
                    }),
                    regions,
                    start_index,
                    ..Default::default()
                },
                announced: AnnouncedSync::Full,
                refused: false,
            };
            let mut v = vec![ok(0, regions), ok(at, Vec::new())];
            v.extend(rest);
            v
        });
    prop_oneof![proptest::collection::vec(frame(), 1..14), synced]
}

/// What a refused input must leave as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    digest: String,
    next_index: u64,
    regions: u64,
    ready: bool,
    complete: bool,
}

fn seen(f: &FollowerShared) -> Seen {
    let st = f.status();
    let state = f.state();
    Seen {
        digest: st.digest,
        next_index: state.next_index,
        regions: st.regions,
        ready: st.ready,
        complete: state.complete,
    }
}

fn policy() -> Arc<regionsync::policy_runtime::PolicyRuntime> {
    Arc::new(regionsync::policy_runtime::PolicyRuntime::with_default().unwrap())
}

#[test]
fn follower_frames_never_panic_and_refused_frames_change_nothing() {
    let policy = policy();
    let mut runner = TestRunner::new(cases(256));
    let frames_fed = std::cell::Cell::new(0u64);
    // Cases whose crash check compared a complete store (the property the
    // test is for), not only "incomplete stays incomplete".
    let judged_complete = std::cell::Cell::new(0u32);
    runner
        .run(&(frames(), any::<bool>()), |(frames, behind)| {
            let dir = tempfile::tempdir().unwrap();
            let mut config = FollowerConfig::new("http://127.0.0.1:1", Some(dir.path().into()));
            config.cluster_id = Some(CLUSTER);
            // Zero: every history frame is durable before the next.
            // Otherwise history is written behind the apply.
            config.durable_every = if behind {
                Duration::from_secs(3600)
            } else {
                Duration::ZERO
            };
            let f = FollowerShared::open_detached(config.clone(), policy.clone()).unwrap();
            let mut plan = f.begin_stream();
            // Every complete state the follower held, from its start.
            let mut held = vec![seen(&f)];
            for Frame {
                frame,
                announced,
                refused,
            } in frames
            {
                frames_fed.set(frames_fed.get() + 1);
                let before = seen(&f);
                let ended = f.receive(frame, plan.start_index, announced).unwrap();
                let after = seen(&f);
                if refused {
                    prop_assert_eq!(&before, &after, "a refused frame changed the follower");
                }
                prop_assert!(
                    !after.ready || after.complete,
                    "ready on an incomplete store"
                );
                if after.complete {
                    held.push(after.clone());
                }
                if ended.is_some() {
                    plan = f.begin_stream();
                }
            }
            // A crash here: the store holds what the cache holds, or
            // (written behind) a complete state the follower held.
            let last = seen(&f);
            f.close_storage();
            drop(f);
            let again = FollowerShared::open_detached(config, policy.clone()).unwrap();
            let reopened = seen(&again);
            let key = |s: &Seen| (s.digest.clone(), s.next_index, s.regions);
            // Only writes made in line mark the store complete or not.
            prop_assert_eq!(reopened.complete, last.complete);
            if !behind {
                if last.complete {
                    judged_complete.set(judged_complete.get() + 1);
                    prop_assert_eq!(key(&reopened), key(&last));
                }
            } else if reopened.complete {
                judged_complete.set(judged_complete.get() + 1);
                prop_assert!(
                    held.iter().any(|h| h.complete && key(h) == key(&reopened)),
                    "the store claims {:?}, which the follower never held",
                    key(&reopened)
                );
            }
            Ok(())
        })
        .unwrap();
    let cases = runner.config().cases;
    println!(
        "follower frames: {cases} cases, {} frames, {} crash checks of a complete store",
        frames_fed.get(),
        judged_complete.get()
    );
    // The generator must reach complete stores often, or the crash
    // property says little.
    assert!(
        judged_complete.get() * 5 >= cases,
        "only {} of {cases} cases ended with a complete store to check",
        judged_complete.get()
    );
}

/// Heartbeats near the edges, or a well-formed one's bytes changed.
fn heartbeat() -> impl Strategy<Value = RegionHeartbeatRequest> {
    let structured = (proptest::option::of(region()), any::<bool>(), 0u64..4)
        .prop_map(|(region, leader, cluster)| RegionHeartbeatRequest {
            header: Some(RequestHeader {
                cluster_id: if cluster == 0 { CLUSTER + 1 } else { CLUSTER },
                ..Default::default()
            }),
            leader: region
                .as_ref()
                .and_then(|r| r.peers.first().copied())
                .filter(|_| leader),
            region,
            ..Default::default()
        })
        .boxed();
    // A well-formed heartbeat's bytes with a few of them changed, kept when
    // they still decode: random bytes alone mostly decode to an empty
    // heartbeat, which only ever tests one refusal.
    let bytes = (
        structured.clone(),
        proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..5),
    )
        .prop_filter_map("the changed bytes still decode", |(hb, flips)| {
            let mut b = hb.encode_to_vec();
            if b.is_empty() {
                return None;
            }
            for (at, x) in flips {
                let i = at.index(b.len());
                b[i] ^= x;
            }
            let mut hb = RegionHeartbeatRequest::decode(b.as_slice()).ok()?;
            hb.header = Some(RequestHeader {
                cluster_id: CLUSTER,
                ..Default::default()
            });
            Some(hb)
        });
    prop_oneof![3 => structured, 1 => bytes]
}

#[test]
fn heartbeat_intake_never_panics_refusals_change_nothing_and_what_it_takes_replicates() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ldir = tempfile::tempdir().unwrap();
    let leader = rt.block_on(start_leader(leader_config(ldir.path())));
    let client = rt.block_on(load::connect(&leader.url())).unwrap();
    let shared = leader.shared().clone();
    let state = || {
        let held = shared.held(None);
        (held.digest.hex(), held.next_index)
    };
    let counted = || {
        let s = &shared.stats();
        s.heartbeats.load(Ordering::Relaxed) + s.refused.load(Ordering::Relaxed)
    };
    let mut runner = TestRunner::new(cases(300));
    let (taken, refused) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    runner
        .run(&heartbeat(), |hb| {
            let before = state();
            let count = counted();
            let sent = rt.block_on(load::send(&mut client.clone(), vec![hb], 0));
            match sent {
                Err(_) => {
                    refused.set(refused.get() + 1);
                    prop_assert_eq!(&state(), &before, "a refused heartbeat changed the leader");
                }
                Ok(()) => {
                    taken.set(taken.get() + 1);
                    let deadline = std::time::Instant::now() + Duration::from_secs(10);
                    let processed = rt.block_on(async {
                        while counted() == count {
                            if std::time::Instant::now() > deadline {
                                return false;
                            }
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        true
                    });
                    prop_assert!(processed, "a heartbeat the leader took was never processed");
                }
            }
            Ok::<(), TestCaseError>(())
        })
        .unwrap();
    let (taken, refused) = (taken.get(), refused.get());
    println!(
        "heartbeats: {} cases, {taken} taken, {refused} refused",
        runner.config().cases
    );
    assert!(
        taken > 0 && refused > 0,
        "the inputs must reach both outcomes"
    );
    // Whatever the leader took, a follower gets exactly.
    rt.block_on(async {
        let f = start_follower(follower_config(&leader, None)).await;
        converged(&leader, &f).await;
        f.shutdown().await;
        leader.shutdown().await;
    });
}

#[test]
fn admin_inputs_never_panic_and_refused_requests_change_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ldir = tempfile::tempdir().unwrap();
    let leader = rt.block_on(start_leader(leader_config(ldir.path())));
    let (addr, _task) = rt
        .block_on(regionsync::admin::spawn(
            "127.0.0.1:0",
            leader.shared().clone(),
            regionsync::admin::AdminAccess::with_token("right"),
        ))
        .unwrap();
    let addr = addr.to_string();
    let methods = prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE")];
    let paths = prop_oneof![
        Just("/status".to_string()),
        Just("/metrics".to_string()),
        Just("/policy".to_string()),
        "/[a-z%./]{0,12}".prop_map(|p| p),
    ];
    let tokens = prop_oneof![Just(None), Just(Some("right")), Just(Some("wrong"))];
    let bodies = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        proptest::collection::vec(any::<u8>(), 0..256).prop_map(|mut b| {
            // A component's header, then garbage.
            let mut c = b"\0asm\x0d\0\x01\0".to_vec();
            c.append(&mut b);
            c
        }),
    ];
    let raw = proptest::collection::vec(any::<u8>(), 0..512);
    let mut runner = TestRunner::new(cases(300));
    let codes = std::cell::RefCell::new(std::collections::BTreeMap::new());
    runner
        .run(
            &(methods, paths, tokens, bodies, raw),
            |(method, path, token, body, raw)| {
                let name = leader.shared().policy().info().name;
                let answer = rt.block_on(regionsync_harness::admin_client::request(
                    &addr, method, &path, &body, token,
                ));
                // Malformed HTTP too: the server must survive it.
                rt.block_on(async {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    if let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await {
                        let _ = s.write_all(&raw).await;
                        let _ = s.shutdown().await;
                        let mut sink = Vec::new();
                        let _ =
                            tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut sink))
                                .await;
                    }
                });
                let (code, _) = answer.map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
                *codes.borrow_mut().entry(code).or_insert(0u32) += 1;
                prop_assert!(code < 500, "{method} {path} answered {code}");
                prop_assert_eq!(
                    leader.shared().policy().info().name,
                    name,
                    "the policy changed"
                );
                Ok(())
            },
        )
        .unwrap();
    println!(
        "admin requests: {} cases, answers {:?}",
        runner.config().cases,
        codes.borrow()
    );
    // Status still answers after all of it.
    let (code, _) = rt
        .block_on(regionsync_harness::admin_client::request(
            &addr,
            "GET",
            "/status",
            &[],
            None,
        ))
        .unwrap();
    assert_eq!(code, 200);
    rt.block_on(leader.shutdown());
}
