//! Active health checks: one task per checked endpoint for the whole process (not one per
//! worker), on the control plane's runtime, off the data path.
//!
//! Each task probes its endpoint ([`super::probe`]) every `interval` plus a random part of
//! `jitter`, bounded by `timeout`, and records the result in the endpoint's shared
//! [`Health`], which flips only after `rise` or `fall` results in a row. Workers read that
//! state with plain atomic loads and never wait for a check. The first check of a task comes
//! after a random part of the interval, so a thousand endpoints are not probed in one burst.
//!
//! After every load of the control file the set of tasks is reconciled with the table: a task
//! whose endpoint, settings and health object are unchanged keeps running (its rhythm and its
//! run of results are not reset by a reload); others are stopped or started. (An HTTP check
//! of a cluster with `tls` is restarted by every load, which reads its TLS files anew; the
//! run of results, kept in [`Health`], goes on.) An endpoint whose cluster stops checking it
//! counts as up again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::probe::{self, Probe};
use crate::config::model::{CheckKind, ClusterConfig, HealthCheck};
use crate::config::table::RoutingTable;
use crate::upstream::health::{Health, Transition};

/// What a task was started with; a change restarts it.
#[derive(Debug)]
struct Spec {
    check: HealthCheck,
    probe: Probe,
    health: Arc<Health>,
}

impl PartialEq for Spec {
    fn eq(&self, other: &Self) -> bool {
        self.check == other.check
            && self.probe == other.probe
            && Arc::ptr_eq(&self.health, &other.health)
    }
}

#[derive(Debug)]
struct Task {
    spec: Spec,
    handle: JoinHandle<()>,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The running checks, by cluster name and endpoint address.
#[derive(Debug, Default)]
pub struct Checkers {
    tasks: HashMap<(String, SocketAddr), Task>,
}

impl Checkers {
    /// Starts, keeps or stops tasks so that exactly the endpoints of `table` whose cluster has
    /// a `health_check` are checked. Must run inside the control runtime.
    pub fn reconcile(&mut self, table: &RoutingTable) {
        let mut wanted: HashMap<(String, SocketAddr), Spec> = HashMap::new();
        for (cluster, cfg) in table.clusters.iter().zip(&table.config.clusters) {
            for e in cluster.endpoints.iter() {
                match &cfg.health_check {
                    Some(check) => {
                        let spec = Spec {
                            check: check.clone(),
                            probe: probe_for(check, cfg, cluster.tls.as_ref(), e.addr),
                            health: e.health.clone(),
                        };
                        wanted.insert((cluster.name.clone(), e.addr), spec);
                    }
                    None => {
                        if e.health.detail().checked {
                            e.health.unchecked();
                        }
                    }
                }
            }
        }
        self.tasks
            .retain(|key, task| wanted.get(key).is_some_and(|spec| *spec == task.spec));
        let before = self.tasks.len();
        for (key, spec) in wanted {
            if self.tasks.contains_key(&key) {
                continue;
            }
            let handle = tokio::spawn(run(
                key.0.clone(),
                key.1,
                spec.check.clone(),
                spec.probe.clone(),
                spec.health.clone(),
            ));
            self.tasks.insert(key, Task { spec, handle });
        }
        tracing::debug!(
            checks = self.tasks.len(),
            started = self.tasks.len().saturating_sub(before),
            "health checks reconciled"
        );
    }

    /// Endpoints being checked.
    pub fn count(&self) -> usize {
        self.tasks.len()
    }
}

/// The probe a check of `addr` in cluster `cfg` sends (HTTP over the cluster's `tls`, if any).
fn probe_for(
    check: &HealthCheck,
    cfg: &ClusterConfig,
    tls: Option<&crate::tls::client::ClusterTls>,
    addr: SocketAddr,
) -> Probe {
    match check.kind {
        CheckKind::Tcp => Probe::Tcp,
        CheckKind::Http => Probe::Http {
            method: check.http.method.clone(),
            path: check.http.path.clone(),
            host: check.http.host.clone().unwrap_or_else(|| addr.to_string()),
            expect_status: check.http.expect_status.clone(),
            expect_body: check.http.expect_body.clone(),
            tls: tls.map(probe::CheckTls::new),
        },
        CheckKind::Redis => Probe::Redis {
            auth: cfg.sharding.redis_auth.clone(),
        },
        CheckKind::Memcache => Probe::Memcache,
        CheckKind::Mysql => match &check.mysql {
            Some(m) => Probe::Mysql(m.clone()),
            // Validation gives every mysql check its settings; a TCP connect is the fallback.
            None => Probe::Tcp,
        },
    }
}

/// A uniformly random duration in `[0, max)`.
fn random_below(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(if nanos == 0 {
        0
    } else {
        fastrand::u64(..nanos)
    })
}

async fn run(
    cluster: String,
    addr: SocketAddr,
    check: HealthCheck,
    probe: Probe,
    health: Arc<Health>,
) {
    tokio::time::sleep(random_below(check.interval)).await;
    loop {
        let started = Instant::now();
        let result = match tokio::time::timeout(check.timeout, probe::run(&probe, addr)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", check.timeout)),
        };
        let latency = started.elapsed();
        let reason = result.as_ref().err().cloned();
        match health.record_check(result, latency, check.rise, check.fall) {
            Some(Transition::Down) => {
                tracing::warn!(%cluster, endpoint = %addr, reason = reason.as_deref().unwrap_or(""), fall = check.fall, "endpoint is down (health check)");
            }
            Some(Transition::Up) => {
                tracing::info!(%cluster, endpoint = %addr, rise = check.rise, "endpoint is up (health check)");
            }
            None => {}
        }
        tokio::time::sleep(check.interval + random_below(check.jitter)).await;
    }
}
