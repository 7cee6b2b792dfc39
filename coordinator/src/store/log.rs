//! The raft log and the vote, durable in redb: [`LogStore`] implements
//! openraft's [`RaftLogStorage`] (append, truncate, purge, vote, committed
//! log id) and is its own [`RaftLogReader`]. Every write is one committed
//! redb transaction run on the blocking pool and awaited before the call
//! returns, so writes are applied in the order raft issued them, and an
//! append is reported flushed only after its commit.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use redb::ReadableTable;

use super::db::{self, key, Db, Failure, LOG, META};
use crate::types::{NodeId, TypeConfig};

/// The raft log, vote, committed and last purged log ids in redb.
#[derive(Clone, Debug)]
pub struct LogStore {
    db: Db,
}

impl LogStore {
    pub(super) fn new(db: Db) -> Self {
        Self { db }
    }

    /// The entries with an index in `first..=last`, checked against their keys.
    fn read_entries(
        db: &redb::Database,
        first: u64,
        last: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, Failure> {
        let txn = db.begin_read()?;
        let table = txn.open_table(LOG)?;
        let mut entries = Vec::new();
        for row in table.range(first..=last)? {
            let (index, bytes) = row?;
            entries.push(decode_entry(index.value(), bytes.value())?);
        }
        Ok(entries)
    }

    fn read_state(db: &redb::Database) -> Result<LogState<TypeConfig>, Failure> {
        let txn = db.begin_read()?;
        let purged: Option<LogId<NodeId>> = db::get_meta(&txn.open_table(META)?, key::PURGED)?;
        let last = match txn.open_table(LOG)?.last()? {
            Some((index, bytes)) => Some(decode_entry(index.value(), bytes.value())?.log_id),
            None => None,
        };
        Ok(LogState {
            last_log_id: last.or(purged),
            last_purged_log_id: purged,
        })
    }

    fn write_entries(db: &redb::Database, rows: &[(u64, Vec<u8>)]) -> Result<(), Failure> {
        db::write(db, |txn| {
            let mut table = txn.open_table(LOG)?;
            for (index, bytes) in rows {
                table.insert(*index, bytes.as_slice())?;
            }
            Ok(())
        })
    }
}

/// Decodes the entry stored under `index`; one under the wrong key is corrupt.
fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry<TypeConfig>, Failure> {
    let entry: Entry<TypeConfig> = db::decode(&format!("log entry {index}"), bytes)?;
    if entry.log_id.index != index {
        return Err(Failure::Corrupt(format!(
            "log entry {} stored under index {index}",
            entry.log_id
        )));
    }
    Ok(entry)
}

/// `range` as an inclusive `(first, last)`, or `None` when it is empty.
fn inclusive(range: &impl RangeBounds<u64>) -> Option<(u64, u64)> {
    let first = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let last = match range.end_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (first <= last).then_some((first, last))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let Some((first, last)) = inclusive(&range) else {
            return Ok(Vec::new());
        };
        let db = self.db.clone();
        db::blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            Self::read_entries(&db, first, last)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let db = self.db.clone();
        db::blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            Self::read_state(&db)
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let (db, vote) = (self.db.clone(), *vote);
        db::blocking(ErrorSubject::Vote, ErrorVerb::Write, move || {
            db::write_meta(&db, key::VOTE, &vote)
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let db = self.db.clone();
        db::blocking(ErrorSubject::Vote, ErrorVerb::Read, move || {
            db::read_meta(&db, key::VOTE)
        })
        .await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        db::blocking(ErrorSubject::Store, ErrorVerb::Write, move || {
            db::write_meta(&db, key::COMMITTED, &committed)
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let db = self.db.clone();
        db::blocking(ErrorSubject::Store, ErrorVerb::Read, move || {
            Ok(db::read_meta::<Option<LogId<NodeId>>>(&db, key::COMMITTED)?.flatten())
        })
        .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows = entries
            .into_iter()
            .map(|entry| {
                let what = format!("log entry {}", entry.log_id);
                db::encode(&what, &entry).map(|bytes| (entry.log_id.index, bytes))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Write))?;
        let db = self.db.clone();
        let written = db::blocking(ErrorSubject::Logs, ErrorVerb::Write, move || {
            Self::write_entries(&db, &rows)
        })
        .await;
        match &written {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        written
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        db::blocking(ErrorSubject::Log(log_id), ErrorVerb::Delete, move || {
            db::write(&db, |txn| {
                txn.open_table(LOG)?
                    .retain_in(log_id.index.., |_, _| false)?;
                Ok(())
            })
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        db::blocking(ErrorSubject::Log(log_id), ErrorVerb::Delete, move || {
            let purged = db::encode(key::PURGED, &log_id)?;
            db::write(&db, |txn| {
                txn.open_table(META)?
                    .insert(key::PURGED, purged.as_slice())?;
                txn.open_table(LOG)?
                    .retain_in(..=log_id.index, |_, _| false)?;
                Ok(())
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::inclusive;

    #[test]
    fn ranges_become_inclusive_or_empty() {
        assert_eq!(inclusive(&(3..3)), None);
        assert_eq!(inclusive(&(5..7)), Some((5, 6)));
        assert_eq!(inclusive(&(0..)), Some((0, u64::MAX)));
        assert_eq!(inclusive(&(..=4)), Some((0, 4)));
        assert_eq!(inclusive(&(..0)), None);
        let reversed = (Bound::Included(7), Bound::Excluded(3));
        assert_eq!(inclusive(&reversed), None);
    }
}
