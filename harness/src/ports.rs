//! Free loopback ports for nodes a harness starts as processes (the HA
//! cluster, the benches' process scenarios, the CLI tests). A port is found
//! by binding port 0 and letting it go, for the process to bind again.

use anyhow::Context;

/// `n` distinct ports free on loopback now. All are held until all are
/// picked: one at a time, a port just let go can be handed out again at
/// once, and two nodes (or a node and a proxy) given one port is a node
/// that cannot start.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}
