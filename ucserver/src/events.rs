//! Events on their way to devices, as typed values. Components queue an [`Outgoing`] for
//! every device it concerns (one `Arc`, shared by all of them); each front end encodes it for
//! its own wire when it writes it out. The encoding is cached in the event, so a message
//! fanned out to a thousand devices is serialized once per codec, not once per device, and a
//! front end that is not JSON never has to parse JSON back into events.

use shared::ws::ServerEvent;
use std::sync::{Arc, OnceLock};

/// What a device queue carries.
pub type DeviceEvent = Arc<Outgoing>;

/// One event and its encodings, made at most once each.
#[derive(Debug)]
pub struct Outgoing {
    event: ServerEvent,
    /// The JSON text of `event`, for the WebSocket (the first writer makes it).
    json: OnceLock<Arc<str>>,
}

impl Outgoing {
    pub fn new(event: ServerEvent) -> DeviceEvent {
        Arc::new(Self {
            event,
            json: OnceLock::new(),
        })
    }

    pub fn event(&self) -> &ServerEvent {
        &self.event
    }

    /// The event as one JSON text frame; encoded on first use, then shared.
    pub fn json(&self) -> Arc<str> {
        self.json
            .get_or_init(|| Arc::from(encode_json(&self.event)))
            .clone()
    }
}

/// The JSON encoding of a server event. Every field is a plain value, so encoding cannot fail;
/// should it ever, the device gets an `internal` error event instead of an empty frame.
pub fn encode_json(event: &ServerEvent) -> String {
    serde_json::to_string(event).unwrap_or_else(|error| {
        tracing::error!(%error, "an event could not be encoded");
        r#"{"type":"error","error":"internal","message":"an event could not be encoded"}"#.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_encoded_once_and_shared() {
        let event = Outgoing::new(ServerEvent::Pong);
        let first = event.json();
        let second = event.json();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(&*first, r#"{"type":"pong"}"#);
    }
}
