//! A tiny deterministic PRNG (splitmix64), keyed so that any record can be regenerated alone.
//!
//! Why not an RNG crate: the feeds must be byte-identical across versions and platforms, so
//! the generator owns its arithmetic (integers only, no floats) and has no dependency whose
//! output could change under it.

/// One splitmix64 finalisation step: a bijective, well-mixing hash of a 64-bit word.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a string: turns a carrier id into a key component.
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Independent random streams per purpose, so that adding a draw to one (say, claims) never
/// shifts the values of another (policies).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Policy = 1,
    ChangeBlock = 2,
    Change = 3,
    Claim = 4,
    /// Which coverages a policy lists and their limits.
    Coverage = 5,
    /// Presentation choices that do not change the record (the bordereau sheet a row is on).
    Layout = 6,
}

#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// The stream for one record: hash(seed, carrier, purpose, extra, index).
    pub(crate) fn keyed(seed: u64, carrier: u64, stream: Stream, extra: u64, index: u64) -> Self {
        let mut h = mix(seed);
        for part in [carrier, stream as u64, extra, index] {
            h = mix(h ^ part);
        }
        Self(h)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for our `n`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// True with probability `per_mille / 1000`.
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Index of an item drawn with the given integer weights.
    pub(crate) fn weighted(&mut self, weights: impl Iterator<Item = u32> + Clone) -> usize {
        let total: u64 = weights.clone().map(u64::from).sum();
        let mut ticket = self.below(total);
        for (i, w) in weights.enumerate() {
            let w = u64::from(w);
            if ticket < w {
                return i;
            }
            ticket -= w;
        }
        unreachable!("ticket is below the total weight")
    }

    /// In `lo..=hi`, skewed towards `lo` like real premium and loss distributions (many small,
    /// few large): `lo + (hi - lo) * u1 * u2` for two uniforms, in integer arithmetic.
    pub(crate) fn skewed(&mut self, lo: i64, hi: i64) -> i64 {
        const ONE: u128 = 1 << 24;
        let u1 = u128::from(self.below(ONE as u64));
        let u2 = u128::from(self.below(ONE as u64));
        let span = (hi - lo) as u128;
        lo + ((span * u1 * u2) / (ONE * ONE)) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::keyed(7, 1, Stream::Policy, 0, 42))
            .map(|mut r| r.next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut other = Rng::keyed(7, 1, Stream::Policy, 0, 43);
        assert_ne!(a[0], other.next_u64());
        let mut claim = Rng::keyed(7, 1, Stream::Claim, 0, 42);
        assert_ne!(a[0], claim.next_u64());
    }

    #[test]
    fn draws_stay_in_range() {
        let mut r = Rng::keyed(1, 2, Stream::Policy, 0, 3);
        for _ in 0..10_000 {
            assert!(r.below(7) < 7);
            let b = r.between(-3, 3);
            assert!((-3..=3).contains(&b));
            let s = r.skewed(100, 200);
            assert!((100..=200).contains(&s));
            assert!(r.weighted([0u32, 5, 0].into_iter()) == 1);
        }
    }
}
