//! Test harness: real servers from the system's binaries, never mocks.
//!
//! [`Redis`] and [`Postgres`] each start a server of their own on a free port of 127.0.0.1
//! in a fresh temporary directory, and stop it and remove the directory when dropped. A
//! server that is never dropped (a `static`, such as [`Postgres::shared`]) is stopped by a
//! watchdog process when the test process exits, however it exits: see
//! [`process::Watchdog`]. Every wait is bounded (30 s) and ends in a panic that says why.
//!
//! [`sentinel::SentinelCluster`] is a Redis primary, its replica and three Redis Sentinels,
//! for failover tests.
//!
//! A missing binary is a panic naming the Debian package to install (`redis-server`,
//! `redis-sentinel`, `postgresql`); tests are never skipped.

pub mod chat;
pub mod device;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod sentinel;

pub use postgres::Postgres;
pub use redis::Redis;
pub mod mediaserver;
pub mod ucserver;
pub mod ucweb;
