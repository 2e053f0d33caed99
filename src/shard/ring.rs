//! twemproxy's distributions (`distribution:` ketama, modula, random): a [`Ring`] is built once
//! from a pool's servers, off the request path, and then maps a key's hash to the index of a
//! server in the slice it was built from, choosing the server nutcracker 0.5 would choose.
//!
//! How nutcracker builds them, and the quirks kept here:
//! - **Server order.** nutcracker sorts a pool's servers by point name (shorter names first,
//!   then bytewise) while checking for duplicates (`conf_validate_server` in `nc_conf.c`, with
//!   `string_compare` from `nc_string.c`), and keeps that order. Modula walks the servers in
//!   that order, not in config order; [`Ring`] does the same and still returns indices into
//!   the caller's slice. Duplicate names are rejected, as nutcracker does.
//! - **Ketama** (`nc_ketama.c`): each server gets `floor(pct * 160 / 4 * n) * 4` points, where
//!   `pct = weight / total_weight` is an `f32` and the product is computed in `f32` (a
//!   `+ 1e-10` in `f64` is lost when it is rounded back to `f32`). Point name `i` is
//!   `"{name}-{i}"`; each name's MD5 digest gives four points (its four little-endian words).
//!   The points are sorted by value and a hash goes to the first point `>= hash`, wrapping to
//!   the first point. A point name longer than 272 bytes is cut to its first 272 bytes before
//!   hashing (nutcracker 0.5.0 formats it into a 273-byte buffer and logs an error; read from
//!   the Debian binary's `ketama_update`, the source on twemproxy's master still says 86).
//!   Points with equal values keep build order (servers in nutcracker's order, then point
//!   index), as glibc's `qsort`, a merge sort at these sizes, keeps them; a tie between two
//!   servers needs two 32-bit MD5 words to collide and only matters for that exact hash.
//!   Names are taken as bytes: a NUL inside a name (where C's `%.*s` would stop) is not
//!   modelled.
//! - **Modula** (`nc_modula.c`): one slot per unit of weight, servers in nutcracker's order;
//!   the server is slot `hash % total_weight`.
//! - **Random** (`nc_random.c`): one slot per server, weights ignored, the hash ignored.
//!
//! What this module does not do: it does not model `auto_eject_hosts`. nutcracker builds its
//! continuum over the live servers only, which equals a [`Ring`] built from the live servers
//! (then map the returned index back to the pool's index). Hashing is in [`super::hash`], hash
//! tags in [`super::tag`].

use std::fmt;

use super::hash::{hash, md5_words};
use super::tag::hashed_part;
use super::{Distribution, HashFn};

/// Ketama points per server at equal weights (`KETAMA_POINTS_PER_SERVER`).
const KETAMA_POINTS_PER_SERVER: u32 = 160;
/// Points taken from one MD5 digest.
const KETAMA_POINTS_PER_HASH: u32 = 4;
/// Size of nutcracker 0.5.0's point-name buffer, NUL included (`KETAMA_MAX_HOSTLEN`).
const KETAMA_MAX_HOSTLEN: usize = 273;
/// nutcracker leaves the port out of a server's default name when it is this one.
const KETAMA_DEFAULT_PORT: u16 = 11211;

/// One server of a pool, as the ring sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The server's name in twemproxy's `host:port:weight name` (the part after the space), or
    /// [`default_point_name`] when it has none. Ketama hashes it; every distribution orders
    /// servers by it.
    pub point_name: String,
    /// twemproxy's weight (`>= 1`).
    pub weight: u32,
}

/// The name twemproxy gives a server that has no `name` field: `host:port`, or `host` alone
/// when the port is 11211 (libmemcached compatibility, `conf_add_server` in `nc_conf.c`).
/// nutcracker keeps the port as written, so `host:06379` is named `host:06379`; this function
/// writes the port in decimal without leading zeros.
pub fn default_point_name(host: &str, port: u16) -> String {
    if port == KETAMA_DEFAULT_PORT {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    }
}

/// Why a pool's servers cannot make a ring.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingError {
    /// The pool has no servers.
    NoServers,
    /// Server `index` has weight 0 (twemproxy: "has a zero weight").
    ZeroWeight { index: usize },
    /// The weights add up to more than `u32::MAX` (twemproxy's total is a `uint32_t`).
    TotalWeightOverflow,
    /// Two servers share a point name (twemproxy: "has servers with same name").
    DuplicateName { index: usize, name: String },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::NoServers => f.write_str("the pool has no servers"),
            RingError::ZeroWeight { index } => write!(f, "server {index} has a zero weight"),
            RingError::TotalWeightOverflow => {
                f.write_str("the servers' weights add up to more than 4294967295")
            }
            RingError::DuplicateName { index, name } => {
                write!(f, "server {index} has the same name as another: {name:?}")
            }
        }
    }
}

impl std::error::Error for RingError {}

/// A pool's immutable placement table. `dispatch` and `locate` do not allocate.
#[derive(Clone)]
pub struct Ring {
    distribution: Distribution,
    servers: usize,
    /// Ketama: the sorted point values. Modula: the exclusive end of each server's slot range,
    /// ascending, the last one being the total weight. Random: empty.
    bounds: Box<[u32]>,
    /// `owners[i]` is the index (in the caller's slice) of the server that owns `bounds[i]`.
    owners: Box<[u32]>,
}

impl Ring {
    /// Builds the table nutcracker builds for these servers and this distribution.
    pub fn new(servers: &[Server], distribution: Distribution) -> Result<Ring, RingError> {
        let total_weight = validate(servers)?;
        let order = nutcracker_order(servers);
        let (bounds, owners) = match distribution {
            Distribution::Ketama => ketama_points(servers, &order, total_weight),
            Distribution::Modula => modula_slots(servers, &order),
            Distribution::Random => (Vec::new(), Vec::new()),
        };
        Ok(Ring {
            distribution,
            servers: servers.len(),
            bounds: bounds.into_boxed_slice(),
            owners: owners.into_boxed_slice(),
        })
    }

    /// The index of the server for a key whose hash is `hash` (ignored by `random`).
    pub fn dispatch(&self, hash: u32) -> usize {
        let slot = match self.distribution {
            Distribution::Ketama => {
                let i = self.bounds.partition_point(|&v| v < hash);
                if i == self.bounds.len() { 0 } else { i }
            }
            Distribution::Modula => {
                let total = self.bounds.last().copied().unwrap_or(1).max(1);
                let r = hash % total;
                self.bounds.partition_point(|&end| end <= r)
            }
            Distribution::Random => return fastrand::usize(..self.servers.max(1)),
        };
        self.owners.get(slot).map_or(0, |&s| s as usize)
    }

    /// The index of the server nutcracker sends `key` to: the hash tag applied, the hashed
    /// bytes hashed with `hash_fn` (an empty key hashes to 0 whatever the function, as in
    /// `server_pool_hash`), then [`Ring::dispatch`].
    pub fn locate(&self, hash_fn: HashFn, tag: Option<[u8; 2]>, key: &[u8]) -> usize {
        if self.servers <= 1 || self.distribution == Distribution::Random {
            return self.dispatch(0);
        }
        let part = hashed_part(key, tag);
        let h = if part.is_empty() {
            0
        } else {
            hash(hash_fn, part)
        };
        self.dispatch(h)
    }

    /// The distribution this ring implements.
    pub fn distribution(&self) -> Distribution {
        self.distribution
    }

    /// How many servers the ring was built from.
    pub fn servers(&self) -> usize {
        self.servers
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("distribution", &self.distribution)
            .field("servers", &self.servers)
            .field("slots", &self.bounds.len())
            .finish()
    }
}

/// Checks what nutcracker's config checks; returns the total weight.
fn validate(servers: &[Server]) -> Result<u32, RingError> {
    if servers.is_empty() {
        return Err(RingError::NoServers);
    }
    let mut total: u32 = 0;
    for (index, s) in servers.iter().enumerate() {
        if s.weight == 0 {
            return Err(RingError::ZeroWeight { index });
        }
        total = total
            .checked_add(s.weight)
            .ok_or(RingError::TotalWeightOverflow)?;
    }
    let mut by_name: Vec<usize> = (0..servers.len()).collect();
    by_name.sort_by(|&a, &b| servers[a].point_name.cmp(&servers[b].point_name));
    for pair in by_name.windows(2) {
        if servers[pair[0]].point_name == servers[pair[1]].point_name {
            // The sort is stable: pair[1] is the later of the two in config order.
            return Err(RingError::DuplicateName {
                index: pair[1],
                name: servers[pair[1]].point_name.clone(),
            });
        }
    }
    Ok(total)
}

/// Server indices in nutcracker's pool order: by name length, then bytewise
/// (`string_compare`).
fn nutcracker_order(servers: &[Server]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..servers.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (
            servers[a].point_name.as_bytes(),
            servers[b].point_name.as_bytes(),
        );
        x.len().cmp(&y.len()).then_with(|| x.cmp(y))
    });
    order
}

/// How many ketama points a server of weight `weight` gets, computed in `f32` exactly as
/// `ketama_update` does.
fn ketama_point_count(weight: u32, total_weight: u32, servers: u32) -> u32 {
    let pct = weight as f32 / total_weight as f32;
    let per_hash =
        pct * KETAMA_POINTS_PER_SERVER as f32 / KETAMA_POINTS_PER_HASH as f32 * servers as f32;
    // C adds the double 0.0000000001, then casts back to float before floorf.
    let per_hash = (f64::from(per_hash) + 0.000_000_000_1) as f32;
    (per_hash.floor() * KETAMA_POINTS_PER_HASH as f32) as u32
}

type Table = (Vec<u32>, Vec<u32>);

fn ketama_points(servers: &[Server], order: &[usize], total: u32) -> Table {
    // validate() bounded the server count by the total weight, a u32.
    let n = servers.len() as u32;
    let mut points: Vec<(u32, u32)> = Vec::with_capacity(
        servers
            .len()
            .saturating_mul(KETAMA_POINTS_PER_SERVER as usize),
    );
    let mut name = Vec::with_capacity(KETAMA_MAX_HOSTLEN);
    for &index in order {
        let s = &servers[index];
        let hashes = ketama_point_count(s.weight, total, n) / KETAMA_POINTS_PER_HASH;
        for i in 0..hashes {
            name.clear();
            name.extend_from_slice(s.point_name.as_bytes());
            name.extend_from_slice(format!("-{i}").as_bytes());
            // What snprintf kept of it, less the NUL.
            name.truncate(KETAMA_MAX_HOSTLEN - 1);
            for value in md5_words(&name) {
                points.push((value, index as u32));
            }
        }
    }
    points.sort_by_key(|&(value, _)| value);
    points.into_iter().unzip()
}

fn modula_slots(servers: &[Server], order: &[usize]) -> Table {
    let mut end: u32 = 0;
    order
        .iter()
        .map(|&index| {
            // validate() checked that the sum fits.
            end = end.saturating_add(servers[index].weight);
            (end, index as u32)
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(names: &[&str], weights: &[u32]) -> Vec<Server> {
        names
            .iter()
            .zip(weights)
            .map(|(n, &w)| Server {
                point_name: (*n).to_owned(),
                weight: w,
            })
            .collect()
    }

    #[test]
    fn default_names() {
        assert_eq!(default_point_name("127.0.0.1", 6379), "127.0.0.1:6379");
        assert_eq!(default_point_name("cache-1", 11211), "cache-1");
        assert_eq!(default_point_name("::1", 6380), "::1:6380");
    }

    #[test]
    fn ketama_point_counts_follow_the_f32_formula() {
        // Equal weights: 160 each.
        assert_eq!(ketama_point_count(1, 3, 3), 160);
        assert_eq!(ketama_point_count(7, 7, 1), 160);
        // 1,2,3 of 6 over 3 servers: 80, 160, 240.
        assert_eq!(ketama_point_count(1, 6, 3), 80);
        assert_eq!(ketama_point_count(2, 6, 3), 160);
        assert_eq!(ketama_point_count(3, 6, 3), 240);
        // Fractions are floored to a multiple of 4: 1/102 * 40 * 3 = 1.18 -> 4 points.
        assert_eq!(ketama_point_count(1, 102, 3), 4);
        assert_eq!(ketama_point_count(100, 102, 3), 468);
        // f32 rounding: 29/60 * 120 is 58 exactly, but 57.99999 in f32, so 228 points, not 232.
        assert_eq!(ketama_point_count(29, 60, 3), 228);
    }

    #[test]
    fn ketama_continuum_is_sorted_and_wraps() {
        let s = servers(&["a:1", "b:2", "c:3"], &[1, 2, 3]);
        let ring = Ring::new(&s, Distribution::Ketama).unwrap();
        assert_eq!(ring.bounds.len(), 480);
        assert!(ring.bounds.windows(2).all(|w| w[0] <= w[1]));
        let count = |i: u32| ring.owners.iter().filter(|&&o| o == i).count();
        assert_eq!((count(0), count(1), count(2)), (80, 160, 240));
        // Each point belongs to its owner; past the last point wraps to the first.
        for (i, &v) in ring.bounds.iter().enumerate() {
            assert_eq!(ring.dispatch(v), ring.owners[i] as usize);
        }
        let last = *ring.bounds.last().unwrap();
        if last < u32::MAX {
            assert_eq!(ring.dispatch(last + 1), ring.owners[0] as usize);
        }
        assert_eq!(ring.dispatch(0), ring.owners[0] as usize);
    }

    #[test]
    fn ketama_points_are_md5_words_of_name_dash_index() {
        let s = servers(&["solo"], &[1]);
        let ring = Ring::new(&s, Distribution::Ketama).unwrap();
        let mut want: Vec<u32> = (0..40)
            .flat_map(|i| md5_words(format!("solo-{i}").as_bytes()))
            .collect();
        want.sort_unstable();
        assert_eq!(&*ring.bounds, &want[..]);
    }

    #[test]
    fn ketama_does_not_depend_on_config_order() {
        let a = servers(&["x:1", "yy:2", "z:3"], &[1, 2, 3]);
        let b = vec![a[2].clone(), a[0].clone(), a[1].clone()];
        let (ra, rb) = (
            Ring::new(&a, Distribution::Ketama).unwrap(),
            Ring::new(&b, Distribution::Ketama).unwrap(),
        );
        let name_a = |i: usize| &a[i].point_name;
        let name_b = |i: usize| &b[i].point_name;
        for h in (0..u32::MAX).step_by(7_919_993) {
            assert_eq!(name_a(ra.dispatch(h)), name_b(rb.dispatch(h)));
        }
    }

    #[test]
    fn ketama_point_names_are_cut_to_272_bytes() {
        // 269-byte name: "-10".."-99" make 272 bytes; "-100" and up are cut back to "-10".
        let long = "n".repeat(269);
        let s = servers(&[&long, "a", "b"], &[100, 1, 1]);
        let ring = Ring::new(&s, Distribution::Ketama).unwrap();
        assert_eq!(ring.bounds.len(), 468 + 4 + 4);
        let copies = |suffix: &str| {
            let v = md5_words(format!("{long}{suffix}").as_bytes())[0];
            ring.bounds.iter().filter(|&&b| b == v).count()
        };
        // 117 digests: "-10" itself plus "-100"..="-109"; "-11" plus "-110"..="-116".
        assert_eq!(copies("-10"), 11);
        assert_eq!(copies("-11"), 8);
        assert_eq!(copies("-12"), 1);
    }

    #[test]
    fn modula_walks_servers_in_nutcrackers_order() {
        // Config order bb, a, c: nutcracker's order is a, c (length 1) then bb.
        let s = servers(&["bb", "a", "c"], &[1, 2, 3]);
        let ring = Ring::new(&s, Distribution::Modula).unwrap();
        let got: Vec<usize> = (0..12).map(|h| ring.dispatch(h)).collect();
        // slots: a a c c c bb, repeated
        assert_eq!(got, [1, 1, 2, 2, 2, 0, 1, 1, 2, 2, 2, 0]);
        // u32::MAX % 6 == 3: the third slot of c.
        assert_eq!(ring.dispatch(u32::MAX), 2);
    }

    #[test]
    fn random_stays_in_range_and_ignores_weights() {
        let s = servers(&["a", "b", "c"], &[1, 1, 1000]);
        let ring = Ring::new(&s, Distribution::Random).unwrap();
        let mut seen = [0usize; 3];
        for _ in 0..3000 {
            seen[ring.locate(HashFn::Md5, None, b"k")] += 1;
        }
        assert!(seen.iter().all(|&n| n > 700), "{seen:?}");
    }

    #[test]
    fn locate_applies_tag_and_empty_key_rule() {
        let s = servers(&["a:1", "b:2", "c:3"], &[1, 1, 1]);
        let ring = Ring::new(&s, Distribution::Ketama).unwrap();
        let tag = Some(*b"{}");
        for f in [HashFn::Fnv1a_64, HashFn::Murmur, HashFn::Crc32] {
            assert_eq!(
                ring.locate(f, tag, b"{user1}:a"),
                ring.dispatch(hash(f, b"user1"))
            );
            assert_eq!(ring.locate(f, None, b""), ring.dispatch(0));
        }
        let one = Ring::new(&s[..1], Distribution::Modula).unwrap();
        assert_eq!(one.locate(HashFn::Md5, None, b"anything"), 0);
    }

    #[test]
    fn rejects_what_nutcracker_rejects() {
        assert_eq!(
            Ring::new(&[], Distribution::Ketama).unwrap_err(),
            RingError::NoServers
        );
        let s = servers(&["a", "b"], &[1, 0]);
        assert_eq!(
            Ring::new(&s, Distribution::Modula).unwrap_err(),
            RingError::ZeroWeight { index: 1 }
        );
        let s = servers(&["a", "b"], &[u32::MAX, 1]);
        assert_eq!(
            Ring::new(&s, Distribution::Modula).unwrap_err(),
            RingError::TotalWeightOverflow
        );
        let s = servers(&["a", "b", "a"], &[1, 1, 1]);
        assert!(matches!(
            Ring::new(&s, Distribution::Random).unwrap_err(),
            RingError::DuplicateName { index: 2, .. }
        ));
    }

    #[test]
    fn debug_is_a_summary() {
        let s = servers(&["a", "b"], &[1, 1]);
        let ring = Ring::new(&s, Distribution::Ketama).unwrap();
        assert_eq!(
            format!("{ring:?}"),
            "Ring { distribution: Ketama, servers: 2, slots: 320 }"
        );
    }
}
