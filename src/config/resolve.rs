//! Host names to IP addresses without DNS, so a resolver that hangs can never stall
//! the event loop: an IP literal is used as it is; any other name is looked up in
//! `/etc/hosts` (read afresh each time, which is a small local file read), and
//! `localhost`, when the hosts file does not name it, is 127.0.0.1. Names only
//! DNS knows are refused with a message saying so. Used by the capture sockets
//! and the management listener alike (so it sits in the config layer, below
//! both).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};

/// The hosts file bsc reads.
const HOSTS: &str = "/etc/hosts";

/// The address `host` stands for (see the module doc).
pub fn resolve(host: &str) -> io::Result<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let text = std::fs::read_to_string(HOSTS).unwrap_or_default();
    if let Some(ip) = lookup_hosts(&text, host) {
        return Ok(ip);
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{host:?} is not an IP address and not in {HOSTS}; bsc does not query DNS (a dead resolver would stall capture): use an IP address or add it to {HOSTS}"),
    ))
}

/// Where a datagram or connection to `host` goes: [`resolve`]d, an
/// IPv4-mapped IPv6 address as IPv4, the unspecified address as loopback (as
/// Linux routes it). `None`: a host bsc cannot resolve (and never sends to).
pub fn destination(host: &str) -> Option<IpAddr> {
    match resolve(host).ok()?.to_canonical() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED) => Some(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED) => Some(Ipv6Addr::LOCALHOST.into()),
        ip => Some(ip),
    }
}

/// Whether what is sent to `ip` is delivered on this machine (so a socket
/// bound to a wildcard address gets it): a loopback or multicast address (looped
/// back), or one a socket can bind (an interface's own, or a broadcast one).
pub fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_multicast() || UdpSocket::bind((ip, 0)).is_ok()
}

/// The first address `/etc/hosts` text gives for `name` (IPv4 preferred, as the
/// C library does for most programs).
pub fn lookup_hosts(text: &str, name: &str) -> Option<IpAddr> {
    let mut found: Option<IpAddr> = None;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if fields.any(|n| n.eq_ignore_ascii_case(name)) {
            if ip.is_ipv4() {
                return Some(ip);
            }
            found.get_or_insert(ip);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_hosts_file() {
        assert_eq!(
            resolve("10.1.2.3").unwrap(),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(resolve("::1").unwrap(), "::1".parse::<IpAddr>().unwrap());
        let hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n# 10.0.0.9 modem\n192.0.2.7  modem   modem.ground  # the radio\nbogus line\n2001:db8::5 v6only\n";
        assert_eq!(
            lookup_hosts(hosts, "modem"),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(
            lookup_hosts(hosts, "MODEM.ground"),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(
            lookup_hosts(hosts, "localhost"),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            lookup_hosts(hosts, "v6only"),
            Some("2001:db8::5".parse().unwrap())
        );
        assert_eq!(lookup_hosts(hosts, "nowhere"), None);
        let e = resolve("surely-not-in-etc-hosts.invalid").unwrap_err();
        assert_eq!(destination("0.0.0.0"), destination("localhost"));
        assert_eq!(destination("::"), destination("::1"));
        assert_eq!(destination("::ffff:127.0.0.1"), destination("127.0.0.1"));
        assert_eq!(destination("surely-not-in-etc-hosts.invalid"), None);
        for (ip, local) in [
            ("127.0.0.9", true),
            ("::1", true),
            ("239.1.2.3", true),
            ("192.0.2.1", false),
        ] {
            assert_eq!(is_local(ip.parse().unwrap()), local, "{ip}");
        }
        assert!(e.to_string().contains("does not query DNS"), "{e}");
    }
}
