//! Admin questions about a user's live devices, answered by the server that serves the user:
//! which devices are connected (client, address, since, quiet mode), and ending one device's
//! session (its connection and its tokens; the user's other devices stay). A user's devices
//! live on whichever server serves them now (`Relations::server_of`), so a question about a
//! user served elsewhere goes there over the bus (`shared::inspect::InspectBusBody`) with a
//! reply token (`inquiries.rs`) and waits at most [`ASK_TIMEOUT`] for the answer.

use crate::error::{AppError, AppResult};
use crate::server::Server;
use shared::api::ErrorCode;
use shared::bus::BusBody;
use shared::call::ReplyTo;
use shared::inspect::{DeviceKicked, InspectAnswer, InspectBusBody};
use shared::ws::ServerEvent;
use shared::{DeviceId, ServerId, UserId};
use std::time::Duration;

/// How long a question to another server waits for its answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// An admin question about one user, already authorised.
#[derive(Clone, Debug)]
pub enum Question {
    Devices {
        user: UserId,
    },
    Kick {
        user: UserId,
        device: DeviceId,
        by: UserId,
    },
}

/// Asks server `at` (this one or another) and waits for the answer.
pub async fn ask(server: &Server, at: &ServerId, question: Question) -> AppResult<InspectAnswer> {
    if at == &server.id {
        return Ok(answer_here(server, question).await);
    }
    let (token, answer) = server.inquiries.ask();
    let reply = ReplyTo {
        server: server.id.clone(),
        token,
    };
    let body = match question {
        Question::Devices { user } => InspectBusBody::SessionsQuery { user, reply },
        Question::Kick { user, device, by } => InspectBusBody::KickDevice {
            user,
            device,
            by,
            reply,
        },
    };
    server.publish(at, BusBody::Inspect(body)).await;
    match tokio::time::timeout(ASK_TIMEOUT, answer).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) | Err(_) => {
            server.inquiries.forget(token);
            Err(AppError::new(
                ErrorCode::ServerUnavailable,
                format!(
                    "server '{at}' serves the user but did not answer within {} s; try again",
                    ASK_TIMEOUT.as_secs()
                ),
            ))
        }
    }
}

/// A question or an answer from another server.
pub async fn handle_bus(server: &Server, body: InspectBusBody) {
    let (question, reply) = match body {
        InspectBusBody::InspectReply { token, answer } => {
            server.inquiries.answer(token, answer);
            return;
        }
        InspectBusBody::SessionsQuery { user, reply } => (Question::Devices { user }, reply),
        InspectBusBody::KickDevice {
            user,
            device,
            by,
            reply,
        } => (Question::Kick { user, device, by }, reply),
    };
    let answer = answer_here(server, question).await;
    let body = InspectBusBody::InspectReply {
        token: reply.token,
        answer,
    };
    server.publish(&reply.server, BusBody::Inspect(body)).await;
}

async fn answer_here(server: &Server, question: Question) -> InspectAnswer {
    match question {
        Question::Devices { user } => InspectAnswer::Devices(server.devices.sessions_of(&user)),
        Question::Kick { user, device, by } => kick_here(server, &user, &device, &by).await,
    }
}

/// Ends one device's session here: its tokens first, those held here and those only in SQL
/// (so that it cannot come back with them: `401`), then its connection, which is told why (`goodbye`) and closed; its socket
/// task then takes it out of presence the usual way. The seat stays while another device
/// of the user holds a token here.
async fn kick_here(
    server: &Server,
    user: &UserId,
    device: &DeviceId,
    by: &UserId,
) -> InspectAnswer {
    let connection = server.devices.connection_token(user, device);
    let mut tokens = server.tokens.of_device(user, device);
    if let Some(Some(token)) = &connection
        && !tokens.contains(token)
    {
        tokens.push(token.clone());
    }
    for token in &tokens {
        server.end_token(token).await;
    }
    // Sessions of the device that SQL keeps but this server has not taken up (another sign-in
    // of the same device, a restart since): they end too.
    let unused = match server
        .sql(server.store.delete_sessions_of_device(user, device))
        .await
    {
        Ok(count) => count as usize,
        Err(error) => {
            tracing::warn!(%user, %device, error = %error.0.message, "the device's stored sessions stay until they expire");
            0
        }
    };
    if tokens.is_empty() && unused == 0 && connection.is_none() {
        return InspectAnswer::NoSuchDevice;
    }
    if connection.is_some() {
        let goodbye = ServerEvent::Goodbye {
            reason: format!(
                "an administrator ({by}) ended the session of this device; sign in again"
            ),
        };
        server.devices.drop_device(user, device, &goodbye);
    }
    let tokens_ended = (tokens.len() + unused) as u32;
    tracing::info!(%user, %device, %by, tokens = tokens_ended, "device session ended by an administrator");
    let devices_left = server
        .devices
        .sessions_of(user)
        .into_iter()
        .map(|session| session.device)
        .filter(|other| other != device)
        .collect();
    InspectAnswer::Kicked(DeviceKicked {
        user: user.clone(),
        device: device.clone(),
        server: server.id.clone(),
        was_connected: connection.is_some(),
        tokens_ended,
        devices_left,
    })
}
