//! A veth pair with one end in a network namespace of the test's own: raw
//! frames on a real interface (AF_PACKET sources), and a link with an MTU
//! smaller than loopback's (forward targets). Needs root and `ip`.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;

/// Runs `ip ...` (or another command) and fails the test if it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("ip is needed: apt-get install iproute2 (make test installs it)");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth pair: `host` in this namespace, `far` in a namespace of its own; both
/// removed when dropped.
pub struct Veth {
    pub ns: String,
    pub host: String,
    pub far: String,
}

impl Veth {
    pub fn new() -> Veth {
        let id = std::process::id() % 100_000;
        let v = Veth {
            ns: format!("bsc-test-{id}"),
            host: format!("bsch{id}"),
            far: format!("bscf{id}"),
        };
        run(&["ip", "netns", "add", &v.ns]);
        run(&[
            "ip", "link", "add", &v.host, "type", "veth", "peer", "name", &v.far,
        ]);
        run(&["ip", "link", "set", &v.far, "netns", &v.ns]);
        // No IPv6 on the pair: no router solicitations or other chatter in the capture.
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.host),
            "1",
        )
        .unwrap();
        run(&[
            "ip",
            "netns",
            "exec",
            &v.ns,
            "sh",
            "-c",
            &format!("echo 1 > /proc/sys/net/ipv6/conf/{}/disable_ipv6", v.far),
        ]);
        v.set_mtu(9000);
        run(&["ip", "link", "set", &v.host, "up"]);
        run(&[
            "ip", "netns", "exec", &v.ns, "ip", "link", "set", &v.far, "up",
        ]);
        v
    }

    /// Sets the MTU of both ends.
    pub fn set_mtu(&self, mtu: u32) {
        let mtu = mtu.to_string();
        run(&["ip", "link", "set", &self.host, "mtu", &mtu]);
        run(&[
            "ip", "netns", "exec", &self.ns, "ip", "link", "set", &self.far, "mtu", &mtu,
        ]);
    }

    /// Gives the pair a /30 of its own in 198.18.0.0/15 (the benchmarking
    /// range, RFC 2544; chosen by process, so that tests side by side do not
    /// share one): returns (this end's address, the far end's).
    pub fn address(&self) -> (Ipv4Addr, Ipv4Addr) {
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (std::process::id() % (1 << 15)) * 4;
        let (host, far) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{host}/30"),
            "dev",
            &self.host,
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "ip",
            "addr",
            "add",
            &format!("{far}/30"),
            "dev",
            &self.far,
        ]);
        (host, far)
    }

    /// Has the far end's receive work (IP, UDP, delivery into its sockets)
    /// done on the CPUs of `mask` (RPS), as a consumer on another machine
    /// would do it, not by the sender's CPU in its own call.
    pub fn steer_far_receive(&self, mask: u64) {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "sh",
            "-c",
            &format!(
                "echo {mask:x} > /sys/class/net/{}/queues/rx-0/rps_cpus",
                self.far
            ),
        ]);
    }

    /// A UDP socket bound to `addr` in the far namespace.
    pub fn udp_socket_far(&self, addr: SocketAddr) -> UdpSocket {
        udp_socket_in(&self.ns, addr)
    }

    /// Sends raw frames on an interface (in the namespace if `ns` is given).
    pub fn send(ns: Option<&str>, ifname: &str, frames: &[Vec<u8>]) {
        let script = "import socket,sys\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind((sys.argv[1],0))\nfor h in sys.argv[2:]:\n    s.send(bytes.fromhex(h))\n";
        let hex: Vec<String> = frames
            .iter()
            .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "python3"]);
                c
            }
            None => Command::new("python3"),
        };
        let out = cmd
            .args(["-c", script, ifname])
            .args(&hex)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sending frames: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A UDP socket bound to `addr` in namespace `ns` (a socket keeps the
/// namespace it was made in; a thread of its own enters it).
pub fn udp_socket_in(ns: &str, addr: SocketAddr) -> UdpSocket {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let ns = File::open(&path).unwrap();
        // SAFETY: setns on an open namespace file, for this thread only (it
        // ends here; the socket stays in the namespace).
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        UdpSocket::bind(addr).unwrap()
    })
    .join()
    .unwrap()
}

/// A consumer behind a router: this namespace -- (MTU 1,500) -- a router's
/// namespace -- (a smaller MTU) -- the consumer's namespace. A datagram too
/// large for the far link is refused by the router with ICMP "fragmentation
/// needed" (the kernel sets DF on UDP by default), as across a real network.
pub struct Routed {
    host: String,
    router: String,
    pub far: String,
    /// The consumer's address.
    pub far_addr: Ipv4Addr,
}

impl Routed {
    /// The path, the far link's MTU `mtu`; addresses in 198.18.0.0/15 (RFC
    /// 2544), two /30s chosen by process.
    pub fn new(mtu: u32) -> Routed {
        let id = std::process::id() % 100_000;
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (std::process::id() % (1 << 13)) * 16;
        let ip = |k: u32| Ipv4Addr::from(base + k);
        let r = Routed {
            host: format!("bscrh{id}"),
            router: format!("bsc-router-{id}"),
            far: format!("bsc-far-{id}"),
            far_addr: ip(6),
        };
        let (host, rt, far) = (&r.host, &r.router, &r.far);
        let (to_router, router_near, router_far) = (ip(1), ip(2), ip(5));
        for command in [
            format!("ip netns add {rt}"),
            format!("ip netns add {far}"),
            format!("ip link add {host} type veth peer name ra netns {rt}"),
            format!("ip -n {rt} link add rb type veth peer name fc netns {far}"),
            format!("ip addr add {to_router}/30 dev {host}"),
            format!("ip link set {host} up"),
            format!("ip route add {}/30 via {router_near}", ip(4)),
            format!("ip -n {rt} addr add {router_near}/30 dev ra"),
            format!("ip -n {rt} addr add {router_far}/30 dev rb"),
            format!("ip -n {rt} link set ra up"),
            format!("ip -n {rt} link set rb mtu {mtu} up"),
            format!("ip netns exec {rt} sysctl -qw net.ipv4.ip_forward=1"),
            format!("ip -n {far} addr add {}/30 dev fc", r.far_addr),
            format!("ip -n {far} link set fc mtu {mtu} up"),
            format!("ip -n {far} route add default via {router_far}"),
        ] {
            run(&command.split_whitespace().collect::<Vec<_>>());
        }
        r
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
        for ns in [&self.router, &self.far] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
