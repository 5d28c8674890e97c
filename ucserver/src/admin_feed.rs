//! The admin live channel's fan-out on one server: every change an administrator makes
//! anywhere in the cluster (`BusBody::AdminChanged`) and every server found dead reach the
//! consoles connected here (`http::admin_events`), encoded once for all of them.

use shared::console::AdminEvent;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};

/// Events a slow console may fall behind by before it is told to reload (`resync`).
const BACKLOG: usize = 256;
/// Consoles connected to one server at most; more get `server_unavailable`.
pub const MAX_CONSOLES: usize = 256;

pub struct AdminFeed {
    sender: broadcast::Sender<Arc<str>>,
    slots: Arc<Semaphore>,
}

impl Default for AdminFeed {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(BACKLOG).0,
            slots: Arc::new(Semaphore::new(MAX_CONSOLES)),
        }
    }
}

impl AdminFeed {
    /// Tells every connected console.
    pub fn publish(&self, event: &AdminEvent) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        match serde_json::to_string(event) {
            // No receiver left meanwhile is not an error: nobody is watching.
            Ok(text) => drop(self.sender.send(text.into())),
            Err(error) => tracing::warn!(%error, "could not encode an admin event"),
        }
    }

    /// A place for one more console and its receiver; `None` when all are taken.
    pub fn join(&self) -> Option<(OwnedSemaphorePermit, broadcast::Receiver<Arc<str>>)> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        Some((permit, self.sender.subscribe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_console_gets_each_event_and_the_slots_are_bounded() {
        let feed = AdminFeed::default();
        let (_a, mut first) = feed.join().unwrap();
        let (_b, mut second) = feed.join().unwrap();
        feed.publish(&AdminEvent::Resync);
        assert_eq!(&*first.recv().await.unwrap(), r#"{"type":"resync"}"#);
        assert_eq!(&*second.recv().await.unwrap(), r#"{"type":"resync"}"#);

        let held: Vec<_> = (2..MAX_CONSOLES).map(|_| feed.join().unwrap()).collect();
        assert!(feed.join().is_none(), "all slots taken");
        drop(held);
        assert!(feed.join().is_some(), "a slot is free again");
    }
}
