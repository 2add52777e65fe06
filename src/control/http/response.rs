//! HTTP responses, sans I/O: a status, extra headers and a JSON body, encoded to
//! bytes by [`Response::encode`]. Every answer carries
//! `X-Content-Type-Options: nosniff` (a browser never takes JSON for a script or
//! a page), and JSON answers `Cache-Control: no-store` (no copy of bsc's state
//! in a browser's or proxy's cache).

use serde_json::json;

use super::body::{Cursor, Framing};

/// One response.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The body follows in pieces, produced from this cursor as the socket
    /// drains ([`super::body`]); `body` is then empty.
    pub pieces: Option<Cursor>,
    /// Close the connection after this response.
    pub close: bool,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("in_pieces", &self.pieces.is_some())
            .finish()
    }
}

/// The reason phrase of the statuses bsc sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

impl Response {
    /// A JSON response from anything serde can write.
    pub fn json(status: u16, body: &impl serde::Serialize) -> Response {
        // Serializing bsc's own response types cannot fail (no maps with non-string
        // keys, no failing Serialize impls); fall back to an error body anyway.
        let body = serde_json::to_vec(body).unwrap_or_else(|e| {
            format!("{{\"error\": \"cannot encode the answer: {e}\"}}").into_bytes()
        });
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
            pieces: None,
            close: false,
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        Response::json(status, &json!({ "error": message.into() }))
    }

    /// A plain-text response (the Prometheus exposition format).
    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into_bytes(),
            pieces: None,
            close: false,
        }
    }

    /// A 200 whose body is produced in pieces from `cursor` ([`super::body`]).
    pub fn in_pieces(content_type: &'static str, cursor: Cursor) -> Response {
        Response {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: Vec::new(),
            pieces: Some(cursor),
            close: false,
        }
    }

    /// How its body is delimited when it comes in pieces, for a client that
    /// reads chunked bodies (`http11`) or not.
    pub fn framing(&self, http11: bool) -> Option<Framing> {
        self.pieces.as_ref()?;
        Some(if http11 {
            Framing::Chunked
        } else {
            Framing::ToClose
        })
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The response, whole, as HTTP/1.1 bytes, appended to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_head(out, None);
        out.extend_from_slice(&self.body);
    }

    /// The status line and headers, up to and with the empty line, appended to
    /// `out`; the body follows them on the wire, whole (`Content-Length`) or
    /// in pieces as `framing` says (chunked, or to the end of the connection).
    pub fn encode_head(&self, out: &mut Vec<u8>, framing: Option<Framing>) {
        out.extend_from_slice(
            format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).as_bytes(),
        );
        let length = match framing {
            None => format!("Content-Length: {}\r\n", self.body.len()),
            Some(Framing::Chunked) => "Transfer-Encoding: chunked\r\n".to_string(),
            Some(Framing::ToClose) => String::new(),
        };
        out.extend_from_slice(
            format!(
                "Content-Type: {}\r\n{length}X-Content-Type-Options: nosniff\r\n",
                self.content_type,
            )
            .as_bytes(),
        );
        if self.content_type == "application/json" {
            out.extend_from_slice(b"Cache-Control: no-store\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if self.close || framing == Some(Framing::ToClose) {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_status_headers_and_body() {
        let mut out = Vec::new();
        let mut r = Response::error(405, "use POST").with_header("Allow", "POST");
        r.close = true;
        r.encode(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 20\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nAllow: POST\r\nConnection: close\r\n\r\n{\"error\":\"use POST\"}"
        );
    }

    #[test]
    fn only_json_answers_say_no_store() {
        let mut out = Vec::new();
        Response::text(200, "text/html; charset=utf-8", "<p>".into()).encode(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("X-Content-Type-Options: nosniff\r\n"),
            "{text}"
        );
        assert!(!text.contains("Cache-Control"), "{text}");
    }
}
