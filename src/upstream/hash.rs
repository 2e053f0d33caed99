//! The stable 64-bit hash behind maglev placement.
//!
//! Placement must be identical on every corelane instance and across versions (instances
//! behind one L4 balancer must send a key to the same endpoint), so this is a fixed,
//! documented function: FNV-1a 64 over the bytes, starting from the FNV offset basis xor a
//! seed, then MurmurHash3's `fmix64` finalizer to spread the bits. It must never change.
//! Twemproxy-compatible hashes (issue: Redis/Memcached) live with those protocols, not here.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub fn hash64(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    fmix64(h)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values, computed independently (Python, from the definition above). If these
    /// change, every maglev placement in the field moves.
    #[test]
    fn golden() {
        assert_eq!(hash64(0, b""), fmix64(FNV_OFFSET));
        assert_eq!(hash64(0, b"127.0.0.1"), 0xcede_3ba3_b641_7b22);
        assert_eq!(hash64(1, b"127.0.0.1:18080"), 0xf5d8_15bf_1f06_3b0e);
    }
}
