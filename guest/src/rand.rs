//! A small seeded generator (xorshift64*) for the workloads' random choices: the
//! run's `--seed` reproduces them.

pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`, distinct per `stream` (e.g. the CPU).
    pub fn new(seed: u64, stream: u64) -> Self {
        let s = seed ^ stream.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Rng(if s == 0 { 0x2545_f491_4f6c_dd1d } else { s })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as u32
    }
}
