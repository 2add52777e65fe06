//! Request body decoders, sans I/O: `application/x-www-form-urlencoded` (what AIT's
//! `ait-bsc-create-handler` sends), `multipart/form-data` (what `curl --form`
//! sends) and `application/json`, all into one JSON object of fields, so the API
//! validates fields the same way whatever the client sent.
//!
//! Form values are strings; a field given twice becomes a list of strings.

use serde_json::{Map, Value};

/// Why a body could not be decoded: the HTTP status (400 or 415) and the reason.
#[derive(Debug, PartialEq, Eq)]
pub struct FormError {
    pub status: u16,
    pub message: String,
}

fn bad(message: impl Into<String>) -> FormError {
    FormError {
        status: 400,
        message: message.into(),
    }
}

/// Decodes a body according to its `Content-Type` (none: urlencoded, as curl -d
/// without a type is).
pub fn decode(content_type: Option<&str>, body: &[u8]) -> Result<Map<String, Value>, FormError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let content_type = content_type.unwrap_or("application/x-www-form-urlencoded");
    let (mime, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    match mime.trim().to_ascii_lowercase().as_str() {
        "application/x-www-form-urlencoded" => {
            let text = std::str::from_utf8(body).map_err(|_| bad("form body is not UTF-8"))?;
            urlencoded(text)
        }
        "multipart/form-data" => {
            let boundary = param(params, "boundary").ok_or_else(|| bad("multipart/form-data without a boundary parameter"))?;
            multipart(body, &boundary)
        }
        // A field given twice is refused, not one of them dropped.
        "application/json" => match std::str::from_utf8(body)
            .map_err(|_| bad("invalid JSON body: not UTF-8"))
            .and_then(|text| {
                crate::config::duplicates::read_json(text)
                    .map_err(|e| bad(format!("invalid JSON body: {e}")))
            })? {
            Value::Object(m) => Ok(m),
            _ => Err(bad("JSON body must be an object of fields")),
        },
        other => Err(FormError {
            status: 415,
            message: format!("unsupported Content-Type {other:?}; send application/x-www-form-urlencoded, multipart/form-data or application/json"),
        }),
    }
}

/// Decodes `a=1&b=x+y&c=%2F` (also used for query strings).
pub fn urlencoded(text: &str) -> Result<Map<String, Value>, FormError> {
    let mut out = Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = form_decode(k)
            .ok_or_else(|| bad(format!("bad percent-encoding in form field name {k:?}")))?;
        let value = form_decode(v)
            .ok_or_else(|| bad(format!("bad percent-encoding in form field {key:?}")))?;
        insert(&mut out, key, value);
    }
    Ok(out)
}

fn insert(out: &mut Map<String, Value>, key: String, value: String) {
    match out.get_mut(&key) {
        None => {
            out.insert(key, Value::String(value));
        }
        Some(Value::Array(list)) => list.push(Value::String(value)),
        Some(first) => {
            let first = first.take();
            out.insert(key, Value::Array(vec![first, Value::String(value)]));
        }
    }
}

/// `+` is a space, then `%XX` escapes.
fn form_decode(s: &str) -> Option<String> {
    super::request::percent_decode(&s.replace('+', " "))
}

/// The value of `name=value` or `name="value"` in a `; `-separated parameter list.
fn param(params: &str, name: &str) -> Option<String> {
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case(name) {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        (!v.is_empty()).then(|| v.to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Skips one line ending (CRLF or LF) at the start of `b`.
fn skip_eol(b: &[u8]) -> Option<&[u8]> {
    b.strip_prefix(b"\r\n").or_else(|| b.strip_prefix(b"\n"))
}

/// Decodes a multipart/form-data body (RFC 7578), accepting CRLF or bare LF line
/// endings. Every part needs a `Content-Disposition: form-data; name="..."`; the
/// body must end with the closing boundary.
pub fn multipart(body: &[u8], boundary: &str) -> Result<Map<String, Value>, FormError> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let start =
        find(body, delimiter).ok_or_else(|| bad("multipart body does not contain its boundary"))?;
    let mut rest = &body[start + delimiter.len()..];
    let mut out = Map::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(out);
        }
        rest = skip_eol(rest)
            .ok_or_else(|| bad("multipart boundary is not followed by a line end"))?;
        // Headers end at the first empty line.
        let (head_end, body_start) = match (find(rest, b"\r\n\r\n"), find(rest, b"\n\n")) {
            (Some(a), Some(b)) if b < a => (b, b + 2),
            (Some(a), _) => (a, a + 4),
            (None, Some(b)) => (b, b + 2),
            (None, None) => return Err(bad("multipart part headers do not end")),
        };
        let head = std::str::from_utf8(&rest[..head_end])
            .map_err(|_| bad("multipart part headers are not UTF-8"))?;
        let name = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
            .and_then(|(_, v)| param(v, "name"))
            .ok_or_else(|| {
                bad("multipart part without Content-Disposition: form-data; name=\"...\"")
            })?;
        rest = &rest[body_start..];
        // The part's content ends at the line end before the next delimiter.
        let mut end_marker = b"\r\n".to_vec();
        end_marker.extend_from_slice(delimiter);
        let (content_end, next) = match find(rest, &end_marker) {
            Some(i) => (i, i + end_marker.len()),
            None => {
                let mut lf_marker = b"\n".to_vec();
                lf_marker.extend_from_slice(delimiter);
                let i = find(rest, &lf_marker)
                    .ok_or_else(|| bad("multipart body has no closing boundary"))?;
                (i, i + lf_marker.len())
            }
        };
        let value = std::str::from_utf8(&rest[..content_end])
            .map_err(|_| bad(format!("multipart field {name:?} is not UTF-8 text")))?;
        insert(&mut out, name, value.to_string());
        rest = &rest[next..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn ait_client_body() {
        // What ait-bsc-create-handler sends (requests' data=vars(args)).
        let body = "name=cli1&loc=127.0.0.1&port=28510&conn_type=udp&service_host=127.0.0.1&service_port=28080&rotate_log=True&rotate_log_index=day&rotate_log_delta=1&file_name_pattern=%25Y-%25m-%25d-%25H-%25M-%25S-%7Bname%7D.pcap";
        let m = decode(Some("application/x-www-form-urlencoded"), body.as_bytes()).unwrap();
        assert_eq!(m["file_name_pattern"], "%Y-%m-%d-%H-%M-%S-{name}.pcap");
        assert_eq!(m["rotate_log"], "True");
        assert_eq!(m.len(), 10);
    }

    #[test]
    fn urlencoded_details() {
        assert_eq!(
            urlencoded("a=x+y&b=%2F&c&d=").unwrap(),
            obj(json!({"a": "x y", "b": "/", "c": "", "d": ""}))
        );
        assert_eq!(
            urlencoded("t=a&t=b&t=c").unwrap(),
            obj(json!({"t": ["a", "b", "c"]}))
        );
        assert_eq!(urlencoded("a=%zz").unwrap_err().status, 400);
        assert!(urlencoded("").unwrap().is_empty());
    }

    #[test]
    fn multipart_as_curl_sends_it() {
        let body = "--------------------------d74496d66958873e\r\nContent-Disposition: form-data; name=\"port\"\r\n\r\n28501\r\n--------------------------d74496d66958873e\r\nContent-Disposition: form-data; name=\"conn_type\"\r\n\r\nudp\r\n--------------------------d74496d66958873e--\r\n";
        let ct = "multipart/form-data; boundary=------------------------d74496d66958873e";
        assert_eq!(
            decode(Some(ct), body.as_bytes()).unwrap(),
            obj(json!({"port": "28501", "conn_type": "udp"}))
        );
    }

    #[test]
    fn multipart_edge_cases() {
        // Boundary in quotes, bare LF line ends, a preamble, a multi-line value,
        // extra part headers and a value that contains the boundary text not at a
        // line start.
        let body = "preamble\n--XyZ\nContent-Disposition: form-data; name=\"note\"\nContent-Type: text/plain\n\nline1\nline2 --XyZ inside\n--XyZ\nContent-Disposition: form-data; name=\"empty\"\n\n\n--XyZ--";
        let m = decode(
            Some("multipart/form-data; charset=utf-8; boundary=\"XyZ\""),
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            m,
            obj(json!({"note": "line1\nline2 --XyZ inside", "empty": ""}))
        );
        // No closing boundary.
        let e = multipart(
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1",
            "b",
        )
        .unwrap_err();
        assert!(e.message.contains("closing boundary"), "{e:?}");
        // A closing delimiter right away: no fields.
        assert!(multipart(b"--b--\r\n", "b").unwrap().is_empty());
        // Part without a name, headers that never end, no boundary at all.
        assert!(multipart(b"--b\r\nContent-Type: x\r\n\r\n1\r\n--b--", "b")
            .unwrap_err()
            .message
            .contains("name"));
        assert!(multipart(b"--b\r\nContent-Disposition: form-data; name=\"a\"", "b").is_err());
        assert!(multipart(b"nothing here", "b").is_err());
        assert!(decode(Some("multipart/form-data"), b"--b--")
            .unwrap_err()
            .message
            .contains("boundary"));
        // Binary, non-UTF-8 value.
        assert!(multipart(
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\xff\r\n--b--",
            "b"
        )
        .is_err());
    }

    #[test]
    fn json_and_other_types() {
        assert_eq!(
            decode(
                Some("application/json"),
                br#"{"port": 8500, "rotate_log": false}"#
            )
            .unwrap(),
            obj(json!({"port": 8500, "rotate_log": false}))
        );
        assert_eq!(
            decode(Some("application/json"), b"[1]").unwrap_err().status,
            400
        );
        assert_eq!(
            decode(Some("application/json"), b"{").unwrap_err().status,
            400
        );
        assert_eq!(decode(Some("text/xml"), b"<a/>").unwrap_err().status, 415);
        assert!(
            decode(Some("text/xml"), b"").unwrap().is_empty(),
            "an empty body needs no type"
        );
        assert_eq!(decode(None, b"port=1").unwrap(), obj(json!({"port": "1"})));
    }
}
