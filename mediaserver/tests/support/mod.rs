//! Test harness: a real MediaServer on loopback ports and a small control-API client. The
//! WebRTC client peer is the softphone's own, `ucclient::peer`.

#![allow(dead_code)]

use mediaserver::{MediaConfig, RunningMediaServer};
use reqwest::StatusCode;
use shared::api::ApiError;
use shared::media::{LegAnswer, LegOffer, LegStats, MediaServerStatus};
use std::time::Duration;
use ucclient::peer::{ClientPeer, PeerOptions};

pub const SECRET: &str = "test-secret-0123456789";
/// Generous: a loaded 2-core machine may be slow to get ICE and DTLS up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Config of a server on free loopback ports.
pub fn test_config(id: &str) -> MediaConfig {
    MediaConfig {
        id: id.into(),
        control_listen: "127.0.0.1:0".parse().unwrap(),
        media_bind: "127.0.0.1:0".parse().unwrap(),
        secret: Some(SECRET.into()),
        ..MediaConfig::default()
    }
}

pub async fn start_server(id: &str) -> RunningMediaServer {
    init_logging();
    mediaserver::start(test_config(id))
        .await
        .expect("MediaServer starts")
}

/// A client of the control API, as a UCServer would use it.
pub struct Control {
    base: String,
    secret: String,
    http: reqwest::Client,
}

impl Control {
    pub fn new(server: &RunningMediaServer) -> Self {
        Self::with_secret(server, SECRET)
    }

    pub fn with_secret(server: &RunningMediaServer, secret: &str) -> Self {
        Self {
            base: server.control_url(),
            secret: secret.into(),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn error_of(response: reqwest::Response) -> (StatusCode, ApiError) {
        let status = response.status();
        let error = response
            .json::<ApiError>()
            .await
            .expect("error body is an ApiError");
        (status, error)
    }

    pub async fn add_leg(
        &self,
        call: &str,
        leg: &str,
        sdp: String,
    ) -> Result<LegAnswer, (StatusCode, ApiError)> {
        let response = self
            .http
            .post(self.url(&format!("/v1/calls/{call}/legs")))
            .bearer_auth(&self.secret)
            .json(&LegOffer {
                leg: leg.into(),
                sdp,
            })
            .send()
            .await
            .expect("control API reachable");
        if response.status().is_success() {
            Ok(response.json().await.expect("LegAnswer body"))
        } else {
            Err(Self::error_of(response).await)
        }
    }

    pub async fn end_call(&self, call: &str) -> StatusCode {
        self.http
            .delete(self.url(&format!("/v1/calls/{call}")))
            .bearer_auth(&self.secret)
            .send()
            .await
            .expect("control API reachable")
            .status()
    }

    pub async fn remove_leg(&self, call: &str, leg: &str) -> StatusCode {
        self.http
            .delete(self.url(&format!("/v1/calls/{call}/legs/{leg}")))
            .bearer_auth(&self.secret)
            .send()
            .await
            .expect("control API reachable")
            .status()
    }

    pub async fn call_stats(&self, call: &str) -> Result<Vec<LegStats>, (StatusCode, ApiError)> {
        let response = self
            .http
            .get(self.url(&format!("/v1/calls/{call}")))
            .bearer_auth(&self.secret)
            .send()
            .await
            .expect("control API reachable");
        if response.status().is_success() {
            Ok(response.json().await.expect("LegStats list"))
        } else {
            Err(Self::error_of(response).await)
        }
    }

    pub async fn status(&self) -> Result<MediaServerStatus, (StatusCode, ApiError)> {
        let response = self
            .http
            .get(self.url("/v1/status"))
            .bearer_auth(&self.secret)
            .send()
            .await
            .expect("reachable");
        if response.status().is_success() {
            Ok(response.json().await.expect("MediaServerStatus body"))
        } else {
            Err(Self::error_of(response).await)
        }
    }

    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .expect("reachable");
        (response.status(), response.text().await.unwrap_or_default())
    }
}

/// Builds a peer, offers to the MediaServer as leg `leg` of `call`, applies the answer and
/// waits for ICE + DTLS.
pub async fn join_call(
    control: &Control,
    call: &str,
    leg: &str,
    options: PeerOptions,
) -> (ClientPeer, LegAnswer) {
    let mut peer = ClientPeer::new(options).await.expect("peer builds");
    let offer = peer
        .create_offer(Duration::from_secs(10))
        .await
        .expect("offer");
    let answer = control
        .add_leg(call, leg, offer)
        .await
        .expect("MediaServer accepts the offer");
    peer.apply_answer(answer.sdp.clone())
        .await
        .expect("answer applies");
    peer.wait_connected(CONNECT_TIMEOUT)
        .await
        .expect("peer connects to the MediaServer");
    (peer, answer)
}
