//! At start-up, the files a crash left open for handlers that are not running
//! any more: repaired and made final (a running handler settles its own).

use super::*;

impl Manager {
    /// Once every handler has started: files a crash left open for handlers that
    /// are not running any more are repaired (a torn last record cut) and made
    /// final, so nothing stays half-written and writable. (A running handler
    /// settles its own: resumed by its first unit, or closed and hooked.)
    pub fn settle_left_open(&mut self, now: UnixMicros) {
        for (key, last, ship) in self.storage.left_open() {
            if self.handlers().any(|(_, h)| h.journal_key() == key) {
                continue;
            }
            let busy = |id| self.storage.is_busy(id);
            let located = crate::storage::dir_of(&last.trusted, &last.path)
                .and_then(|(dir, name)| sys::identity_at(&dir, &name).map(|_| (dir, name)));
            if located
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            {
                // Never created (a crash right after its intent), or deleted
                // since: forgotten, its name still counted.
                self.storage.gone(&last.path);
                continue;
            }
            let finished = located.and_then(|(dir, name)| {
                for link in LinkType::ALL {
                    for precision in Precision::ALL {
                        // Final already: made so, then bsc stopped before
                        // journaling the close.
                        if let Some((scan, id, _)) = pcap::scan_final(&dir, &name, link, precision)?
                        {
                            return Ok(Some((scan, id)));
                        }
                        let path = last.path.clone();
                        if let Attempt::Ready(f, _) =
                            PcapFile::open(&dir, &name, path, link, precision, true, &busy)?
                        {
                            let (scan, id) = (f.earlier(), f.identity());
                            f.finish()?;
                            return Ok(Some((scan, id)));
                        }
                    }
                }
                Ok(None)
            });
            let (span, id) = match finished {
                Ok(Some((scan, id))) => {
                    info!(
                        "{}: left open when bsc last stopped, by a handler not running now ({key}); repaired and closed",
                        last.path.display()
                    );
                    let span = Span {
                        records: Some(scan.records),
                        first_ts: scan.first_ts,
                        last_ts: scan.last_ts,
                        earliest: None,
                        latest: None,
                        // Left by a crash: bsc cannot tell how the clock was.
                        clock: crate::clock::ClockWord::UNKNOWN,
                    };
                    (span, Some(id))
                }
                Ok(None) => (Span::default(), None),
                Err(e) => {
                    warn!(
                        "{}: left open when bsc last stopped; cannot close it: {e}",
                        last.path.display()
                    );
                    (Span::default(), None)
                }
            };
            // It waits to ship with the settings its handler had when it
            // opened it (as a file it had closed would), unless it is gone.
            // (`on_close` is not run: like the files a gone handler closed,
            // whose hooks run only when a handler of that key starts again.)
            let ship = ship.filter(|_| std::fs::symlink_metadata(&last.path).is_ok());
            self.storage
                .finished(&last.path, span, id, false, ship.as_ref(), now);
        }
    }
}
