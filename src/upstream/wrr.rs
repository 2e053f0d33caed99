//! Smooth weighted round robin, as nginx does it, precomputed into a schedule.
//!
//! nginx picks, on every request, the peer with the highest `current` after adding each
//! peer's weight to its `current`, then subtracts the total from the winner. The sequence that
//! produces repeats every `sum(weights)` picks, so corelane computes one period once, when the
//! routing table is built, and a worker's pick is then one array read and a cursor increment:
//! no per-pick scan over the endpoints and no shared mutable state. Weights are divided by
//! their greatest common divisor first, so equal weights give a schedule of length `n`.

/// One period of nginx's smooth weighted round robin over endpoints with `weights`.
pub fn schedule(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|w| i64::from(w / g)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best as u32);
    }
    order
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_rotate() {
        assert_eq!(schedule(&[1, 1, 1]), vec![0, 1, 2]);
        assert_eq!(schedule(&[3, 3]), vec![0, 1]);
    }

    /// The example from nginx's commit introducing smooth WRR: weights 5, 1, 1 give
    /// a a b a c a a, not a a a a a b c.
    #[test]
    fn nginx_smooth_sequence() {
        assert_eq!(schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn proportions_hold() {
        let s = schedule(&[4, 2, 1]);
        let count = |i| s.iter().filter(|&&x| x == i).count();
        assert_eq!((count(0), count(1), count(2)), (4, 2, 1));
    }
}
