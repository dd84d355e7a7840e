//! The translation index's store: a RocksDB directory, `offsets-index` under the state
//! directory, beside the event log (docs/offsets.md, "Index").

use std::path::Path;

use duplex_sync::offsets::index::{Index, Store};

/// Entries by key in RocksDB.
struct RocksStore(rocksdb::DB);

impl Store for RocksStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        // A read error is a partition read in full, not a failed translation.
        self.0.get(key).ok().flatten()
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.0.put(key, value).map_err(|e| e.to_string())
    }

    fn delete(&self, key: &[u8]) -> Result<(), String> {
        self.0.delete(key).map_err(|e| e.to_string())
    }
}

/// The directory of the index under a state directory.
pub fn dir(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("offsets-index")
}

/// Opens (or creates) the index under `state_dir`. Another process holding it (a
/// running service, when this is the CLI) is an error: RocksDB locks the directory.
pub fn open(state_dir: &Path) -> Result<Index, String> {
    let dir = dir(state_dir);
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    rocksdb::DB::open(&opts, &dir)
        .map(|db| Index::new(Box::new(RocksStore(db))))
        .map_err(|e| format!("cannot open the offsets index in {}: {e}", dir.display()))
}
