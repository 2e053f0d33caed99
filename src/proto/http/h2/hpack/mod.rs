//! HPACK (RFC 7541), the header compression of HTTP/2: a decoder for request header blocks
//! and a stateless encoder for response header blocks.
//!
//! Decoding follows the RFC whole: indexed fields, literals with and without indexing, never
//! indexed literals, table size updates (only at a block's start, never above what corelane
//! announced), Huffman strings ([`huffman`]). Every error is the connection's
//! COMPRESSION_ERROR: once a block fails, the two sides' tables may differ. The decoder hands
//! each field to a callback as two slices (from the tables, the block, or a scratch buffer for
//! Huffman strings), so a field that is only looked at is never copied; the caller counts the
//! decoded size (a 4 KB table entry named by one index byte, a thousand times, must not become
//! 4 MB of memory).
//!
//! Encoding ([`encode`]) uses the static table and plain literals without indexing, never the
//! dynamic table and never Huffman (as HAProxy's encoder): nothing to keep per connection, no
//! table size to follow, and responses are cheap to write. The cost is a few dozen bytes per
//! response on the wire.
//!
//! Why by hand: this is `h2`'s HPACK without its `http` types, so that a decoded field can be
//! matched and copied once, and a connection's table can wait with it in the parking lot.

pub mod encode;
pub mod huffman;
pub mod table;

use table::{Dynamic, STATIC};

/// Why a header block does not decode (each is a COMPRESSION_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The block ends inside a representation.
    Truncated,
    /// An integer longer than any index or length can be.
    Overflow,
    /// Index 0, or past the end of both tables.
    BadIndex,
    /// A Huffman string that does not decode.
    BadHuffman,
    /// A table size update above the size announced, after a field, or a third one.
    BadSizeUpdate,
    /// The block copied more into the table than the caller allows (see
    /// [`Decoder::decode`]).
    TooMuch,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecodeError::Truncated => "header block truncated",
            DecodeError::Overflow => "integer overflow in header block",
            DecodeError::BadIndex => "bad table index in header block",
            DecodeError::BadHuffman => "bad Huffman string in header block",
            DecodeError::BadSizeUpdate => "bad table size update in header block",
            DecodeError::TooMuch => "header block copies too much into the table",
        })
    }
}

/// One connection's decoding state: its dynamic table.
#[derive(Debug)]
pub struct Decoder {
    table: Dynamic,
    /// `SETTINGS_HEADER_TABLE_SIZE` as announced: the most a size update may ask for.
    limit: usize,
}

/// Where a string of the block is: in the block as sent, or Huffman-decoded into scratch.
#[derive(Clone, Copy)]
enum Str {
    Raw(usize, usize),
    Decoded(usize, usize),
}

impl Decoder {
    /// A decoder whose table may grow to `limit` octets (our `SETTINGS_HEADER_TABLE_SIZE`).
    pub fn new(limit: usize) -> Self {
        Decoder {
            table: Dynamic::new(limit),
            limit,
        }
    }

    /// Decodes one whole header block, calling `field(name, value)` for each field in order.
    /// `scratch` is working space for Huffman strings (its contents are not kept).
    ///
    /// `copies` bounds the octets the block may copy into the dynamic table: a literal with
    /// incremental indexing whose name is the newest entry's is two bytes of input for up to
    /// 4 KB copied, over and over, where an indexed field costs nothing (it is handed out as
    /// a slice).
    pub fn decode(
        &mut self,
        block: &[u8],
        scratch: &mut Vec<u8>,
        mut copies: usize,
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        let mut pos = 0;
        let mut fields = false;
        let mut updates = 0;
        while let Some(&first) = block.get(pos) {
            if first & 0x80 != 0 {
                // Indexed field.
                let i = integer(block, &mut pos, 7)?;
                let (n, v) = self.get(i)?;
                field(n, v);
            } else if first & 0x40 != 0 {
                // Literal with incremental indexing: the field goes into the table.
                let i = integer(block, &mut pos, 6)?;
                scratch.clear();
                let name = if i == 0 {
                    Some(string(block, &mut pos, scratch)?)
                } else {
                    None
                };
                let value = string(block, &mut pos, scratch)?;
                let mut entry = Vec::new();
                match name {
                    Some(n) => entry.extend_from_slice(resolve(n, block, scratch)),
                    None => entry.extend_from_slice(self.get(i)?.0),
                }
                let name_len = entry.len();
                entry.extend_from_slice(resolve(value, block, scratch));
                copies = copies
                    .checked_sub(entry.len())
                    .ok_or(DecodeError::TooMuch)?;
                let entry = entry.into_boxed_slice();
                let (n, v) = entry.split_at(name_len);
                field(n, v);
                self.table.insert(entry, name_len);
            } else if first & 0x20 != 0 {
                // Dynamic table size update: only before the block's first field.
                let size = integer(block, &mut pos, 5)?;
                updates += 1;
                // At most two, before the first field (RFC 7541 4.2: a smallest, then a final).
                if fields || updates > 2 || size > self.limit {
                    return Err(DecodeError::BadSizeUpdate);
                }
                self.table.resize(size);
                continue;
            } else {
                // Literal without indexing (0000) or never indexed (0001): the same to a proxy
                // that does not index what it sends on.
                let i = integer(block, &mut pos, 4)?;
                scratch.clear();
                let name = if i == 0 {
                    Some(string(block, &mut pos, scratch)?)
                } else {
                    None
                };
                let value = string(block, &mut pos, scratch)?;
                let v = resolve(value, block, scratch);
                match name {
                    Some(n) => field(resolve(n, block, scratch), v),
                    None => field(self.get(i)?.0, v),
                }
            }
            fields = true;
        }
        Ok(())
    }

    /// The field at index `i` of the two tables (static first, RFC 7541 2.3.3).
    fn get(&self, i: usize) -> Result<(&[u8], &[u8]), DecodeError> {
        match i {
            0 => Err(DecodeError::BadIndex),
            1..=61 => {
                let (n, v) = STATIC[i - 1];
                Ok((n.as_bytes(), v.as_bytes()))
            }
            _ => self.table.get(i - 62).ok_or(DecodeError::BadIndex),
        }
    }

    /// The dynamic table's size in octets, as RFC 7541 counts it.
    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Gives back spare memory before the connection waits idle.
    pub fn shrink(&mut self) {
        self.table.shrink();
    }
}

fn resolve<'a>(s: Str, block: &'a [u8], scratch: &'a [u8]) -> &'a [u8] {
    match s {
        Str::Raw(a, b) => &block[a..b],
        Str::Decoded(a, b) => &scratch[a..b],
    }
}

/// An integer with an `n`-bit prefix at `block[*pos]` (RFC 7541 5.1).
fn integer(block: &[u8], pos: &mut usize, n: u8) -> Result<usize, DecodeError> {
    let mask = (1usize << n) - 1;
    let first = *block.get(*pos).ok_or(DecodeError::Truncated)?;
    *pos += 1;
    let mut value = usize::from(first) & mask;
    if value < mask {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let b = *block.get(*pos).ok_or(DecodeError::Truncated)?;
        *pos += 1;
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        // Four continuation bytes reach 2^28: more than any block holds.
        if shift > 21 {
            return Err(DecodeError::Overflow);
        }
    }
}

/// A string literal at `block[*pos]` (RFC 7541 5.2); a Huffman one is decoded onto `scratch`.
fn string(block: &[u8], pos: &mut usize, scratch: &mut Vec<u8>) -> Result<Str, DecodeError> {
    let huffman = block.get(*pos).ok_or(DecodeError::Truncated)? & 0x80 != 0;
    let len = integer(block, pos, 7)?;
    let start = *pos;
    let end = start
        .checked_add(len)
        .filter(|&e| e <= block.len())
        .ok_or(DecodeError::Truncated)?;
    *pos = end;
    if !huffman {
        return Ok(Str::Raw(start, end));
    }
    let from = scratch.len();
    huffman::decode(&block[start..end], scratch).map_err(|_| DecodeError::BadHuffman)?;
    Ok(Str::Decoded(from, scratch.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn decode(d: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        d.decode(block, &mut scratch, usize::MAX, |n, v| {
            out.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ))
        })?;
        Ok(out)
    }

    fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// RFC 7541 C.3 (plain) and C.4 (Huffman): three requests on one connection, each
    /// block's table state carried to the next; checked after each block.
    #[test]
    fn rfc_request_examples() {
        for blocks in [
            [
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "8286 84be 5808 6e6f 2d63 6163 6865",
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ],
            [
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                "8286 84be 5886 a8eb 1064 9cbf",
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ],
        ] {
            let mut d = Decoder::new(4096);
            let got = decode(&mut d, &hex(blocks[0])).unwrap();
            let first = [
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ];
            assert_eq!(got, fields(&first));
            assert_eq!(d.table_size(), 57);
            let got = decode(&mut d, &hex(blocks[1])).unwrap();
            let mut second = first.to_vec();
            second.push(("cache-control", "no-cache"));
            assert_eq!(got, fields(&second));
            assert_eq!(d.table_size(), 110);
            let got = decode(&mut d, &hex(blocks[2])).unwrap();
            let third = [
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ];
            assert_eq!(got, fields(&third));
            assert_eq!(d.table_size(), 164);
        }
    }

    /// RFC 7541 C.6: three responses with a 256-octet table, which evicts as it goes.
    #[test]
    fn rfc_response_examples_evict() {
        let mut d = Decoder::new(256);
        let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
        let got = decode(&mut d, &hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3")).unwrap();
        let loc = ("location", "https://www.example.com");
        assert_eq!(
            got,
            fields(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", date1),
                loc
            ])
        );
        assert_eq!(d.table_size(), 222);
        let got = decode(&mut d, &hex("4883 640e ffc1 c0bf")).unwrap();
        assert_eq!(
            got,
            fields(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", date1),
                loc
            ])
        );
        assert_eq!(d.table_size(), 222);
        let got = decode(&mut d, &hex("88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07")).unwrap();
        assert_eq!(
            got,
            fields(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                loc,
                ("content-encoding", "gzip"),
                (
                    "set-cookie",
                    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
                ),
            ])
        );
        assert_eq!(d.table_size(), 215);
    }

    /// RFC 7541 C.2: one representation of each kind.
    #[test]
    fn rfc_single_representations() {
        let mut d = Decoder::new(4096);
        let got = decode(
            &mut d,
            &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
        )
        .unwrap();
        assert_eq!(got, fields(&[("custom-key", "custom-header")]));
        assert_eq!(d.table_size(), 55);
        let mut d = Decoder::new(4096);
        let got = decode(&mut d, &hex("040c 2f73 616d 706c 652f 7061 7468")).unwrap();
        assert_eq!(got, fields(&[(":path", "/sample/path")]));
        assert_eq!(d.table_size(), 0);
        let got = decode(&mut d, &hex("1008 7061 7373 776f 7264 0673 6563 7265 74")).unwrap();
        assert_eq!(got, fields(&[("password", "secret")]));
        assert_eq!(d.table_size(), 0);
        let got = decode(&mut d, &hex("82")).unwrap();
        assert_eq!(got, fields(&[(":method", "GET")]));
    }

    /// A name copied from the newest entry, again and again (`7e 00`: two bytes for up to
    /// 4 KB copied each time), runs out of the copy budget.
    #[test]
    fn copies_into_the_table_are_bounded() {
        let mut d = Decoder::new(4096);
        let mut block = vec![0x40, 0x7f, 0xa1, 0x1e];
        block.extend(std::iter::repeat_n(b'n', 4000)); // name of 4,000 bytes
        block.push(0x00); // empty value
        d.decode(&block, &mut Vec::new(), 5000, |_, _| {}).unwrap();
        let again: Vec<u8> = std::iter::repeat_n([0x7e, 0x00], 100).flatten().collect();
        assert_eq!(
            d.decode(&again, &mut Vec::new(), 10_000, |_, _| {}),
            Err(DecodeError::TooMuch)
        );
        let mut d = Decoder::new(4096);
        d.decode(&block, &mut Vec::new(), 5000, |_, _| {}).unwrap();
        assert!(
            d.decode(&again[..4], &mut Vec::new(), 10_000, |_, _| {})
                .is_ok()
        );
    }

    /// Every strict prefix of a valid block (cut inside a representation) is refused, never
    /// read past its end; a prefix ending between representations decodes.
    #[test]
    fn every_prefix_is_refused_or_decodes_to_a_prefix() {
        let block = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
        // The table as the two requests before this one (C.4.1, C.4.2) leave it.
        let before = |d: &mut Decoder| {
            decode(d, &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")).unwrap();
            decode(d, &hex("8286 84be 5886 a8eb 1064 9cbf")).unwrap();
        };
        let mut whole = Decoder::new(4096);
        before(&mut whole);
        let all = decode(&mut whole, &block).unwrap();
        // Representation boundaries: 82 87 85 bf, then the literal.
        let boundaries = [0, 1, 2, 3, 4, block.len()];
        for end in 0..block.len() {
            let mut d = Decoder::new(4096);
            before(&mut d);
            match decode(&mut d, &block[..end]) {
                Ok(got) => {
                    assert!(boundaries.contains(&end), "prefix {end} decoded");
                    assert_eq!(got[..], all[..got.len()]);
                }
                Err(e) => {
                    assert!(!boundaries.contains(&end), "prefix {end}: {e}");
                    assert!(matches!(
                        e,
                        DecodeError::Truncated | DecodeError::BadHuffman
                    ));
                }
            }
        }
    }

    #[test]
    fn bad_blocks_are_refused() {
        let mut d = Decoder::new(4096);
        let mut err = |b: &str| decode(&mut d, &hex(b)).unwrap_err();
        assert_eq!(err("80"), DecodeError::BadIndex);
        assert_eq!(err("be"), DecodeError::BadIndex); // 62: the dynamic table is empty
        assert_eq!(err("7f00 00"), DecodeError::BadIndex); // literal naming index 63
        assert_eq!(err("ff ff ff ff ff 0f"), DecodeError::Overflow);
        assert_eq!(err("3f e2 1f"), DecodeError::BadSizeUpdate); // 4097 > 4096
        assert_eq!(err("82 20"), DecodeError::BadSizeUpdate); // after a field
        assert_eq!(err("00 81 00 00"), DecodeError::BadHuffman); // name '0' padded with zeros
        assert_eq!(err("00 05 61"), DecodeError::Truncated);
        // Size updates at the start are fine, and shrink the table.
        let mut d = Decoder::new(4096);
        decode(
            &mut d,
            &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
        )
        .unwrap();
        assert_eq!(decode(&mut d, &hex("20 3f e1 1f 82")).unwrap().len(), 1);
        assert_eq!(
            decode(&mut d, &hex("20 20 20 82")).unwrap_err(),
            DecodeError::BadSizeUpdate
        );
        assert_eq!(d.table_size(), 0);
    }
}
