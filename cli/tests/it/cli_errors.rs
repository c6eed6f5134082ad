//! Errors a user meets with the `regionsync` binary: one line on stderr and
//! a non-zero exit, each saying what to fix.

use std::net::TcpListener;

use crate::common::*;

#[test]
fn errors_a_user_meets_are_one_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let data = dir.path().join("d");
    let data = data.to_str().unwrap();

    let err = one_line_failure(&["leader", "--listen", &busy_addr, "--data-dir", data]);
    assert!(
        err.contains("cannot listen on") && err.contains("in use"),
        "{err}"
    );

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = one_line_failure(&[
        "leader",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        file.to_str().unwrap(),
    ]);
    assert!(err.contains("is a file"), "{err}");

    let [port] = free_ports();
    let dead = format!("http://127.0.0.1:{port}");
    let err = one_line_failure(&[
        "follower",
        "--leader",
        &dead,
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
    ]);
    assert!(err.contains("does not answer"), "{err}");
    let err = one_line_failure(&["load", "--leader", &dead, "--regions", "10"]);
    assert!(err.contains("does not answer"), "{err}");

    let not_wasm = dir.path().join("policy.wasm");
    std::fs::write(&not_wasm, b"hello").unwrap();
    let err = one_line_failure(&[
        "leader",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--policy",
        not_wasm.to_str().unwrap(),
    ]);
    assert!(err.contains("not a valid WebAssembly component"), "{err}");

    let [port] = free_ports();
    let err = one_line_failure(&["status", "--admin", &format!("127.0.0.1:{port}")]);
    assert!(err.contains("cannot reach"), "{err}");

    // Admin and allow-list settings that cannot be used stop the start.
    let node = ["leader", "--listen", "127.0.0.1:0", "--data-dir", data];
    let missing = dir.path().join("no-such-token");
    let err = one_line_failure(
        &[
            &node[..],
            &[
                "--admin",
                "0",
                "--admin-token-file",
                missing.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert!(err.contains("cannot read the admin token file"), "{err}");
    let err = one_line_failure(&[&node[..], &["--policy-allow", "abc"]].concat());
    assert!(err.contains("is not a SHA-256 digest"), "{err}");
    let err = one_line_failure(
        &[
            &node[..],
            &[
                "--policy",
                not_wasm.to_str().unwrap(),
                "--policy-allow",
                &"0".repeat(64),
            ],
        ]
        .concat(),
    );
    assert!(err.contains("not on this node's allow-list"), "{err}");
    // TLS settings that cannot be used.
    let err = one_line_failure(&[&node[..], &["--tls-cert", "/no/such/cert.pem"]].concat());
    assert!(
        err.contains("--tls-cert and --tls-key go together"),
        "{err}"
    );
    let err = one_line_failure(
        &[
            &node[..],
            &[
                "--tls-cert",
                "/no/such/cert.pem",
                "--tls-key",
                "/no/such/key.pem",
            ],
        ]
        .concat(),
    );
    assert!(
        err.contains("cannot read the TLS certificate file"),
        "{err}"
    );
    let err = one_line_failure(
        &[
            &node[..],
            &[
                "--tls-cert",
                not_wasm.to_str().unwrap(),
                "--tls-key",
                not_wasm.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert!(err.contains("holds no PEM CERTIFICATE"), "{err}");

    // The same list from the config file.
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[leader]\npolicy = {:?}\npolicy-allow = [{:?}, {:?}]\n",
            not_wasm.to_str().unwrap(),
            "1".repeat(64),
            "2".repeat(64)
        ),
    )
    .unwrap();
    let err = one_line_failure(&[&node[..], &["--config", config.to_str().unwrap()]].concat());
    assert!(
        err.contains("not on this node's allow-list (2 allowed"),
        "{err}"
    );
}
