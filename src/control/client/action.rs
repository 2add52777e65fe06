//! What the operator asked for ([`Action`], from the command line) and the
//! request it starts with ([`Call`]): method, percent-encoded path, form
//! fields, encoded as HTTP/1.1 bytes (sans I/O).

use super::Target;

/// `KEY=VALUE` (for `--set` and rotate's metadata); the value may be empty or hold `=`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// `true`/`false` as the API takes them (`True`, `1`, `0` too).
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" | "True" | "1" => Ok(true),
        "false" | "False" | "0" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

/// One request to the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    /// Already percent-encoded.
    pub path: String,
    /// Form fields, sent as an `application/x-www-form-urlencoded` body.
    pub form: Vec<(String, String)>,
}

impl Call {
    pub(super) fn new(method: &'static str, path: String) -> Call {
        Call {
            method,
            path,
            form: Vec::new(),
        }
    }

    /// The form body, percent-encoded.
    pub fn body(&self) -> String {
        self.form
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The request as HTTP/1.1 bytes for `target`.
    pub fn encode(&self, target: &Target) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: bsc/{}\r\nAccept: application/json\r\nConnection: close\r\n",
            self.method,
            self.path,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(token) = &target.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = self.body();
        if !self.form.is_empty() {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        if !self.form.is_empty() || self.method != "GET" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// Percent-encodes everything but the unreserved characters (RFC 3986), so a
/// value is data in a path segment and in a form body alike.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else if b == b'.' && s != "." && s != ".." {
            out.push('.');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `bsc add`: the arguments of AIT's `ait-bsc-create-handler`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddRequest {
    pub name: String,
    pub loc: String,
    pub port: String,
    pub conn_type: String,
    pub rotate_log: bool,
    pub rotate_log_index: String,
    pub rotate_log_delta: u32,
    pub file_name_pattern: String,
    pub path: Option<String>,
    /// Any other handler key or metadata, in order.
    pub set: Vec<(String, String)>,
}

/// What the operator asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Add(AddRequest),
    Stop {
        name: String,
    },
    Rotate {
        name: String,
        metadata: Vec<(String, String)>,
    },
    StopCapturer {
        loc: String,
        port: String,
        conn_type: Option<String>,
    },
    Status {
        json: bool,
    },
    Files {
        name: String,
        json: bool,
    },
}

impl Action {
    /// The request this action starts with (`status` asks `/capturers` too).
    pub fn call(&self) -> Call {
        let named = |name: &str, what: &str| format!("/{}/{what}", percent_encode(name));
        match self {
            Action::Add(a) => {
                let mut c = Call::new("POST", named(&a.name, "start"));
                c.form = vec![
                    ("loc".into(), a.loc.clone()),
                    ("port".into(), a.port.clone()),
                    ("conn_type".into(), a.conn_type.clone()),
                    ("rotate_log".into(), a.rotate_log.to_string()),
                    ("rotate_log_index".into(), a.rotate_log_index.clone()),
                    ("rotate_log_delta".into(), a.rotate_log_delta.to_string()),
                    ("file_name_pattern".into(), a.file_name_pattern.clone()),
                ];
                if let Some(p) = &a.path {
                    c.form.push(("path".into(), p.clone()));
                }
                c.form.extend(a.set.iter().cloned());
                c
            }
            Action::Stop { name } => Call::new("DELETE", named(name, "stop")),
            Action::Rotate { name, metadata } => {
                let mut c = Call::new("POST", named(name, "rotate"));
                c.form = metadata.clone();
                c
            }
            Action::StopCapturer {
                loc,
                port,
                conn_type,
            } => {
                let mut c = Call::new("DELETE", "/capturers".into());
                c.form = vec![("loc".into(), loc.clone()), ("port".into(), port.clone())];
                if let Some(t) = conn_type {
                    c.form.push(("conn_type".into(), t.clone()));
                }
                c
            }
            Action::Status { .. } => Call::new("GET", "/stats".into()),
            Action::Files { name, .. } => Call::new("GET", named(name, "files")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::client::target::tests::target;

    fn add_request() -> AddRequest {
        AddRequest {
            name: "tlm".into(),
            loc: "".into(),
            port: "8500".into(),
            conn_type: "udp".into(),
            rotate_log: true,
            rotate_log_index: "day".into(),
            rotate_log_delta: 1,
            file_name_pattern: "%Y-%m-%d-%H-%M-%S-{name}.pcap".into(),
            path: Some("vc 1".into()),
            set: vec![("mission".into(), "a&b=c".into())],
        }
    }

    #[test]
    fn add_is_a_form_post_with_ait_defaults_and_encoded_values() {
        let call = Action::Add(add_request()).call();
        assert_eq!(call.method, "POST");
        assert_eq!(call.path, "/tlm/start");
        assert_eq!(
            call.body(),
            "loc=&port=8500&conn_type=udp&rotate_log=true&rotate_log_index=day&rotate_log_delta=1\
             &file_name_pattern=%25Y-%25m-%25d-%25H-%25M-%25S-%7Bname%7D.pcap&path=vc%201&mission=a%26b%3Dc"
        );
        // The server's own decoder reads back exactly what was meant.
        let fields = crate::control::http::form::urlencoded(&call.body()).unwrap();
        assert_eq!(fields["file_name_pattern"], "%Y-%m-%d-%H-%M-%S-{name}.pcap");
        assert_eq!(fields["mission"], "a&b=c");
        assert_eq!(fields["path"], "vc 1");
        assert_eq!(fields["loc"], "");
    }

    #[test]
    fn encoded_request_has_auth_type_and_length() {
        let call = Action::Rotate {
            name: "pass".into(),
            metadata: vec![("pass".into(), "1234".into())],
        }
        .call();
        let text = String::from_utf8(call.encode(&target(Some("s3cret")))).unwrap();
        assert!(
            text.starts_with("POST /pass/rotate HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nAuthorization: Bearer s3cret\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nContent-Type: application/x-www-form-urlencoded\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(
            text.ends_with("\r\nContent-Length: 9\r\n\r\npass=1234"),
            "{text}"
        );
        // The server's parser frames it as one whole request.
        match crate::control::http::request::parse(text.as_bytes()) {
            crate::control::http::request::Parsed::Complete(req, n) => {
                assert_eq!(n, text.len());
                assert_eq!(req.segments(), ["pass", "rotate"]);
                assert_eq!(req.header("authorization"), Some("Bearer s3cret"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bodiless_calls() {
        let get =
            String::from_utf8(Action::Status { json: false }.call().encode(&target(None))).unwrap();
        assert!(get.starts_with("GET /stats HTTP/1.1\r\n"));
        assert!(
            !get.contains("Content-Length") && !get.contains("Authorization"),
            "{get}"
        );
        let stop = Action::Stop {
            name: "a b/..".into(),
        }
        .call();
        assert_eq!(
            (stop.method, stop.path.as_str()),
            ("DELETE", "/a%20b%2F../stop")
        );
        assert!(String::from_utf8(stop.encode(&target(None)))
            .unwrap()
            .contains("Content-Length: 0\r\n"));
        assert_eq!(
            Action::Stop { name: "..".into() }.call().path,
            "/%2E%2E/stop"
        );
        let files = Action::Files {
            name: "tlm".into(),
            json: false,
        }
        .call();
        assert_eq!((files.method, files.path.as_str()), ("GET", "/tlm/files"));
    }

    #[test]
    fn stop_capturer_fields() {
        let c = Action::StopCapturer {
            loc: "".into(),
            port: "8500".into(),
            conn_type: Some("udp".into()),
        }
        .call();
        assert_eq!((c.method, c.path.as_str()), ("DELETE", "/capturers"));
        assert_eq!(c.body(), "loc=&port=8500&conn_type=udp");
        let c = Action::StopCapturer {
            loc: "::1".into(),
            port: "1".into(),
            conn_type: None,
        }
        .call();
        assert_eq!(c.body(), "loc=%3A%3A1&port=1");
    }

    #[test]
    fn key_values_and_booleans() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("pass="), Ok(("pass".into(), "".into())));
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
        assert_eq!(parse_bool("False"), Ok(false));
        assert_eq!(parse_bool("1"), Ok(true));
        assert!(parse_bool("yes please").is_err());
    }
}
