//! `rhizome-coordinator`: the command line (being built).

fn main() {}
