//! `bsc replay`: records sent again to a UDP or TCP receiver at their
//! recorded pace (or N times faster, or as fast as the target takes them),
//! from pcap files or from a running bsc (`--name`, `GET /<name>/data`).
//! What `ait-tlm-send` did for one file to localhost, for any host, speed,
//! window, with pause and loop.
//!
//! | file | its job |
//! |---|---|
//! | `replay/args.rs` | the command line checked ([`args::plan`]): `--to` as target or window end, speed, times |
//! | `replay/records.rs` | the records, merged by time, from files or an HTTP body (`files::pcap::reader`) |
//! | `replay/payload.rs` | what of a record goes out (headers of the capture taken off), what is skipped |
//! | `replay/schedule.rs` | when each record is due (from the first record, never the previous send), lateness |
//! | `replay/send.rs` | the UDP socket or TCP connection to the target |
//! | `replay.rs` (this one) | the loop: wait, send, signals (Ctrl-C, pause), progress, summary |
//!
//! Pacing: each deadline is absolute on `CLOCK_MONOTONIC`, slept to with
//! `clock_nanosleep(TIMER_ABSTIME)` and a timer slack of 1 ns
//! ([`crate::sys::precise_wakeups`]); no spin (docs/performance.md, Replay,
//! has the measured error). Signals are caught as flags
//! ([`crate::sys::catch_signals`]): SIGINT and SIGTERM end the replay with
//! its summary; SIGTSTP (Ctrl-Z) notes the time, stops the process and, at
//! SIGCONT, moves every deadline still to come by the time stopped, so
//! nothing bursts; a SIGSTOP/SIGCONT from elsewhere moves them by how late
//! the next record then is.
//!
//! Exit statuses: 0 done; 1 an input or the target failed partway (the
//! summary says how far it got); 2 usage; 3 bsc not reachable (`--name`);
//! 130 stopped by SIGINT or SIGTERM.

use std::io::{IsTerminal, Write};

use argh::FromArgs;

use crate::clock::{steady_nanos, UnixNanos};
use crate::sys;

mod args;
mod payload;
mod records;
mod schedule;
mod send;

use args::{Given, Inputs, Plan, Speed};
use payload::{payload_of, Skip};
use records::{ReadError, Records};
use schedule::{Lag, Mono, Schedule};
use send::{SendError, Sender, Sent};

/// `bsc replay`'s command line.
#[derive(FromArgs)]
/// send recorded records again to a UDP or TCP receiver, at their recorded pace, N times faster, or as fast as it takes them
#[argh(
    subcommand,
    name = "replay",
    example = "{command_name} pass.pcap --to udp://127.0.0.1:3076",
    example = "{command_name} 2026-12-07-*.pcap --to tcp://10.0.0.5:9000 --speed 10 --loop",
    example = "{command_name} --name tlm --from 2026-12-07T10:00:00Z --to 2026-12-07T10:15:00Z --to udp://127.0.0.1:3076",
    note = "--to takes the target (a value with a scheme, udp:// or tcp://) and the window's end (a time), each at most once, in any order.",
    note = "Files are merged by time. Payloads go without the capture's headers (Ethernet, bsc's synthesized IP/UDP). Records that cannot go are skipped and counted.",
    note = "Ctrl-C stops with a summary; Ctrl-Z pauses and fg resumes without a burst. Exit: 0 done, 1 failed partway, 2 usage, 3 bsc not reachable, 130 stopped."
)]
pub struct ReplayArgs {
    /// pcap files to replay (classic pcap, micro- or nanosecond; merged by time)
    #[argh(positional)]
    files: Vec<String>,
    /// instead of files, a running bsc's records of this handler (GET /NAME/data; --server and --token as the other commands)
    #[argh(option)]
    name: Option<String>,
    /// the window's start: RFC 3339 or Unix seconds (records at or after it)
    #[argh(option)]
    from: Option<String>,
    /// the target, udp://HOST:PORT or tcp://HOST:PORT; given again with a time, the window's end (records before it)
    #[argh(option)]
    to: Vec<String>,
    /// how fast: 1 (the recorded pace, the default), N (N times faster; 0.5 half as fast), or max
    #[argh(option, default = "String::from(\"1\")")]
    speed: String,
    /// after the last record start again from the first, one mean record spacing later, until stopped
    #[argh(switch, long = "loop")]
    repeat: bool,
}

/// How a replay ended.
enum Ending {
    Done,
    /// By a signal (its name).
    Stopped(&'static str),
    Failed(String),
}

/// What was done, for the progress line and the summary.
#[derive(Default)]
struct Tally {
    sent: u64,
    bytes: u64,
    skipped: [u64; Skip::ALL.len()],
    refused: u64,
    passes: u64,
    paused: Mono,
    lag: Lag,
    /// The stamp of the last record sent.
    at: Option<UnixNanos>,
}

/// Runs `bsc replay`; `server` resolves the bsc to ask (only for `--name`).
/// Returns the exit status.
pub fn replay(a: &ReplayArgs, server: impl FnOnce() -> Result<super::Target, String>) -> u8 {
    let plan = match args::plan(&Given {
        files: &a.files,
        name: a.name.as_deref(),
        from: a.from.as_deref(),
        to: &a.to,
        speed: &a.speed,
        repeat: a.repeat,
    }) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bsc replay: {e}");
            return 2;
        }
    };
    let bsc = match plan.inputs {
        Inputs::Server { .. } => match server() {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("bsc replay: {e}");
                return 2;
            }
        },
        Inputs::Files(_) => None,
    };
    let open = || match Records::open(&plan.inputs, bsc.as_ref()) {
        Ok(r) => Ok(r),
        Err(ReadError::Input(e)) => Err((e, 1)),
        Err(ReadError::Client(e)) => Err((e.to_string(), e.exit_code())),
    };
    let records = match open() {
        Ok(r) => r,
        Err((e, code)) => {
            eprintln!("bsc replay: {e}");
            return code;
        }
    };
    let mut sender = match Sender::open(&plan.target, plan.speed != Speed::Max) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bsc replay: {e}");
            return 1;
        }
    };
    let handled = [libc::SIGINT, libc::SIGTERM, libc::SIGTSTP, libc::SIGCONT];
    if let Err(e) = sys::catch_signals(&handled) {
        eprintln!("bsc replay: cannot catch signals: {e}");
        return 1;
    }
    sys::precise_wakeups();
    let mut run = Run {
        plan: &plan,
        tally: Tally::default(),
        schedule: Schedule::new(match plan.speed {
            Speed::Times(n) => Some(n),
            Speed::Max => None,
        }),
        caught: 0,
        progress: std::io::stderr().is_terminal().then_some(0),
    };
    let started = steady_nanos();
    let ending = run.go(records, &mut sender, || open().map_err(|(e, _)| e));
    let elapsed = steady_nanos().saturating_sub(started);
    if run.progress.is_some() {
        eprintln!();
    }
    print!("{}", summary(&plan, &run.tally, elapsed, &ending));
    match ending {
        Ending::Done => 0,
        Ending::Stopped(_) => 130,
        Ending::Failed(e) => {
            eprintln!("bsc replay: {e}");
            1
        }
    }
}

/// Signal `s`'s bit in what [`sys::take_caught`] returns.
fn bit(s: libc::c_int) -> u32 {
    1 << s
}

/// One replay under way.
struct Run<'a> {
    plan: &'a Plan,
    tally: Tally,
    schedule: Schedule,
    /// Signals caught and not yet acted on.
    caught: u32,
    /// When the progress line is next drawn (stderr is a terminal).
    progress: Option<Mono>,
}

impl Run<'_> {
    fn go(
        &mut self,
        mut records: Records,
        sender: &mut Sender,
        reopen: impl Fn() -> Result<Records, String>,
    ) -> Ending {
        let mut sent_in_pass = 0;
        self.tally.passes = 1;
        loop {
            if let Some(end) = self.signals(None) {
                return end;
            }
            let record = match records.next() {
                Ok(Some(r)) => r,
                Ok(None) if !self.plan.repeat => return Ending::Done,
                Ok(None) if sent_in_pass == 0 => {
                    eprintln!("bsc replay: a pass sent nothing: not looping");
                    return Ending::Done;
                }
                Ok(None) => {
                    self.schedule.next_pass();
                    records = match reopen() {
                        Ok(r) => r,
                        Err(e) => return Ending::Failed(e),
                    };
                    sent_in_pass = 0;
                    self.tally.passes += 1;
                    continue;
                }
                Err(e) => return Ending::Failed(e),
            };
            if !self.plan.window.contains(record.at) {
                continue;
            }
            let payload = match payload_of(record.link, &record.data, record.orig_len) {
                Ok(p) => p,
                Err(skip) => {
                    self.skip(skip);
                    continue;
                }
            };
            let due = self.schedule.due(record.at.0 as i128, steady_nanos());
            if let Some(due) = due {
                if let Some(end) = self.wait(due) {
                    return end;
                }
            }
            let mut stop = || {
                self.caught |= sys::take_caught();
                self.caught & (bit(libc::SIGINT) | bit(libc::SIGTERM)) != 0
            };
            match sender.send(payload, &mut stop) {
                Ok(Sent::Sent { refused }) => {
                    let now = steady_nanos();
                    if let Some(due) = due {
                        self.tally.lag.note(now.saturating_sub(due));
                    }
                    self.tally.sent += 1;
                    self.tally.bytes += payload.len() as u64;
                    self.tally.refused += refused;
                    self.tally.at = Some(record.at);
                    sent_in_pass += 1;
                    self.draw(now);
                }
                Ok(Sent::TooLarge) => self.skip(Skip::TooLarge),
                Err(SendError::Interrupted { partly }) => {
                    if partly {
                        eprintln!(
                            "bsc replay: the record being sent when stopped went only in part"
                        );
                    }
                    return self.signals(None).unwrap_or(Ending::Stopped("a signal"));
                }
                Err(SendError::Failed(e)) => {
                    return Ending::Failed(format!("{e} (after {} records)", self.tally.sent))
                }
            }
        }
    }

    fn skip(&mut self, why: Skip) {
        self.tally.skipped[Skip::ALL.iter().position(|s| *s == why).unwrap_or(0)] += 1;
    }

    /// Sleeps until `due` (drawing the progress line meanwhile), acting on
    /// signals; `Some` if one ends the replay.
    fn wait(&mut self, due: Mono) -> Option<Ending> {
        let mut due = due;
        loop {
            let before = self.tally.paused;
            if let Some(end) = self.signals(Some(due)) {
                return Some(end);
            }
            due = due.saturating_add(self.tally.paused - before);
            let now = steady_nanos();
            if now >= due {
                return None;
            }
            self.draw(now);
            let wake = self.progress.map_or(due, |p| p.min(due));
            sys::sleep_until_monotonic(wake);
        }
    }

    /// Acts on the signals caught: SIGINT/SIGTERM end the replay; SIGTSTP
    /// pauses it; a SIGCONT without it (after a SIGSTOP from elsewhere)
    /// moves the schedule by how late `next_due` now is.
    fn signals(&mut self, next_due: Option<Mono>) -> Option<Ending> {
        self.caught |= sys::take_caught();
        if self.caught & bit(libc::SIGINT) != 0 {
            return Some(Ending::Stopped("Ctrl-C (SIGINT)"));
        }
        if self.caught & bit(libc::SIGTERM) != 0 {
            return Some(Ending::Stopped("SIGTERM"));
        }
        if self.caught & bit(libc::SIGTSTP) != 0 {
            self.caught &= !(bit(libc::SIGTSTP) | bit(libc::SIGCONT));
            let at = steady_nanos();
            if self.progress.is_some() {
                eprint!("\rbsc replay: paused (fg or SIGCONT resumes)\x1b[K");
            }
            sys::stop_self();
            let paused = steady_nanos().saturating_sub(at);
            self.pause(paused);
            // The SIGCONT that resumed us was this pause's.
            self.caught |= sys::take_caught() & !bit(libc::SIGCONT);
            return self.signals(next_due);
        }
        if self.caught & bit(libc::SIGCONT) != 0 {
            self.caught &= !bit(libc::SIGCONT);
            if let Some(due) = next_due {
                let late = steady_nanos().saturating_sub(due);
                if late > 0 {
                    self.pause(late);
                }
            }
        }
        None
    }

    fn pause(&mut self, by: Mono) {
        self.schedule.shift(by);
        self.tally.paused += by;
    }

    /// The progress line on stderr, four times a second, when it is a terminal.
    fn draw(&mut self, now: Mono) {
        let Some(next) = self.progress else { return };
        if now < next {
            return;
        }
        self.progress = Some(now + 250_000_000);
        let t = &self.tally;
        let at = t.at.map_or("-".into(), |at| at.micros().to_rfc3339());
        let lag = if t.lag.count() > 0 {
            format!(", lag p99 {}", ms(t.lag.quantile(0.99)))
        } else {
            String::new()
        };
        eprint!(
            "\rbsc replay: sent {}, skipped {}, record time {at}{lag}\x1b[K",
            t.sent,
            t.skipped.iter().sum::<u64>()
        );
        let _ = std::io::stderr().flush();
    }
}

fn ms(ns: Mono) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

/// The summary printed at the end, however it ended.
fn summary(plan: &Plan, t: &Tally, elapsed: Mono, ending: &Ending) -> String {
    let mut out = format!(
        "replay: sent {} records ({} bytes) to {} in {:.3} s",
        t.sent,
        t.bytes,
        plan.target,
        elapsed as f64 / 1e9
    );
    if t.passes > 1 {
        out.push_str(&format!(", {} passes", t.passes));
    }
    match plan.speed {
        Speed::Max => out.push_str(", at max speed"),
        Speed::Times(n) => {
            out.push_str(&format!(", speed {n}"));
            if t.lag.count() > 0 {
                out.push_str(&format!(
                    "; lag behind schedule p50 {}, p99 {}, max {}",
                    ms(t.lag.quantile(0.5)),
                    ms(t.lag.quantile(0.99)),
                    ms(t.lag.max())
                ));
            }
        }
    }
    out.push('\n');
    let skipped: u64 = t.skipped.iter().sum();
    if skipped > 0 {
        let parts: Vec<String> = Skip::ALL
            .iter()
            .zip(t.skipped)
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{n} {}", s.describe()))
            .collect();
        out.push_str(&format!(
            "replay: skipped {skipped}: {}\n",
            parts.join(", ")
        ));
    }
    if t.refused > 0 {
        out.push_str(&format!(
            "replay: refused {} of those sent (the target's host reported them refused: nothing listened on its port)\n",
            t.refused
        ));
    }
    if t.paused > 0 {
        out.push_str(&format!("replay: paused {:.3} s\n", t.paused as f64 / 1e9));
    }
    match ending {
        Ending::Done => {}
        Ending::Stopped(by) => out.push_str(&format!("replay: stopped by {by} before the end\n")),
        Ending::Failed(_) => {
            out.push_str("replay: failed before the end (the error is on stderr)\n")
        }
    }
    out
}
