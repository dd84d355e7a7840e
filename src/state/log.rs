//! The append-only event log in RocksDB (`state.dir`).
//!
//! Column family `events`: the sequence number (u64, big-endian, so keys sort in log
//! order) → the event as JSON. Column family `requests`: an idempotency key → what its
//! command recorded. A command's events and its key are written in one batch, synced to
//! disk before the command is answered: after a crash (`kill -9` included) either all
//! of them are in the log or none is.

use std::path::{Path, PathBuf};

use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};

use super::events::{Event, Payload};

const EVENTS: &str = "events";
const REQUESTS: &str = "requests";

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// RocksDB failed (a disk full, the directory locked by another Duplex).
    #[error("event log {dir}: {source}")]
    Db {
        /// The state directory.
        dir: PathBuf,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A stored event or request could not be decoded: written by a newer Duplex, or
    /// damaged.
    #[error("event log {dir}: entry {key} cannot be read: {reason}")]
    Corrupt {
        /// The state directory.
        dir: PathBuf,
        /// Which entry.
        key: String,
        /// Why.
        reason: String,
    },
}

/// What an idempotent command recorded, kept under its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// xxh3-64 of the request (its method and fields, the key left out).
    pub fingerprint: u64,
    /// The method, for the refusal's message.
    pub method: String,
    /// Sequence numbers of the events it recorded.
    pub events: Vec<u64>,
    /// The log's last sequence number once it was recorded.
    pub revision: u64,
}

/// The log.
#[derive(Debug)]
pub struct Log {
    db: DB,
    dir: PathBuf,
    last: u64,
}

impl Log {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> Result<Log, LogError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = [EVENTS, REQUESTS].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|source| LogError::Db {
            dir: dir.to_owned(),
            source,
        })?;
        let mut log = Log {
            db,
            dir: dir.to_owned(),
            last: 0,
        };
        let cf = log.cf(EVENTS);
        let last = match log.db.iterator_cf(cf, IteratorMode::End).next() {
            Some(Ok((k, _))) => log.seq_of(&k)?,
            Some(Err(source)) => return Err(log.db_err(source)),
            None => 0,
        };
        log.last = last;
        Ok(log)
    }

    /// The last sequence number (0: empty).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `payloads` as events numbered from `last() + 1`, and the request record
    /// under `request` if given, in one synced batch. Returns the events.
    pub fn append(
        &mut self,
        time_ms: i64,
        actor: &str,
        request: Option<(&str, &RequestRecord)>,
        payloads: Vec<Payload>,
    ) -> Result<Vec<Event>, LogError> {
        let mut batch = WriteBatch::default();
        let mut events = Vec::with_capacity(payloads.len());
        for (i, payload) in payloads.into_iter().enumerate() {
            let event = Event {
                seq: self.last + 1 + i as u64,
                time_ms,
                actor: actor.to_string(),
                request_id: request.map(|(k, _)| k.to_string()),
                v: payload.version(),
                payload,
            };
            let json = serde_json::to_vec(&event).expect("events serialize");
            batch.put_cf(self.cf(EVENTS), event.seq.to_be_bytes(), json);
            events.push(event);
        }
        if let Some((key, record)) = request {
            let json = serde_json::to_vec(record).expect("requests serialize");
            batch.put_cf(self.cf(REQUESTS), key.as_bytes(), json);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo).map_err(|e| self.db_err(e))?;
        self.last += events.len() as u64;
        Ok(events)
    }

    /// Up to `limit` events from `from` on, in order.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<Event>, LogError> {
        let start = from.max(1).to_be_bytes();
        let mode = IteratorMode::From(&start, Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(EVENTS), mode).take(limit) {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            let seq = self.seq_of(&k)?;
            let event: Event = serde_json::from_slice(&v).map_err(|e| LogError::Corrupt {
                dir: self.dir.clone(),
                key: format!("event {seq}"),
                reason: e.to_string(),
            })?;
            out.push(event);
        }
        Ok(out)
    }

    /// What the command with idempotency key `key` recorded, if one did.
    pub fn request(&self, key: &str) -> Result<Option<RequestRecord>, LogError> {
        let Some(v) = self
            .db
            .get_cf(self.cf(REQUESTS), key.as_bytes())
            .map_err(|e| self.db_err(e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| LogError::Corrupt {
                dir: self.dir.clone(),
                key: format!("request {key:?}"),
                reason: e.to_string(),
            })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    fn seq_of(&self, k: &[u8]) -> Result<u64, LogError> {
        <[u8; 8]>::try_from(k)
            .map(u64::from_be_bytes)
            .map_err(|_| LogError::Corrupt {
                dir: self.dir.clone(),
                key: format!("{k:?}"),
                reason: "an event key is not 8 bytes".into(),
            })
    }

    fn db_err(&self, source: rocksdb::Error) -> LogError {
        LogError::Db {
            dir: self.dir.clone(),
            source,
        }
    }
}
