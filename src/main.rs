//! The `mirrormq` command line.
fn main() {}
