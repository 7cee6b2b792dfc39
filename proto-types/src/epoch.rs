//! The one fencing order of shared-state writers. An epoch is the pair (raft index of the
//! newest assignment the writer knew, lock counter within it), compared
//! lexicographically: a new raft assignment beats every degraded-mode write
//! made under an older one, and degraded-mode writes under the same
//! assignment are ordered by the fenced lock's counter. Neither source can
//! fence the other out for good: the counter never decides across
//! assignments, and a newer assignment always wins.

use serde::{Deserialize, Serialize};

/// A writer's fencing epoch. Field order is the comparison order.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Epoch {
    /// Raft log index that committed the assignment the writer acts under
    /// (0 when no coordinator assigns ownership: `embedded`, `redis-lock`).
    pub assignment: u64,
    /// Fenced-lock counter taken within that assignment (0: none taken).
    pub lock: u64,
}

impl Epoch {
    /// The epoch of assignment `assignment` with lock counter `lock`.
    pub const fn new(assignment: u64, lock: u64) -> Self {
        Epoch { assignment, lock }
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.assignment, self.lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_assignment_beats_any_lock_counter_and_locks_order_within_one() {
        let degraded_late = Epoch::new(7, 1_000);
        let new_owner = Epoch::new(8, 0);
        assert!(new_owner > degraded_late, "a new raft assignment wins");
        assert!(
            Epoch::new(8, 2) > Epoch::new(8, 1),
            "locks order within one"
        );
        assert!(
            Epoch::new(9, 1) > new_owner,
            "and the owner is overtaken by the next assignment"
        );
        assert_eq!(Epoch::new(3, 4).to_string(), "3.4");
    }
}
