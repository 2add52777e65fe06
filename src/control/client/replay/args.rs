//! `bsc replay`'s command line read into [`Plan`] (pure): the inputs, the
//! window, the target and the speed, with the one trap of the issue's
//! syntax resolved: `--to` names both the window's end and the target. A
//! `--to` value with a scheme (`udp://`, `tcp://`; anything with `://`) is
//! the target, any other value the window's end; each at most once.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::files::window::{parse_time, Window};

/// Where the records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One datagram per record, from a socket connected to this address.
    Udp(SocketAddr),
    /// One connection out, the records back to back.
    Tcp(SocketAddr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Target::Udp(a) => write!(f, "udp://{a}"),
            Target::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// How fast: the recorded spacing divided by a factor, or as fast as the
/// target takes the records.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Speed {
    Times(f64),
    Max,
}

/// Where the records come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inputs {
    /// Local pcap files, merged by time.
    Files(Vec<String>),
    /// `GET /<name>/data?from=&to=` from a running bsc (the texts as given).
    Server {
        name: String,
        from: Option<String>,
        to: Option<String>,
    },
}

/// Everything `bsc replay` was asked, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub inputs: Inputs,
    /// For files: records outside are not sent (the server applies its own).
    pub window: Window,
    pub target: Target,
    pub speed: Speed,
    pub repeat: bool,
}

/// The command line as argh read it.
pub struct Given<'a> {
    pub files: &'a [String],
    pub name: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: &'a [String],
    pub speed: &'a str,
    pub repeat: bool,
}

/// Checks the command line and resolves `--to`.
pub fn plan(given: &Given) -> Result<Plan, String> {
    let (mut target, mut end) = (None, None);
    for value in given.to {
        if value.contains("://") {
            if target.replace(value).is_some() {
                return Err("--to: two targets given; give one udp://HOST:PORT or tcp://HOST:PORT (and at most one window end, a time)".into());
            }
        } else if end.replace(value).is_some() {
            return Err("--to: two window ends given; give at most one time (RFC 3339 or Unix seconds) and one target (udp://HOST:PORT or tcp://HOST:PORT)".into());
        }
    }
    let target = match target {
        Some(t) => parse_target(t)?,
        None => {
            return Err(match end {
                Some(e) if parse_time(e).is_err() => format!(
                    "--to {e:?}: neither a target (udp://HOST:PORT or tcp://HOST:PORT) nor a time (RFC 3339 or Unix seconds)"
                ),
                _ => "give the target: --to udp://HOST:PORT or --to tcp://HOST:PORT".into(),
            })
        }
    };
    let window = Window {
        from: given
            .from
            .map(|t| parse_time(t).map_err(|e| format!("--from: {e}")))
            .transpose()?,
        to: end
            .map(|t| parse_time(t).map_err(|e| format!("--to: {e}")))
            .transpose()?,
    };
    if let (Some(f), Some(t)) = (window.from, window.to) {
        if t < f {
            return Err("the window ends before it starts: give --from before --to".into());
        }
    }
    let inputs = match (given.name, given.files.is_empty()) {
        (Some(_), false) => {
            return Err("give either files or --name NAME, not both".into());
        }
        (Some(name), true) => {
            if name.is_empty() {
                return Err("--name: the handler's name is empty".into());
            }
            Inputs::Server {
                name: name.to_string(),
                from: given.from.map(str::to_string),
                to: end.cloned(),
            }
        }
        (None, true) => {
            return Err(
                "give the pcap files to replay, or --name NAME for a running bsc's records".into(),
            );
        }
        (None, false) => Inputs::Files(given.files.to_vec()),
    };
    Ok(Plan {
        inputs,
        window,
        target,
        speed: parse_speed(given.speed)?,
        repeat: given.repeat,
    })
}

/// `udp://HOST:PORT` or `tcp://HOST:PORT` (`[::1]:PORT` for IPv6), resolved.
pub fn parse_target(text: &str) -> Result<Target, String> {
    let hint = "give udp://HOST:PORT or tcp://HOST:PORT";
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("--to {text:?}: {hint}"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("--to {text:?}: the port is missing; {hint}"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(format!("--to {text:?}: the host is missing; {hint}"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("--to {text:?}: the port must be 1..65535"))?;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("--to {text:?}: cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--to {text:?}: {host:?} has no address"))?;
    match scheme {
        "udp" => Ok(Target::Udp(addr)),
        "tcp" => Ok(Target::Tcp(addr)),
        other => Err(format!("--to {text:?}: scheme {other:?} is not udp or tcp")),
    }
}

/// `1` (the recorded pace), `N` (N times faster, from 0.001 to 10^9) or `max`.
pub fn parse_speed(text: &str) -> Result<Speed, String> {
    if text == "max" {
        return Ok(Speed::Max);
    }
    match text.parse::<f64>() {
        Ok(n) if (1e-3..=1e9).contains(&n) => Ok(Speed::Times(n)),
        _ => Err(format!(
            "--speed {text:?}: give a number from 0.001 to 1000000000 (1 = as recorded, 10 = ten times faster, 0.5 = half speed) or max"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::UnixNanos;

    fn given<'a>(files: &'a [String], name: Option<&'a str>, to: &'a [String]) -> Given<'a> {
        Given {
            files,
            name,
            from: None,
            to,
            speed: "1",
            repeat: false,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn to_is_the_target_with_a_scheme_and_the_window_end_without() {
        let files = strings(&["a.pcap"]);
        let to = strings(&["1796637600", "udp://127.0.0.1:9000"]);
        let p = plan(&given(&[], Some("tlm"), &to)).unwrap();
        assert_eq!(p.target, Target::Udp("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(p.window.to, Some(UnixNanos(1_796_637_600_000_000_000)));
        assert_eq!(
            p.inputs,
            Inputs::Server {
                name: "tlm".into(),
                from: None,
                to: Some("1796637600".into())
            }
        );
        // The order does not matter.
        let to = strings(&["tcp://[::1]:9000", "2026-12-07T10:00:00Z"]);
        let p = plan(&given(&files, None, &to)).unwrap();
        assert_eq!(p.target, Target::Tcp("[::1]:9000".parse().unwrap()));
        assert!(p.window.to.is_some());
    }

    #[test]
    fn confusing_to_values_are_refused_clearly() {
        let files = strings(&["a.pcap"]);
        let err = |to: &[&str]| plan(&given(&files, None, &strings(to))).unwrap_err();
        assert!(err(&[]).contains("give the target"));
        assert!(err(&["1796637600"]).contains("give the target"));
        // A target without its scheme is neither.
        assert!(err(&["127.0.0.1:9000"]).contains("neither a target"));
        assert!(err(&["udp://a:1", "tcp://b:2"]).contains("two targets"));
        assert!(err(&["1", "2", "udp://127.0.0.1:9"]).contains("two window ends"));
        assert!(
            err(&["udp://127.0.0.1:9", "yesterday"]).contains("--to: \"yesterday\" is not a time")
        );
        assert!(err(&["http://127.0.0.1:9"]).contains("not udp or tcp"));
        assert!(err(&["udp://127.0.0.1:0"]).contains("1..65535"));
        assert!(err(&["udp://127.0.0.1:70000"]).contains("1..65535"));
        assert!(err(&["udp://127.0.0.1"]).contains("port is missing"));
        assert!(err(&["udp://:9000"]).contains("host is missing"));
        assert!(err(&["udp://no-such-host.invalid:9000"]).contains("cannot resolve"));
    }

    #[test]
    fn inputs_are_files_or_a_name() {
        let to = strings(&["udp://127.0.0.1:9"]);
        let files = strings(&["a.pcap"]);
        assert!(plan(&given(&files, Some("tlm"), &to))
            .unwrap_err()
            .contains("not both"));
        assert!(plan(&given(&[], None, &to))
            .unwrap_err()
            .contains("give the pcap files"));
        assert!(plan(&given(&[], Some(""), &to))
            .unwrap_err()
            .contains("empty"));
        let mut g = given(&files, None, &to);
        g.from = Some("1796637600");
        let to2 = strings(&["udp://127.0.0.1:9", "1796637599"]);
        g.to = &to2;
        assert!(plan(&g).unwrap_err().contains("ends before it starts"));
    }

    #[test]
    fn speeds() {
        assert_eq!(parse_speed("1"), Ok(Speed::Times(1.0)));
        assert_eq!(parse_speed("0.5"), Ok(Speed::Times(0.5)));
        assert_eq!(parse_speed("max"), Ok(Speed::Max));
        assert_eq!(parse_speed("0.001"), Ok(Speed::Times(0.001)));
        for bad in [
            "0", "-1", "NaN", "nan", "inf", "", "fast", "1e10", "MAX", "1e-300", "5e-324", "0.0009",
        ] {
            assert!(parse_speed(bad).is_err(), "{bad}");
        }
    }
}
