//! Naming and opening a handler's files: where naming goes on (the journal,
//! the folder), the file a crash left open (resumed or closed), the write-ahead
//! intent, a forced rotation.

use super::*;

impl Handler {
    /// One look at the folder its pattern gives now, so `{seq}` and `-N` go on
    /// after the highest files there even where the journal knows less (a new
    /// handler, one that moved to another address and back, a journal lost).
    pub(super) fn scan_folder(&self, now: UnixMicros) -> Option<(LastFile, PathBuf)> {
        const MARK: &str = "\u{1}";
        let t = now.to_datetime();
        let template = self.spec.file_name_template(t, MARK)?;
        let place = self.spec.file_path(&self.output.root, t, 1).ok()?;
        let (pre, post, has_seq) = match template.split_once(MARK) {
            Some((pre, post)) => (pre.to_string(), post.to_string(), true),
            None => (template.clone(), String::new(), false),
        };
        let folder = place
            .full()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let (seq, n, name) = std::fs::read_dir(&folder)
            .ok()?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (seq, n) = crate::files::paths::parse_numbered(&name, &pre, &post, has_seq)?;
                Some((seq, n, name))
            })
            .max_by_key(|(seq, n, _)| (*seq, *n))?;
        if !has_seq && n == 0 {
            // Only the pattern's own name: the first unit may append to it, as
            // AIT does, if it is not final and has bsc's header.
            return None;
        }
        let unnumbered = self.spec.file_path(&self.output.root, t, seq.max(1)).ok()?;
        let found = LastFile {
            path: folder.join(&name),
            trusted: place.base().to_path_buf(),
            unnumbered: unnumbered.full(),
            n,
            seq,
            created: false,
            closed: true,
        };
        Some((found, folder))
    }

    /// Has `{seq}` and `-N` go on after `found`, the newest file of the
    /// handler's pattern in `folder` ([`Handler::scan_folder`]), where the
    /// journal knows less: a new key, files copied in, or (`beyond`: files
    /// newer than the journal's last) entries a crash lost while a full disk
    /// kept the journal behind.
    pub(super) fn seed_naming(
        &self,
        files: &mut Storage,
        found: LastFile,
        folder: &Path,
        beyond: bool,
    ) {
        let name = found
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        use std::os::unix::fs::PermissionsExt;
        let writable = |m: std::fs::Metadata| m.permissions().mode() & 0o200 != 0;
        if beyond && std::fs::metadata(&found.path).is_ok_and(writable) {
            warn!(
                "handler {}: {} is newer than anything the journal recorded and is not final: bsc never journaled it (it was being written when bsc stopped while the journal was behind after a failed append, or another program put it there); it is left as it is (neither closed nor shipped)",
                self.spec.name,
                found.path.display()
            );
        }
        info!(
            "handler {}: naming goes on after {} (found in {})",
            self.spec.name,
            name,
            folder.display()
        );
        files.seed(&self.journal_key(), found);
    }

    /// Where the next file opened at `t` starts its search: the checked place its
    /// pattern gives (with the `{seq}` number) and the first `-N` to try.
    pub(super) fn next_place(
        &self,
        files: &Storage,
        t: time::OffsetDateTime,
    ) -> Result<(CapturePath, u64, u32), String> {
        let last = files.last(&self.journal_key());
        let seq = last.as_ref().map_or(1, |l| l.seq + 1);
        let place = self.spec.file_path(&self.output.root, t, seq)?;
        let n = match last {
            Some(l) if l.unnumbered == place.full() => l.n + 1,
            _ => 0,
        };
        Ok((place, seq, n))
    }

    /// A file this handler's key left open when bsc last stopped (a crash) is
    /// either resumed by the first unit (when `may_resume` and the pattern gives
    /// its name at `now`) or repaired, made final and handed to `on_close` (and
    /// `ship`) now. One that does not exist (a crash after its intent was
    /// journaled, before it was created) is forgotten, its name still counted;
    /// one already final (a crash after it was made final, before its close was
    /// journaled) is closed as it is. Returns the file to resume.
    pub(super) fn settle_left_open(
        &mut self,
        cx: &mut Cx,
        now: UnixMicros,
        may_resume: bool,
    ) -> Option<LastFile> {
        if self.opened_any {
            return None;
        }
        let last = cx
            .files
            .last(&self.journal_key())
            .filter(|l| !l.closed && !cx.files.is_open(&l.path))?;
        let found = crate::storage::dir_of(&last.trusted, &last.path)
            .and_then(|(dir, name)| sys::identity_at(&dir, &name));
        if found.is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            info!(
                "handler {}: {} was being opened when bsc last stopped and does not exist; forgotten (its name is not used again)",
                self.spec.name,
                last.path.display()
            );
            cx.files.gone(&last.path);
            return None;
        }
        use std::os::unix::fs::PermissionsExt;
        let is_final = std::fs::symlink_metadata(&last.path)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o200 == 0);
        let same_name = self
            .spec
            .file_path(&self.output.root, now.to_datetime(), last.seq)
            .is_ok_and(|p| p.full() == last.unnumbered);
        // A file left at the other precision or link type (the config changed
        // while bsc was stopped) is never appended to: it is closed like any
        // other.
        let own_header = || {
            crate::storage::dir_of(&last.trusted, &last.path).is_ok_and(|(dir, name)| {
                pcap::starts_with_header(
                    &dir,
                    &name,
                    self.output.link,
                    self.spec.timestamp_precision,
                )
            })
        };
        if may_resume && same_name && !is_final && own_header() {
            return Some(last);
        }
        match self.finish_left_open(cx.files, &last, is_final) {
            Some((span, bytes, id)) => self.hand_over(cx, last.path.clone(), span, bytes, id),
            // Not bsc's any more (another header, not a plain file): nothing
            // to close.
            None => cx
                .files
                .finished(&last.path, Span::default(), None, false, None, cx.now),
        }
        None
    }

    /// Makes `last`, a file a crash left open, final: repaired (a torn last
    /// record cut) and made read-only, or, `is_final` already (bsc made it so
    /// and stopped before journaling the close), only read. Returns what it
    /// holds, its size and identity; `None` if it is not a bsc file any more.
    pub(super) fn finish_left_open(
        &self,
        files: &Storage,
        last: &LastFile,
        is_final: bool,
    ) -> Option<(Span, u64, pcap::FileId)> {
        let busy = |id| files.is_busy(id);
        // At the precision it was written at: the handler's, or the other if
        // the config changed while bsc was stopped.
        let mut precisions = Precision::ALL;
        precisions.sort_by_key(|&p| p != self.spec.timestamp_precision);
        let (dir, name) = crate::storage::dir_of(&last.trusted, &last.path).ok()?;
        let span = |scan: pcap::Scan| Span {
            records: Some(scan.records),
            first_ts: scan.first_ts,
            last_ts: scan.last_ts,
            earliest: None,
            latest: None,
            // Left by a crash: bsc cannot tell how the clock was.
            clock: ClockWord::UNKNOWN,
        };
        for precision in precisions {
            if is_final {
                let Ok(Some((scan, id, bytes))) =
                    pcap::scan_final(&dir, &name, self.output.link, precision)
                else {
                    continue;
                };
                info!(
                    "handler {}: closed {}, made final when bsc last stopped",
                    self.spec.name,
                    last.path.display()
                );
                return Some((span(scan), bytes, id));
            }
            let path = last.path.clone();
            let Ok(Attempt::Ready(f, how)) =
                PcapFile::open(&dir, &name, path, self.output.link, precision, true, &busy)
            else {
                continue;
            };
            let (bytes, scan, id) = (f.bytes(), f.earlier(), f.identity());
            if let Opened::Appended { torn_bytes } = how {
                if torn_bytes > 0 {
                    warn!(
                        "handler {}: {} was left open by a crash; cut a torn last record ({})",
                        self.spec.name,
                        last.path.display(),
                        log::size(torn_bytes)
                    );
                }
            }
            if let Err(e) = f.finish() {
                warn!(
                    "handler {}: cannot make {} final: {e}",
                    self.spec.name,
                    last.path.display()
                );
            }
            info!(
                "handler {}: closed {}, left open when bsc last stopped",
                self.spec.name,
                last.path.display()
            );
            return Some((span(scan), bytes, id));
        }
        None
    }

    /// At start: the file this handler's key left open (a crash) that its
    /// pattern still names at `now` (any other was closed by [`Handler::new`])
    /// is opened again now rather than by the first unit, so it is the open
    /// file like any other (listed, counted by retention, closed at its
    /// rotation deadline even if no unit comes). Returns that deadline.
    pub(in crate::manager) fn resume(&mut self, cx: &mut Cx) -> Option<UnixMicros> {
        let left_open = cx
            .files
            .last(&self.journal_key())
            .is_some_and(|l| !l.closed && !cx.files.is_open(&l.path));
        if !left_open || self.opened_any {
            return None;
        }
        let now = cx.now;
        self.open(cx, now).ok().flatten()
    }

    /// Opens the next file for a unit at `ts` (see the module doc on naming).
    /// Returns its rotation deadline, or why it could not be opened (already
    /// logged and counted).
    pub(super) fn open(
        &mut self,
        cx: &mut Cx,
        ts: UnixMicros,
    ) -> Result<Option<UnixMicros>, String> {
        let t = ts.to_datetime();
        let resume = self.settle_left_open(cx, ts, true);
        let found = match &resume {
            Some(l) => self
                .spec
                .file_path(&self.output.root, t, l.seq)
                .map(|p| (p, l.seq, l.n)),
            None => self.next_place(cx.files, t),
        }
        .and_then(|(place, seq, n)| self.open_from(cx.files, &place, seq, n));
        let (file, how, unnumbered) = match found {
            Ok(f) => f,
            Err(why) => {
                self.open_failed(ts, &why);
                return Err(why);
            }
        };
        match how {
            Opened::Created => info!(
                "handler {}: opened {}",
                self.spec.name,
                file.path().display()
            ),
            Opened::Appended { torn_bytes: 0 } => info!(
                "handler {}: appending to {}",
                self.spec.name,
                file.path().display()
            ),
            Opened::Appended { torn_bytes } => warn!(
                "handler {}: appending to {} after cutting a torn last record ({})",
                self.spec.name,
                file.path().display(),
                log::size(torn_bytes)
            ),
        }
        let rotate_at = self
            .spec
            .rotation
            .map(|r| UnixMicros::from_datetime(r.next_rotation(t)));
        let earlier = file.earlier();
        self.file = Some(CurrentFile {
            file,
            unnumbered,
            opened_at: ts,
            rotate_at,
            first_ts: earlier.first_ts,
            last_ts: earlier.last_ts,
            bounds: None,
            bounds_known: earlier.records == 0,
            records_checked: 0,
            // Records written before (a crash, another program): bsc did not
            // watch the clock then.
            clock: if earlier.records > 0 {
                ClockWord::UNKNOWN.and(cx.clock)
            } else {
                cx.clock
            },
            index: (earlier.records == 0).then(SparseIndex::default),
        });
        self.opened_any = true;
        self.health.retry_open_at = None;
        self.stats.files_opened += 1;
        self.enforce_retention(cx);
        Ok(rotate_at)
    }

    /// Opens the first usable name of `place` from suffix `n` on, and journals it.
    pub(super) fn open_from(
        &self,
        files: &mut Storage,
        place: &CapturePath,
        seq: u64,
        n: u32,
    ) -> Result<(PcapFile, Opened, PathBuf), String> {
        let unnumbered = place.full();
        let dir = sys::open_dir_beneath(place.base(), &place.dirs(), true)
            .map_err(|e| format!("cannot open the folder of {}: {e}", unnumbered.display()))?;
        if files.is_state_dir(&dir) {
            return Err(format!(
                "{} is bsc's state folder (under another name); it is never a capture folder",
                unnumbered.parent().unwrap_or(Path::new("")).display()
            ));
        }
        let key = self.journal_key();
        // The file this key created and a crash left open: resumed, it is
        // still bsc's (retention, the disk budget, the file list).
        let left_open = files
            .last(&key)
            .filter(|l| l.created && !l.closed)
            .map(|l| l.path);
        let mut first_refusal: Option<(PathBuf, String)> = None;
        for n in n..n.saturating_add(MAX_NAME_TRIES) {
            let candidate = place.numbered(n);
            let path = candidate.full();
            let last = LastFile {
                path: path.clone(),
                trusted: place.base().to_path_buf(),
                unnumbered: unnumbered.clone(),
                n,
                seq,
                created: true,
                closed: false,
            };
            let attempt = if files.is_open(&path) {
                Attempt::Taken("another handler is writing it".into())
            } else if !self.opened_any && files.was_closed(&path) {
                Attempt::Taken("bsc closed it before: it is final".into())
            } else {
                let name = candidate.file_name();
                // A name that does not exist is journaled before it is created
                // (write-ahead, see `Storage::opening`).
                let free = matches!(sys::identity_at(&dir, name),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound);
                if free {
                    let ship = self.spec.ship.as_ref();
                    files.opening(&key, last.clone(), ship);
                    crash_point("intent");
                }
                let attempt = PcapFile::open(
                    &dir,
                    name,
                    path.clone(),
                    self.output.link,
                    self.spec.timestamp_precision,
                    !self.opened_any,
                    &|id| files.is_busy(id),
                );
                if free && matches!(attempt, Ok(Attempt::Ready(..))) {
                    crash_point("created");
                }
                attempt.map_err(|e| format!("cannot open {}: {e}", path.display()))?
            };
            match attempt {
                Attempt::Ready(file, how) => {
                    if let Some((first, why)) = first_refusal {
                        warn!(
                            "handler {}: not writing into {} ({why}); using {} instead",
                            self.spec.name,
                            first.display(),
                            path.display()
                        );
                    }
                    if file.created() {
                        // The new folder entry must survive a power cut too.
                        let _ = std::fs::File::from(dir).sync_all();
                    }
                    let last = LastFile {
                        created: file.created() || left_open.as_ref() == Some(&path),
                        ..last
                    };
                    let ship = self.spec.ship.as_ref();
                    files.opened(&key, last, file.identity(), ship);
                    return Ok((file, how, unnumbered));
                }
                Attempt::Taken(why) => {
                    first_refusal.get_or_insert((path, why));
                }
            }
        }
        Err(format!(
            "{} and its next {MAX_NAME_TRIES} numbered names are all taken",
            unnumbered.display()
        ))
    }

    /// `POST /<name>/rotate`: closes the current file and opens the next one now.
    /// Returns the new file's rotation deadline, or why it could not be opened.
    pub(in crate::manager) fn rotate_now(
        &mut self,
        cx: &mut Cx,
    ) -> Result<Option<UnixMicros>, String> {
        let now = cx.now;
        self.rotate(cx, Rotation::Forced);
        // A forced rotation always gives a new file, never the one a crash left.
        self.settle_left_open(cx, now, false);
        self.opened_any = true;
        self.health.retry_open_at = None;
        self.open(cx, now)
    }

    pub(super) fn open_failed(&mut self, ts: UnixMicros, why: &str) {
        self.stats.write_errors += 1;
        self.health.degraded = Some(why.to_string());
        self.health.retry_open_at = Some(ts.plus_micros(OPEN_RETRY_US));
        let key = format!("open {}", self.spec.name);
        log::limited(
            &key,
            Level::Error,
            format_args!(
                "handler {}: {why}; units are counted as lost until a retry in 1 s succeeds",
                self.spec.name
            ),
        );
    }

    /// The file being written, or the one the next unit would be written to
    /// (empty if the pattern cannot give one now).
    pub fn log_file_path(&self, files: &Storage, now: UnixMicros) -> PathBuf {
        match &self.file {
            Some(f) => f.file.path().to_path_buf(),
            None => self.next_path(files, now).unwrap_or_default(),
        }
    }

    /// The name the next file opened at `now` would get: the first of its
    /// candidates that is free (no more than a few looks).
    pub fn next_path(&self, files: &Storage, now: UnixMicros) -> Result<PathBuf, String> {
        if let Some(l) = files
            .last(&self.journal_key())
            .filter(|l| !self.opened_any && !l.closed && !files.is_open(&l.path))
        {
            if self
                .spec
                .file_path(&self.output.root, now.to_datetime(), l.seq)
                .is_ok_and(|p| p.full() == l.unnumbered)
            {
                return Ok(l.path);
            }
        }
        let (place, _, n) = self.next_place(files, now.to_datetime())?;
        let free = (n..n + 8)
            .map(|n| place.numbered(n).full())
            .find(|p| !files.is_open(p) && std::fs::symlink_metadata(p).is_err());
        Ok(free.unwrap_or_else(|| place.numbered(n).full()))
    }

    /// The name the pattern gives for this handler's current or next file, before
    /// any `-N`: two handlers must never share one.
    pub fn pattern_path(&self, files: &Storage, now: UnixMicros) -> Option<PathBuf> {
        match &self.file {
            Some(f) => Some(f.unnumbered.clone()),
            None => self
                .next_place(files, now.to_datetime())
                .ok()
                .map(|(p, _, _)| p.full()),
        }
    }
}
