//! End-to-end support for Rhizome: the `rhizome-mock` upstream (an OAuth
//! token server, an API that verifies injected credentials, SSE upstreams)
//! and the harness that runs real node and mock processes on loopback.
//!
//! # Layout
//! - [`mock`]: the mock upstream, run by the `rhizome-mock` binary.
//! - [`harness`]: process management, log capture and secret scanning, and a
//!   small HTTP client for tests.

pub mod harness;
pub mod mock;
