//! Helper process for the harness's own test `servers_of_a_killed_process_are_cleaned_up`:
//! starts a Redis and the shared PostgreSQL, reports them on stdout, never drops them, and
//! waits to be killed. Its watchdogs must then stop both servers and remove their files.

use switchboard_tests::process::STARTUP_LIMIT;
use switchboard_tests::{Postgres, Redis};

fn main() {
    let redis = Redis::start();
    let postgres = Postgres::shared();
    println!("SERVER {} {}", redis.port(), redis.dir().display());
    println!("SERVER {} {}", postgres.port(), postgres.dir().display());
    std::mem::forget(redis);
    std::thread::sleep(STARTUP_LIMIT * 2);
}
