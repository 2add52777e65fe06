//! HTTP responses, sans I/O: a status, extra headers and a JSON body, encoded to
//! bytes by [`Response::encode`]. Every answer carries
//! `X-Content-Type-Options: nosniff` (a browser never takes JSON for a script or
//! a page), and JSON answers `Cache-Control: no-store` (no copy of bsc's state
//! in a browser's or proxy's cache).

use serde_json::json;

/// One response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this response.
    pub close: bool,
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
            close: false,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The response as HTTP/1.1 bytes, appended to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_head(out);
        out.extend_from_slice(&self.body);
    }

    /// The status line and headers, up to and with the empty line, appended to
    /// `out`; the body follows them on the wire.
    pub fn encode_head(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).as_bytes(),
        );
        out.extend_from_slice(
            format!(
                "Content-Type: {}\r\nContent-Length: {}\r\nX-Content-Type-Options: nosniff\r\n",
                self.content_type,
                self.body.len()
            )
            .as_bytes(),
        );
        if self.content_type == "application/json" {
            out.extend_from_slice(b"Cache-Control: no-store\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if self.close {
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
