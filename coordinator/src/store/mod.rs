//! Durable raft storage under `--data-dir`: the log, the vote, the committed
//! index and the latest snapshot in one redb database, and the state machine
//! that applies committed [`crate::assign::Command`]s to
//! [`crate::assign::Assignments`].
