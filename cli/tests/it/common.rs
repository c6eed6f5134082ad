//! Helpers for the tests that run the `regionsync` binary as processes.
#![allow(dead_code)] // each test file uses its own share of them

use std::process::{Command, Output};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_regionsync");

pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// A failed command: non-zero, and one line on stderr without a backtrace.
pub fn one_line_failure(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line:\n{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    err
}

/// `N` distinct free loopback ports (`regionsync_harness::ports`).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let ports = regionsync_harness::ports::free_ports(N).expect("free loopback ports");
    ports.try_into().expect("as many ports as asked for")
}

/// A node process, killed when dropped.
pub use regionsync_harness::process::KillOnDrop as Node;

pub fn spawn(args: &[&str]) -> Node {
    Node::spawn(std::path::Path::new(BIN), args, "warn").unwrap()
}

pub fn status(admin: &str) -> serde_json::Value {
    let out = run(&["status", "--admin", admin]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    regionsync_harness::eventually::eventually_blocking(what, Duration::from_secs(30), cond);
}

pub fn admin_up(admin: &str) -> bool {
    std::net::TcpStream::connect(admin).is_ok()
}

/// A plain HTTP GET of `path` on `addr`: the whole response, head and body.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}
