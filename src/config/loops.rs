//! Forwarding loops, refused: a `forward` target that leads back into this bsc.
//! A target may not be bsc's management API, whatever its scheme (telemetry
//! would reach it as requests: whoever sends telemetry would drive the API),
//! nor the UDP capture socket of any of its handlers (bsc would record what it
//! forwards, and two handlers forwarding to each other would pass one datagram
//! round for ever). TCP sources connect out: they are no listeners. (An
//! `ethernet` handler may not forward at all, see `forward` in `keys.rs`: a raw
//! capture sees what bsc sends.)
//!
//! The rule is here once; it is applied where handlers meet: the config file as
//! a whole ([`crate::config::Config`], so `bsc check` and a reload too), and the
//! manager's add path, for each handler added against those running, both ways
//! (`POST /<name>/start`, restored and reloaded handlers). A handler's own
//! socket is refused with its `forward` key.

use std::net::{IpAddr, Ipv4Addr};

use super::address::Address;
use super::choices::ConnType;
use super::relay_target::{Carrier, RelayTarget};
use super::resolve::{destination, is_local, resolve};
use super::HandlerSpec;

/// Whether what is sent to `t` arrives at a socket bound to `at` (of the
/// target's kind): the same port, and the same address or, when `at` is a
/// wildcard, any address of this machine.
pub fn reaches(t: &RelayTarget, at: &Address) -> bool {
    if t.port != at.port {
        return false;
    }
    let Some(to) = destination(&t.host) else {
        return false;
    };
    let bound = match at.host.as_str() {
        "" => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        host => resolve(host).ok().map(|ip| ip.to_canonical()),
    };
    match bound {
        Some(ip) if ip.is_unspecified() => is_local(to),
        bound => bound == Some(to),
    }
}

/// Refuses `from`'s targets that are `to`'s capture socket (`to` another
/// handler).
pub fn refuse_into(from: &HandlerSpec, to: &HandlerSpec) -> Result<(), String> {
    if to.conn_type != ConnType::Udp {
        return Ok(());
    }
    match from
        .forward
        .iter()
        .find(|t| t.carrier == Carrier::Udp && reaches(t, &to.address))
    {
        Some(t) => Err(format!(
            "{}, a target of handler {:?}, is the capture socket of handler {:?} ({}): bsc would record what it forwards, and a handler forwarding back makes a loop",
            t.url(),
            from.name,
            to.name,
            to.address
        )),
        None => Ok(()),
    }
}

/// Refuses `spec`'s targets that are bsc's management API listening on `api`.
pub fn refuse_api(spec: &HandlerSpec, api: &Address) -> Result<(), String> {
    match spec.forward.iter().find(|t| reaches(t, api)) {
        Some(t) => Err(format!(
            "{} is bsc's own management API ({api}): telemetry sent there would be read as API requests",
            t.url()
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(host: &str, port: u16) -> Address {
        Address {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn a_target_reaches_the_same_address_or_a_local_one_of_a_wildcard() {
        let t = |url: &str| RelayTarget::parse_url(url).unwrap();
        for (url, bound, hits) in [
            ("udp://127.0.0.1:9", at("127.0.0.1", 9), true),
            ("udp://localhost:9", at("127.0.0.1", 9), true),
            ("udp://0.0.0.0:9", at("127.0.0.1", 9), true),
            ("udp://[::ffff:127.0.0.1]:9", at("127.0.0.1", 9), true),
            ("udp://127.0.0.1:9", at("127.0.0.1", 10), false),
            ("udp://127.0.0.2:9", at("127.0.0.1", 9), false),
            ("tcp://127.0.0.2:9", at("", 9), true),
            ("tcp://[::1]:9", at("0.0.0.0", 9), true),
            ("udp://239.1.2.3:9", at("::", 9), true),
            ("udp://239.1.2.3:9", at("239.1.2.3", 9), true),
            ("udp://192.0.2.1:9", at("", 9), false),
            ("udp://no-such-name.invalid:9", at("", 9), false),
        ] {
            assert_eq!(reaches(&t(url), &bound), hits, "{url} -> {bound}");
        }
    }
}
