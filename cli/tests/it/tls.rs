//! TLS and mutual TLS on real loopback connections, with certificates made
//! for the test (rcgen): a follower with a certificate from the cluster's CA
//! syncs; one without a client certificate, or with one from another CA, is
//! refused; a plain-text client is refused. The same as processes, with the
//! leader's certificates set in its config file and the others' by flags.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{self, BIN, spawn};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use regionsync::follower::FollowerConfig;
use regionsync::leader::LeaderConfig;
use regionsync::policy_runtime::PolicyRuntime;
use regionsync::role::{RunningFollower, RunningLeader};
use regionsync::tls::{Tls, TlsFiles};
use regionsync_harness::load;
use regionsync_proto::metapb::{Peer, Region, RegionEpoch};
use regionsync_proto::pdpb::{GetMembersRequest, RegionHeartbeatRequest, RequestHeader};

/// A CA, and certificates it signs, written as PEM files under `dir`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        Ca { issuer, dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// (cert, key) files for `name`, valid for loopback.
    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn tls(&self, name: &str) -> Tls {
        let (cert, key) = self.issue(name);
        Tls::load(&TlsFiles {
            cert: Some(cert),
            key: Some(key),
            ca: Some(self.ca()),
        })
        .unwrap()
        .unwrap()
    }
}

fn policy() -> Arc<PolicyRuntime> {
    Arc::new(PolicyRuntime::with_default().unwrap())
}

fn heartbeats(cluster_id: u64, n: u64) -> Vec<RegionHeartbeatRequest> {
    (0..n)
        .map(|i| {
            let key = |i: u64| format!("k{i:06}").into_bytes();
            let region = Region {
                id: i + 1,
                start_key: key(i),
                end_key: if i + 1 == n { Vec::new() } else { key(i + 1) },
                region_epoch: Some(RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                }),
                peers: vec![Peer {
                    id: 100 + i,
                    store_id: 1,
                    ..Default::default()
                }],
                ..Default::default()
            };
            RegionHeartbeatRequest {
                header: Some(RequestHeader {
                    cluster_id,
                    ..Default::default()
                }),
                leader: region.peers.first().copied(),
                region: Some(region),
                ..Default::default()
            }
        })
        .collect()
}

async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    regionsync_harness::eventually::eventually(what, Duration::from_secs(30), cond).await;
}

async fn follower(leader: &str, tls: Option<Tls>, name: &str) -> RunningFollower {
    let mut config = FollowerConfig::new(leader, None);
    config.name = name.into();
    config.tls = tls;
    config.connect_timeout = Duration::from_secs(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    RunningFollower::start(config, policy(), listener)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_the_clusters_certificates_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    let rogue = Ca::new(dir.path(), "rogue");

    let mut lc = LeaderConfig::new(dir.path().join("leader"));
    lc.cluster_id = Some(7);
    lc.tls = Some(ca.tls("leader"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let leader = RunningLeader::start(lc, policy(), listener).await.unwrap();
    let url = leader.url();
    assert!(url.starts_with("https://"), "{url}");

    // A client with the cluster's certificate feeds it.
    let client_tls = ca.tls("loader");
    let mut client = load::connect_with(&url, Some(&client_tls)).await.unwrap();
    load::send(&mut client, heartbeats(7, 500), 0)
        .await
        .unwrap();

    // A follower with the cluster's certificate syncs over mutual TLS.
    let good = follower(&url, Some(ca.tls("f-good")), "f-good").await;
    let (l, f) = (leader.shared().clone(), good.shared().clone());
    eventually("the follower with a valid certificate to sync", || {
        let st = f.status();
        st.ready && st.regions == 500 && st.digest == l.held(None).digest.hex()
    })
    .await;

    // Refused: no client certificate; a certificate from another CA; plain text.
    let ca_only = Tls::load(&TlsFiles {
        ca: Some(ca.ca()),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    let rogue_tls = {
        let (cert, key) = rogue.issue("intruder");
        Tls::load(&TlsFiles {
            cert: Some(cert),
            key: Some(key),
            ca: Some(ca.ca()),
        })
        .unwrap()
        .unwrap()
    };
    for (what, tls) in [
        ("no client certificate", Some(&ca_only)),
        ("another CA's certificate", Some(&rogue_tls)),
    ] {
        let refused = match load::connect_with(&url, tls).await {
            Err(_) => true,
            Ok(mut c) => c.get_members(GetMembersRequest::default()).await.is_err(),
        };
        assert!(refused, "a client with {what} was served");
    }
    let plain = url.replace("https://", "http://");
    let refused = match load::connect(&plain).await {
        Err(_) => true,
        Ok(mut c) => c.get_members(GetMembersRequest::default()).await.is_err(),
    };
    assert!(refused, "a plain-text client was served");

    let no_cert = follower(&url, Some(ca_only), "f-no-cert").await;
    let intruder = follower(&url, Some(rogue_tls), "f-intruder").await;
    // Each has tried, and been turned away, more than once.
    let deadline = Instant::now() + Duration::from_secs(20);
    for f in [&no_cert, &intruder] {
        while f.shared().stats().reconnect_counts().values().sum::<u64>() < 2 {
            assert!(
                Instant::now() < deadline,
                "{} never tried",
                f.shared().config().name
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for f in [&no_cert, &intruder] {
        let st = f.shared().status();
        assert!(
            !st.ready && st.regions == 0,
            "{} was served: {st:?}",
            st.name
        );
        let reconnects = f.shared().stats().reconnect_counts();
        assert!(
            reconnects.values().sum::<u64>() > 0,
            "{} never tried: {reconnects:?}",
            st.name
        );
    }
    assert_eq!(
        leader
            .shared()
            .status()
            .details
            .get("streams")
            .copied()
            .unwrap_or(0),
        1
    );
    for f in [no_cert, intruder, good] {
        f.shutdown().await;
    }
    leader.shutdown().await;
}

#[test]
fn tls_settings_in_the_config_file_and_by_flags_as_processes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    let [grpc, fadmin_port] = common::free_ports();
    let (lcert, lkey) = ca.issue("leader");
    let config = dir.path().join("leader.toml");
    std::fs::write(
        &config,
        format!(
            "[leader]\nlisten = \"127.0.0.1:{grpc}\"\ndata-dir = {:?}\ntls-cert = {:?}\ntls-key = {:?}\ntls-ca = {:?}\n",
            dir.path().join("ldata"),
            lcert,
            lkey,
            ca.ca()
        ),
    )
    .unwrap();
    let _leader = spawn(&["leader", "--config", config.to_str().unwrap()]);
    let url = format!("https://127.0.0.1:{grpc}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err() {
        assert!(Instant::now() < deadline, "the leader did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (fcert, fkey) = ca.issue("follower");
    let tls_flags = |cert: &Path, key: &Path| {
        vec![
            "--tls-cert".to_string(),
            cert.to_str().unwrap().to_string(),
            "--tls-key".to_string(),
            key.to_str().unwrap().to_string(),
            "--tls-ca".to_string(),
            ca.ca().to_str().unwrap().to_string(),
        ]
    };
    let mut load_args: Vec<String> = ["load", "--leader", &url, "--regions", "300"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    load_args.extend(tls_flags(&fcert, &fkey));
    let out = Command::new(BIN).args(&load_args).output().unwrap();
    assert!(
        out.status.success(),
        "load over mutual TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without a client certificate the load is refused, in one line.
    let out = Command::new(BIN)
        .args(["load", "--leader", &url, "--regions", "300", "--tls-ca"])
        .arg(ca.ca())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.trim().lines().count() == 1,
        "{err}"
    );

    let fadmin = format!("127.0.0.1:{fadmin_port}");
    let mut fargs: Vec<String> = [
        "follower",
        "--leader",
        &url,
        "--listen",
        "127.0.0.1:0",
        "--memory-only",
        "--admin",
        &fadmin,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    fargs.extend(tls_flags(&fcert, &fkey));
    let fargs: Vec<&str> = fargs.iter().map(String::as_str).collect();
    let _follower = spawn(&fargs);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(BIN)
            .args(["status", "--admin", &fadmin])
            .output()
            .unwrap();
        if out.status.success() {
            let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if st["ready"] == true && st["regions"] == 300 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the follower did not sync over mutual TLS"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
