//! Route-key hashing: foldhash (a well-kept, no_std, seeded hash) keyed by
//! [`Config::seed`](crate::Config::seed).
//!
//! Route keys may come from the network (a proxy keying routes by a request's
//! `Host`); with a fixed, public seed anyone can craft keys that share one hash
//! chain and turn every lookup into a walk. A backend therefore picks the seed:
//! `wharf-tokio` at random per pool, firmware from a hardware RNG.

use core::hash::{Hash, Hasher};

use foldhash::fast::FoldHasher;
use foldhash::SharedSeed;

/// The route table's hasher: foldhash with every seed (the per-hasher seed and
/// the shared multipliers) derived from the pool's seed, so the mixing itself
/// is secret, not only a value xored into the key.
#[derive(Clone, Debug)]
pub(crate) struct RouteHasher {
    shared: SharedSeed,
    per_hasher: u64,
}

impl RouteHasher {
    pub(crate) fn new(seed: u64) -> Self {
        // foldhash's seed expansion maps 0 to degenerate multipliers (its
        // high bits, which pick the bucket, then take 2 values of 8 for small
        // integer keys). splitmix64's finalizer spreads the caller's seed but
        // maps 0 to 0 (one seed among 2^64 would still land there), so the
        // expanded seed is forced odd: never 0.
        RouteHasher {
            shared: SharedSeed::from_u64(splitmix(seed) | 1),
            per_hasher: splitmix(seed ^ 0x9e37_79b9_7f4a_7c15),
        }
    }

    /// Bucket of `key` among `buckets` (multiply-shift range reduction of the
    /// hash's high bits).
    #[inline(always)]
    pub(crate) fn bucket<K: Hash + ?Sized>(&self, key: &K, buckets: usize) -> usize {
        let mut h = FoldHasher::with_seed(self.per_hasher, &self.shared);
        key.hash(&mut h);
        (((h.finish() >> 32) * buckets as u64) >> 32) as usize
    }
}

/// splitmix64's output function (a bijection on `u64`); also the lifetime
/// jitter's generator (SEMANTICS §2).
pub(crate) const fn splitmix(x: u64) -> u64 {
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::RouteHasher;

    /// Small sequential integer keys (IP-like, port-like) spread over every
    /// bucket under any seed, seed 0 included (foldhash's weak point: a shared
    /// seed of 0 put them in 2 buckets of 8).
    #[test]
    fn sequential_keys_use_every_bucket_under_any_seed() {
        const KEYS: u64 = if cfg!(miri) { 256 } else { 65_536 };
        for seed in [0u64, 1, 0x243f_6a88_85a3_08d3, u64::MAX] {
            let h = RouteHasher::new(seed);
            let mut per = [0u64; 8];
            for k in 0..KEYS {
                per[h.bucket(&k, 8)] += 1;
            }
            // Each bucket holds at least half its fair share.
            assert!(
                per.iter().all(|&n| n >= KEYS / 16),
                "seed {seed:#x}: buckets {per:?}"
            );
        }
    }

    /// Keys crafted to share one bucket under a known seed spread out under
    /// another seed: the seed, not the key, decides the chains.
    #[test]
    fn colliding_keys_for_one_seed_spread_under_another() {
        // Smaller under Miri, where a hash costs thousands of times more.
        const BUCKETS: usize = if cfg!(miri) { 8 } else { 64 };
        let known = RouteHasher::new(0);
        let crafted: [u64; BUCKETS] = {
            let mut keys = [0u64; BUCKETS];
            let (mut n, mut k) = (0, 0u64);
            while n < BUCKETS {
                if known.bucket(&k, BUCKETS) == 0 {
                    keys[n] = k;
                    n += 1;
                }
                k += 1;
            }
            keys
        };
        assert!(crafted.iter().all(|k| known.bucket(k, BUCKETS) == 0));
        for seed in [0x9e37_79b9_7f4a_7c15u64, 1, 0xdead_beef, u64::MAX] {
            let other = RouteHasher::new(seed);
            let mut per = [0usize; BUCKETS];
            for k in &crafted {
                per[other.bucket(k, BUCKETS)] += 1;
            }
            let longest = per.iter().max().copied().unwrap_or(0);
            // n keys in n buckets at random: the longest chain is a handful.
            assert!(
                longest <= BUCKETS.min(8) - 2,
                "seed {seed:#x}: a chain of {longest}"
            );
        }
    }
}
