//! Closing a handler's files and what follows: final and journaled, handed to
//! `on_close` and the ship queue (events), retention, the once-a-second upkeep.

use super::*;

impl Handler {
    /// Flushes, forces to the disk and closes the current file for good, if any:
    /// it becomes read-only, is journaled as closed, goes to the outbox (for
    /// `on_close`) and, if bsc created it, to retention.
    pub(in crate::manager) fn close(&mut self, cx: &mut Cx) {
        self.flush(cx);
        let Some(f) = self.file.take() else {
            return;
        };
        let (path, id) = (f.file.path().to_path_buf(), f.file.identity());
        let (records, bytes) = (f.file.earlier().records + f.file.records(), f.file.bytes());
        let (earliest, latest) = (f.earliest(), f.latest());
        if let Err(e) = f.file.finish() {
            let key = format!("sync {}", self.spec.name);
            log::limited(
                &key,
                Level::Error,
                format_args!(
                    "handler {}: closing {} failed: {e}",
                    self.spec.name,
                    path.display()
                ),
            );
        }
        crash_point("final");
        info!(
            "handler {}: closed {} ({}, {})",
            self.spec.name,
            path.display(),
            log::count(records, "record"),
            log::size(bytes)
        );
        let span = Span {
            records: Some(records),
            first_ts: f.first_ts,
            last_ts: f.last_ts,
            earliest,
            latest,
            clock: f.clock.and(cx.clock),
        };
        if let Some(index) = f.index {
            cx.files.keep_index(&path, index);
        }
        self.hand_over(cx, path, span, bytes, id);
        self.enforce_retention(cx);
    }

    /// A file closed for good: journaled (with its hook still to run, and its
    /// `ship` settings, if it has them: it then waits to ship) and put in the
    /// outbox for `on_close`.
    pub(super) fn hand_over(
        &self,
        cx: &mut Cx,
        path: PathBuf,
        span: Span,
        bytes: u64,
        id: pcap::FileId,
    ) {
        let hook = !self.spec.on_close.is_empty();
        cx.files
            .finished(&path, span, Some(id), hook, self.spec.ship.as_ref(), cx.now);
        cx.closed.push(ClosedFile {
            handler: self.spec.name.clone(),
            on_close: self.spec.on_close.clone(),
            path,
            records: span.records.unwrap_or(0),
            bytes,
            first_ts: span.first_ts,
            last_ts: span.last_ts,
        });
    }

    /// Once a second: folds the clock's word into the open file's, notices a
    /// file deleted or moved behind bsc's back, forces
    /// data written more than `fsync_interval_s` ago to the disk (even on an idle
    /// link), applies `max_age`, and gives back buffer memory a burst left.
    pub(in crate::manager) fn maintain(&mut self, cx: &mut Cx) {
        self.check_file_still_there(cx);
        if let Some(f) = self.file.as_mut() {
            f.clock = f.clock.and(cx.clock);
        }
        if let (Some(every), Some(f)) = (self.spec.fsync_interval, self.file.as_mut()) {
            if f.file.sync_due(every, cx.now) {
                sync(&mut f.file, &self.spec.name, cx.now);
            }
        }
        // Every second, not only at a close: a file retention had to spare
        // (its hook ran, it shipped) goes once it may, and `max_age` ages.
        self.enforce_retention(cx);
        let keep = self.health.pending_peak.max(IDLE_CAPACITY);
        if self.pending.capacity() > keep {
            self.pending.shrink_to(keep);
        }
        self.health.pending_peak = 0;
    }

    /// If the open file was deleted (or its name or folder removed or moved), it
    /// is counted and logged, and the next unit opens a new file (folders are
    /// made again). Records written to a deleted file since the last check are
    /// counted as lost.
    pub(super) fn check_file_still_there(&mut self, cx: &mut Cx) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let Some(what) = f.file.vanished() else {
            f.records_checked = f.file.records();
            return;
        };
        self.flush(cx);
        let Some(f) = self.file.take() else {
            return;
        };
        let path = f.file.path().to_path_buf();
        self.stats.files_vanished += 1;
        match what {
            Vanished::Deleted => {
                let lost = f.file.records() - f.records_checked;
                self.stats.records_lost += lost;
                error!(
                    "handler {}: {} was deleted while open; {} written to it since the last check are lost; the next unit opens a new file",
                    self.spec.name,
                    path.display(),
                    log::count(lost, "record")
                );
            }
            Vanished::Moved => {
                let _ = f.file.finish();
                error!(
                    "handler {}: {} was moved or its folder removed while open; its records stay in the moved file; the next unit opens a new file",
                    self.spec.name,
                    path.display()
                );
            }
        }
        self.health.degraded = Some(format!("{} vanished while open", path.display()));
        cx.files.gone(&path);
    }

    pub(super) fn retention(&self) -> Retention {
        Retention {
            max_files: self.spec.max_files,
            max_bytes: self.spec.max_bytes,
            max_age: self.spec.max_age,
        }
    }

    /// Deletes this handler's oldest closed files beyond its retention limits.
    pub(super) fn enforce_retention(&mut self, cx: &mut Cx) {
        let r = self.retention();
        if r == Retention::default() {
            return;
        }
        let open = self
            .file
            .as_ref()
            .map(|f| f.file.bytes() + self.pending.len() as u64);
        for old in cx.files.take_excess(&self.journal_key(), open, &r, cx.now) {
            self.delete(cx.files, &old, "retention");
        }
    }

    /// Applies retention now (a file it had to spare while it waited to ship
    /// has shipped).
    pub(in crate::manager) fn shipped_one(&mut self, cx: &mut Cx) {
        self.enforce_retention(cx);
    }

    /// Counts a closed file whose `on_close` hook was not run or not to its end
    /// (the disk budget deleted it first; dropped from a full queue; the file
    /// gone or refused; the command not started).
    pub(in crate::manager) fn hook_not_run(&mut self) {
        self.stats.hooks_not_run += 1;
    }

    /// Deletes one of this handler's closed files (retention or the disk budget).
    pub(in crate::manager) fn delete(&mut self, files: &mut Storage, file: &OwnFile, why: &str) {
        match files.remove(file) {
            Ok(()) => {
                info!(
                    "handler {}: deleted {} ({}, {why})",
                    self.spec.name,
                    file.path.display(),
                    log::size(file.bytes)
                );
                self.stats.files_deleted += 1;
            }
            Err(e) => warn!(
                "handler {}: cannot delete {}: {e}",
                self.spec.name,
                file.path.display()
            ),
        }
    }
}
