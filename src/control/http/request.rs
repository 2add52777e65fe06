//! HTTP/1.1 request framing, sans I/O: [`parse`] looks at the bytes a connection
//! has buffered and says whether they hold a whole request (and how many bytes it
//! took), need more bytes, or must be refused with a status.
//!
//! Heads are parsed by `httparse`; bodies are framed by `Content-Length`, and a
//! request with neither `Content-Length` nor `Transfer-Encoding` has an empty body
//! whatever its method (RFC 9112 section 6.3), so `curl -X POST` works as it is.
//! Limits: head at most [`MAX_HEAD`] (431), body at most [`MAX_BODY`] (413),
//! chunked bodies are refused (501), anything malformed is 400. Every refusal
//! closes the connection, since the rest of its bytes cannot be framed.

/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest request body.
pub const MAX_BODY: usize = 64 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;

/// One whole request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path as sent (still percent-encoded), without the query string.
    pub path: String,
    /// The raw query string (after `?`), not decoded.
    pub query: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// HTTP/1.1 or later: the client reads a chunked body.
    pub http11: bool,
}

impl Request {
    /// The path's `/`-separated segments after the leading `/`, each
    /// percent-decoded (so an encoded `%2F` stays inside its segment).
    pub fn segments(&self) -> Vec<String> {
        // `parse` only accepts paths whose segments all decode.
        self.path
            .split('/')
            .skip(1)
            .map(|s| percent_decode(s).unwrap_or_default())
            .collect()
    }

    /// The first header of that (lower-case) name, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }
}

/// A request that cannot be served: the status and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

/// What the buffered bytes hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole request yet. `expects_continue` is true once the head is whole
    /// and the client asked for `100 Continue` before sending its body.
    Partial { expects_continue: bool },
    /// A request, and how many bytes of the buffer it used.
    Complete(Request, usize),
    /// The bytes cannot be a request.
    Refused(Refusal),
}

fn refuse(status: u16, message: impl Into<String>) -> Parsed {
    Parsed::Refused(Refusal {
        status,
        message: message.into(),
    })
}

/// Frames the request at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD {
                refuse(431, format!("request head is larger than {MAX_HEAD} bytes"))
            } else {
                Parsed::Partial {
                    expects_continue: false,
                }
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return refuse(431, format!("more than {MAX_HEADERS} headers"))
        }
        Err(e) => return refuse(400, format!("malformed request: {e}")),
    };
    if head_len > MAX_HEAD {
        return refuse(431, format!("request head is larger than {MAX_HEAD} bytes"));
    }
    // httparse only returns Complete with every part present.
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default();
    let version = req.version.unwrap_or(1);
    let headers: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let get = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
    };

    if get("transfer-encoding").next().is_some() {
        return refuse(
            501,
            "Transfer-Encoding is not supported; send the body with a Content-Length",
        );
    }
    let lengths: Vec<String> = get("content-length").collect();
    let content_length = match lengths.as_slice() {
        [] => None,
        [one] => match one.parse::<usize>() {
            Ok(n) if one.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return refuse(400, format!("invalid Content-Length {one:?}")),
        },
        _ => return refuse(400, "more than one Content-Length header"),
    };
    // No Content-Length (and no Transfer-Encoding, refused above): no body.
    let body_len = content_length.unwrap_or(0);
    if body_len > MAX_BODY {
        return refuse(
            413,
            format!("body of {body_len} bytes is larger than {MAX_BODY}"),
        );
    }
    if buf.len() - head_len < body_len {
        let expects_continue = get("expect").any(|v| v == "100-continue");
        return Parsed::Partial { expects_continue };
    }

    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path
        .split('/')
        .any(|segment| percent_decode(segment).is_none())
    {
        return refuse(
            400,
            format!("request path {path:?} is not valid percent-encoded UTF-8"),
        );
    }
    if !path.starts_with('/') {
        return refuse(
            400,
            format!("request target {target:?} must start with '/'"),
        );
    }
    let connection: Vec<String> = get("connection").collect();
    let keep_alive = if version == 0 {
        connection.iter().any(|v| v.contains("keep-alive"))
    } else {
        !connection.iter().any(|v| v.contains("close"))
    };
    let body = buf[head_len..head_len + body_len].to_vec();
    let request = Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
        keep_alive,
        http11: version >= 1,
    };
    Parsed::Complete(request, head_len + body_len)
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+` in paths). `None` if an
/// escape is broken or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse(buf) {
            Parsed::Complete(r, n) => (r, n),
            other => panic!("{other:?}"),
        }
    }

    fn status(buf: &[u8]) -> u16 {
        match parse(buf) {
            Parsed::Refused(r) => r.status,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_simple_get() {
        let (r, n) = complete(b"GET /stats?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str(), n),
            ("GET", "/stats", "x=1", 36)
        );
        assert!(r.keep_alive);
        assert_eq!(r.header("host"), Some("a"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn bodies_are_framed_by_content_length() {
        let req = b"POST /a/start HTTP/1.1\r\nContent-Length: 5\r\n\r\nport=GET / HTTP/1.1\r\n\r\n";
        let (r, n) = complete(req);
        assert_eq!(r.body, b"port=");
        // The rest is the next, pipelined request.
        let (r2, _) = complete(&req[n..]);
        assert_eq!(r2.path, "/");
        assert_eq!(
            parse(&req[..n - 1]),
            Parsed::Partial {
                expects_continue: false
            }
        );
    }

    #[test]
    fn every_prefix_of_a_request_is_partial() {
        let req = b"POST /x/start HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\nport=28500";
        for i in 0..req.len() {
            assert!(
                matches!(parse(&req[..i]), Parsed::Partial { .. }),
                "prefix {i}"
            );
        }
        assert!(matches!(parse(req), Parsed::Complete(_, 105)));
    }

    #[test]
    fn expect_continue_is_reported_once_the_head_is_whole() {
        let head = b"POST /x/start HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(
            parse(head),
            Parsed::Partial {
                expects_continue: true
            }
        );
        assert_eq!(
            parse(&head[..20]),
            Parsed::Partial {
                expects_continue: false
            }
        );
    }

    #[test]
    fn keep_alive_rules() {
        assert!(
            !complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn limits_and_refusals() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(status(&big), 431, "a head still incomplete past the limit");
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(status(&big), 431);
        assert_eq!(
            status(b"POST /a HTTP/1.1\r\nContent-Length: 70000\r\n\r\n"),
            413
        );
        assert_eq!(
            status(b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            status(b"POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST /a HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            400,
            "TLS hello"
        );
        assert_eq!(status(b"GET /%zz HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET * HTTP/1.1\r\n\r\n"), 400);
        let many: String = (0..70).map(|i| format!("h{i}: v\r\n")).collect();
        assert_eq!(
            status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
        // GET without a body needs no Content-Length.
        assert!(matches!(
            parse(b"DELETE /a/stop HTTP/1.1\r\n\r\n"),
            Parsed::Complete(..)
        ));
    }

    #[test]
    fn a_request_without_content_length_has_an_empty_body() {
        // What `curl -X POST URL` sends: no Content-Length, no Transfer-Encoding.
        let req = b"POST /a/rotate HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n";
        let (r, n) = complete(req);
        assert_eq!((r.method.as_str(), r.body.len(), n), ("POST", 0, req.len()));
        for method in ["PUT", "PATCH", "DELETE"] {
            let (r, _) = complete(format!("{method} /a HTTP/1.1\r\n\r\n").as_bytes());
            assert!(r.body.is_empty(), "{method}");
        }
        // The bytes after the head are the next request, not a body.
        let two = b"POST /a/rotate HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n";
        let (_, n) = complete(two);
        assert_eq!(complete(&two[n..]).0.path, "/health");
    }

    #[test]
    fn path_segments_are_split_then_decoded() {
        let (r, _) = complete(b"GET /h%20x/config HTTP/1.1\r\n\r\n");
        assert_eq!(r.segments(), ["h x", "config"]);
        let (r, _) = complete(b"POST /a%2Fb/start HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            r.segments(),
            ["a/b", "start"],
            "an encoded slash stays in its segment"
        );
        assert_eq!(r.path, "/a%2Fb/start");
        assert_eq!(percent_decode("a+b%2Fc"), Some("a+b/c".into()));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
