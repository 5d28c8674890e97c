//! The deciding logic of the UCServer, as plain Rust with no IO: presence aggregation and
//! visibility, quiet-mode buffering, license accounting, failure detection, who serves each
//! user and each server's state (high availability), the call state machine and MediaServer
//! choice. `now` always comes in as an argument.
//!
//! This is a crate of its own so that the compiler keeps it free of IO: its manifest names
//! only `shared`, so no runtime, socket, database or Redis crate can be imported here. The
//! shells in `ucserver` feed these cores and carry out what they return. Two tests hold the
//! rest of the rule: the manifest stays as it is, and no core reads the clock.

pub mod call;
pub mod csv;
pub mod directory;
pub mod failure;
pub mod license;
pub mod mdm;
pub mod media_choice;
pub mod ownership;
pub mod presence;
pub mod visibility;

#[cfg(test)]
mod tests {
    /// The only dependencies are the wire types and an error derive; anything else must be argued for here first.
    #[test]
    fn depends_on_the_wire_types_only() {
        let manifest =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
        let dependencies: Vec<&str> = manifest
            .split("[dependencies]")
            .nth(1)
            .unwrap()
            .split("[dev-dependencies]")
            .next()
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('['))
            .collect();
        assert_eq!(
            dependencies,
            [
                "shared = { workspace = true }",
                "thiserror = { workspace = true }"
            ]
        );
    }

    /// Time comes in as an argument: no core reads the clock.
    #[test]
    fn cores_never_read_the_clock() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let code = line.trim_start();
                if code.starts_with("//") || code.contains('"') {
                    continue;
                }
                for banned in [
                    "SystemTime::now",
                    "Instant::now",
                    "now_ms()",
                    "thread_rng",
                    "rand::",
                ] {
                    assert!(
                        !code.contains(banned),
                        "{} uses {banned}: {line}",
                        path.display()
                    );
                }
            }
        }
    }
}
