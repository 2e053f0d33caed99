//! Key placement for sharded caches, bit-compatible with twemproxy (nutcracker) 0.5: its hash
//! functions ([`hash`]), its hash tags ([`tag`]) and its distributions ([`ring`]: ketama,
//! modula, random).
//!
//! This module only maps a key to a server index. Which servers are live, and connections to
//! them, are the protocol engines' business.

pub mod hash;
pub mod ring;
pub mod tag;

use serde::{Deserialize, Serialize};

/// twemproxy's `hash:` setting. Every function returns the 32-bit value twemproxy computes.
// `Fnv1a_64` and friends keep the `_` so that serde's snake_case gives twemproxy's names.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashFn {
    OneAtATime,
    Md5,
    Crc16,
    Crc32,
    Crc32a,
    Fnv1_64,
    #[default]
    Fnv1a_64,
    Fnv1_32,
    Fnv1a_32,
    Hsieh,
    Murmur,
    Jenkins,
}

/// twemproxy's `distribution:` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    #[default]
    Ketama,
    Modula,
    Random,
}
