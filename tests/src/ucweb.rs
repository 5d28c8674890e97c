//! A `ucweb` process in front of UCServers, for tests that go through one web origin.

use crate::process::free_port;
use crate::ucserver::{UcServer, binary, http_status};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct UcWeb {
    pub port: u16,
    child: Child,
}

impl UcWeb {
    /// Starts ucweb with `upstreams` and waits until it answers `/healthz`.
    pub fn start(upstreams: &[&UcServer]) -> UcWeb {
        let port = free_port();
        let upstream = upstreams
            .iter()
            .map(|s| s.url())
            .collect::<Vec<_>>()
            .join(",");
        let child = Command::new(binary("ucweb"))
            .env("UC_UPSTREAM", upstream)
            .env("UC_WEB_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ucweb");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_status(port, "/healthz") != Some(200) {
            assert!(Instant::now() < deadline, "ucweb did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        UcWeb { port, child }
    }

    pub fn url(&self) -> String {
        format!("http://localhost:{}", self.port)
    }
}

impl Drop for UcWeb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
