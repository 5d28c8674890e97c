//! The pieces of the `ucclient` binary: its command line, its printed output and `listen`.

pub mod args;
pub mod listen;
pub mod output;
