//! Requests a web page sent, sans I/O: the `Host` and `Origin` checks that keep
//! a page open in the operator's browser from driving or reading the API.
//!
//! - **DNS rebinding**: a page from `evil.example` whose name the attacker then
//!   points at 127.0.0.1 reaches bsc with `Host: evil.example:8080`. A `Host`
//!   must be an IP literal (`127.0.0.1`, `[::1]`, with or without a port),
//!   `localhost`, or a name listed in `manager_server.allowed_hosts`
//!   ([`host_allowed`]); anything else is refused with 421. A request without
//!   `Host` (HTTP/1.0) was not sent by a browser and passes.
//! - **Cross-site requests**: a page may POST a form to any address without
//!   reading the answer; the browser then sends the page's `Origin`. A request
//!   whose `Origin` is not the server's own (`http://` or `https://` and the
//!   request's `Host`) is refused with 403 ([`foreign_origin`]); `Origin: null`
//!   (sandboxed frames, `file:` pages) counts as foreign. The status page's own
//!   requests carry its own origin and pass; curl, AIT's tools and `bsc` send no
//!   `Origin`.

use super::request::{Refusal, Request};

/// What refuses `req`, if anything: a `Host` that does not name this server
/// (421); then, unless `page` (the status page itself, which holds no data), an
/// `Origin` of another site (403).
pub fn check(req: &Request, allowed_hosts: &[String], page: bool) -> Option<Refusal> {
    // RFC 9112 section 3.2: more than one Host is a bad request (which one a
    // proxy in front acted on cannot be known).
    if req.headers.iter().filter(|(n, _)| n == "host").count() > 1 {
        return Some(Refusal {
            status: 400,
            message: "more than one Host header".to_string(),
        });
    }
    let host = header(req, "host");
    let host = host.as_deref();
    if let Some(host) = host {
        if !host_allowed(host, allowed_hosts) {
            return Some(Refusal {
                status: 421,
                message: format!(
                    "Host {host:?} is not this server's: use an IP address or localhost, \
                     or list the name in capture_manager.manager_server.allowed_hosts"
                ),
            });
        }
    }
    if page {
        return None;
    }
    match header(req, "origin") {
        Some(origin) if foreign_origin(&origin, host) => Some(Refusal {
            status: 403,
            message: format!(
                "Origin {origin:?} is not this server's: requests from other web pages are refused"
            ),
        }),
        _ => None,
    }
}

/// The first header of that (lower-case) name, trimmed; bytes that are not
/// UTF-8 replaced (so they never match), not ignored.
fn header(req: &Request, name: &str) -> Option<String> {
    let (_, value) = req.headers.iter().find(|(n, _)| n == name)?;
    Some(String::from_utf8_lossy(value).trim().to_string())
}

/// Whether a `Host` header names this server: an IPv4 literal, a bracketed IPv6
/// literal, `localhost` or a name in `allowed` (lower-case), each with an
/// optional port; or empty (a request for no particular authority).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let Some(name) = host_name(host) else {
        return false;
    };
    if name.is_empty() || name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.to_ascii_lowercase();
    name == "localhost" || allowed.contains(&name)
}

/// The name in a `Host` value: without its `:port` and, for IPv6, its brackets.
/// `None` when the port or the brackets are malformed.
fn host_name(host: &str) -> Option<&str> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return None;
        }
        match after {
            "" => (inside, None),
            _ => (inside, Some(after.strip_prefix(':')?)),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    match port {
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() => None,
        _ => Some(name),
    }
}

/// Whether `origin` is another site's than the server the request reached at
/// `host`: anything but `http://` or `https://` followed by the `Host` value
/// (ASCII case aside, a default port written or not). Without a `Host` every
/// origin is foreign.
pub fn foreign_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return true;
    };
    let origin = origin.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let own = |scheme: &str, default_port: &str| {
        let Some(authority) = origin.strip_prefix(scheme) else {
            return false;
        };
        let bare = |a: &str| a.strip_suffix(default_port).unwrap_or(a).to_string();
        bare(authority) == bare(&host)
    };
    !(own("http://", ":80") || own("https://", ":443"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::http::request::{parse, Parsed};

    fn request(head: &str) -> Request {
        match parse(format!("{head}\r\n\r\n").as_bytes()) {
            Parsed::Complete(req, _) => req,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hosts_that_name_this_server() {
        let allowed = vec!["bsc.station.example".to_string()];
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "10.1.2.3:80",
            "[::1]",
            "[::1]:8080",
            "localhost",
            "LOCALHOST:8080",
            "bsc.station.example:8080",
            "BSC.Station.example",
            "",
        ] {
            assert!(host_allowed(host, &allowed), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "station.example",
            "127.0.0.1:",
            "127.0.0.1:80:80",
            "127.0.0.1:8o",
            "127.0.0.1:123456",
            "127.0.0.1:99999",
            "127.0.0.1:+80",
            "[::1",
            "[evil]:80",
            "[::1]8080",
            "::1",
            "x",
        ] {
            assert!(!host_allowed(host, &allowed), "{host}");
        }
        assert!(!host_allowed("bsc.station.example", &[]));
    }

    #[test]
    fn an_origin_is_own_only_with_the_same_authority() {
        let host = Some("127.0.0.1:8080");
        assert!(!foreign_origin("http://127.0.0.1:8080", host));
        assert!(!foreign_origin("HTTP://127.0.0.1:8080", host));
        assert!(!foreign_origin("https://127.0.0.1:8080", host));
        assert!(foreign_origin("http://evil.example", host));
        assert!(foreign_origin("http://127.0.0.1:8081", host));
        assert!(foreign_origin("http://127.0.0.1", host));
        assert!(foreign_origin("http://127.0.0.1:8080.evil.example", host));
        assert!(foreign_origin("null", host));
        assert!(foreign_origin("", host));
        assert!(foreign_origin("http://127.0.0.1:8080", None));
        // Default ports, written or not.
        assert!(!foreign_origin("http://localhost", Some("localhost:80")));
        assert!(!foreign_origin("http://localhost:80", Some("localhost")));
        assert!(!foreign_origin("https://localhost", Some("localhost:443")));
        assert!(foreign_origin("https://localhost", Some("localhost:80")));
    }

    #[test]
    fn refusals_name_the_host_or_the_origin() {
        let allowed = Vec::new();
        let r = check(
            &request("GET /stats HTTP/1.1\r\nHost: evil.example:8080"),
            &allowed,
            false,
        )
        .unwrap();
        assert_eq!(r.status, 421);
        assert!(r.message.contains("evil.example:8080"), "{}", r.message);
        assert!(r.message.contains("allowed_hosts"), "{}", r.message);
        // The page itself: the Host is checked, the Origin is not.
        assert_eq!(
            check(
                &request("GET /ui HTTP/1.1\r\nHost: evil.example"),
                &allowed,
                true
            )
            .map(|r| r.status),
            Some(421)
        );
        assert_eq!(
            check(
                &request("GET /ui HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: null"),
                &allowed,
                true
            ),
            None
        );
        let r = check(
            &request(
                "POST /x/start HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nOrigin: http://evil.example",
            ),
            &allowed,
            false,
        )
        .unwrap();
        assert_eq!(r.status, 403);
        assert!(r.message.contains("http://evil.example"), "{}", r.message);
        // Two Hosts: which one a proxy in front acted on cannot be known.
        let r = check(
            &request("GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example"),
            &allowed,
            true,
        )
        .unwrap();
        assert_eq!(r.status, 400);
        for fine in [
            "GET /stats HTTP/1.1\r\nHost: 127.0.0.1:8080",
            "GET /stats HTTP/1.0",
            "POST /x/rotate HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nOrigin: http://127.0.0.1:8080",
        ] {
            assert_eq!(check(&request(fine), &allowed, false), None, "{fine}");
        }
        assert_eq!(
            check(
                &request("GET /stats HTTP/1.0\r\nOrigin: http://evil.example"),
                &allowed,
                false
            )
            .map(|r| r.status),
            Some(403),
            "without a Host, every Origin is foreign"
        );
    }
}
