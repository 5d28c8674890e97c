//! Admin questions this server sent to another over the bus and waits to hear back on
//! (`shared::inspect::InspectBusBody`): each has a token, the answer names it. A question
//! whose answer never comes is forgotten by the one who asked, when it gives up waiting.

use shared::inspect::InspectAnswer;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;

#[derive(Default)]
pub struct Inquiries {
    next: AtomicU64,
    /// Questions without an answer yet, by token.
    waiting: Mutex<HashMap<u64, oneshot::Sender<InspectAnswer>>>,
}

impl Inquiries {
    /// A token for a new question and where its answer will arrive.
    pub fn ask(&self) -> (u64, oneshot::Receiver<InspectAnswer>) {
        let token = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(token, tx);
        (token, rx)
    }

    /// An answer came: to whoever still waits for it (a late one is dropped).
    pub fn answer(&self, token: u64, answer: InspectAnswer) {
        if let Some(tx) = self.waiting.lock().unwrap().remove(&token) {
            let _ = tx.send(answer);
        }
    }

    /// The asker gave up waiting.
    pub fn forget(&self, token: u64) {
        self.waiting.lock().unwrap().remove(&token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_reach_their_question_once_and_late_ones_are_dropped() {
        let inquiries = Inquiries::default();
        let (first, mut first_rx) = inquiries.ask();
        let (second, mut second_rx) = inquiries.ask();
        assert_ne!(first, second);
        inquiries.answer(second, InspectAnswer::NoSuchDevice);
        assert_eq!(second_rx.try_recv().unwrap(), InspectAnswer::NoSuchDevice);
        assert!(first_rx.try_recv().is_err());
        inquiries.forget(first);
        inquiries.answer(first, InspectAnswer::Devices(Vec::new()));
        assert!(first_rx.try_recv().is_err());
    }
}
