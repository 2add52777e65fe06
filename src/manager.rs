//! The manager: every capturer (one socket per address) and every handler.
//!
//! Invariants:
//! - one capturer per address; handlers on the same address share it, and a
//!   capturer left without handlers is closed at once (its port is free again);
//! - a name appears at most once per address; no two handlers write the same file;
//! - a handler with pending records is in `dirty` exactly once, so a wake-up
//!   flushes only handlers that received something (idle ones cost nothing);
//! - every open file with a rotation deadline has an entry in `timers` (entries
//!   may be stale: they are checked against the handler when they fire).

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use mio::{Interest, Registry, Token};

use crate::capture::udp;
use crate::clock::UnixMicros;
use crate::config::{Address, Config, ConnType, HandlerSpec, Origin};
use crate::handler::Handler;
use crate::{error, info, warn};

/// Index of a handler in the manager.
pub type HandlerId = usize;
/// Index of a capturer in the manager.
pub type CapturerId = usize;

/// Most units one capturer reads per wake-up before the loop serves others.
pub const READ_BUDGET: usize = 1024;
/// Receive buffer for one datagram: every UDP payload fits.
pub const RECV_BUFFER_LEN: usize = 65536;

/// mio tokens of capturers are `CAPTURER_TOKEN_BASE + id`.
pub const CAPTURER_TOKEN_BASE: usize = 1 << 20;

/// The socket a capturer reads.
enum Source {
    Udp(mio::net::UdpSocket),
}

/// One socket (address + conn_type) and the handlers it feeds.
pub struct Capturer {
    pub address: Address,
    pub conn_type: ConnType,
    source: Source,
    pub handlers: Vec<HandlerId>,
    pub local: String,
    pub rcvbuf_granted: usize,
    /// Creation order, for listings in AIT's order.
    pub seq: u64,
}

/// Why a handler could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum AddError {
    /// Same name on the address, another conn_type on it, or the same file as
    /// another handler (HTTP 409).
    Conflict(String),
    /// The socket could not be opened (HTTP 409: usually "address in use").
    Socket(String),
    /// This build cannot capture this conn_type (HTTP 400).
    Unsupported(String),
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddError::Conflict(m) | AddError::Socket(m) | AddError::Unsupported(m) => {
                f.write_str(m)
            }
        }
    }
}

/// What draining a capturer left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Read until `WouldBlock`: nothing more until the next readiness event.
    Empty,
    /// The budget ran out first: read again on the next turn of the loop.
    More,
}

/// All capturers and handlers.
pub struct Manager {
    root: PathBuf,
    capturers: Vec<Option<Capturer>>,
    handlers: Vec<Option<Handler>>,
    /// Handlers with pending records (see the module invariants).
    dirty: Vec<HandlerId>,
    timers: BTreeSet<(UnixMicros, HandlerId)>,
    next_seq: u64,
    recv_buf: Vec<u8>,
}

impl Manager {
    /// An empty manager writing under `root`.
    pub fn new(root: &Path) -> Manager {
        Manager {
            root: root.to_path_buf(),
            capturers: Vec::new(),
            handlers: Vec::new(),
            dirty: Vec::new(),
            timers: BTreeSet::new(),
            next_seq: 0,
            recv_buf: vec![0; RECV_BUFFER_LEN],
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The capturer a mio token stands for, if any.
    pub fn capturer_of_token(token: Token) -> Option<CapturerId> {
        token.0.checked_sub(CAPTURER_TOKEN_BASE)
    }

    /// Adds a handler: attaches it to the capturer of its address, or opens one.
    pub fn add_handler(
        &mut self,
        spec: HandlerSpec,
        registry: &Registry,
        now: UnixMicros,
    ) -> Result<HandlerId, AddError> {
        let existing = self.capturer_at(&spec.address);
        if let Some(cid) = existing {
            let cap = self.capturer(cid);
            if cap.conn_type != spec.conn_type {
                return Err(AddError::Conflict(format!(
                    "address {} is already captured as {}, not {}",
                    spec.address.python_repr(),
                    cap.conn_type,
                    spec.conn_type
                )));
            }
            if cap
                .handlers
                .iter()
                .any(|&h| self.handler(h).spec.name == spec.name)
            {
                return Err(AddError::Conflict(format!(
                    "a handler named {:?} already captures {}",
                    spec.name,
                    spec.address.python_repr()
                )));
            }
        }
        let path = spec
            .file_path(&self.root, now.to_datetime(), 1)
            .map_err(|e| AddError::Conflict(format!("cannot name the file: {e}")))?;
        if let Some(other) = self.handlers().find(|(_, h)| h.log_file_path(now) == path) {
            return Err(AddError::Conflict(format!(
                "handler {:?} already writes {}",
                other.1.spec.name,
                path.display()
            )));
        }

        let cid = match existing {
            Some(cid) => cid,
            None => self.open_capturer(&spec, registry)?,
        };
        let hid = self
            .handlers
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.handlers.len());
        let handler = Handler::new(spec, &self.root, now);
        info!(
            "handler {}: capturing {} {} into {}",
            handler.spec.name,
            handler.spec.conn_type,
            handler.spec.address,
            handler.log_file_path(now).display()
        );
        if hid == self.handlers.len() {
            self.handlers.push(Some(handler));
        } else {
            self.handlers[hid] = Some(handler);
        }
        self.capturer_mut(cid).handlers.push(hid);
        Ok(hid)
    }

    fn open_capturer(
        &mut self,
        spec: &HandlerSpec,
        registry: &Registry,
    ) -> Result<CapturerId, AddError> {
        let cid = self
            .capturers
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.capturers.len());
        let token = Token(CAPTURER_TOKEN_BASE + cid);
        let (mut source, local, rcvbuf_granted) = match spec.conn_type {
            ConnType::Udp => {
                let b = udp::bind(&spec.address, spec.rcvbuf_bytes).map_err(AddError::Socket)?;
                (Source::Udp(b.socket), b.local.to_string(), b.rcvbuf_granted)
            }
            other => {
                return Err(AddError::Unsupported(format!(
                    "conn_type \"{other}\" is not supported by this version of bsc (udp is)"
                )))
            }
        };
        let registered = match &mut source {
            Source::Udp(s) => registry.register(s, token, Interest::READABLE),
        };
        registered.map_err(|e| AddError::Socket(format!("cannot watch {}: {e}", spec.address)))?;
        if rcvbuf_granted < spec.rcvbuf_bytes {
            warn!(
                "udp {}: asked for a {} byte receive buffer, the kernel granted {} (raise net.core.rmem_max or run with CAP_NET_ADMIN)",
                spec.address, spec.rcvbuf_bytes, rcvbuf_granted
            );
        }
        info!(
            "capturer {} {}: listening on {local}, receive buffer {rcvbuf_granted} bytes",
            spec.conn_type, spec.address
        );
        let cap = Capturer {
            address: spec.address.clone(),
            conn_type: spec.conn_type,
            source,
            handlers: Vec::new(),
            local,
            rcvbuf_granted,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        if cid == self.capturers.len() {
            self.capturers.push(Some(cap));
        } else {
            self.capturers[cid] = Some(cap);
        }
        Ok(cid)
    }

    /// Stops a handler: flushes and closes its file; closes its capturer if it was
    /// the last handler there.
    pub fn remove_handler(&mut self, hid: HandlerId, registry: &Registry) -> Option<Handler> {
        let handler = self.handlers.get_mut(hid)?.take()?;
        self.dirty.retain(|&h| h != hid);
        let cid = self.capturer_at(&handler.spec.address)?;
        let cap = self.capturer_mut(cid);
        cap.handlers.retain(|&h| h != hid);
        if cap.handlers.is_empty() {
            self.close_capturer(cid, registry);
        }
        info!("handler {}: stopped", handler.spec.name);
        // Dropping the handler closes its file; the caller may still read it first.
        Some(handler)
    }

    fn close_capturer(&mut self, cid: CapturerId, registry: &Registry) {
        if let Some(mut cap) = self.capturers[cid].take() {
            let result = match &mut cap.source {
                Source::Udp(s) => registry.deregister(s),
            };
            if let Err(e) = result {
                warn!("capturer {}: deregistering failed: {e}", cap.address);
            }
            info!("capturer {} {}: closed", cap.conn_type, cap.address);
        }
    }

    /// Reads from a capturer until `WouldBlock` or [`READ_BUDGET`] units, handing
    /// each unit, stamped with the time it was read, to every handler of it.
    pub fn drain(&mut self, cid: CapturerId, now: impl Fn() -> UnixMicros) -> Drained {
        let Some(Some(cap)) = self.capturers.get(cid) else {
            return Drained::Empty;
        };
        for _ in 0..READ_BUDGET {
            let received = match &cap.source {
                Source::Udp(s) => s.recv_from(&mut self.recv_buf).map(|(n, _)| n),
            };
            let n = match received {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors and the like: report and keep the socket.
                    warn!("capturer {}: receive failed: {e}", cap.address);
                    continue;
                }
            };
            let ts = now();
            for &hid in &cap.handlers {
                // Handler ids in a capturer always refer to live handlers.
                let Some(Some(h)) = self.handlers.get_mut(hid) else {
                    continue;
                };
                let r = h.record(ts, &self.recv_buf[..n], n);
                if r.needs_flush {
                    self.dirty.push(hid);
                }
                if let Some(at) = r.rotate_at {
                    self.timers.insert((at, hid));
                }
            }
        }
        Drained::More
    }

    /// Writes the pending records of every handler that received any.
    pub fn flush_dirty(&mut self) {
        for hid in self.dirty.drain(..) {
            if let Some(Some(h)) = self.handlers.get_mut(hid) {
                h.flush();
            }
        }
    }

    /// The earliest rotation deadline, if any file is open with one.
    pub fn next_deadline(&self) -> Option<UnixMicros> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Closes every file whose rotation period has ended by `now`.
    pub fn expire(&mut self, now: UnixMicros) {
        while let Some(&(at, hid)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(Some(h)) = self.handlers.get_mut(hid) {
                h.close_if_due(now);
            }
        }
    }

    /// Flushes and closes every file (on shutdown). Sockets close when dropped.
    pub fn close_all(&mut self) {
        for h in self.handlers.iter_mut().flatten() {
            h.close();
        }
        self.dirty.clear();
    }

    /// Applies a re-read config: handlers that came from the old config file and
    /// are gone or changed are stopped; new or changed ones are started; handlers
    /// that are the same keep running with their file open. Handlers added over the
    /// API are left alone.
    pub fn apply_config(&mut self, new: &Config, registry: &Registry, now: UnixMicros) {
        if new.root != self.root {
            warn!(
                "reload: root_log_directory changed from {} to {}; that needs a restart, keeping {}",
                self.root.display(),
                new.root.display(),
                self.root.display()
            );
        }
        let stale: Vec<HandlerId> = self
            .handlers()
            .filter(|(_, h)| h.spec.origin == Origin::ConfigFile && !new.handlers.contains(&h.spec))
            .map(|(id, _)| id)
            .collect();
        let (mut stopped, mut started, mut failed) = (0, 0, 0);
        for hid in stale {
            self.remove_handler(hid, registry);
            stopped += 1;
        }
        for spec in &new.handlers {
            let running = self.handlers().any(|(_, h)| h.spec == *spec);
            if running {
                continue;
            }
            let name = spec.name.clone();
            match self.add_handler(spec.clone(), registry, now) {
                Ok(_) => started += 1,
                Err(e) => {
                    failed += 1;
                    error!("reload: handler {name}: {e}");
                }
            }
        }
        info!(
            "reload: {stopped} handlers stopped, {started} started, {failed} failed, {} running",
            self.handlers().count()
        );
    }

    /// `POST /<name>/rotate`: closes the handler's file and opens the next now.
    /// Returns (previous file, new file).
    pub fn rotate(
        &mut self,
        hid: HandlerId,
        now: UnixMicros,
    ) -> Result<(Option<PathBuf>, PathBuf), String> {
        let h = self
            .handlers
            .get_mut(hid)
            .and_then(Option::as_mut)
            .ok_or("no such handler")?;
        let previous = h.current_file().map(Path::to_path_buf);
        let rotate_at = h.rotate_now(now)?;
        let path = h.log_file_path(now);
        if let Some(at) = rotate_at {
            self.timers.insert((at, hid));
        }
        Ok((previous, path))
    }

    /// Ids of every live handler with this name (one per address at most).
    pub fn handlers_named(&self, name: &str) -> Vec<HandlerId> {
        self.handlers()
            .filter(|(_, h)| h.spec.name == name)
            .map(|(id, _)| id)
            .collect()
    }

    /// A live handler, to change its metadata.
    pub fn handler_mut(&mut self, hid: HandlerId) -> &mut Handler {
        self.handlers[hid]
            .as_mut()
            .expect("handler id refers to a live handler")
    }

    /// Every live handler with its id, in id order.
    pub fn handlers(&self) -> impl Iterator<Item = (HandlerId, &Handler)> {
        self.handlers
            .iter()
            .enumerate()
            .filter_map(|(id, h)| h.as_ref().map(|h| (id, h)))
    }

    /// Every live capturer, in creation order.
    pub fn capturers(&self) -> Vec<(CapturerId, &Capturer)> {
        let mut caps: Vec<_> = self
            .capturers
            .iter()
            .enumerate()
            .filter_map(|(id, c)| c.as_ref().map(|c| (id, c)))
            .collect();
        caps.sort_by_key(|(_, c)| c.seq);
        caps
    }

    /// A live handler (ids handed out by the manager stay valid until removal).
    pub fn handler(&self, hid: HandlerId) -> &Handler {
        self.handlers[hid]
            .as_ref()
            .expect("handler id refers to a live handler")
    }

    fn capturer(&self, cid: CapturerId) -> &Capturer {
        self.capturers[cid]
            .as_ref()
            .expect("capturer id refers to a live capturer")
    }

    fn capturer_mut(&mut self, cid: CapturerId) -> &mut Capturer {
        self.capturers[cid]
            .as_mut()
            .expect("capturer id refers to a live capturer")
    }

    /// The capturer of an address, if one is open.
    pub fn capturer_at(&self, address: &Address) -> Option<CapturerId> {
        self.capturers
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.address == *address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use serde_json::json;

    fn spec(name: &str, port: u16, extra: serde_json::Value) -> HandlerSpec {
        let mut v = json!({"name": name, "conn_type": "udp", "address": ["127.0.0.1", port]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        HandlerSpec::from_json(v.as_object().unwrap(), Origin::ConfigFile).unwrap()
    }

    fn free_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Drains until `n` more units were handed to handlers (datagrams on loopback
    /// can take a moment to be readable).
    fn drain_until(m: &mut Manager, cid: CapturerId, clock: &Clock, packets: u64) {
        for _ in 0..1000 {
            m.drain(cid, || clock.now());
            if m.handlers().map(|(_, h)| h.stats.packets).max() >= Some(packets) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("datagrams never arrived");
    }

    #[test]
    fn a_manual_clock_drives_naming_and_rotation() {
        let root = std::env::temp_dir().join(format!("bsc-manager-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let poll = mio::Poll::new().unwrap();
        let clock = Clock::manual(UnixMicros(1_795_860_000_000_000)); // 2026-11-28T10:00:00Z
        let mut m = Manager::new(&root);
        let port = free_port();
        let hid = m
            .add_handler(
                spec(
                    "h",
                    port,
                    json!({"rotate_log_index": "minute", "file_name_pattern": "%H%M-{name}.pcap"}),
                ),
                poll.registry(),
                clock.now(),
            )
            .unwrap();
        // Same name on the same address, and another conn_type there, are refused.
        assert!(matches!(
            m.add_handler(
                spec("h", port, json!({"path": "x"})),
                poll.registry(),
                clock.now()
            ),
            Err(AddError::Conflict(_))
        ));
        assert!(matches!(
            m.add_handler(
                spec("g", port, json!({"file_name_pattern": "%H%M-h.pcap"})),
                poll.registry(),
                clock.now()
            ),
            Err(AddError::Conflict(_))
        ));
        let cid = m
            .capturer_at(&Address {
                host: "127.0.0.1".into(),
                port,
            })
            .unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"one", ("127.0.0.1", port)).unwrap();
        drain_until(&mut m, cid, &clock, 1);
        m.flush_dirty();
        assert_eq!(m.next_deadline(), Some(UnixMicros(1_795_860_060_000_000)));
        clock.set(UnixMicros(1_795_860_059_000_000));
        m.expire(clock.now());
        assert_eq!(
            m.handler(hid).log_file_path(clock.now()),
            root.join("1000-h.pcap")
        );
        clock.set(UnixMicros(1_795_860_061_000_000));
        m.expire(clock.now());
        assert_eq!(m.next_deadline(), None);
        assert_eq!(
            m.handler(hid).log_file_path(clock.now()),
            root.join("1001-h.pcap"),
            "closed: shows the next name"
        );
        tx.send_to(b"two", ("127.0.0.1", port)).unwrap();
        drain_until(&mut m, cid, &clock, 2);
        m.flush_dirty();
        assert!(root.join("1000-h.pcap").exists() && root.join("1001-h.pcap").exists());
        // Removing the last handler closes the socket: the port is free at once.
        m.remove_handler(hid, poll.registry());
        assert!(m.capturers().is_empty());
        assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
