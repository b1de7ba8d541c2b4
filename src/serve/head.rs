//! The fast path's edge: which request heads it takes ([`read_head`]), which responses it writes
//! itself ([`is_event_stream`]), and the bytes it writes for them ([`response_head`],
//! [`ChunkHeader`]).
//!
//! The fast path takes only a subset of what hyper accepts, parsed with hyper's own parser
//! (`httparse`, with hyper's settings) into the request hyper would build: anything outside it,
//! ambiguous or hostile (a body, `Content-Length` with `Transfer-Encoding`, obs-fold, bad
//! characters, an oversized head, a pipelined request, HTTP/1.0, an upgrade), is handed to hyper
//! with the bytes already read, and hyper answers it as it would have.

use std::io::Write as _;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};

use super::body::RequestBody;

/// The most bytes of a head the fast path buffers before handing it to hyper (which takes heads
/// up to about 400 KiB).
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// The most header lines, as hyper's default.
const MAX_HEADERS: usize = 100;

/// The longest request target hyper takes.
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// What the bytes read so far of a connection make of a request head.
#[derive(Debug)]
pub(super) enum Head {
    /// Not yet a whole head, and no reason yet to hand it over: read on.
    Partial,
    /// A head the fast path takes, exactly the whole of the bytes read.
    Fast(Box<Request<RequestBody>>),
    /// Hyper's to answer (with the bytes read, untouched).
    Hyper,
}

/// Reads what the client sent so far (`buf`, not empty). `partial_at` is how much of it was
/// read when it was last found to be a partial head, if it was: as hyper does, the head is then
/// parsed again only once the bytes since hold the end of a head, so that a head sent a byte at
/// a time costs a scan of each byte, not a parse.
pub(super) fn read_head(buf: &[u8], partial_at: Option<usize>) -> Head {
    // Quick refusals before parsing: the HTTP/2 preface, and anything that is no `GET`.
    let start = &buf[..buf.len().min(4)];
    if !b"GET ".starts_with(start) {
        return Head::Hyper;
    }
    if let Some(partial_at) = partial_at
        && !is_complete_fast(buf, partial_at)
    {
        return if buf.len() < MAX_HEAD {
            Head::Partial
        } else {
            Head::Hyper
        };
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match httparse::ParserConfig::default().parse_request(&mut parsed, buf) {
        Ok(httparse::Status::Complete(len)) if len == buf.len() => {
            fast_request(&parsed).map_or(Head::Hyper, |r| Head::Fast(Box::new(r)))
        }
        // A pipelined request behind it, or bytes after the head: hyper's.
        Ok(httparse::Status::Complete(_)) => Head::Hyper,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Head::Partial,
        // Too long, or not a head hyper would take (hyper answers the error).
        Ok(httparse::Status::Partial) | Err(_) => Head::Hyper,
    }
}

/// Whether the bytes from a little before `partial_at` on hold the end of a head: hyper's own
/// scan (`is_complete_fast`), so that both parse a growing head at the same points.
fn is_complete_fast(bytes: &[u8], partial_at: usize) -> bool {
    let bytes = &bytes[partial_at.saturating_sub(3).min(bytes.len())..];
    bytes.iter().enumerate().any(|(i, &b)| {
        let after = &bytes[i + 1..];
        match b {
            b'\r' => after.starts_with(b"\n\r\n"),
            b'\n' => after.starts_with(b"\n") || after.starts_with(b"\r\n"),
            _ => false,
        }
    })
}

/// The request hyper would build from `parsed`, if the fast path takes it.
fn fast_request(parsed: &httparse::Request<'_, '_>) -> Option<Request<RequestBody>> {
    if parsed.method? != "GET" || parsed.version? != 1 {
        return None;
    }
    let path = parsed.path?;
    if path.len() > MAX_URI_LEN || !path.starts_with('/') {
        return None;
    }
    let uri = Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(path.as_bytes())).ok()?;
    let mut map = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        match name {
            // A body, an expectation or a protocol change: hyper's.
            header::CONTENT_LENGTH
            | header::TRANSFER_ENCODING
            | header::EXPECT
            | header::UPGRADE
            | header::TE => return None,
            // Only a plain `keep-alive`: `close`, `upgrade` and the rest are hyper's.
            header::CONNECTION
                if !value
                    .as_bytes()
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"keep-alive") =>
            {
                return None;
            }
            _ => {}
        }
        if name.as_str() == "http2-settings" {
            return None;
        }
        map.append(name, value);
    }
    let mut request = Request::new(RequestBody::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = map;
    Some(request)
}

/// Whether the fast path writes `response` itself: a `200` event stream whose length hyper
/// would not know either (so chunked), and that keeps the connection as it is.
pub(super) fn is_event_stream<B: http_body::Body>(response: &Response<B>) -> bool {
    let headers = response.headers();
    response.status() == StatusCode::OK
        && response.version() == Version::HTTP_11
        // A body of known length hyper sends with a `content-length`, not chunked.
        && response.body().size_hint().exact().is_none()
        // A reason phrase of its own, hyper writes.
        && response.extensions().get::<hyper::ext::ReasonPhrase>().is_none()
        && crate::layer::is_event_stream(headers)
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
        && !headers.contains_key(header::CONNECTION)
}

/// The response head of an event stream, as hyper writes it: the status line, the response's
/// headers (names lower case, as `http` keeps them), `transfer-encoding: chunked`, and a `date`
/// unless the response has one.
pub(super) fn response_head(headers: &HeaderMap, date: impl FnOnce() -> String) -> Vec<u8> {
    let mut head = Vec::with_capacity(
        64 + headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>(),
    );
    head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    if !headers.contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(date().as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// The size line of one chunk (`{len:x}\r\n`), on the stack.
pub(super) struct ChunkHeader {
    bytes: [u8; 18],
    len: u8,
}

impl ChunkHeader {
    pub(super) fn new(size: usize) -> Self {
        let mut bytes = [0; 18];
        let mut cursor = std::io::Cursor::new(&mut bytes[..]);
        // 16 hex digits and CRLF fit in 18 bytes.
        let _ = write!(cursor, "{size:x}\r\n");
        let len = cursor.position() as u8;
        ChunkHeader { bytes, len }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(head: &str) -> Request<RequestBody> {
        match read_head(head.as_bytes(), None) {
            Head::Fast(request) => *request,
            other => panic!("{head:?}: {other:?}"),
        }
    }

    fn kind(head: &str) -> &'static str {
        match read_head(head.as_bytes(), None) {
            Head::Partial => "partial",
            Head::Fast(_) => "fast",
            Head::Hyper => "hyper",
        }
    }

    const SSE: &str = "GET /events/a?x=1 HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n";

    #[test]
    fn an_event_source_request_is_taken_with_hypers_parts() {
        let request = fast(SSE);
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/events/a?x=1");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["host"], "h");
        assert_eq!(request.headers().len(), 2);
    }

    #[test]
    fn partial_heads_read_on_until_the_limit() {
        assert_eq!(
            kind("GET /events HTTP/1.1\r\nAccept: text/event-stream\r\n"),
            "partial"
        );
        assert_eq!(kind("G"), "partial");
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(kind(&long), "hyper");
    }

    #[test]
    fn everything_else_is_hypers() {
        for head in [
            // Other methods, versions, targets.
            "POST / HTTP/1.1\r\nAccept: text/event-stream\r\nContent-Length: 0\r\n\r\n",
            "HEAD / HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            "GET / HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n",
            "GET http://h/ HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            "GET * HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            // Bodies, ambiguous framing, upgrades.
            "GET / HTTP/1.1\r\nAccept: text/event-stream\r\nContent-Length: 0\r\n\r\n",
            "GET / HTTP/1.1\r\nAccept: text/event-stream\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nAccept: text/event-stream\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "GET / HTTP/1.1\r\nAccept: text/event-stream\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nAccept: text/event-stream\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nAccept: text/event-stream\r\nHTTP2-Settings: AAA\r\n\r\n",
            // Malformed: obs-fold, bad characters, a space before the colon, a bare LF line.
            "GET / HTTP/1.1\r\nAccept: text/event-stream\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nAccept: text/event-stream\r\nX: a\x00b\r\n\r\n",
            "GET / HTTP/1.1\r\nAccept : text/event-stream\r\n\r\n",
            "GET /a b HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            // A pipelined request behind the head.
            "GET / HTTP/1.1\r\nAccept: text/event-stream\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(kind(head), "hyper", "{head:?}");
        }
    }

    #[test]
    fn a_partial_head_is_parsed_again_only_once_its_end_has_come() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        // Were it parsed, the bad byte would send it to hyper; the end has not come yet.
        let bad = b"GET / HTTP/1.1\r\nX: \x01";
        assert!(matches!(read_head(bad, Some(bad.len() - 1)), Head::Partial));
        assert!(matches!(
            read_head(head, Some(head.len() - 1)),
            Head::Fast(_)
        ));
        assert!(matches!(
            read_head(head, Some(head.len() - 4)),
            Head::Fast(_)
        ));
        assert!(matches!(
            read_head(b"GET / HTTP/1.1\n\n", Some(15)),
            Head::Fast(_)
        ));
        assert!(is_complete_fast(b"ab\n\r\n", 1));
        assert!(!is_complete_fast(b"ab\r\n\r", 0));
    }

    #[test]
    fn any_bodyless_get_is_taken_as_its_response_may_be_a_stream() {
        assert_eq!(kind("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), "fast");
        assert_eq!(kind("GET /?a HTTP/1.1\r\n\r\n"), "fast");
        assert_eq!(
            kind("GET / HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n"),
            "fast"
        );
    }

    #[test]
    fn the_response_head_is_hypers() {
        let response = Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(http_body_util::StreamBody::new(
                futures_util::stream::pending::<
                    Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>,
                >(),
            ))
            .unwrap();
        assert!(is_event_stream(&response));
        let head = response_head(response.headers(), || {
            "Tue, 01 Dec 2026 00:00:00 GMT".into()
        });
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
             transfer-encoding: chunked\r\ndate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n"
        );
        let sized = Response::builder()
            .header("content-type", "text/event-stream")
            .header("content-length", "0")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        assert!(!is_event_stream(&sized));
        let known_length = Response::builder()
            .header("content-type", "text/event-stream")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"data: x\n\n",
            )))
            .unwrap();
        assert!(
            !is_event_stream(&known_length),
            "hyper sends it with a content-length"
        );
        assert_eq!(ChunkHeader::new(0x1a2).as_bytes(), b"1a2\r\n");
        assert_eq!(ChunkHeader::new(usize::MAX).as_bytes().len(), 18);
    }
}
