//! The coordinator's raft storage: openraft's conformance suite on the redb
//! stores, what survives a reopen (vote, committed, log, snapshot, applied
//! state), how entries are applied, and that corrupt values are errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine, StorageHelper};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, CommittedLeaderId, Config, Entry, EntryPayload, LogId, Membership, RaftLogReader,
    RaftSnapshotBuilder, StorageError, StorageIOError, Vote,
};
use redb::ReadableTable;
use rhizome_coordinator::assign::{Applied, Assignments, Command};
use rhizome_coordinator::store::{self, LogStore, StateMachineStore, StoreError};
use rhizome_coordinator::types::{Member, NodeId, Raft, TypeConfig};
use tempfile::TempDir;

/// Builds each suite case's stores in a fresh temporary directory.
struct TempStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let (log, sm) = store::open(dir.path())
            .await
            .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::<TypeConfig, LogStore, StateMachineStore, TempStores, TempDir>::test_all(TempStores)
        .expect("openraft storage suite");
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

fn join(node: &str) -> EntryPayload<TypeConfig> {
    EntryPayload::Normal(Command::Join {
        node: node.into(),
        credentials: (0..20).map(|i| format!("cred-{i}")).collect(),
        node_ttl_ms: 3000,
    })
}

fn membership() -> EntryPayload<TypeConfig> {
    let nodes = BTreeMap::from([(1, Member::new("http://127.0.0.1:7001"))]);
    EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], nodes))
}

/// A replica's first entries: the initial membership at index 0 (where
/// `Raft::initialize` puts it), two joins, a new leader's blank, a third
/// join.
fn history() -> Vec<Entry<TypeConfig>> {
    vec![
        entry(0, 0, membership()),
        entry(1, 1, join("n1")),
        entry(1, 2, join("n2")),
        entry(2, 3, EntryPayload::Blank),
        entry(2, 4, join("n3")),
    ]
}

async fn open(dir: &Path) -> (LogStore, StateMachineStore) {
    store::open(dir).await.expect("open the store")
}

fn log_ids(entries: &[Entry<TypeConfig>]) -> Vec<LogId<NodeId>> {
    entries.iter().map(|e| e.log_id).collect()
}

#[tokio::test]
async fn applying_answers_what_the_assignments_did_and_a_blank_renews() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_log, mut sm) = open(dir.path()).await;
    assert_eq!(sm.applied_index(), 0);
    let mut expected = Assignments::default();
    let mut answers = Vec::new();
    for e in history() {
        answers.push(match &e.payload {
            EntryPayload::Normal(cmd) => expected.apply(e.log_id.index, cmd),
            EntryPayload::Blank => {
                expected.renew(e.log_id.index);
                Applied::default()
            }
            EntryPayload::Membership(_) => Applied::default(),
        });
    }
    let got = sm.apply(history()).await.expect("apply");
    assert_eq!(got, answers);
    assert!(got[1].moved > 0, "the first join assigns credentials");
    assert_eq!(sm.assignments(), expected);
    assert_eq!(sm.applied_index(), 4);
    let epochs: BTreeSet<u64> = sm
        .assignments()
        .owners()
        .values()
        .map(|o| o.epoch)
        .collect();
    assert!(
        epochs.iter().all(|e| *e >= 3),
        "renewed by the blank at 3: {epochs:?}"
    );
    let (applied, members) = sm.applied_state().await.expect("applied state");
    assert_eq!(applied, Some(log_id(2, 4)));
    assert_eq!(members.log_id(), &Some(log_id(0, 0)));
}

#[tokio::test]
async fn reopening_keeps_vote_committed_log_snapshot_and_applied_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let vote = Vote::new_committed(2, 1);
    let (snapshot_meta, applied) = {
        let (mut log, mut sm) = open(dir.path()).await;
        log.blocking_append(history()).await.expect("append");
        log.save_vote(&vote).await.expect("save vote");
        log.save_committed(Some(log_id(1, 2)))
            .await
            .expect("save committed");
        sm.apply(history().into_iter().take(3))
            .await
            .expect("apply");
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        sm.apply(history().into_iter().skip(3))
            .await
            .expect("apply the rest");
        (snap.meta, sm.assignments())
    };

    let (mut log, mut sm) = open(dir.path()).await;
    assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(1, 2))
    );
    let entries = log.try_get_log_entries(0..).await.expect("entries");
    assert_eq!(log_ids(&entries), log_ids(&history()));
    let current = sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("a snapshot");
    assert_eq!(current.meta, snapshot_meta);
    assert_eq!(snapshot_meta.last_log_id, Some(log_id(1, 2)));
    assert_eq!(sm.applied_index(), 2, "the state is the snapshot's");

    // Raft re-applies the committed entries after the snapshot on start-up.
    log.save_committed(Some(log_id(2, 4)))
        .await
        .expect("commit all");
    StorageHelper::new(&mut log, &mut sm)
        .get_initial_state()
        .await
        .expect("initial state");
    assert_eq!(sm.applied_index(), 4);
    assert_eq!(
        sm.assignments(),
        applied,
        "same state as before the restart"
    );
}

#[tokio::test]
async fn a_replica_restarted_after_purge_recovers_from_its_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let applied = {
        let (mut log, mut sm) = open(dir.path()).await;
        log.blocking_append(history()).await.expect("append");
        sm.apply(history()).await.expect("apply");
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        log.purge(log_id(2, 4)).await.expect("purge");
        sm.assignments()
    };
    let (mut log, sm) = open(dir.path()).await;
    assert!(log
        .try_get_log_entries(0..)
        .await
        .expect("entries")
        .is_empty());
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 4)));
    assert_eq!(state.last_log_id, Some(log_id(2, 4)));
    assert_eq!(sm.applied_index(), 4);
    assert_eq!(sm.assignments(), applied);
}

#[tokio::test]
async fn snapshot_ids_are_unique_and_an_installed_snapshot_replaces_the_state() {
    let leader_dir = tempfile::tempdir().expect("temp dir");
    let (_leader_log, mut leader) = open(leader_dir.path()).await;
    leader.apply(history()).await.expect("apply");
    let first = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("first");
    let second = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("second");
    assert_ne!(first.meta.snapshot_id, second.meta.snapshot_id);

    let follower_dir = tempfile::tempdir().expect("temp dir");
    {
        let (_log, mut follower) = open(follower_dir.path()).await;
        follower
            .apply(history().into_iter().take(2))
            .await
            .expect("apply");
        let mut data = follower.begin_receiving_snapshot().await.expect("begin");
        *data = *second.snapshot;
        follower
            .install_snapshot(&second.meta, data)
            .await
            .expect("install");
        assert_eq!(follower.assignments(), leader.assignments());
    }
    let (_log, mut follower) = open(follower_dir.path()).await;
    assert_eq!(follower.assignments(), leader.assignments());
    let current = follower
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("some");
    assert_eq!(current.meta, second.meta);
}

#[tokio::test]
async fn an_installed_snapshot_whose_data_disagrees_with_its_meta_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_log, mut sm) = open(dir.path()).await;
    sm.apply(history()).await.expect("apply");
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    let mut meta = snap.meta.clone();
    meta.last_log_id = Some(log_id(9, 9));
    let err = sm.install_snapshot(&meta, snap.snapshot).await;
    assert!(err.is_err(), "meta and data disagree");
    assert_eq!(sm.applied_index(), 4, "state unchanged");
    let garbage = Box::new(std::io::Cursor::new(vec![0xff; 7]));
    assert!(sm.install_snapshot(&snap.meta, garbage).await.is_err());
}

/// Overwrites raw values in the store's file, as a disk fault would.
fn tamper(dir: &Path, change: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::create(dir.join(store::FILE_NAME)).expect("open redb");
    let txn = db.begin_write().expect("write txn");
    change(&txn);
    txn.commit().expect("commit");
}

const LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");

#[tokio::test]
async fn corrupt_log_entries_and_vote_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let (mut log, _sm) = open(dir.path()).await;
        log.blocking_append(history()).await.expect("append");
        log.save_vote(&Vote::new(2, 1)).await.expect("vote");
    }
    tamper(dir.path(), |txn| {
        let mut log = txn.open_table(LOG).expect("log table");
        log.insert(2, [0xffu8; 5].as_slice()).expect("garbage");
        let moved = log.get(4).expect("read").expect("entry 4").value().to_vec();
        log.insert(5, moved.as_slice())
            .expect("entry 4 under key 5");
        let mut meta = txn.open_table(META).expect("meta table");
        meta.insert("vote", [1u8, 2].as_slice())
            .expect("garbage vote");
    });
    let (mut log, _sm) = open(dir.path()).await;
    let err = log
        .try_get_log_entries(0..)
        .await
        .expect_err("entry 2 is garbage");
    assert!(err.to_string().contains("log entry 2"), "{err}");
    assert_eq!(
        log.try_get_log_entries(1..2).await.expect("entry 1").len(),
        1
    );
    let err = log
        .get_log_state()
        .await
        .expect_err("the last entry is misplaced");
    assert!(err.to_string().contains("stored under index 5"), "{err}");
    log.read_vote().await.expect_err("the vote is garbage");
}

#[tokio::test]
async fn a_corrupt_snapshot_fails_open_with_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let (_log, mut sm) = open(dir.path()).await;
        sm.apply(history()).await.expect("apply");
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
    }
    tamper(dir.path(), |txn| {
        let mut meta = txn.open_table(META).expect("meta table");
        meta.insert("snapshot", [7u8; 3].as_slice())
            .expect("garbage snapshot");
    });
    let err = store::open(dir.path()).await.expect_err("corrupt snapshot");
    assert!(matches!(err, StoreError::Restore { .. }), "{err}");
    assert!(err.to_string().contains(store::FILE_NAME), "{err}");
}

#[tokio::test]
async fn open_creates_the_directory_and_reports_an_unusable_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nested = dir.path().join("a/b");
    open(&nested).await;
    assert!(nested.join(store::FILE_NAME).is_file());

    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").expect("write");
    let err = store::open(&file)
        .await
        .expect_err("a file is no directory");
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err}");
    assert!(err.to_string().contains("plain-file"), "{err}");
}

/// The network of a single replica: there is never anyone to talk to.
struct Alone;

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, Member, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other("single replica")))
}

impl RaftNetworkFactory<TypeConfig> for Alone {
    type Network = Alone;

    async fn new_client(&mut self, _target: NodeId, _node: &Member) -> Alone {
        Alone
    }
}

impl RaftNetwork<TypeConfig> for Alone {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        Err(unreachable())
    }
}

/// Starts replica 1 on the store in `dir`, and waits until it leads.
async fn start(dir: &Path) -> (Raft, StateMachineStore) {
    let (log, sm) = open(dir).await;
    let config = Config::default().validate().expect("raft config");
    let raft = Raft::new(1, Arc::new(config), Alone, log, sm.clone())
        .await
        .expect("start raft");
    if !raft.is_initialized().await.expect("initialized?") {
        let members = BTreeMap::from([(1, Member::new("http://127.0.0.1:7001"))]);
        raft.initialize(members).await.expect("initialize");
    }
    raft.wait(Some(Duration::from_secs(10)))
        .current_leader(1, "replica 1 leads")
        .await
        .expect("a leader");
    (raft, sm)
}

fn command(payload: EntryPayload<TypeConfig>) -> Command {
    match payload {
        EntryPayload::Normal(cmd) => cmd,
        _ => unreachable!("a command payload"),
    }
}

/// Snapshot and purge, then one more entry only in the log: a restart
/// rebuilds the state from the snapshot plus the committed log after it.
#[tokio::test]
async fn a_raft_replica_restarted_after_snapshot_and_purge_keeps_its_assignments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wait = Some(Duration::from_secs(10));
    let (before, applied) = {
        let (raft, sm) = start(dir.path()).await;
        for node in ["n1", "n2"] {
            let written = raft.client_write(command(join(node))).await.expect("write");
            assert_eq!(written.log_id.index, sm.applied_index());
        }
        let last = raft.metrics().borrow().last_applied.expect("applied");
        raft.trigger().snapshot().await.expect("trigger snapshot");
        raft.wait(wait)
            .snapshot(last, "snapshot")
            .await
            .expect("snapshot");
        raft.trigger().purge_log(last.index).await.expect("purge");
        raft.wait(wait)
            .purged(Some(last), "purged")
            .await
            .expect("purged");
        raft.client_write(command(join("n3"))).await.expect("write");
        raft.shutdown().await.expect("shutdown");
        (sm.assignments(), sm.applied_index())
    };
    assert_eq!(before.nodes().len(), 3);

    let (raft, sm) = start(dir.path()).await;
    raft.wait(wait)
        .applied_index_at_least(Some(applied), "re-applied after the snapshot")
        .await
        .expect("applied");
    // openraft 0.9 resumes a restarted leader in its committed term, without
    // a new blank entry: epochs are unchanged.
    assert_eq!(sm.assignments(), before, "same state after the restart");
    let leave = Command::Leave { node: "n3".into() };
    let written = raft.client_write(leave).await.expect("write after restart");
    assert!(written.log_id.index > applied);
    assert_eq!(sm.assignments().nodes().len(), 2);
    raft.shutdown().await.expect("shutdown");
}
