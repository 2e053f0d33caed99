//! Authentication math: `mysql_native_password`, the method MariaDB and MySQL 5.x use by
//! default: the client sends `SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password)))`, and
//! a server that stores `SHA1(SHA1(password))` checks it without knowing the password.
//!
//! `caching_sha2_password` (MySQL 8's default), fast path only: the client sends
//! `SHA256(password) XOR SHA256(SHA256(SHA256(password)) + scramble)`. corelane holds its
//! users' passwords, so it can always check that and never needs the slow path (RSA or TLS
//! to send the password itself).
//!
//! Not here: the exchange of packets.

use sha1::{Digest, Sha1};

/// What a client sends for `password` against the server's 20-byte `scramble`; empty for an
/// empty password (as clients do).
pub fn native_password(scramble: &[u8], password: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stage2);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// What a client sends with `caching_sha2_password` (fast path); empty for an empty password.
pub fn caching_sha2_password(scramble: &[u8], password: &[u8]) -> Vec<u8> {
    use sha2::Sha256;
    if password.is_empty() {
        return Vec::new();
    }
    let p1 = Sha256::digest(password);
    let p2 = Sha256::digest(p1);
    let mut h = Sha256::new();
    h.update(p2);
    h.update(scramble);
    let mix = h.finalize();
    p1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// Whether two byte strings are equal, in time that depends on their lengths only.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a client's `response` against the stored `SHA1(SHA1(password))` (`stage2`), as a
/// server does.
pub fn check_native_password(scramble: &[u8], stage2: &[u8], response: &[u8]) -> bool {
    if response.len() != 20 || stage2.len() != 20 {
        return false;
    }
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stage2);
    let mix = h.finalize();
    let stage1: Vec<u8> = response
        .iter()
        .zip(mix.iter())
        .map(|(a, b)| a ^ b)
        .collect();
    Sha1::digest(&stage1).as_slice() == stage2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mysql::packet;
    use crate::proto::mysql::wire::{HandshakeResponse41, HandshakeV10};

    fn payload(hex: &str) -> Vec<u8> {
        let buf: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let f = packet::frame(&buf, 1 << 20).unwrap().unwrap();
        packet::payload(&buf, &f).into_owned()
    }

    /// libmariadb's real answer to mariadbd's real scramble, for the password "secret".
    #[test]
    fn golden_native_password_from_a_real_client() {
        let h = payload(crate::proto::mysql::wire::tests::MARIADB_HANDSHAKE);
        let l = payload(crate::proto::mysql::wire::tests::MARIADB_LOGIN);
        let h = HandshakeV10::parse(&h).unwrap();
        let l = HandshakeResponse41::parse(&l).unwrap();
        assert_eq!(native_password(&h.scramble, b"secret"), l.auth_response);
        let stage2 = Sha1::digest(Sha1::digest(b"secret"));
        assert!(check_native_password(&h.scramble, &stage2, l.auth_response));
        let wrong = Sha1::digest(Sha1::digest(b"Secret"));
        assert!(!check_native_password(&h.scramble, &wrong, l.auth_response));
        assert!(!check_native_password(
            &h.scramble,
            &stage2,
            &l.auth_response[..19]
        ));
        assert!(native_password(&h.scramble, b"").is_empty());
    }

    /// PyMySQL's `scramble_caching_sha2` and `scramble_native_password` for "secret" against
    /// the scramble `0123456789abcdefghij`.
    #[test]
    fn golden_caching_sha2_from_pymysql() {
        let scramble = b"0123456789abcdefghij";
        let hex = |v: Vec<u8>| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(caching_sha2_password(scramble, b"secret")),
            "7e4adda2f2d5ef09b4147518becb0cee2939376203650a8c2bb2815959364bd0"
        );
        assert_eq!(
            hex(native_password(scramble, b"secret")),
            "f5cac3f3b3df2133feb57db682c71e6ed433a988"
        );
        assert!(caching_sha2_password(scramble, b"").is_empty());
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}
