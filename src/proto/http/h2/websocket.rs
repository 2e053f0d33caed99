//! WebSocket over HTTP/2 (RFC 8441). corelane announces `SETTINGS_ENABLE_CONNECT_PROTOCOL`; an
//! extended CONNECT with `:protocol` `websocket` becomes, upstream, the HTTP/1.1 upgrade of RFC
//! 6455 4.1 (`GET`, `Connection: upgrade`, `Upgrade: websocket`, a `Sec-WebSocket-Key` of
//! corelane's, the client's other fields as they are: `sec-websocket-version`, `-protocol`,
//! `-extensions`, `origin`, cookies), sent through the same request path as any
//! ([`handle`]: routes, header rules, endpoint choice, retries, metrics, access log). An
//! upstream that switches (101) gets the client a `200` on the stream (RFC 8441 5), and the
//! stream ([`Tunnel`]) and the upstream connection are joined as an HTTP/1.1 upgrade's are
//! (`crate::proto::http::tunnel`). Any other answer goes to the client as it is, except a
//! 2xx without the switch, which over HTTP/2 would read as the tunnel's success: `502`.
//!
//! Not here: checking the upstream's `Sec-WebSocket-Accept` (a 101 is taken as the switch, as
//! for HTTP/1.1 clients, whose own client checks it), other `:protocol` values (501), plain
//! `CONNECT` (501).

use std::cell::RefCell;
use std::rc::Rc;

use hyper::Request;
use hyper::http::{HeaderValue, Method, StatusCode, Version, header};

use super::fields::Fields;
use super::stream::{Answers, Head, RecvBody, Shared, StreamState, deliver, with_length};
use crate::proto::http::body::ClientBody;
use crate::proto::http::{Conn, handle};

/// Whether an extended CONNECT asks for WebSocket.
pub(super) fn asks(fields: &Fields) -> bool {
    fields.method() == b"CONNECT"
        && fields
            .protocol()
            .is_some_and(|p| p.eq_ignore_ascii_case(b"websocket"))
}

/// The HTTP/1.1 upgrade request an extended CONNECT stands for, its stream (`body`) as the
/// client's side of the tunnel to come.
pub(super) fn request(
    fields: &Fields,
    body: RecvBody,
) -> Result<Request<ClientBody>, &'static str> {
    let mut req = super::serve::request(fields, body)?;
    *req.method_mut() = Method::GET;
    *req.version_mut() = Version::HTTP_11;
    let h = req.headers_mut();
    if !h.contains_key(header::HOST) {
        let authority = fields.authority().ok_or("no :authority")?;
        let host = HeaderValue::from_bytes(authority).map_err(|_| "bad :authority")?;
        h.insert(header::HOST, host);
    }
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_KEY, key());
    h.entry(header::SEC_WEBSOCKET_VERSION)
        .or_insert(HeaderValue::from_static("13"));
    Ok(req)
}

/// A `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 4.1). A nonce, not a secret.
fn key() -> HeaderValue {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut raw = [0u8; 18];
    raw[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    raw[8..16].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    let mut out = [b'='; 24];
    for (i, c) in raw.chunks(3).enumerate() {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        for j in 0..4 {
            out[i * 4 + j] = B64[(n >> (18 - 6 * j) & 63) as usize];
        }
    }
    // 16 bytes make 22 characters and two of padding.
    out[22] = b'=';
    out[23] = b'=';
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="))
}

/// An extended CONNECT's task: the upgrade's answer; on a switch, `200` and the stream left
/// to the tunnel `handle` started; else the answer, as any request's.
pub(super) async fn serve(
    ctx: Rc<Conn>,
    shared: Rc<Shared>,
    st: Rc<RefCell<StreamState>>,
    req: Request<ClientBody>,
) {
    let _answers = Answers(&st, &shared);
    let resp = Box::pin(handle::handle(&ctx, req)).await;
    let (mut parts, body) = resp.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        for name in [
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_ACCEPT,
        ] {
            parts.headers.remove(&name);
        }
        let mut s = st.borrow_mut();
        // The tunnel (spawned by `handle`) has not run yet: nothing awaited since.
        debug_assert!(!s.out_end);
        s.head = Some(Head::Map(StatusCode::OK, parts.headers));
        s.tunnel = true;
        shared.queue(&mut s);
        return;
    }
    let (mut parts, body) = if parts.status.is_success() {
        // Over HTTP/2 a 2xx is the tunnel's success (RFC 8441 5): an upstream (or a `respond`
        // route) that answered without switching must not be taken for one.
        tracing::debug!(status = %parts.status, "WebSocket over HTTP/2: no switch upstream");
        let text = "the upstream did not switch to WebSocket";
        handle::error(StatusCode::BAD_GATEWAY, text).into_parts()
    } else {
        (parts, body)
    };
    with_length(parts.status, &mut parts.headers, &body);
    deliver(
        &st,
        &shared,
        Head::Map(parts.status, parts.headers),
        Some(body),
    )
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_16_bytes_in_base64() {
        let a = super::key();
        let b = super::key();
        assert_ne!(a, b);
        let text = a.to_str().unwrap();
        assert_eq!(text.len(), 24);
        assert!(text.ends_with("==") && !text[..22].contains('='), "{text}");
    }
}
