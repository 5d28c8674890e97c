//! The MediaServers as a UCServer sees them: which ones exist (the embedded one of a single
//! node, and those an admin made known), how healthy they are, which one takes a new call
//! (`core::media_choice` decides), and their control API. A control request that gets no
//! answer at all ([`ControlError::Unreachable`]) makes its MediaServer suspect
//! ([`MediaPool::mark_suspect`]): no new call goes there until it beats again.
//!
//! A MediaServer is only ever used when it was made known explicitly — by `ucadmin media
//! add` (SQL), or by running embedded — never because it happens to beat into Redis.

use crate::cluster::Cluster;
use crate::core::media_choice::{MediaCandidate, MediaChoiceConfig, MediaChooser};
use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use mediaserver::MediaHandle;
use shared::api::{ApiError, ErrorCode, MediaServerInfo};
use shared::media::{LegAnswer, LegOffer, MediaServerStatus};
use shared::{CallId, MediaServerId, TimestampMs, now_ms};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How long a control API request may take before the MediaServer counts as failing.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(8);
/// How long putting a leg on may take: a MediaServer answers in milliseconds, and one that
/// accepts connections but does not answer (hung) must fail a preparing call's leg well before
/// its silence (5 s) would end the call, so that the call moves to another MediaServer.
const LEG_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest control API answer read (an SDP answer plus its envelope).
const MAX_ANSWER_BYTES: usize = shared::limits::MAX_SDP_BYTES + 16 * 1024;

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No answer: the connection was refused, reset or timed out. The MediaServer may be
    /// dead; the caller marks it suspect.
    #[error("the MediaServer cannot be reached: {0}")]
    Unreachable(String),
    /// It answered, but not with what was asked for (a refusal, an unreadable answer).
    #[error("{0}")]
    Failed(String),
}

/// One MediaServer as a call talks to it.
#[derive(Clone)]
pub enum MediaLink {
    /// The engine inside this process.
    Embedded(MediaHandle),
    /// A standalone MediaServer's control API.
    Http {
        base: Arc<str>,
        secret: Arc<str>,
        http: reqwest::Client,
    },
}

impl MediaLink {
    /// Puts a leg on the MediaServer; the answer SDP, or why it failed (said for a person).
    pub async fn add_leg(
        &self,
        call: &CallId,
        leg: &str,
        sdp: String,
    ) -> Result<String, ControlError> {
        let offer = LegOffer {
            leg: leg.to_string(),
            sdp,
        };
        match self {
            Self::Embedded(handle) => handle
                .add_leg(call.clone(), offer)
                .await
                .map(|answer| answer.sdp)
                .map_err(|e| ControlError::Failed(e.to_string())),
            Self::Http { base, secret, http } => {
                let url = format!("{base}/v1/calls/{}/legs", encode(call.as_str()));
                let request = http.post(url).bearer_auth(secret.as_ref()).json(&offer);
                let body = send(request, LEG_TIMEOUT).await?;
                serde_json::from_slice::<LegAnswer>(&body)
                    .map(|answer| answer.sdp)
                    .map_err(|e| {
                        ControlError::Failed(format!(
                            "the MediaServer's answer is not a LegAnswer: {e}"
                        ))
                    })
            }
        }
    }

    /// Takes a leg off (a party left a call that goes on).
    pub async fn remove_leg(&self, call: &CallId, leg: &str) -> Result<(), ControlError> {
        match self {
            Self::Embedded(handle) => handle
                .remove_leg(call.clone(), leg.to_string())
                .await
                .map_err(|e| ControlError::Failed(e.to_string())),
            Self::Http { base, secret, http } => {
                let url = format!(
                    "{base}/v1/calls/{}/legs/{}",
                    encode(call.as_str()),
                    encode(leg)
                );
                send(
                    http.delete(url).bearer_auth(secret.as_ref()),
                    CONTROL_TIMEOUT,
                )
                .await
                .map(|_| ())
            }
        }
    }

    /// Ends the call on the MediaServer (every leg closes).
    pub async fn end_call(&self, call: &CallId) -> Result<(), ControlError> {
        match self {
            Self::Embedded(handle) => handle
                .end_call(call.clone())
                .await
                .map(|_| ())
                .map_err(|e| ControlError::Failed(e.to_string())),
            Self::Http { base, secret, http } => {
                let url = format!("{base}/v1/calls/{}", encode(call.as_str()));
                send(
                    http.delete(url).bearer_auth(secret.as_ref()),
                    CONTROL_TIMEOUT,
                )
                .await
                .map(|_| ())
            }
        }
    }
}

/// Percent-encodes a path segment (call ids hold `~`, leg names `/`).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Sends a control request; the body of a 2xx answer, or why it failed.
async fn send(
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Vec<u8>, ControlError> {
    let mut response = request
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| ControlError::Unreachable(e.to_string()))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ControlError::Unreachable(format!("its answer broke off: {e}")))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ControlError::Failed(format!(
                "the MediaServer's answer exceeds {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    if status.is_success() {
        return Ok(body);
    }
    Err(ControlError::Failed(
        match serde_json::from_slice::<ApiError>(&body) {
            Ok(error) => format!("the MediaServer refused: {error}"),
            Err(_) => format!("the MediaServer answered {status}"),
        },
    ))
}

/// The field of the cluster's high-availability settings that takes MediaServer `id` out of
/// service (`ucadmin media drain`), e.g. `media-drain:m1`.
pub fn drain_field(id: &MediaServerId) -> String {
    format!("media-drain:{id}")
}

/// The MediaServers an admin took out of service. While the cluster store cannot be read,
/// none (a call is better placed on a drained server than not at all).
async fn drained(cluster: &dyn Cluster) -> std::collections::BTreeSet<MediaServerId> {
    cluster
        .ha_all()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(field, _)| {
            field
                .strip_prefix("media-drain:")
                .map(|id| MediaServerId::new(id.to_string()))
        })
        .collect()
}

/// A MediaServer chosen for a new call.
#[derive(Clone)]
pub struct ChosenMedia {
    pub id: MediaServerId,
    pub link: MediaLink,
    /// Its incarnation when chosen: a different one later means it restarted (calls lost).
    pub incarnation: String,
}

/// What the pool knows of one MediaServer right now.
struct Known {
    candidate: MediaCandidate,
    control_url: String,
    incarnation: String,
    calls: u32,
}

/// Every MediaServer this UCServer may use.
pub struct MediaPool {
    embedded: OnceLock<MediaHandle>,
    http: reqwest::Client,
    secret: Option<Arc<str>>,
    chooser: Mutex<MediaChooser>,
    config: MediaChoiceConfig,
    /// MediaServers known from the configuration (`UC_MEDIA_SERVERS`).
    configured: Vec<(MediaServerId, String)>,
    /// The MediaServers SQL listed last (id, control URL): the list while SQL is away, so
    /// that calls go on. `None` until SQL answered once.
    registered: Mutex<Option<Vec<(MediaServerId, String)>>>,
    metrics: Arc<Metrics>,
}

impl MediaPool {
    /// `fresh_ms`: the choice's freshness window (`UC_MEDIA_FRESH_MS`).
    pub fn new(
        secret: Option<String>,
        configured: Vec<(MediaServerId, String)>,
        fresh_ms: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        let config = MediaChoiceConfig {
            fresh_ms: fresh_ms as i64,
            ..MediaChoiceConfig::default()
        };
        Self {
            embedded: OnceLock::new(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
            secret: secret.map(Arc::from),
            chooser: Mutex::new(MediaChooser::new(config)),
            config,
            configured,
            registered: Mutex::new(None),
            metrics,
        }
    }

    /// Makes the in-process MediaServer known (single node); set once at start.
    pub fn set_embedded(&self, handle: MediaHandle) {
        let _ = self.embedded.set(handle);
    }

    pub fn embedded(&self) -> Option<&MediaHandle> {
        self.embedded.get()
    }

    /// Whether the calls on a MediaServer last heard from at `last_seen_ms` are lost at `now`,
    /// and if so how old its heartbeat is.
    pub fn calls_lost(&self, now: TimestampMs, last_seen_ms: TimestampMs) -> Option<i64> {
        self.chooser.lock().unwrap().calls_lost(now, last_seen_ms)
    }

    /// A control request to `media` got no answer: no new call goes there until it beats
    /// again.
    pub fn mark_suspect(&self, media: &MediaServerId) {
        self.chooser.lock().unwrap().mark_suspect(media, now_ms());
    }

    fn link(&self, id: &MediaServerId, control_url: &str) -> AppResult<MediaLink> {
        if let Some(handle) = self.embedded.get().filter(|h| h.id() == id) {
            return Ok(MediaLink::Embedded(handle.clone()));
        }
        let secret = self.secret.clone().ok_or_else(|| {
            AppError::new(
                ErrorCode::ServerUnavailable,
                "UC_MEDIA_SECRET is not set on this server, so it cannot use MediaServers",
            )
        })?;
        Ok(MediaLink::Http {
            base: Arc::from(control_url.trim_end_matches('/')),
            secret,
            http: self.http.clone(),
        })
    }

    /// Every known MediaServer with its last heartbeat.
    async fn known(&self, store: &dyn Store, cluster: &dyn Cluster) -> AppResult<Vec<Known>> {
        let mut known = Vec::new();
        let now = now_ms();
        let drained = drained(cluster).await;
        if let Some(handle) = self.embedded.get()
            && let Ok(status) = handle.status().await
        {
            known.push(Known {
                candidate: MediaCandidate {
                    id: status.id.clone(),
                    known: true,
                    alive: true,
                    last_seen_ms: now,
                    legs: status.legs,
                    capacity: status.capacity,
                    draining: drained.contains(&status.id),
                },
                control_url: "(embedded)".into(),
                incarnation: status.incarnation,
                calls: status.calls,
            });
        }
        let mut records = self.registered(store).await?;
        for (id, url) in &self.configured {
            if !records.iter().any(|(known, _)| known == id) {
                records.push((id.clone(), url.clone()));
            }
        }
        if records.is_empty() {
            return Ok(known);
        }
        let live = self.statuses(cluster).await;
        for (id, control_url) in records {
            let status = live.iter().find(|(s, _)| s.id == id);
            let draining = drained.contains(&id);
            known.push(Known {
                candidate: MediaCandidate {
                    id,
                    known: true,
                    alive: status.is_some(),
                    last_seen_ms: status.map_or(0, |(_, seen)| *seen),
                    legs: status.map_or(0, |(s, _)| s.legs),
                    capacity: status.map_or(0, |(s, _)| s.capacity),
                    draining,
                },
                control_url,
                incarnation: status
                    .map(|(s, _)| s.incarnation.clone())
                    .unwrap_or_default(),
                calls: status.map_or(0, |(s, _)| s.calls),
            });
        }
        Ok(known)
    }

    /// The MediaServers registered in SQL; the last list read while SQL cannot be reached.
    async fn registered(&self, store: &dyn Store) -> AppResult<Vec<(MediaServerId, String)>> {
        match crate::timed::sql_cached_read(&self.metrics, store.list_media_servers()).await {
            Ok(records) => {
                let records: Vec<(MediaServerId, String)> =
                    records.into_iter().map(|r| (r.id, r.control_url)).collect();
                *self.registered.lock().unwrap() = Some(records.clone());
                Ok(records)
            }
            Err(error @ StoreError::Unavailable(_)) => {
                match self.registered.lock().unwrap().clone() {
                    Some(records) => Ok(records),
                    None => Err(error.into()),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Heartbeats of the standalone MediaServers (empty while the cluster store is away).
    async fn statuses(&self, cluster: &dyn Cluster) -> Vec<(MediaServerStatus, TimestampMs)> {
        cluster.media_servers().await.unwrap_or_else(|error| {
            tracing::warn!(%error, "MediaServer heartbeats cannot be read now");
            Vec::new()
        })
    }

    /// Picks the MediaServer for a call: healthy, least loaded, ties in turn; none of `tried`
    /// (those the call failed on already).
    pub async fn choose(
        &self,
        store: &dyn Store,
        cluster: &dyn Cluster,
        tried: &[MediaServerId],
    ) -> AppResult<ChosenMedia> {
        let known = self.known(store, cluster).await?;
        let candidates: Vec<MediaCandidate> = known.iter().map(|k| k.candidate.clone()).collect();
        let chosen = self
            .chooser
            .lock()
            .unwrap()
            .choose(now_ms(), &candidates, tried)
            .map_err(|e| AppError::new(ErrorCode::ServerUnavailable, e.to_string()))?;
        let entry = known
            .into_iter()
            .find(|k| k.candidate.id == chosen)
            .expect("the chooser picks among the candidates");
        Ok(ChosenMedia {
            link: self.link(&chosen, &entry.control_url)?,
            id: chosen,
            incarnation: entry.incarnation,
        })
    }

    /// The admin view of every known MediaServer.
    pub async fn infos(
        &self,
        store: &dyn Store,
        cluster: &dyn Cluster,
    ) -> AppResult<Vec<MediaServerInfo>> {
        let known = self.known(store, cluster).await?;
        let now = now_ms();
        Ok(known
            .into_iter()
            .map(|k| {
                let c = k.candidate;
                MediaServerInfo {
                    alive: c.alive && now - c.last_seen_ms <= self.config.fresh_ms,
                    calls: k.calls,
                    legs: c.legs,
                    capacity: c.capacity,
                    load: if c.capacity == 0 {
                        0.0
                    } else {
                        f64::from(c.legs) / f64::from(c.capacity)
                    },
                    last_seen_ms: c.last_seen_ms,
                    draining: c.draining,
                    id: c.id,
                    control_url: k.control_url,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("uc1~ab12"), "uc1%7Eab12");
        assert_eq!(encode("alice/phone"), "alice%2Fphone");
        assert_eq!(encode("media-1.x_y"), "media-1.x_y");
    }
}
