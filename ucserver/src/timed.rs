//! Round trips to SQL and the cluster, timed into the metrics and mapped to what callers
//! need: SQL failures become typed errors; cluster failures are logged, counted and become
//! `None`, because cross-server features may stop while Redis is down but local ones go on.

use crate::cluster::{Cluster, ClusterError};
use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::store::StoreError;
use shared::ServerId;
use shared::bus::{BusBody, BusMessage};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub async fn sql<T>(
    metrics: &Metrics,
    operation: impl Future<Output = Result<T, StoreError>>,
) -> AppResult<T> {
    sql_store(metrics, operation).await.map_err(AppError::from)
}

/// [`sql`], keeping the store's error (for a caller that tells unreachable from refused).
pub async fn sql_store<T>(
    metrics: &Metrics,
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = operation.await;
    metrics.sql_latency.observe(started.elapsed());
    let unreachable = matches!(result, Err(StoreError::Unavailable(_)));
    metrics
        .sql_unreachable
        .store(i64::from(unreachable), Ordering::Relaxed);
    result
}

/// Says that SQL was found unreachable (before any operation of this server's own: the
/// store was opened without the database), so that cached reads wait only briefly.
pub fn mark_sql_unreachable(metrics: &Metrics) {
    metrics.sql_unreachable.store(1, Ordering::Relaxed);
}

/// How long a cached read waits for SQL while the database was unreachable at the last try
/// (instead of the pool's 3 s): long enough for a database that came back, short enough for
/// a call or a post answered from the cache.
pub const UNREACHABLE_READ_LIMIT: Duration = Duration::from_millis(250);

/// A read whose caller has a cached answer for when SQL is away ([`sql_store`] otherwise):
/// while the last SQL operation found the database unreachable, it gets
/// [`UNREACHABLE_READ_LIMIT`], and no answer by then is `Unavailable`.
pub async fn sql_cached_read<T>(
    metrics: &Metrics,
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    if metrics.sql_unreachable.load(Ordering::Relaxed) == 0 {
        return sql_store(metrics, operation).await;
    }
    match tokio::time::timeout(UNREACHABLE_READ_LIMIT, sql_store(metrics, operation)).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {} ms, and the database was unreachable before",
            UNREACHABLE_READ_LIMIT.as_millis()
        ))),
    }
}

pub async fn bus<T>(
    metrics: &Metrics,
    what: &str,
    operation: impl Future<Output = Result<T, ClusterError>>,
) -> Option<T> {
    let started = Instant::now();
    let result = operation.await;
    metrics.redis_latency.observe(started.elapsed());
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            metrics.bus_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, what, "cluster operation failed");
            None
        }
    }
}

/// One bus message to one server, counted; a failure is logged (see [`bus`]) and hands the
/// body back.
pub async fn publish(
    metrics: &Metrics,
    cluster: &dyn Cluster,
    from: &ServerId,
    to: &ServerId,
    body: BusBody,
) -> Result<(), BusBody> {
    let message = BusMessage::new(from.clone(), body);
    if bus(metrics, "publish", cluster.publish(to, &message))
        .await
        .is_some()
    {
        metrics.bus_published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    } else {
        Err(message.body)
    }
}
