//! Durable raft storage under `--data-dir`: the log, the vote, the committed
//! index and the latest snapshot in one redb database (`raft.redb`), and the
//! state machine that applies committed [`crate::assign::Command`]s to
//! [`crate::assign::Assignments`].
//!
//! - [`LogStore`] (`log.rs`): log entries and vote, one durable redb
//!   transaction per write.
//! - [`StateMachineStore`] (`machine.rs`): the applied state in memory,
//!   snapshots persisted; [`open`] restores the state from the snapshot and
//!   raft re-applies the committed entries after it.
//!
//! Every stored value uses [`rhizome_proto::codec`].

mod db;
mod log;
mod machine;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{ErrorSubject, ErrorVerb, StorageError};
use redb::Database;

pub use log::LogStore;
pub use machine::{SnapshotBuilder, StateMachineStore};

use crate::types::NodeId;

/// The database file in the data directory.
pub const FILE_NAME: &str = "raft.redb";

/// The raft storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create the raft data directory {}: {source}", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// redb refused the file (unreadable, not a redb database, already open).
    #[error("cannot open the raft database {}: {source}", .path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: redb::DatabaseError,
    },
    /// The tables could not be created.
    #[error("cannot initialise the raft database {}: {source}", .path.display())]
    Init {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: Box<StorageError<NodeId>>,
    },
    /// The persisted snapshot could not be read back into the state machine.
    #[error("cannot restore the state machine from the snapshot in {}: {source}", .path.display())]
    Restore {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: Box<StorageError<NodeId>>,
    },
    /// The blocking task opening the database died.
    #[error("opening the raft database {} did not finish: {source}", .path.display())]
    Task {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: tokio::task::JoinError,
    },
}

/// Opens (creating it and `dir` if missing) `dir/raft.redb`, and restores
/// the state machine from its snapshot.
pub async fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let dir = dir.to_path_buf();
    let path = dir.join(FILE_NAME);
    let task_path = path.clone();
    tokio::task::spawn_blocking(move || open_blocking(&dir, &task_path))
        .await
        .map_err(|source| StoreError::Task { path, source })?
}

fn open_blocking(dir: &Path, path: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let db = Database::create(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    db::create_tables(&db).map_err(|e| StoreError::Init {
        path: path.to_path_buf(),
        source: Box::new(e.into_storage(ErrorSubject::Store, ErrorVerb::Write)),
    })?;
    let db = Arc::new(db);
    let machine = StateMachineStore::restore(db.clone()).map_err(|e| StoreError::Restore {
        path: path.to_path_buf(),
        source: Box::new(e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Read)),
    })?;
    Ok((LogStore::new(db), machine))
}
