//! Save and load latency of the state stores.

fn main() {}
