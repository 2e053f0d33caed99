//! Writing header blocks: `:status` and fields as static-table references or literals
//! without indexing, never Huffman-coded (see `super` for why).
//!
//! Not here: checking that a field may be sent (the connection's job).

use std::sync::OnceLock;

use super::table::STATIC;

/// Appends `:status` for `status` (three digits; the caller gives 100 to 999).
pub fn status(out: &mut Vec<u8>, status: u16) {
    // Indexed where the static table has it (RFC 7541 Appendix A, 8 to 14).
    let indexed = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if indexed != 0 {
        out.push(0x80 | indexed);
        return;
    }
    // Literal without indexing, name index 8 (`:status`).
    let s = status.min(999);
    out.extend_from_slice(&[
        0x08,
        3,
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]);
}

/// Appends one field as a literal without indexing: its name by static index when the
/// table has it, else as a string, lowercased (an HTTP/1.1 upstream's `Content-Type` is
/// `content-type` in HTTP/2).
pub fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match static_name(name) {
        Some(i) => integer(out, i, 4, 0x00),
        None => {
            out.push(0x00);
            integer(out, name.len(), 7, 0x00);
            let at = out.len();
            out.extend_from_slice(name);
            out[at..].make_ascii_lowercase();
        }
    }
    string(out, value);
}

/// A string literal, not Huffman-coded.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    integer(out, s.len(), 7, 0x00);
    out.extend_from_slice(s);
}

/// The static index of a field name (any case), among the names a response may carry: 15
/// on (the pseudo-header fields before them are not fields of a response but `:status`).
fn static_name(name: &[u8]) -> Option<usize> {
    by_length()
        .get(name.len())?
        .iter()
        .map(|&i| i as usize)
        .find(|&i| STATIC[i - 1].0.as_bytes().eq_ignore_ascii_case(name))
}

/// The static table's names from index 15 on, by length: a name is compared only with the
/// few of its length.
fn by_length() -> &'static [Vec<u8>] {
    static BY_LENGTH: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BY_LENGTH.get_or_init(|| {
        let longest = STATIC.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let mut by = vec![Vec::new(); longest + 1];
        for (i, (n, _)) in STATIC.iter().enumerate().skip(14) {
            by[n.len()].push(i as u8 + 1);
        }
        by
    })
}

/// An integer with an `n`-bit prefix, the first byte's other bits `flags` (RFC 7541 5.1).
fn integer(out: &mut Vec<u8>, value: usize, n: u8, flags: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::super::Decoder;
    use super::*;

    fn decoded(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        Decoder::new(4096)
            .decode(block, &mut Vec::new(), usize::MAX, |n, v| {
                out.push((n.to_vec(), v.to_vec()))
            })
            .unwrap();
        out
    }

    #[test]
    fn every_static_name_is_found_in_any_case() {
        for (i, (n, _)) in STATIC.iter().enumerate().skip(14) {
            assert_eq!(static_name(n.as_bytes()), Some(i + 1), "{n}");
            let upper = n.to_ascii_uppercase();
            assert_eq!(static_name(upper.as_bytes()), Some(i + 1), "{upper}");
        }
        assert_eq!(static_name(b":path"), None);
        assert_eq!(static_name(b"x-custom"), None);
        assert_eq!(static_name(b""), None);
    }

    #[test]
    fn golden_blocks() {
        let mut out = Vec::new();
        status(&mut out, 200);
        status(&mut out, 302);
        field(&mut out, b"content-length", b"22");
        field(&mut out, b"X-A", b"b");
        // 88 = :status 200; 08 03 "302"; 0f 0d = content-length (28 = 15 + 13); 00 03 "x-a".
        assert_eq!(
            out,
            [
                &[0x88, 0x08, 3][..],
                b"302",
                &[0x0f, 0x0d, 2],
                b"22",
                &[0x00, 3],
                b"x-a",
                &[1],
                b"b"
            ]
            .concat()
        );
    }

    #[test]
    fn what_is_encoded_decodes_back() {
        let long = vec![b'v'; 300];
        let mut out = Vec::new();
        for s in [100, 200, 204, 206, 304, 400, 404, 500, 503, 999] {
            status(&mut out, s);
        }
        field(&mut out, b"accept-charset", b"utf-8");
        field(&mut out, b"www-authenticate", &long);
        field(&mut out, b"Content-Type", b"text/plain");
        // A name whose length needs a second byte after its 7-bit prefix.
        let name = vec![b'n'; 130];
        field(&mut out, &name, b"");
        let got = decoded(&out);
        let statuses: Vec<&[u8]> = got[..10].iter().map(|(_, v)| &v[..]).collect();
        assert_eq!(
            statuses,
            [
                &b"100"[..],
                b"200",
                b"204",
                b"206",
                b"304",
                b"400",
                b"404",
                b"500",
                b"503",
                b"999"
            ]
        );
        assert_eq!(got[10], (b"accept-charset".to_vec(), b"utf-8".to_vec()));
        assert_eq!(got[11], (b"www-authenticate".to_vec(), long));
        assert_eq!(got[12], (b"content-type".to_vec(), b"text/plain".to_vec()));
        assert_eq!(got[13], (name, Vec::new()));
    }
}
