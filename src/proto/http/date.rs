//! The `Date` of the responses corelane writes itself on the HTTP/1.1 fast path (`respond` and
//! `redirect` routes), as hyper adds one to those it writes: RFC 9110's IMF-fixdate, formatted
//! at most once a second per worker thread (hyper caches it the same way).
//!
//! Not here: the `Date` of relayed responses, which is the upstream's.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT`: always 29 bytes.
const LEN: usize = 29;

thread_local! {
    static NOW: RefCell<(u64, [u8; LEN])> = const { RefCell::new((u64::MAX, [0; LEN])) };
}

/// Appends `date: <now>\r\n` to `out`.
pub fn write(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == LEN {
                cache.1.copy_from_slice(text.as_bytes());
                cache.0 = secs;
            }
        }
        if cache.0 == secs {
            out.extend_from_slice(b"date: ");
            out.extend_from_slice(&cache.1);
            out.extend_from_slice(b"\r\n");
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_date_header_in_imf_fixdate() {
        let mut out = Vec::new();
        super::write(&mut out);
        let text = String::from_utf8(out).unwrap();
        let value = text
            .strip_prefix("date: ")
            .unwrap()
            .strip_suffix("\r\n")
            .unwrap();
        let parsed = httpdate::parse_http_date(value).unwrap();
        let off = std::time::SystemTime::now().duration_since(parsed).unwrap();
        assert!(off.as_secs() < 5, "{value}");
        assert!(value.ends_with(" GMT") && value.len() == 29, "{value}");
    }
}
