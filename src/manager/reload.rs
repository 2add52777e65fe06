//! Changes to the running set of handlers as a whole: a re-read config file
//! (SIGHUP) applied as a difference, and `POST /<name>/rotate` across every
//! handler of a name, checked before any is changed.

use super::*;

impl Manager {
    /// Applies a re-read config: handlers that came from the old config file and
    /// are gone or changed are stopped; new or changed ones are started; handlers
    /// that are the same keep running with their file open. Handlers added over the
    /// API are left alone.
    pub fn apply_config(
        &mut self,
        new: &Config,
        registry: &Registry,
        now: UnixMicros,
        mono: Instant,
    ) {
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
            .filter(|(_, h)| {
                h.spec().origin == Origin::ConfigFile && !new.handlers.contains(h.spec())
            })
            .map(|(id, _)| id)
            .collect();
        let (mut stopped, mut started, mut failed) = (0, 0, 0);
        for hid in stale {
            // Replaced by a handler on the same socket with the same socket
            // options: the socket stays open across the swap.
            let old = self.handler(hid).spec();
            let replaced = new.handlers.iter().any(|s| {
                s.name == old.name
                    && s.address == old.address
                    && s.conn_type == old.conn_type
                    && (
                        s.rcvbuf_bytes,
                        &s.interface,
                        s.connect_timeout,
                        s.reconnect_max,
                    ) == (
                        old.rcvbuf_bytes,
                        &old.interface,
                        old.connect_timeout,
                        old.reconnect_max,
                    )
            });
            self.detach_handler(hid, registry, !replaced, now);
            stopped += 1;
        }
        for spec in &new.handlers {
            let running = self.handlers().any(|(_, h)| h.spec() == spec);
            if running {
                continue;
            }
            let name = spec.name.clone();
            match self.add_handler(spec.clone(), registry, now, mono) {
                Ok(_) => started += 1,
                Err(e) => {
                    failed += 1;
                    error!("reload: handler {name}: {e}");
                }
            }
        }
        // Sockets kept for a replacement that then failed to start.
        let empty: Vec<CapturerId> = self
            .capturers()
            .iter()
            .filter(|(_, c)| c.handlers().is_empty())
            .map(|(id, _)| *id)
            .collect();
        for cid in empty {
            self.capturers.close(cid, registry);
        }
        info!(
            "reload: {} stopped, {started} started, {failed} failed, {} running",
            crate::log::count(stopped as u64, "handler"),
            self.handlers().count()
        );
    }

    /// `POST /<name>/rotate`: for every handler named `name`, sets the metadata
    /// `fields` (each checked as at start), closes its file and opens the next
    /// now. Every handler is checked before any is changed: the new metadata must
    /// give every rendered name a valid one, and no other handler's file.
    pub fn rotate(
        &mut self,
        name: &str,
        fields: &Map<String, Value>,
        now: UnixMicros,
    ) -> Result<Vec<Rotated>, RotateError> {
        let ids = self.handlers_named(name);
        if ids.is_empty() {
            return Err(RotateError::NotFound);
        }
        let mut specs = Vec::new();
        for &hid in &ids {
            let spec = self
                .handler(hid)
                .spec()
                .with_metadata(fields)
                .map_err(|e| RotateError::Invalid(e.to_string()))?;
            self.check_file_free(&spec, Some(hid), now)
                .map_err(|e| match e {
                    AddError::Invalid(m) => RotateError::Invalid(m),
                    other => RotateError::Conflict(other.to_string()),
                })?;
            specs.push(spec);
        }
        let mut rotated = Vec::new();
        for (hid, spec) in ids.into_iter().zip(specs) {
            let h = self.handlers.get_mut(hid).expect("a live handler");
            h.set_metadata(spec);
            let previous = h.current_file().map(Path::to_path_buf);
            let rotate_at = h
                .rotate_now(&mut Cx {
                    files: &mut self.storage,
                    now,
                    closed: self.forward.outbox(),
                    clock: self.clock,
                })
                .map_err(|e| {
                    RotateError::Failed(format!("handler {name}: cannot open the next file: {e}"))
                })?;
            let path = h.log_file_path(&self.storage, now);
            if let Some(at) = rotate_at {
                self.handlers.arm(hid, at);
            }
            rotated.push(Rotated {
                id: hid,
                previous,
                path,
            });
        }
        if !fields.is_empty() {
            self.save_api_handlers();
        }
        Ok(rotated)
    }
}
