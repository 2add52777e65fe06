//! A handler's life in the manager: added (checked against every other
//! handler, attached to the capturer of its address or a new one, started:
//! a file its key left open settled or resumed, hooks still owed queued
//! again) and removed (its file flushed and closed, its capturer closed when
//! it was the last handler there).

use super::*;

impl Manager {
    /// Adds a handler: attaches it to the capturer of its address, or opens one
    /// (a TCP one starts connecting at `mono`, the loop's instant).
    pub fn add_handler(
        &mut self,
        spec: HandlerSpec,
        registry: &Registry,
        now: UnixMicros,
        mono: Instant,
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
                .handlers()
                .iter()
                .any(|&h| self.handler(h).spec().name == spec.name)
            {
                return Err(AddError::Conflict(format!(
                    "a handler named {:?} already captures {}",
                    spec.name,
                    spec.address.python_repr()
                )));
            }
        }
        self.check_file_free(&spec, None, now)?;
        self.refuse_loops(&spec)?;

        let cid = match existing {
            Some(cid) => {
                let cap = self.capturer(cid);
                if let Some(first) = cap.handlers().first() {
                    let first = self.handler(*first).spec();
                    if (
                        first.rcvbuf_bytes,
                        first.interface.as_ref(),
                        first.connect_timeout,
                        first.reconnect_max,
                    ) != (
                        spec.rcvbuf_bytes,
                        spec.interface.as_ref(),
                        spec.connect_timeout,
                        spec.reconnect_max,
                    ) {
                        warn!(
                            "handler {}: {} is already open; its socket options (rcvbuf_bytes, interface, connect_timeout_s, reconnect_max_s) stay those of handler {}",
                            spec.name, spec.address, first.name
                        );
                    }
                }
                cid
            }
            None => self.capturers.open(&spec, registry, mono, now)?,
        };
        let local = self.capturer(cid).local_addr();
        let hid = self.start_handler(spec, local, now);
        if let Err(e) = self.open_relay(hid, registry, mono) {
            self.detach_handler(hid, registry, existing.is_none(), now);
            return Err(e);
        }
        self.capturers.attach(cid, hid);
        self.update_capturer_needs(cid);
        Ok(hid)
    }

    /// Starts a handler checked by [`Manager::add_handler`] (`local`: its
    /// capturer's address): a file its key left open is settled or resumed,
    /// files whose hook did not run before the last stop are queued again.
    pub(super) fn start_handler(
        &mut self,
        spec: HandlerSpec,
        local: Option<std::net::SocketAddr>,
        now: UnixMicros,
    ) -> HandlerId {
        let mut cx = Cx {
            files: &mut self.storage,
            now,
            closed: self.forward.outbox(),
            clock: self.clock,
        };
        let mut handler = Handler::new(spec, &self.root, local, &mut cx);
        handler.set_suspended(self.budget.disk_full());
        let resumed_until = handler.resume(&mut cx);
        // Files closed before bsc last stopped whose hook never started.
        let waiting = self
            .storage
            .take_unhooked(&handler.journal_key(), &handler.spec().name);
        if !waiting.is_empty() && !handler.spec().on_close.is_empty() {
            info!(
                "handler {}: {} closed files still wait for on_close from before the restart; queued",
                handler.spec().name,
                waiting.len()
            );
            for mut file in waiting {
                file.on_close = handler.spec().on_close.clone();
                self.forward.outbox().push(file);
            }
        } else {
            // The handler has no hook any more: nothing is left to run for them.
            for file in waiting {
                self.storage.hook_done(&file.path);
            }
        }
        let spec = handler.spec();
        let next = handler.log_file_path(&self.storage, now);
        info!(
            "handler {}: capturing {} {} into {} as {}",
            spec.name,
            spec.conn_type,
            spec.address,
            next.parent().unwrap_or(Path::new("")).display(),
            spec.file_name_pattern.source()
        );
        self.handlers.insert(handler, resumed_until)
    }

    /// Whether `spec` can name its next file at `now` (every rendered name
    /// checked, see [`crate::files::paths`]) and that name is no other handler's
    /// (`except` is the handler being changed).
    pub(super) fn check_file_free(
        &self,
        spec: &HandlerSpec,
        except: Option<HandlerId>,
        now: UnixMicros,
    ) -> Result<(), AddError> {
        let seq = self
            .storage
            .last(&journal_key(spec))
            .map_or(1, |l| l.seq + 1);
        let path = spec
            .file_path(&self.root, now.to_datetime(), seq)
            .map_err(AddError::Invalid)?
            .full();
        crate::files::paths::check_not_state_folder(&path, &self.root)
            .map_err(AddError::Invalid)?;
        let other = self.handlers().find(|&(id, h)| {
            Some(id) != except
                && (h.pattern_path(&self.storage, now).as_ref() == Some(&path)
                    || h.current_file() == Some(path.as_path()))
        });
        match other {
            Some((_, h)) => Err(AddError::Conflict(format!(
                "handler {:?} already writes {}",
                h.spec().name,
                path.display()
            ))),
            None => Ok(()),
        }
    }

    /// Stops a handler: flushes and closes its file; closes its capturer if it was
    /// the last handler there.
    pub fn remove_handler(&mut self, hid: HandlerId, registry: &Registry, now: UnixMicros) -> bool {
        self.detach_handler(hid, registry, true, now)
    }

    /// Stops a handler; its capturer, if left without handlers, is closed only
    /// when `close_empty` (a reload that replaces the handler keeps the socket, so
    /// nothing queued in it is lost while the new handler starts).
    pub(super) fn detach_handler(
        &mut self,
        hid: HandlerId,
        registry: &Registry,
        close_empty: bool,
        now: UnixMicros,
    ) -> bool {
        let Some(mut handler) = self.handlers.take(hid) else {
            return false;
        };
        if let Some(cid) = self.capturer_at(&handler.spec().address) {
            if self.capturers.detach(cid, hid) {
                if close_empty {
                    self.capturers.close(cid, registry);
                }
            } else {
                self.update_capturer_needs(cid);
            }
        }
        Manager::close_relay(&mut handler, registry);
        info!("handler {}: stopped", handler.spec().name);
        // Its file is flushed and closed now (and goes to `on_close`).
        handler.close(&mut Cx {
            files: &mut self.storage,
            now,
            closed: self.forward.outbox(),
            clock: self.clock,
        });
        true
    }

    /// Tells capturer `cid` what its handlers need of a read (see
    /// [`Capturers::update_needs`]).
    pub(super) fn update_capturer_needs(&mut self, cid: CapturerId) {
        let handlers = &self.handlers;
        self.capturers
            .update_needs(cid, |h| handlers.get(h).map(|h| h.spec()));
    }

    /// `DELETE /capturers`: stops every handler of the capturer at `address` (their
    /// files flushed and closed) and closes its socket. Returns the handlers, or
    /// `None` if no capturer has that address.
    pub fn remove_capturer(
        &mut self,
        address: &Address,
        registry: &Registry,
        now: UnixMicros,
    ) -> Option<usize> {
        let cid = self.capturer_at(address)?;
        let ids = self.capturer(cid).handlers().to_vec();
        Some(
            ids.into_iter()
                .filter(|&hid| self.remove_handler(hid, registry, now))
                .count(),
        )
    }
}
