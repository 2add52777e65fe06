//! The sparse indexes of closed files ([`crate::files::index`]), kept in
//! memory beside what the journal knows of them: handed over by a handler
//! when it closes a file, or by an extract that read a whole file closed
//! before bsc started; dropped when the file is gone ([`Storage::gone`]).

use std::path::Path;

use super::Storage;
use crate::files::index::SparseIndex;

impl Storage {
    /// Keeps the index of the closed file `path`, if bsc still knows it.
    pub fn keep_index(&mut self, path: &Path, index: SparseIndex) {
        if self.naming.was_closed(path) || self.open.contains_key(path) {
            self.indexes.insert(path.to_path_buf(), index);
        }
    }

    /// The index of the closed file `path`, if one was noted or rebuilt.
    pub fn index_of(&self, path: &Path) -> Option<&SparseIndex> {
        self.indexes.get(path)
    }
}
