//! twemproxy's `hash_tag:` — which part of a key is hashed, exactly as nutcracker's
//! `server_pool_idx` (`src/nc_server.c`) picks it:
//!
//! 1. find the first occurrence of the open byte anywhere in the key;
//! 2. find the first occurrence of the close byte strictly after it;
//! 3. if both exist and at least one byte lies between them, hash only those bytes;
//!    otherwise (no open byte, no close byte after it, or an empty tag like `{}`) hash the
//!    whole key. There is no second attempt: in `{}{a}` the first, empty tag decides, and the
//!    whole key is hashed.
//!
//! The open and close bytes may be the same (`$$`). Only the first tag counts; nested or later
//! tags are just bytes. This module does not hash anything and does not validate the
//! `hash_tag:` setting (twemproxy requires exactly two bytes, which `[u8; 2]` already is).

/// The bytes of `key` that twemproxy hashes when the pool's `hash_tag` is `tag`.
pub fn hashed_part(key: &[u8], tag: Option<[u8; 2]>) -> &[u8] {
    let Some([open, close]) = tag else {
        return key;
    };
    let Some(start) = key.iter().position(|&b| b == open) else {
        return key;
    };
    let inner = &key[start + 1..];
    match inner.iter().position(|&b| b == close) {
        Some(len) if len > 0 => &inner[..len],
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::hashed_part;

    const BRACES: Option<[u8; 2]> = Some(*b"{}");

    #[test]
    fn no_tag_configured_hashes_whole_key() {
        assert_eq!(hashed_part(b"{user1}:a", None), b"{user1}:a");
        assert_eq!(hashed_part(b"", None), b"");
    }

    #[test]
    fn tag_selects_inner_bytes() {
        assert_eq!(hashed_part(b"{user1}:a", BRACES), b"user1");
        assert_eq!(hashed_part(b"x:{user1}:a", BRACES), b"user1");
        assert_eq!(hashed_part(b"{a}", BRACES), b"a");
        assert_eq!(hashed_part(b"{\x80\xff}", BRACES), b"\x80\xff");
    }

    #[test]
    fn first_open_and_first_close_after_it() {
        // Nested: the first '{' and the first '}' after it.
        assert_eq!(hashed_part(b"{a{b}c}", BRACES), b"a{b");
        // Later tags are ignored.
        assert_eq!(hashed_part(b"{a}{b}", BRACES), b"a");
        // A '}' before the first '{' does not count.
        assert_eq!(hashed_part(b"}x{y}", BRACES), b"y");
    }

    #[test]
    fn missing_close_or_open_hashes_whole_key() {
        assert_eq!(hashed_part(b"{user1:a", BRACES), b"{user1:a");
        assert_eq!(hashed_part(b"user1}:a", BRACES), b"user1}:a");
        assert_eq!(hashed_part(b"plain", BRACES), b"plain");
        assert_eq!(hashed_part(b"", BRACES), b"");
        assert_eq!(hashed_part(b"{", BRACES), b"{");
    }

    #[test]
    fn empty_tag_hashes_whole_key_without_retrying() {
        assert_eq!(hashed_part(b"{}:a", BRACES), b"{}:a");
        assert_eq!(hashed_part(b"{}{a}", BRACES), b"{}{a}");
        assert_eq!(hashed_part(b"x{}", BRACES), b"x{}");
    }

    #[test]
    fn same_open_and_close_byte() {
        let dollars = Some(*b"$$");
        assert_eq!(hashed_part(b"a$b$c$", dollars), b"b");
        assert_eq!(hashed_part(b"a$$b$", dollars), b"a$$b$");
        assert_eq!(hashed_part(b"a$b", dollars), b"a$b");
    }
}
