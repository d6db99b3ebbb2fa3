//! The tools the `mirrormq` binary carries beside the broker: the command-line client
//! (`send`, `receive`), `status` and `admin` (the admin API), `bench`, `chaos` and
//! `demo`, and `process`, which starts the
//! brokers they need. They use the broker library only as its users do (the failover
//! `client`, `config`, `runtime`); nothing in the library depends on them, so they are
//! compiled into the binary and not exported by the library.

pub mod admin;
pub mod bench;
pub mod chaos;
pub mod cli;
pub mod demo;
pub mod process;
pub mod zookeeper;
