//! An administrator's session on the admin API (`/api/v1/admin`).
//!
//! Admin tokens are valid on any server of the cluster and take no license seat, so unlike
//! [`crate::Client`] there is no home-server redirect to follow.

use crate::error::ClientError;
use crate::http::{Endpoint, HttpClient};
use reqwest::Method;
use shared::api::{
    AddMediaServer, AddMember, CreateGroup, CreateUser, GroupInfo, LicenseInfo, LoginRequest,
    LoginResponse, MediaServerInfo, ServerList, SetLicense, UpdateUser, UserInfo,
};
use shared::{GroupId, MediaServerId, UserId};

/// An admin session. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AdminClient {
    endpoint: Endpoint,
    session: LoginResponse,
}

impl AdminClient {
    /// `POST /admin/login` at `base_url`.
    pub async fn login(
        base_url: &str,
        user: &UserId,
        password: &str,
    ) -> Result<AdminClient, ClientError> {
        Self::login_with(&HttpClient::new()?, base_url, user, password).await
    }

    /// [`AdminClient::login`] over a shared connection pool.
    pub async fn login_with(
        http: &HttpClient,
        base_url: &str,
        user: &UserId,
        password: &str,
    ) -> Result<AdminClient, ClientError> {
        let endpoint = Endpoint::new(http.clone(), base_url)?;
        let request = LoginRequest {
            user: user.clone(),
            password: password.to_string(),
            device: None,
        };
        let session: LoginResponse = endpoint
            .send(
                Method::POST,
                &["api", "v1", "admin", "login"],
                Some(&request),
            )
            .await?;
        let endpoint = endpoint.with_token(session.token.clone());
        Ok(AdminClient { endpoint, session })
    }

    pub fn base_url(&self) -> String {
        self.endpoint.base_url()
    }

    pub fn token(&self) -> &str {
        self.endpoint.token().unwrap_or_default()
    }

    pub fn session(&self) -> &LoginResponse {
        &self.session
    }

    /// Ends the admin token (`POST /logout`).
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.endpoint
            .send_no_answer::<()>(Method::POST, &["api", "v1", "logout"], None)
            .await
    }

    /// `GET /admin/users`, with `online` across servers.
    pub async fn users(&self) -> Result<Vec<UserInfo>, ClientError> {
        self.endpoint
            .get(&["api", "v1", "admin", "users"], &[])
            .await
    }

    /// `POST /admin/users`; `409 conflict` if the user exists.
    pub async fn create_user(&self, request: CreateUser) -> Result<UserInfo, ClientError> {
        self.endpoint
            .send(
                Method::POST,
                &["api", "v1", "admin", "users"],
                Some(&request),
            )
            .await
    }

    /// `PATCH /admin/users/{id}`.
    pub async fn update_user(
        &self,
        user: &UserId,
        request: UpdateUser,
    ) -> Result<UserInfo, ClientError> {
        self.endpoint
            .send(
                Method::PATCH,
                &["api", "v1", "admin", "users", user.as_str()],
                Some(&request),
            )
            .await
    }

    /// `DELETE /admin/users/{id}`.
    pub async fn delete_user(&self, user: &UserId) -> Result<(), ClientError> {
        self.endpoint
            .send_no_answer::<()>(
                Method::DELETE,
                &["api", "v1", "admin", "users", user.as_str()],
                None,
            )
            .await
    }

    /// `GET /admin/groups`.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, ClientError> {
        self.endpoint
            .get(&["api", "v1", "admin", "groups"], &[])
            .await
    }

    /// `POST /admin/groups`.
    pub async fn create_group(&self, request: CreateGroup) -> Result<GroupInfo, ClientError> {
        self.endpoint
            .send(
                Method::POST,
                &["api", "v1", "admin", "groups"],
                Some(&request),
            )
            .await
    }

    /// `POST /admin/groups/{id}/members`.
    pub async fn add_member(
        &self,
        group: &GroupId,
        user: &UserId,
    ) -> Result<GroupInfo, ClientError> {
        let body = AddMember { user: user.clone() };
        self.endpoint
            .send(
                Method::POST,
                &["api", "v1", "admin", "groups", group.as_str(), "members"],
                Some(&body),
            )
            .await
    }

    /// `DELETE /admin/groups/{id}/members/{user}`.
    pub async fn remove_member(
        &self,
        group: &GroupId,
        user: &UserId,
    ) -> Result<GroupInfo, ClientError> {
        self.endpoint
            .send::<(), _>(
                Method::DELETE,
                &[
                    "api",
                    "v1",
                    "admin",
                    "groups",
                    group.as_str(),
                    "members",
                    user.as_str(),
                ],
                None,
            )
            .await
    }

    /// `GET /admin/servers`: UCServers and MediaServers.
    pub async fn servers(&self) -> Result<ServerList, ClientError> {
        self.endpoint
            .get(&["api", "v1", "admin", "servers"], &[])
            .await
    }

    /// `GET /admin/licenses`.
    pub async fn licenses(&self) -> Result<Vec<LicenseInfo>, ClientError> {
        self.endpoint
            .get(&["api", "v1", "admin", "licenses"], &[])
            .await
    }

    /// `PUT /admin/licenses/{kind}`.
    pub async fn set_license(&self, kind: &str, capacity: u32) -> Result<LicenseInfo, ClientError> {
        self.endpoint
            .send(
                Method::PUT,
                &["api", "v1", "admin", "licenses", kind],
                Some(&SetLicense { capacity }),
            )
            .await
    }

    /// `GET /admin/media`: the MediaServers known to the cluster.
    pub async fn media(&self) -> Result<Vec<MediaServerInfo>, ClientError> {
        self.endpoint
            .get(&["api", "v1", "admin", "media"], &[])
            .await
    }

    /// `POST /admin/media`: makes a MediaServer known to the cluster.
    pub async fn add_media(
        &self,
        id: &MediaServerId,
        control_url: &str,
    ) -> Result<MediaServerInfo, ClientError> {
        let body = AddMediaServer {
            id: id.clone(),
            control_url: control_url.to_string(),
        };
        self.endpoint
            .send(Method::POST, &["api", "v1", "admin", "media"], Some(&body))
            .await
    }

    /// `DELETE /admin/media/{id}`.
    pub async fn remove_media(&self, id: &MediaServerId) -> Result<(), ClientError> {
        self.endpoint
            .send_no_answer::<()>(
                Method::DELETE,
                &["api", "v1", "admin", "media", id.as_str()],
                None,
            )
            .await
    }
}
