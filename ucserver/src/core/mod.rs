//! The deciding logic of the UCServer, as plain Rust with no IO: no tokio, sqlx, fred or
//! axum in here, and `now` always comes in as an argument. The shells in the rest of the
//! crate feed these cores and carry out what they return. A test
//! (`core_has_no_io_imports`) keeps it that way.

pub mod call;
pub mod failure;
pub mod license;
pub mod mdm;
pub mod media_choice;
pub mod presence;
pub mod visibility;

#[cfg(test)]
mod tests {
    /// The cores must stay free of IO crates so they can be tested with fixed time.
    #[test]
    fn core_has_no_io_imports() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let code = line.trim_start();
                if code.starts_with("//") || code.contains('"') {
                    continue;
                }
                for banned in [
                    "tokio",
                    "sqlx",
                    "fred",
                    "axum",
                    "SystemTime::now",
                    "Instant::now",
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
