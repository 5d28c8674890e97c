//! The admin API's look into live state (`/api/v1/admin/users/{id}/sessions`,
//! `/api/v1/admin/presence/...`): a user's devices and the kick of one, the presence viewer.

use super::AdminClient;
use crate::error::ClientError;
use reqwest::Method;
use shared::inspect::{DeviceKicked, PresenceInspection, PresenceWatchers, UserSessions};
use shared::{DeviceId, UserId};

impl AdminClient {
    /// `GET /admin/users/{id}/sessions`: the user's connected devices, from the server that
    /// serves them.
    pub async fn user_sessions(&self, user: &UserId) -> Result<UserSessions, ClientError> {
        self.endpoint
            .get(
                &["api", "v1", "admin", "users", user.as_str(), "sessions"],
                &[],
            )
            .await
    }

    /// `DELETE /admin/users/{id}/sessions/{device}`: ends one device's session.
    pub async fn kick_device(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<DeviceKicked, ClientError> {
        self.endpoint
            .send::<(), DeviceKicked>(
                Method::DELETE,
                &[
                    "api",
                    "v1",
                    "admin",
                    "users",
                    user.as_str(),
                    "sessions",
                    device.as_str(),
                ],
                None,
            )
            .await
    }

    /// `GET /admin/presence/{user}?watcher=`: what `watcher` sees of `user`, and why.
    pub async fn presence_inspection(
        &self,
        user: &UserId,
        watcher: &UserId,
    ) -> Result<PresenceInspection, ClientError> {
        self.endpoint
            .get(
                &["api", "v1", "admin", "presence", user.as_str()],
                &[("watcher", watcher.to_string())],
            )
            .await
    }

    /// `GET /admin/presence/{user}/watchers`: who gets `user`'s live presence events.
    pub async fn presence_watchers(&self, user: &UserId) -> Result<PresenceWatchers, ClientError> {
        self.endpoint
            .get(
                &["api", "v1", "admin", "presence", user.as_str(), "watchers"],
                &[],
            )
            .await
    }
}
