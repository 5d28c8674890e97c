//! The pieces of the `ucclient` binary: its command line, its printed output, `listen` (with
//! its auto-answering softphone in `answer`) and the calls of `phone`.

pub mod answer;
pub mod args;
pub mod listen;
pub mod output;
pub mod phone;
