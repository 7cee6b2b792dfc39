//! The state machine: [`StateMachineStore`] applies committed entries to the
//! in-memory [`Assignments`] and remembers the last applied log id and
//! membership; it implements openraft's [`RaftStateMachine`].
//!
//! The state itself is never written on apply: it is small, and raft
//! rebuilds it on restart from the persisted snapshot plus the committed log
//! entries after it. So every snapshot (built here or installed from the
//! leader) is made durable in redb before it is reported, and opening the
//! store restores the state from it.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StoredMembership,
};
use parking_lot::RwLock;
use redb::Database;
use serde::{Deserialize, Serialize};

use super::db::{self, key, Db, Failure, META};
use crate::assign::{Applied, Assignments};
use crate::types::{Member, NodeId, TypeConfig};

/// Everything applying the log has produced: a snapshot's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Machine {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
    assignments: Assignments,
}

impl Machine {
    /// Applies one committed entry and answers what applying it did.
    fn apply(&mut self, entry: Entry<TypeConfig>) -> Applied {
        let index = entry.log_id.index;
        self.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Normal(cmd) => self.assignments.apply(index, &cmd),
            EntryPayload::Blank => {
                self.assignments.renew(index);
                Applied::default()
            }
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
                Applied::default()
            }
        }
    }

    /// The state in a snapshot's `data`, which must agree with its `meta`.
    fn from_snapshot(meta: &SnapshotMeta<NodeId, Member>, data: &[u8]) -> Result<Self, Failure> {
        let machine: Machine = db::decode("snapshot data", data)?;
        if machine.last_applied != meta.last_log_id || machine.membership != meta.last_membership {
            return Err(Failure::Corrupt(format!(
                "snapshot {} holds the state at {:?}, not at its last log id",
                meta.snapshot_id, machine.last_applied
            )));
        }
        Ok(machine)
    }
}

/// A snapshot as stored under [`key::SNAPSHOT`].
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn into_snapshot(self) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: self.meta,
            snapshot: Box::new(Cursor::new(self.data)),
        }
    }
}

/// The applied state in memory; snapshots in redb.
#[derive(Clone, Debug)]
pub struct StateMachineStore {
    db: Db,
    state: Arc<RwLock<Machine>>,
}

impl StateMachineStore {
    /// The store over `db`, its state restored from the persisted snapshot.
    pub(super) fn restore(db: Db) -> Result<Self, Failure> {
        let machine = match db::read_meta::<StoredSnapshot>(&db, key::SNAPSHOT)? {
            Some(stored) => Machine::from_snapshot(&stored.meta, &stored.data)?,
            None => Machine::default(),
        };
        Ok(Self {
            db,
            state: Arc::new(RwLock::new(machine)),
        })
    }

    /// A copy of the applied assignments.
    pub fn assignments(&self) -> Assignments {
        self.state.read().assignments.clone()
    }

    /// The index of the last applied entry; 0 before anything was applied.
    pub fn applied_index(&self) -> u64 {
        self.state.read().last_applied.map_or(0, |id| id.index)
    }

    fn apply_all(&self, entries: impl Iterator<Item = Entry<TypeConfig>>) -> Vec<Applied> {
        let mut machine = self.state.write();
        entries.map(|entry| machine.apply(entry)).collect()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>>
    {
        let machine = self.state.read();
        Ok((machine.last_applied, machine.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        Ok(self.apply_all(entries.into_iter()))
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            machine: self.state.read().clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let data = snapshot.into_inner();
        let machine = Machine::from_snapshot(meta, &data)
            .map_err(|e| e.into_storage(subject.clone(), ErrorVerb::Read))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let db = self.db.clone();
        db::blocking(subject, ErrorVerb::Write, move || {
            db::write_meta(&db, key::SNAPSHOT, &stored)
        })
        .await?;
        *self.state.write() = machine;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let db = self.db.clone();
        let stored = db::blocking(ErrorSubject::Snapshot(None), ErrorVerb::Read, move || {
            db::read_meta::<StoredSnapshot>(&db, key::SNAPSHOT)
        })
        .await?;
        Ok(stored.map(StoredSnapshot::into_snapshot))
    }
}

/// Builds a snapshot of the state as it was when raft asked for the builder.
#[derive(Debug)]
pub struct SnapshotBuilder {
    db: Db,
    machine: Machine,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let data = db::encode("snapshot data", &self.machine)
            .map_err(|e| e.into_storage(ErrorSubject::StateMachine, ErrorVerb::Read))?;
        let last_log_id = self.machine.last_applied;
        let last_membership = self.machine.membership.clone();
        let db = self.db.clone();
        let stored = db::blocking(ErrorSubject::Snapshot(None), ErrorVerb::Write, move || {
            persist_built(&db, last_log_id, last_membership, data)
        })
        .await?;
        Ok(stored.into_snapshot())
    }
}

/// Gives a built snapshot the next id of this replica and stores it as the
/// current one, unless the current one is newer (a snapshot installed from
/// the leader while this one was being built), in one transaction.
fn persist_built(
    db: &Database,
    last_log_id: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, Member>,
    data: Vec<u8>,
) -> Result<StoredSnapshot, Failure> {
    db::write(db, |txn| {
        let mut table = txn.open_table(META)?;
        let seq = db::get_meta::<u64>(&table, key::SNAPSHOT_SEQ)?
            .unwrap_or(0)
            .saturating_add(1);
        table.insert(
            key::SNAPSHOT_SEQ,
            db::encode(key::SNAPSHOT_SEQ, &seq)?.as_slice(),
        )?;
        let snapshot_id = match last_log_id {
            Some(id) => format!("{id}-{seq}"),
            None => format!("none-{seq}"),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id,
            },
            data,
        };
        let current = db::get_meta::<StoredSnapshot>(&table, key::SNAPSHOT)?;
        if current.is_none_or(|c| c.meta.last_log_id <= last_log_id) {
            table.insert(
                key::SNAPSHOT,
                db::encode(key::SNAPSHOT, &stored)?.as_slice(),
            )?;
        }
        Ok(stored)
    })
}
