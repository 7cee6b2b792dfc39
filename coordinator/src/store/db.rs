//! The redb file shared by the log store and the state machine: its two
//! tables, the codec round trip of every stored value, and the one way the
//! async raft storage runs blocking redb work (`spawn_blocking`, one
//! transaction per call, errors mapped to [`openraft::StorageError`]).
//!
//! Tables: `log` maps a log index to a codec-encoded
//! [`openraft::Entry`]; `meta` maps a fixed name ([`key`]) to a codec-encoded
//! value (vote, committed and last purged log ids, the current snapshot).
//! Nothing read back is trusted: a value that does not decode is an error,
//! never a panic.

use std::sync::Arc;

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use rhizome_proto::codec::{self, CodecError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::NodeId;

/// Log entries by index.
pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Single values by name (see [`key`]).
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Names of the values in [`META`].
pub(super) mod key {
    /// The last saved vote.
    pub const VOTE: &str = "vote";
    /// The last saved committed log id.
    pub const COMMITTED: &str = "committed";
    /// The id of the last purged log entry.
    pub const PURGED: &str = "last_purged";
    /// The current snapshot, meta and data.
    pub const SNAPSHOT: &str = "snapshot";
    /// The sequence number of the last snapshot built here.
    pub const SNAPSHOT_SEQ: &str = "snapshot_seq";
}

/// The database, shared by the stores and moved into blocking tasks.
pub(super) type Db = Arc<Database>;

/// Why one blocking storage operation failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    /// redb failed (I/O, corruption it detected, a closed database); boxed
    /// because redb's error is large and failures are rare.
    #[error("database: {0}")]
    Db(Box<redb::Error>),
    /// A stored value is not a valid record, or a value could not be encoded.
    #[error("{what}: {source}")]
    Codec {
        /// Which value.
        what: String,
        /// The codec's complaint.
        source: CodecError,
    },
    /// Stored values that decode but contradict each other.
    #[error("corrupt: {0}")]
    Corrupt(String),
}

macro_rules! redb_failure {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Failure::Db(Box::new(e.into()))
            }
        }
    )*};
}
redb_failure!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl Failure {
    /// This failure as the raft storage error of an operation on `subject`.
    pub(super) fn into_storage(
        self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
    ) -> StorageError<NodeId> {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

/// Encodes `value`, named `what` in the error.
pub(super) fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, Failure> {
    codec::encode(value).map_err(|source| Failure::Codec {
        what: format!("encode {what}"),
        source,
    })
}

/// Decodes a stored `what`.
pub(super) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Failure> {
    codec::decode(bytes).map_err(|source| Failure::Codec {
        what: format!("decode {what}"),
        source,
    })
}

/// Runs `work` on the blocking pool; any failure is reported on `subject`.
pub(super) async fn blocking<T, F>(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    work: F,
) -> Result<T, StorageError<NodeId>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(failure)) => Err(failure.into_storage(subject, verb)),
        Err(join) => Err(StorageIOError::new(subject, verb, AnyError::new(&join)).into()),
    }
}

/// Runs `change` in one write transaction and commits it (durably: redb's
/// default durability syncs on commit). A failed `change` aborts.
pub(super) fn write<T>(
    db: &Database,
    change: impl FnOnce(&WriteTransaction) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let txn = db.begin_write()?;
    let value = change(&txn)?;
    txn.commit()?;
    Ok(value)
}

/// Reads the value named `name` from [`META`].
pub(super) fn read_meta<T: DeserializeOwned>(
    db: &Database,
    name: &str,
) -> Result<Option<T>, Failure> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META)?;
    get_meta(&table, name)
}

/// Reads the value named `name` from an open [`META`] table.
pub(super) fn get_meta<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<T>, Failure> {
    match table.get(name)? {
        Some(bytes) => decode(name, bytes.value()).map(Some),
        None => Ok(None),
    }
}

/// Writes `value` under `name` in [`META`], in one committed transaction.
pub(super) fn write_meta<T: Serialize>(
    db: &Database,
    name: &str,
    value: &T,
) -> Result<(), Failure> {
    let bytes = encode(name, value)?;
    write(db, |txn| {
        txn.open_table(META)?.insert(name, bytes.as_slice())?;
        Ok(())
    })
}

/// Creates both tables if missing, so readers never meet an absent table.
pub(super) fn create_tables(db: &Database) -> Result<(), Failure> {
    write(db, |txn| {
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        Ok(())
    })
}
