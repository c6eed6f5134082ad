//! What the integration tests share beyond `regionsync-harness`: seeded
//! inputs, the fixture components, the built binary, and the fault
//! scenarios (also driven by the kill points).

use regionsync_guest::splitmix::SplitMix64;

/// A seeded source of test inputs (the guest's SplitMix64), so that a
/// failing case can be replayed from its seed.
pub struct Rng(SplitMix64);

impl Rng {
    /// The inputs for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }

    /// The next word.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, n) (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// A value that often sits on or next to one of `anchors` (where the
    /// decisions change), sometimes anywhere.
    pub fn near(&mut self, anchors: &[u64]) -> u64 {
        match self.below(4) {
            0 => self.next_u64() >> self.below(64),
            _ => {
                let a = anchors[self.below(anchors.len() as u64) as usize];
                let delta = self.below(5) as i64 - 2;
                a.saturating_add_signed(delta)
            }
        }
    }
}

/// A test fixture component built by `build.rs` from `fixtures/`
/// (`hostile_*`, `other_contract`).
pub fn fixture(stem: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("REGIONSYNC_FIXTURE_DIR")).join(format!("policy_{stem}.wasm"))
}

/// The release `regionsync` binary beside this test (`cargo test
/// --workspace --release` builds it before any test runs).
pub fn regionsync_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .join("regionsync");
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build --release -p regionsync-cli` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

pub mod faults;
