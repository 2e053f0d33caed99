//! HPACK's static Huffman code (RFC 7541 5.2 and Appendix B): decoding, four bits at a time,
//! and encoding (for tests and the fuzz target; corelane's own header blocks are not
//! Huffman-coded, see `super::encode`).
//!
//! The code is canonical: symbols sorted by (code length, symbol) take consecutive codes. So
//! the 257 code lengths of Appendix B ([`LENGTHS`]) are the whole table, and every code is
//! derived from them (a unit test checks some against the appendix's hex column). Decoding
//! walks a state machine whose states are the 256 inner nodes of the code tree: one table
//! look-up per input nibble gives the next state and at most one symbol (no code is shorter
//! than 5 bits). The 16 KiB table is built once per process, on first use.
//!
//! Not here: string framing (the H bit and the length prefix, `super`).

use std::sync::OnceLock;

/// Appendix B's code length of each symbol, 0 to 255, then EOS (256).
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];

const EOS: u16 = 256;

/// The canonical codes: each symbol's code, right-aligned.
fn codes() -> [u32; 257] {
    let mut order: Vec<u16> = (0..=EOS).collect();
    order.sort_by_key(|&s| (LENGTHS[s as usize], s));
    let mut codes = [0u32; 257];
    let (mut code, mut len) = (0u32, LENGTHS[order[0] as usize]);
    for (i, &s) in order.iter().enumerate() {
        let l = LENGTHS[s as usize];
        if i > 0 {
            code = (code + 1) << (l - len);
        }
        len = l;
        codes[s as usize] = code;
    }
    codes
}

/// A decoding step: the state after a nibble, and the symbol it completed, if any.
#[derive(Clone, Copy, Default)]
struct Step {
    next: u8,
    /// `EMITS`, `FAILS` and the symbol in the low byte.
    bits: u16,
}

const EMITS: u16 = 1 << 8;
/// The nibble completed EOS, which a string must never contain.
const FAILS: u16 = 1 << 9;

struct Machine {
    steps: Box<[[Step; 16]; 256]>,
    /// Whether a string may end in this state: the bits since its last symbol are at most 7
    /// ones (the most significant bits of EOS, as padding).
    accepts: [bool; 256],
}

fn machine() -> &'static Machine {
    static MACHINE: OnceLock<Machine> = OnceLock::new();
    MACHINE.get_or_init(build)
}

/// Builds the code tree from the canonical codes, then the nibble steps of its inner nodes.
fn build() -> Machine {
    // Inner nodes: children are inner nodes (>= 0) or leaves (-1 - symbol).
    let mut tree: Vec<[i32; 2]> = vec![[i32::MIN; 2]];
    for (sym, &code) in codes().iter().enumerate() {
        let len = LENGTHS[sym];
        let mut node = 0usize;
        for i in (0..len).rev() {
            let bit = ((code >> i) & 1) as usize;
            if i == 0 {
                tree[node][bit] = -1 - sym as i32;
            } else {
                if tree[node][bit] == i32::MIN {
                    tree.push([i32::MIN; 2]);
                    tree[node][bit] = (tree.len() - 1) as i32;
                }
                node = tree[node][bit] as usize;
            }
        }
    }
    debug_assert_eq!(
        tree.len(),
        256,
        "a full code over 257 symbols has 256 inner nodes"
    );
    let mut accepts = [false; 256];
    let (mut node, mut depth) = (0usize, 0);
    while depth <= 7 {
        accepts[node] = true;
        match tree[node][1] {
            n if n >= 0 => node = n as usize,
            _ => break,
        }
        depth += 1;
    }
    let mut steps = Box::new([[Step::default(); 16]; 256]);
    for (state, row) in steps.iter_mut().enumerate() {
        for (nibble, step) in row.iter_mut().enumerate() {
            let mut node = state;
            for i in (0..4).rev() {
                let child = tree[node][(nibble >> i) & 1];
                if child >= 0 {
                    node = child as usize;
                    continue;
                }
                let sym = (-1 - child) as u16;
                if sym == EOS {
                    step.bits |= FAILS;
                } else {
                    step.bits |= EMITS | sym;
                }
                node = 0;
            }
            step.next = node as u8;
        }
    }
    Machine { steps, accepts }
}

/// A Huffman-coded string that does not decode: it contains EOS, or its padding is longer
/// than 7 bits or not all ones (RFC 7541 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHuffman;

/// Appends the decoding of `input` to `out`.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), BadHuffman> {
    let m = machine();
    // At most 8 symbols come from 5 bytes (5-bit codes at best).
    out.reserve(input.len() * 8 / 5 + 1);
    let mut state = 0u8;
    for &byte in input {
        for nibble in [byte >> 4, byte & 0x0f] {
            let step = m.steps[state as usize][nibble as usize];
            if step.bits & FAILS != 0 {
                return Err(BadHuffman);
            }
            if step.bits & EMITS != 0 {
                out.push(step.bits as u8);
            }
            state = step.next;
        }
    }
    if m.accepts[state as usize] {
        Ok(())
    } else {
        Err(BadHuffman)
    }
}

/// Appends `input` Huffman-coded, padded with ones to a byte boundary.
pub fn encode(input: &[u8], out: &mut Vec<u8>) {
    static CODES: OnceLock<[u32; 257]> = OnceLock::new();
    let codes = CODES.get_or_init(codes);
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in input {
        let len = u32::from(LENGTHS[b as usize]);
        acc = (acc << len) | u64::from(codes[b as usize]);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        let pad = 8 - bits;
        out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
    }
}

/// The length of `input` Huffman-coded.
pub fn encoded_len(input: &[u8]) -> usize {
    let bits: usize = input.iter().map(|&b| LENGTHS[b as usize] as usize).sum();
    bits.div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_those_of_appendix_b() {
        let c = codes();
        // A few rows of the appendix's hex column, short and long, and EOS.
        for (sym, code) in [
            (0usize, 0x1ff8),
            (b' ' as usize, 0x14),
            (b'0' as usize, 0x0),
            (b'a' as usize, 0x3),
            (b'e' as usize, 0x5),
            (b'{' as usize, 0x7ffe),
            (10, 0x3ffffffc),
            (127, 0xffffffc),
            (255, 0x3ffffee),
            (256, 0x3fffffff),
        ] {
            assert_eq!(c[sym], code, "symbol {sym}");
        }
    }

    fn dec(hex: &str) -> Result<Vec<u8>, BadHuffman> {
        let input: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut out = Vec::new();
        decode(&input, &mut out).map(|()| out)
    }

    #[test]
    fn decodes_the_rfc_examples() {
        // RFC 7541 C.4.1 and C.6.1.
        assert_eq!(dec("f1e3c2e5f23a6ba0ab90f4ff").unwrap(), b"www.example.com");
        assert_eq!(dec("a8eb10649cbf").unwrap(), b"no-cache");
        assert_eq!(dec("25a849e95ba97d7f").unwrap(), b"custom-key");
        assert_eq!(
            dec("d07abe941054d444a8200595040b8166e082a62d1bff").unwrap(),
            b"Mon, 21 Oct 2013 20:13:21 GMT"
        );
        assert_eq!(dec("").unwrap(), b"");
    }

    #[test]
    fn refuses_bad_padding_and_eos() {
        // '0' is 00000: padded with zeros instead of ones.
        assert_eq!(dec("00"), Err(BadHuffman));
        // 'a' (00011) then 3 ones: good; then a whole byte of ones: padding longer than 7.
        assert!(dec("1f").is_ok());
        assert_eq!(dec("1fff"), Err(BadHuffman));
        // EOS itself (30 ones) inside a string.
        assert_eq!(dec("ffffffff"), Err(BadHuffman));
    }

    #[test]
    fn every_byte_string_round_trips() {
        let all: Vec<u8> = (0..=255u8).collect();
        for s in [
            &all[..],
            b"",
            b"a",
            b"/index.html?q=1",
            &[0, 255, 10, 13][..],
        ] {
            let mut enc = Vec::new();
            encode(s, &mut enc);
            assert_eq!(enc.len(), encoded_len(s));
            let mut out = Vec::new();
            decode(&enc, &mut out).unwrap();
            assert_eq!(out, s);
        }
    }
}
