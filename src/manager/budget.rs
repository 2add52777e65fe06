//! The disk budget, as the manager keeps it: how much of the root's file
//! system must stay free (`min_free_bytes`, `min_free_percent`), how much
//! may still be written before it is looked at again, and whether writing
//! stopped because nothing was left to delete.

use std::path::Path;

use super::forward::Forward;
use super::handlers::Handlers;
use crate::storage::{DiskBudget, Storage};
use crate::{error, info, sys, warn};

/// The budget and what it knows between looks.
#[derive(Debug, Default)]
pub struct Budget {
    limits: DiskBudget,
    /// Bytes handlers wrote during reads (past the handlers' flush size), not
    /// yet counted against `headroom`.
    written_early: u64,
    /// Bytes that may still be written before the budget must be looked at
    /// again (`None`: no budget, or not looked at yet).
    headroom: Option<u64>,
    /// Whether the budget stopped writing (nothing left to delete).
    disk_full: bool,
}

impl Budget {
    /// A budget with these limits (none: nothing is ever deleted for room).
    pub fn new(limits: DiskBudget) -> Budget {
        Budget {
            limits,
            ..Budget::default()
        }
    }

    /// Counts bytes written during a read (see `written_early`).
    pub fn wrote_early(&mut self, bytes: u64) {
        self.written_early += bytes;
    }

    /// Counts `bytes` written after a batch (and those written during it)
    /// against the headroom. Returns whether the budget must be looked at now
    /// (what was written since the last look could have used it up).
    pub fn wrote(&mut self, bytes: u64) -> bool {
        let written = std::mem::take(&mut self.written_early) + bytes;
        match self.headroom.as_mut() {
            Some(headroom) => {
                *headroom = headroom.saturating_sub(written);
                *headroom == 0
            }
            None => false,
        }
    }

    /// Whether the budget has stopped writing.
    pub fn disk_full(&self) -> bool {
        self.disk_full
    }

    /// The budget's view of the file system of `root` now: (free bytes, total
    /// bytes, bytes to keep free if a budget is set).
    pub fn disk(&self, root: &Path) -> Option<(u64, u64, Option<u64>)> {
        let (free, total) = sys::disk_space(root).ok()?;
        Some((free, total, self.limits.threshold(total)))
    }

    /// Keeps the file system of `root` above the limits by deleting the
    /// oldest closed files bsc created (across handlers); if nothing is left
    /// to delete, stops writing (units counted as lost) until space returns.
    pub fn enforce(
        &mut self,
        root: &Path,
        files: &mut Storage,
        handlers: &mut Handlers,
        forward: &mut Forward,
    ) {
        if self.limits == DiskBudget::default() {
            return;
        }
        let Ok((mut free, total)) = sys::disk_space(root) else {
            return;
        };
        let Some(threshold) = self.limits.threshold(total) else {
            return;
        };
        for _ in 0..1000 {
            if free >= threshold {
                break;
            }
            // The oldest closed file bsc created, of a running handler or not;
            // one still waiting to ship only when nothing else is left.
            let Some((key, victim)) = files.take_oldest(true) else {
                break;
            };
            if files.queues().is_unshipped(&victim.path) {
                error!(
                    "disk budget: deleting {} ({}, handler {}) although it was not shipped yet: nothing else is left to free; it will never be shipped (bsc_ship_dropped_total)",
                    victim.path.display(),
                    crate::log::size(victim.bytes),
                    crate::ops::hooks::name_of_key(&key)
                );
                forward.ship_dropped(&key);
            }
            let owner = handlers.of_key(&key);
            if files.queues().hook_pending(&victim.path) {
                let running = forward.hook_file_deleted(&victim.path);
                error!(
                    "disk budget: deleting {} ({}, handler {}) although its on_close hook {}: nothing else is left to free",
                    victim.path.display(),
                    crate::log::size(victim.bytes),
                    crate::ops::hooks::name_of_key(&key),
                    if running {
                        "still runs (it may not find the file)"
                    } else {
                        "has not run yet; the hook is not run for it"
                    }
                );
                if let Some(h) = owner.and_then(|id| handlers.get_mut(id)) {
                    h.hook_not_run();
                }
            }
            match owner.and_then(|id| handlers.get_mut(id)) {
                Some(h) => h.delete(files, &victim, "disk budget"),
                None => match files.remove(&victim) {
                    Ok(()) => info!(
                        "disk budget: deleted {} (a file of a handler no longer running)",
                        victim.path.display()
                    ),
                    Err(e) => warn!("disk budget: cannot delete {}: {e}", victim.path.display()),
                },
            }
            free = sys::disk_space(root).map_or(free, |(f, _)| f);
        }
        let full = free < threshold;
        // Look again after half the remaining room is written (or at the next tick).
        self.headroom = Some(free.saturating_sub(threshold) / 2);
        if full != self.disk_full {
            if full {
                error!(
                    "disk budget: {} has {} free, below the {} to keep, and no closed bsc file is left to delete: units are counted as lost until space returns",
                    root.display(),
                    crate::log::size(free),
                    crate::log::size(threshold)
                );
            } else {
                info!(
                    "disk budget: {} free again; writing resumes",
                    crate::log::size(free)
                );
            }
            self.disk_full = full;
            handlers.set_suspended(full);
        }
    }
}
