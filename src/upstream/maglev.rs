//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), with weights.
//!
//! Each endpoint walks its own permutation of the `M` table slots (offset and skip derived
//! from its address with [`super::hash::hash64`]) and claims the next free slot on its turn;
//! turns are given out in proportion to weight (an endpoint of the highest weight takes a turn
//! every round, one of a third of that weight every third round). A lookup is one hash and one
//! array read. `M` is a prime at least 100 times the endpoint count, which keeps the share of
//! each endpoint within about 1% of its weight and moves few keys when the set changes.
//!
//! Written by hand because no maintained crate builds weighted tables from stable names.

use super::hash::hash64;

const PRIMES: [usize; 3] = [65_537, 655_373, 6_553_577];
const SEED_OFFSET: u64 = 0x6d61_676c_6576_3031; // "maglev01"
const SEED_SKIP: u64 = 0x6d61_676c_6576_3032; // "maglev02"
/// Seed for hashing lookup keys (client addresses).
pub const SEED_KEY: u64 = 0x6d61_676c_6576_6b79; // "maglevky"

#[derive(Debug)]
pub struct Maglev {
    table: Box<[u16]>,
}

impl Maglev {
    /// Builds the table for endpoints named `names` (their addresses) with `weights`.
    /// At most 65,535 endpoints (validation allows far fewer).
    pub fn new(names: &[String], weights: &[u32]) -> Self {
        let n = names.len().min(usize::from(u16::MAX));
        if n == 0 {
            return Maglev {
                table: Box::new([]),
            };
        }
        let m = PRIMES
            .iter()
            .copied()
            .find(|p| *p >= n * 100)
            .unwrap_or(PRIMES[PRIMES.len() - 1]);
        let m64 = m as u64;
        let perm: Vec<(u64, u64)> = names[..n]
            .iter()
            .map(|name| {
                let offset = hash64(SEED_OFFSET, name.as_bytes()) % m64;
                let skip = hash64(SEED_SKIP, name.as_bytes()) % (m64 - 1) + 1;
                (offset, skip)
            })
            .collect();
        let max_w = u64::from(weights[..n].iter().copied().max().unwrap_or(1).max(1));
        let mut next = vec![0u64; n];
        let mut target = vec![0u64; n];
        let mut table = vec![u16::MAX; m];
        let mut filled = 0;
        let mut round = 1u64;
        while filled < m {
            for i in 0..n {
                if filled == m {
                    break;
                }
                let w = u64::from(weights[i].max(1));
                if round * w < target[i] {
                    continue;
                }
                target[i] += max_w;
                let (offset, skip) = perm[i];
                loop {
                    let slot = ((offset + next[i] * skip) % m64) as usize;
                    next[i] += 1;
                    if table[slot] == u16::MAX {
                        table[slot] = i as u16;
                        filled += 1;
                        break;
                    }
                }
            }
            round += 1;
        }
        Maglev {
            table: table.into_boxed_slice(),
        }
    }

    /// Endpoint for `key`, skipping endpoints for which `skip` is true by walking on from the
    /// key's slot (a deterministic fallback order per key).
    pub fn pick(&self, key: &[u8], skip: impl Fn(usize) -> bool) -> Option<usize> {
        let m = self.table.len();
        if m == 0 {
            return None;
        }
        let start = (hash64(SEED_KEY, key) % m as u64) as usize;
        (0..m)
            .map(|k| usize::from(self.table[(start + k) % m]))
            .find(|&i| !skip(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    fn shares(m: &Maglev, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &e in m.table.iter() {
            c[usize::from(e)] += 1;
        }
        c
    }

    #[test]
    fn shares_follow_weights() {
        let m = Maglev::new(&names(3), &[1, 1, 2]);
        let s = shares(&m, 3);
        let total = s.iter().sum::<usize>() as f64;
        assert!((s[2] as f64 / total - 0.5).abs() < 0.01, "{s:?}");
        assert!((s[0] as f64 / total - 0.25).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn removing_one_moves_about_its_share() {
        let all = Maglev::new(&names(5), &[1; 5]);
        let fewer_names: Vec<String> = names(5).into_iter().take(4).collect();
        let fewer = Maglev::new(&fewer_names, &[1; 4]);
        let mut moved_other = 0;
        for k in 0..10_000u32 {
            let key = k.to_be_bytes();
            let a = all.pick(&key, |_| false).unwrap();
            let b = fewer.pick(&key, |_| false).unwrap();
            if a != 4 && a != b {
                moved_other += 1;
            }
        }
        // Maglev trades a little disruption for balance; the paper measures a few percent.
        assert!(
            moved_other < 1_000,
            "{moved_other} keys of surviving endpoints moved"
        );
    }

    #[test]
    fn skip_walks_to_another_endpoint() {
        let m = Maglev::new(&names(3), &[1; 3]);
        let first = m.pick(b"k", |_| false).unwrap();
        let second = m.pick(b"k", |i| i == first).unwrap();
        assert_ne!(first, second);
        assert_eq!(m.pick(b"k", |_| true), None);
    }
}
