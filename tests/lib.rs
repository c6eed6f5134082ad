//! Helpers shared by the integration tests.

/// SplitMix64: a seeded, dependency-free source of test inputs, so that a
/// failing case can be replayed from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n) (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
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
