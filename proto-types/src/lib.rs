//! Types shared by Rhizome nodes and coordinators. No I/O, no runtime: only data,
//! its validation and the error codes that cross process boundaries.
//!
//! # Layout
//! - [`config`]: the typed configuration model and its validation,
//!   which reports every problem with the path of the offending field.
//! - [`secret`]: [`Secret`], a reference to a secret value (inline, `{ env }` or
//!   `{ file }`) whose `Debug` never prints the value.
//! - [`error`]: [`ErrorCode`], the stable `snake_case` codes of Rhizome's own JSON errors.
//! - [`records`]: shared-state keys, records and events (tokens, sessions).
//! - [`codec`]: the one binary encoding of those records and of the
//!   coordinator's RPC bodies (bincode, swappable).
//! - [`coord`]: the coordinator's node API (heartbeats, assignments).
//! - [`epoch`]: [`Epoch`], the one fencing order shared by raft assignments
//!   and the degraded-mode lock.

pub mod codec;
pub mod config;
pub mod coord;
pub mod epoch;
pub mod error;
pub mod records;
pub mod secret;

pub use config::Config;
pub use epoch::Epoch;
pub use error::ErrorCode;
pub use secret::Secret;
