//! Where the server's inputs that concern more than one component are routed: bus input,
//! a device leaving, shutdown. It sits above the components (`server.rs`) and the call shell
//! (`calls/`), so that neither has to import the other.

use crate::cluster::BusInput;
use crate::server::Server;
use shared::bus::BusBody;
use shared::{DeviceId, UserId};
use std::sync::Arc;
use std::time::Duration;

/// How long a graceful stop waits for the calls it ends to say goodbye.
const END_CALLS_WITHIN: Duration = Duration::from_secs(3);

/// One input from the bus: calls and MediaServer events to the call shell, a resync to the
/// server, everything else to its components.
pub async fn bus_input(server: &Arc<Server>, input: BusInput) {
    match input {
        BusInput::Resync => crate::peers::resync(server).await,
        BusInput::Media(event) => crate::calls::media_event(server, event).await,
        BusInput::Message(message) => match message.body {
            BusBody::Call(body) => {
                count_received(server);
                crate::calls::handle_bus(server, body).await;
            }
            BusBody::Inspect(body) => {
                count_received(server);
                crate::inspect::handle_bus(server, body).await;
            }
            BusBody::ServerDown {
                server: ref dead, ..
            } => {
                let dead = dead.clone();
                server.handle_bus(*message).await;
                crate::calls::owner_gone(server, &dead).await;
            }
            _ => server.handle_bus(*message).await,
        },
    }
}

/// A bus message that does not pass through `Server::handle_bus` (which counts its own).
fn count_received(server: &Server) {
    server
        .metrics
        .bus_received
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// A device's socket closed: it leaves presence, then the calls it was in.
pub async fn device_left(server: &Arc<Server>, user: &UserId, device: &DeviceId, conn: u64) {
    if server.disconnect_device(user, device, conn).await {
        crate::calls::device_gone(server, user, device).await;
    }
}

/// A graceful stop: calls end first (parties told, journal written), then users move to
/// their backups (in a cluster), then the server says goodbye to every device left and gives
/// back what it held in the cluster.
pub async fn shut_down(server: &Arc<Server>) {
    crate::calls::end_all(server, END_CALLS_WITHIN).await;
    crate::peers::leave(server).await;
    server.shut_down().await;
}
