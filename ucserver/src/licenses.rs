//! The license pool as this server uses it: capacities from SQL (cached until an admin
//! changes them; the last ones read serve while SQL is away), leases taken and counted in
//! the cluster store, tied to this server.

use crate::cluster::Cluster;
use crate::core::license::{self, LeaseOutcome};
use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::timed;
use shared::ServerId;
use shared::api::ErrorCode;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct Licenses {
    /// The holder of the leases this server takes.
    holder: ServerId,
    store: Arc<dyn Store>,
    cluster: Arc<dyn Cluster>,
    metrics: Arc<Metrics>,
    /// Capacity per kind, read from SQL once and kept until `forget`.
    capacities: Mutex<Option<HashMap<String, u32>>>,
    /// The capacities read last, kept through `forget`: they serve while SQL is away.
    last_read: Mutex<Option<HashMap<String, u32>>>,
}

impl Licenses {
    pub fn new(
        holder: ServerId,
        store: Arc<dyn Store>,
        cluster: Arc<dyn Cluster>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            holder,
            store,
            cluster,
            metrics,
            capacities: Mutex::new(None),
            last_read: Mutex::new(None),
        }
    }

    async fn capacities(&self) -> AppResult<HashMap<String, u32>> {
        if let Some(cached) = self.capacities.lock().unwrap().clone() {
            return Ok(cached);
        }
        let records = match timed::sql_cached_read(&self.metrics, self.store.licenses()).await {
            Ok(records) => records,
            Err(error @ StoreError::Unavailable(_)) => {
                return self
                    .last_read
                    .lock()
                    .unwrap()
                    .clone()
                    .ok_or_else(|| error.into());
            }
            Err(error) => return Err(error.into()),
        };
        let map: HashMap<String, u32> = records.into_iter().map(|r| (r.kind, r.capacity)).collect();
        *self.capacities.lock().unwrap() = Some(map.clone());
        *self.last_read.lock().unwrap() = Some(map.clone());
        Ok(map)
    }

    /// The capacity of one license kind (`None`: not limited).
    pub async fn capacity(&self, kind: &str) -> AppResult<Option<u32>> {
        Ok(self.capacities().await?.get(kind).copied())
    }

    /// Takes a lease of `kind` for `key`, or answers `license_exhausted`.
    pub async fn acquire(&self, kind: &str, key: &str) -> AppResult<()> {
        let capacity = self.capacity(kind).await?;
        let started = Instant::now();
        let outcome = self
            .cluster
            .lease_acquire(kind, key, &self.holder, capacity)
            .await;
        self.metrics.redis_latency.observe(started.elapsed());
        match outcome? {
            LeaseOutcome::Granted | LeaseOutcome::AlreadyHeld => Ok(()),
            LeaseOutcome::Exhausted { capacity } => Err(AppError::new(
                ErrorCode::LicenseExhausted,
                format!(
                    "all {capacity} '{kind}' licenses are in use; ask an administrator for more"
                ),
            )),
        }
    }

    /// Returns a lease (a failure is logged: the lease goes with this server's others when
    /// it stops or dies).
    pub async fn release(&self, kind: &str, key: &str) {
        timed::bus(
            &self.metrics,
            "release lease",
            self.cluster.lease_release(kind, key),
        )
        .await;
    }

    /// (kind, capacity, in use) for every kind that has a capacity or leases.
    pub async fn usage(&self) -> AppResult<Vec<(String, Option<u32>, u32)>> {
        let capacities = self.capacities().await?;
        let mut kinds: BTreeSet<String> = capacities.keys().cloned().collect();
        kinds.insert(license::SEAT.to_string());
        kinds.insert(license::SOFTPHONE.to_string());
        let mut usage = Vec::new();
        for kind in kinds {
            let in_use = self.cluster.lease_count(&kind).await?;
            usage.push((kind.clone(), capacities.get(&kind).copied(), in_use));
        }
        Ok(usage)
    }

    /// Capacities changed (an admin, here or elsewhere): read them again on next use.
    pub fn forget(&self) {
        *self.capacities.lock().unwrap() = None;
    }
}
