//! Which bsc the client talks to: `--server`, `$BSC_SERVER`, the config's
//! `manager_server`, or 127.0.0.1:8080; and the token to show it.

use std::fmt;

use crate::config::{ServerConfig, DEFAULT_SERVER_HOST, DEFAULT_SERVER_PORT};

/// Which bsc to talk to, and the token to show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub token: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `HOST:PORT` (`[::1]:8080` for IPv6; an `http://` prefix and a trailing
/// `/` are allowed, so a URL copied from a curl line works).
pub fn parse_server(text: &str) -> Result<(String, u16), String> {
    let s = text.trim();
    let s = s.strip_prefix("http://").unwrap_or(s);
    let s = s.strip_suffix('/').unwrap_or(s);
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("server {text:?}: give HOST:PORT, e.g. 127.0.0.1:8080"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(format!(
            "server {text:?}: the host is missing; give HOST:PORT, e.g. 127.0.0.1:8080"
        ));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("server {text:?}: the port must be 1..65535"))?;
    Ok((host.to_string(), port))
}

/// Where the client finds bsc: `--server`, else `$BSC_SERVER`, else the config's
/// `manager_server` (a wildcard listen address is reached on loopback), else
/// 127.0.0.1:8080; the token from `--token`, else `$BSC_TOKEN`, else the config's.
pub fn resolve_target(
    server_flag: Option<&str>,
    server_env: Option<&str>,
    token_flag: Option<&str>,
    token_env: Option<&str>,
    config: Option<&ServerConfig>,
) -> Result<Target, String> {
    let (host, port) = if let Some(s) = nonempty(server_flag) {
        parse_server(s).map_err(|e| format!("--server: {e}"))?
    } else if let Some(s) = nonempty(server_env) {
        parse_server(s).map_err(|e| format!("BSC_SERVER: {e}"))?
    } else if let Some(c) = config {
        let host = match c.host.as_str() {
            "0.0.0.0" => "127.0.0.1",
            "::" => "::1",
            h => h,
        };
        (host.to_string(), c.port)
    } else {
        (DEFAULT_SERVER_HOST.to_string(), DEFAULT_SERVER_PORT)
    };
    let token = nonempty(token_flag)
        .or(nonempty(token_env))
        .map(str::to_string)
        .or_else(|| config.and_then(|c| c.token.clone()));
    Ok(Target { host, port, token })
}

/// The text, trimmed, unless it is blank (an empty variable counts as unset).
fn nonempty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// bsc's default place, with `token`.
    pub(in crate::control::client) fn target(token: Option<&str>) -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: 8080,
            token: token.map(str::to_string),
        }
    }

    #[test]
    fn server_text_forms() {
        assert_eq!(parse_server("10.0.0.2:9000"), Ok(("10.0.0.2".into(), 9000)));
        assert_eq!(parse_server("[::1]:8080"), Ok(("::1".into(), 8080)));
        assert_eq!(
            parse_server("http://localhost:8080/"),
            Ok(("localhost".into(), 8080))
        );
        assert!(parse_server("localhost").is_err());
        assert!(parse_server(":8080").is_err());
        assert!(parse_server("h:0").is_err());
        assert!(parse_server("h:99999").is_err());
    }

    #[test]
    fn target_resolution_order() {
        let config = ServerConfig {
            host: "0.0.0.0".into(),
            port: 9100,
            token: Some("from-config".into()),
            allow_unauthenticated: false,
            allowed_hosts: Vec::new(),
        };
        let t = |s, se, tk, te, c| resolve_target(s, se, tk, te, c).unwrap();
        assert_eq!(
            t(
                Some("a:1"),
                Some("b:2"),
                Some("x"),
                Some("y"),
                Some(&config)
            ),
            Target {
                host: "a".into(),
                port: 1,
                token: Some("x".into())
            }
        );
        assert_eq!(
            t(None, Some("b:2"), None, Some("y"), Some(&config)),
            Target {
                host: "b".into(),
                port: 2,
                token: Some("y".into())
            }
        );
        assert_eq!(
            t(None, Some(""), None, None, Some(&config)),
            Target {
                host: "127.0.0.1".into(),
                port: 9100,
                token: Some("from-config".into())
            }
        );
        assert_eq!(
            t(None, None, None, None, None),
            Target {
                host: "127.0.0.1".into(),
                port: 8080,
                token: None
            }
        );
        let e = resolve_target(None, Some("nonsense"), None, None, None).unwrap_err();
        assert!(e.starts_with("BSC_SERVER: "), "{e}");
        assert_eq!(target(None).to_string(), "127.0.0.1:8080");
        let v6 = Target {
            host: "::1".into(),
            port: 1,
            token: None,
        };
        assert_eq!(v6.to_string(), "[::1]:1");
    }
}
