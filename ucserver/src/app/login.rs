//! Signing in: a device's session at its user's home server, or an admin-console session at
//! any server. The password check is throttled per user and per client address across the
//! cluster (`login_guard.rs`) and hashed within the server's bound (`password.rs`). The front
//! end says who the client is (its address, behind trusted proxies); everything else is here.

use crate::auth::{self, TokenInfo};
use crate::core::license;
use crate::error::{AppError, AppResult};
use crate::server::Server;
use crate::store::UserRecord;
use shared::api::{ErrorCode, LoginRequest, LoginResponse};
use shared::{DeviceId, ServerId, now_ms, validate_name};
use std::net::IpAddr;

/// A client session for `request`'s device at the server serving the user now: the home,
/// or its backup while the home is dead or draining (elsewhere: `wrong_server` with that
/// server's URL). Claims the user and takes their seat.
pub async fn sign_in(
    server: &Server,
    request: LoginRequest,
    client: IpAddr,
) -> AppResult<LoginResponse> {
    let user = check_password(server, &request, client).await?;
    let serving = server.serving_for_client(&user.id, &user.home_server).await;
    if serving != server.id {
        let mut error = server.served_elsewhere(&user.id, &serving);
        if error.0.error == shared::api::ErrorCode::WrongServer && error.0.home_url.is_none() {
            error.0.home_url = server_url(server, &serving).await;
        }
        return Err(error);
    }
    if server.claim_user(&user.id).await? {
        server.owners.settle_later(user.id.clone());
    }
    let device = match request.device {
        Some(device) => {
            validate_name(device.as_str())
                .map_err(|e| AppError::bad_request(format!("device: {e}")))?;
            device
        }
        None => DeviceId::new(format!("d-{}", auth::random_hex(4))),
    };
    server
        .licenses
        .acquire(license::SEAT, user.id.as_str())
        .await?;
    let issued = server
        .issue_token(TokenInfo {
            user: user.id.clone(),
            device: device.clone(),
            admin: user.admin,
            console_only: false,
            issued_ms: now_ms(),
        })
        .await;
    let token = match issued {
        Ok(token) => token,
        Err(error) => {
            // The session could not be stored (SQL down): the seat taken for it goes back.
            server.release_seat_if_unused(&user.id).await;
            return Err(error);
        }
    };
    server
        .metrics
        .logins
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(LoginResponse {
        token,
        user: user.id,
        device,
        display_name: user.display_name,
        server: server.id.clone(),
        admin: user.admin,
        servers: server.owners.links(),
    })
}

/// Ends a session token (and returns the seat when it was the user's last here).
pub async fn sign_out(server: &Server, token: &str) {
    server.end_token(token).await;
}

/// An admin-console session: valid on any server, takes no seat.
pub async fn sign_in_console(
    server: &Server,
    request: LoginRequest,
    client: IpAddr,
) -> AppResult<LoginResponse> {
    let user = check_password(server, &request, client).await?;
    if !user.admin {
        return Err(AppError::forbidden(format!(
            "'{}' is not an administrator",
            user.id
        )));
    }
    let device = DeviceId::new("console");
    let token = server
        .issue_token(TokenInfo {
            user: user.id.clone(),
            device: device.clone(),
            admin: true,
            console_only: true,
            issued_ms: now_ms(),
        })
        .await?;
    Ok(LoginResponse {
        token,
        user: user.id,
        device,
        display_name: user.display_name,
        server: server.id.clone(),
        admin: true,
        servers: server.owners.links(),
    })
}

async fn server_url(server: &Server, id: &ServerId) -> Option<String> {
    if let Some(seen) = server.bus("list servers", server.cluster.servers()).await
        && let Some(found) = seen.into_iter().find(|s| &s.heartbeat.id == id)
    {
        return Some(found.heartbeat.url);
    }
    let registered = server.sql(server.store.list_servers()).await.ok()?;
    registered.into_iter().find(|s| &s.id == id).map(|s| s.url)
}

/// Checks a login's password: throttled per user and per client address across the cluster,
/// hashed within the server's bound.
async fn check_password(
    server: &Server,
    request: &LoginRequest,
    address: IpAddr,
) -> AppResult<UserRecord> {
    let guard = &server.login_guard;
    let user_name = request.user.as_str();
    let wait = guard.wait_ms(user_name, address).await;
    if wait > 0 {
        let mut error = AppError::new(
            ErrorCode::TooManyAttempts,
            format!(
                "too many failed sign-ins; try again in {} s",
                (wait + 999) / 1000
            ),
        );
        error.0.retry_after_ms = Some(wait as u64);
        return Err(error);
    }
    if request.password.len() > crate::login_guard::MAX_PASSWORD_BYTES {
        return Err(AppError::new(
            ErrorCode::PayloadTooLarge,
            "the password is too long",
        ));
    }
    let user = server.sql(server.store.get_user(&request.user)).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    // A user the directory sync made has no password here: the directory checks it.
    let from_directory = hash.as_deref() == Some(super::directory::NO_LOCAL_PASSWORD)
        && server.directory.status().configured;
    // A refusal for load (`too_many_attempts`) is not a failed login: nothing is counted.
    let ok = if from_directory {
        server
            .directory
            .check_password(user_name, &request.password)
            .await
            .map_err(|error| {
                AppError::new(
                    ErrorCode::ServerUnavailable,
                    format!(
                        "the directory cannot check the password now ({error}); try again shortly"
                    ),
                )
            })?
    } else {
        server
            .passwords
            .verify(request.password.clone(), hash)
            .await?
    };
    match (ok, user) {
        (true, Some(user)) => {
            guard.succeeded(user_name).await;
            super::authz::require_enabled(&user)?;
            Ok(user)
        }
        _ => {
            guard.failed(user_name, address).await;
            server
                .metrics
                .login_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(AppError::new(
                ErrorCode::InvalidCredentials,
                "wrong user name or password",
            ))
        }
    }
}
