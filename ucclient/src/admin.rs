//! An administrator's session on the admin API (`/api/v1/admin`).
//!
//! Admin tokens are valid on any server of the cluster and take no license seat, so unlike
//! [`crate::Client`] there is no home-server redirect to follow.

mod inspect;
mod live;

pub use live::AdminEvents;

use crate::error::ClientError;
use crate::http::{Endpoint, HttpClient};
use reqwest::Method;
use shared::api::{
    AUDIT_TRUNCATED_HEADER, AddMediaServer, AddMember, AdminUser, AuditEntry, AuditFilter,
    CreateGroup, CreateUser, GroupInfo, LicenseInfo, LoginRequest, LoginResponse, MediaServerInfo,
    Overview, PasswordReset, PutSetting, Rebalance, ResetPassword, ServerAction, ServerList,
    SetLicense, SettingValue, SettingsView, UpdateUser,
};
use shared::directory::{DirectoryFile, DirectoryPlan, DirectoryStatus};
use shared::{GroupId, MediaServerId, ServerId, UserId};

/// An audit export as the server wrote it (CSV or JSON text).
#[derive(Clone, Debug)]
pub struct AuditExport {
    pub text: String,
    /// More entries matched than the export holds: the oldest were left out.
    pub truncated: bool,
}

/// An audit filter as query parameters.
fn audit_query(filter: &AuditFilter) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(since) = filter.since_ms {
        query.push(("since_ms", since.to_string()));
    }
    if let Some(until) = filter.until_ms {
        query.push(("until_ms", until.to_string()));
    }
    if let Some(actor) = &filter.actor {
        query.push(("actor", actor.to_string()));
    }
    if let Some(action) = &filter.action {
        query.push(("action", action.clone()));
    }
    query
}

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
    pub async fn users(&self) -> Result<Vec<AdminUser>, ClientError> {
        self.endpoint
            .get(&["api", "v1", "admin", "users"], &[])
            .await
    }

    /// `GET /admin/users?q=`: users whose id or display name contains `text`.
    pub async fn search_users(&self, text: &str) -> Result<Vec<AdminUser>, ClientError> {
        self.endpoint
            .get(&["api", "v1", "admin", "users"], &[("q", text.to_string())])
            .await
    }

    /// `GET /admin/users/{id}`, with the version an edit names.
    pub async fn user(&self, user: &UserId) -> Result<AdminUser, ClientError> {
        self.endpoint
            .get(&["api", "v1", "admin", "users", user.as_str()], &[])
            .await
    }

    /// `POST /admin/users`; `409 conflict` if the user exists.
    pub async fn create_user(&self, request: CreateUser) -> Result<AdminUser, ClientError> {
        self.endpoint
            .send(
                Method::POST,
                &["api", "v1", "admin", "users"],
                Some(&request),
            )
            .await
    }

    /// `PATCH /admin/users/{id}`, whatever the user's version.
    pub async fn update_user(
        &self,
        user: &UserId,
        request: UpdateUser,
    ) -> Result<AdminUser, ClientError> {
        self.update_user_at(user, request, None).await
    }

    /// `PATCH /admin/users/{id}` with `If-Match` when `version` is set: `409 conflict` (with
    /// `current`) when someone changed the user since.
    pub async fn update_user_at(
        &self,
        user: &UserId,
        request: UpdateUser,
        version: Option<u64>,
    ) -> Result<AdminUser, ClientError> {
        self.endpoint
            .if_match(version)
            .send(
                Method::PATCH,
                &["api", "v1", "admin", "users", user.as_str()],
                Some(&request),
            )
            .await
    }

    /// `POST /admin/users/{id}/password`: `password`, or one the server makes up (answered).
    pub async fn reset_password(
        &self,
        user: &UserId,
        password: Option<String>,
    ) -> Result<PasswordReset, ClientError> {
        self.endpoint
            .send(
                Method::POST,
                &["api", "v1", "admin", "users", user.as_str(), "password"],
                Some(&ResetPassword { password }),
            )
            .await
    }

    /// `DELETE /admin/users/{id}`.
    pub async fn delete_user(&self, user: &UserId) -> Result<(), ClientError> {
        self.delete_user_at(user, None).await
    }

    /// `DELETE /admin/users/{id}` with `If-Match` when `version` is set.
    pub async fn delete_user_at(
        &self,
        user: &UserId,
        version: Option<u64>,
    ) -> Result<(), ClientError> {
        self.endpoint
            .if_match(version)
            .send_no_answer::<()>(
                Method::DELETE,
                &["api", "v1", "admin", "users", user.as_str()],
                None,
            )
            .await
    }

    /// `GET /admin/audit`: the newest `limit` admin actions, newest first.
    pub async fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>, ClientError> {
        self.audit_filtered(&AuditFilter::default(), limit).await
    }

    /// `GET /admin/audit` with a filter: the newest `limit` (at most 1,000) entries it lets
    /// through, newest first.
    pub async fn audit_filtered(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, ClientError> {
        let mut query = audit_query(filter);
        query.push(("limit", limit.to_string()));
        self.endpoint
            .get(&["api", "v1", "admin", "audit"], &query)
            .await
    }

    /// `GET /admin/audit?format=csv|json`: every entry `filter` lets through (up to `limit`,
    /// at most and by default 100,000), as the file the server writes.
    pub async fn audit_export(
        &self,
        filter: &AuditFilter,
        csv: bool,
        limit: Option<u32>,
    ) -> Result<AuditExport, ClientError> {
        let mut query = audit_query(filter);
        query.push(("format", if csv { "csv" } else { "json" }.to_string()));
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        let (text, truncated) = self
            .endpoint
            .get_text_and_header(
                &["api", "v1", "admin", "audit"],
                &query,
                AUDIT_TRUNCATED_HEADER,
            )
            .await?;
        Ok(AuditExport {
            text,
            truncated: truncated.as_deref() == Some("true"),
        })
    }

    /// `GET /admin/overview`: servers, MediaServers, health, licenses, the caller's role.
    pub async fn overview(&self) -> Result<Overview, ClientError> {
        self.endpoint
            .get(&["api", "v1", "admin", "overview"], &[])
            .await
    }

    /// `GET /admin/users/{id}/delegates`: the users who act for `user`.
    pub async fn delegates(&self, user: &UserId) -> Result<Vec<UserId>, ClientError> {
        self.endpoint
            .get(
                &["api", "v1", "admin", "users", user.as_str(), "delegates"],
                &[],
            )
            .await
    }

    /// `PUT /admin/users/{id}/delegates/{delegate}`: `delegate` may act for `user`.
    pub async fn add_delegate(
        &self,
        user: &UserId,
        delegate: &UserId,
    ) -> Result<Vec<UserId>, ClientError> {
        self.change_delegate(Method::PUT, user, delegate).await
    }

    /// `DELETE /admin/users/{id}/delegates/{delegate}`.
    pub async fn remove_delegate(
        &self,
        user: &UserId,
        delegate: &UserId,
    ) -> Result<Vec<UserId>, ClientError> {
        self.change_delegate(Method::DELETE, user, delegate).await
    }

    /// One delegate of `user` added or taken away; `user`'s delegates now.
    async fn change_delegate(
        &self,
        method: Method,
        user: &UserId,
        delegate: &UserId,
    ) -> Result<Vec<UserId>, ClientError> {
        let path = [
            "api",
            "v1",
            "admin",
            "users",
            user.as_str(),
            "delegates",
            delegate.as_str(),
        ];
        self.endpoint.send::<(), _>(method, &path, None).await
    }

    /// `GET /admin/history`: every server's samples of the last hour.
    pub async fn history(&self) -> Result<shared::console::History, ClientError> {
        self.endpoint
            .get(&["api", "v1", "admin", "history"], &[])
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

    /// `POST /admin/servers/{id}/{action}`: drain, undrain, failover, fallback, hold, recover.
    pub async fn server_action(
        &self,
        id: &ServerId,
        action: ServerAction,
    ) -> Result<ServerList, ClientError> {
        self.endpoint
            .send::<(), ServerList>(
                Method::POST,
                &[
                    "api",
                    "v1",
                    "admin",
                    "servers",
                    id.as_str(),
                    action.as_str(),
                ],
                None,
            )
            .await
    }

    /// `POST /admin/servers/rebalance`: spread the users over the live servers (with
    /// `dry_run`, only what would move).
    pub async fn rebalance(&self, dry_run: bool) -> Result<Rebalance, ClientError> {
        self.endpoint
            .send_query::<(), Rebalance>(
                Method::POST,
                &["api", "v1", "admin", "servers", "rebalance"],
                &[("dry_run", dry_run.to_string())],
                None,
            )
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

    /// `POST /admin/media/{id}/drain|undrain`: takes a MediaServer out of service (no new
    /// call; its calls go on) or back.
    pub async fn drain_media(
        &self,
        id: &MediaServerId,
        drain: bool,
    ) -> Result<MediaServerInfo, ClientError> {
        let action = if drain { "drain" } else { "undrain" };
        self.endpoint
            .send::<(), MediaServerInfo>(
                Method::POST,
                &["api", "v1", "admin", "media", id.as_str(), action],
                None,
            )
            .await
    }

    /// `GET /admin/settings`: every runtime setting, its scopes and where each server stands.
    pub async fn settings(&self) -> Result<SettingsView, ClientError> {
        self.endpoint
            .get(&["api", "v1", "admin", "settings"], &[])
            .await
    }

    /// `PUT /admin/settings/{key}` in `scope` (`None`: global), with `If-Match` when
    /// `version` is set (`Some(0)`: only if not set in that scope yet).
    pub async fn set_setting(
        &self,
        key: &str,
        value: serde_json::Value,
        scope: Option<&str>,
        version: Option<u64>,
    ) -> Result<SettingValue, ClientError> {
        let body = PutSetting {
            scope: scope.map(str::to_string),
            value,
        };
        self.endpoint
            .if_match(version)
            .send(
                Method::PUT,
                &["api", "v1", "admin", "settings", key],
                Some(&body),
            )
            .await
    }

    /// `POST /admin/import`: plans an import file (`csv`: CSV with a header line, else JSON)
    /// and applies it unless `dry_run` (all or nothing: with any bad row nothing changes).
    pub async fn import(
        &self,
        bytes: Vec<u8>,
        csv: bool,
        dry_run: bool,
    ) -> Result<DirectoryPlan, ClientError> {
        let content_type = if csv { "text/csv" } else { "application/json" };
        self.endpoint
            .send_bytes(
                Method::POST,
                &["api", "v1", "admin", "import"],
                &[("dry_run", dry_run.to_string())],
                content_type,
                bytes,
            )
            .await
    }

    /// `DELETE /admin/settings/{key}?scope=`: removes a server's override (or the global
    /// value with `global`).
    pub async fn unset_setting(&self, key: &str, scope: &str) -> Result<(), ClientError> {
        self.endpoint
            .send_query_no_answer(
                Method::DELETE,
                &["api", "v1", "admin", "settings", key],
                &[("scope", scope.to_string())],
            )
            .await
    }

    /// `GET /admin/export?format=json`: every user with groups and contacts, every group.
    pub async fn export(&self) -> Result<DirectoryFile, ClientError> {
        self.endpoint
            .get(
                &["api", "v1", "admin", "export"],
                &[("format", "json".to_string())],
            )
            .await
    }

    /// `GET /admin/export?format=csv`: the users as CSV text.
    pub async fn export_csv(&self) -> Result<String, ClientError> {
        self.endpoint
            .get_text_with(
                &["api", "v1", "admin", "export"],
                &[("format", "csv".to_string())],
            )
            .await
    }

    /// `POST /admin/directory/sync`: reads the directory and plans the sync; applies it
    /// unless `dry_run`.
    pub async fn directory_sync(&self, dry_run: bool) -> Result<DirectoryPlan, ClientError> {
        self.endpoint
            .send_query::<(), DirectoryPlan>(
                Method::POST,
                &["api", "v1", "admin", "directory", "sync"],
                &[("dry_run", dry_run.to_string())],
                None,
            )
            .await
    }

    /// `GET /admin/directory`: configured, reachable, the last sync.
    pub async fn directory_status(&self) -> Result<DirectoryStatus, ClientError> {
        self.endpoint
            .get(&["api", "v1", "admin", "directory"], &[])
            .await
    }
}
