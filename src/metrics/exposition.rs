//! Renders a scrape in the Prometheus/OpenMetrics text format with `prometheus-client`.
//!
//! Nothing is registered ahead of time: on each scrape the admin server gathers a [`Scrape`]
//! (the current routing table, whose counter slots it sums over workers, and the histograms
//! merged from all workers) and this module encodes it as a one-off collector. Cluster series
//! are sums over the cluster's current endpoints, plus the cluster's own `unavailable` count.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::counters::Counter;
use super::histogram::{Exported, Merged};
use super::stats::EndpointCounters;
use crate::config::table::RoutingTable;

/// Process-level facts the control plane adds to a scrape.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    pub version: &'static str,
    pub workers: usize,
    pub generation: u64,
    pub reloads_ok: u64,
    pub reloads_error: u64,
    pub last_reload_success_unix: f64,
    pub draining: bool,
}

#[derive(Debug)]
pub struct Scrape {
    pub table: Arc<RoutingTable>,
    pub histograms: Merged,
    pub process: ProcessInfo,
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn render(scrape: Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    // Writing into a String cannot fail, and encode only fails on writer errors.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

type L1<'a> = [(&'static str, &'a str); 1];
type L2<'a> = [(&'static str, &'a str); 2];

fn family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        let fam = m.encode_family(&labels)?;
        match ty {
            MetricType::Gauge => {
                ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(fam)?
            }
            _ => ConstCounter::new(v).encode(fam)?,
        }
    }
    Ok(())
}

/// A gauge without labels.
fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)
}

fn histograms<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, Exported)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        let mut fam = m.encode_family(&labels)?;
        fam.encode_histogram::<L1>(h.sum, h.count, &h.buckets, None)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        use MetricType::{Counter as C, Gauge as G};
        let p = &self.process;
        let t = &self.table;
        let e = &mut enc;
        family(
            e,
            "corelane_build_info",
            "Build information; always 1.",
            G,
            [([("version", p.version)], 1)],
        )?;
        gauge(e, "corelane_workers", "Worker threads.", p.workers as u64)?;
        gauge(
            e,
            "corelane_draining",
            "1 while shutting down.",
            u64::from(p.draining),
        )?;
        gauge(
            e,
            "corelane_config_generation",
            "Generation of the routing table in use.",
            p.generation,
        )?;
        family(
            e,
            "corelane_config_reloads",
            "Reloads of the control file by result.",
            C,
            [
                ([("result", "ok")], p.reloads_ok),
                ([("result", "error")], p.reloads_error),
            ],
        )?;
        gauge(
            e,
            "corelane_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the control file.",
            p.last_reload_success_unix as u64,
        )?;

        let ls = || {
            t.listeners
                .iter()
                .map(|l| (l.config.name.as_str(), &l.stats.workers))
        };
        let lrows = |f: fn(&crate::metrics::stats::ListenerCounters) -> &Counter| {
            ls().map(move |(n, w)| ([("listener", n)], w.sum(f)))
                .collect::<Vec<(L1, u64)>>()
        };
        family(
            e,
            "corelane_listener_connections",
            "Connections accepted.",
            C,
            lrows(|c| &c.accepted),
        )?;
        family(
            e,
            "corelane_listener_connections_active",
            "Client connections open now.",
            G,
            lrows(|c| &c.active),
        )?;
        family(
            e,
            "corelane_listener_connections_rejected",
            "Connections closed at once because max_connections was reached.",
            C,
            lrows(|c| &c.rejected),
        )?;
        family(
            e,
            "corelane_listener_received_bytes",
            "Bytes received from clients.",
            C,
            lrows(|c| &c.bytes_in),
        )?;
        family(
            e,
            "corelane_listener_sent_bytes",
            "Bytes sent to clients.",
            C,
            lrows(|c| &c.bytes_out),
        )?;

        type F = fn(&EndpointCounters) -> &Counter;
        let endpoint_metrics: [(&str, &str, MetricType, F); 5] = [
            ("connections", "Upstream connections established.", C, |c| {
                &c.connections
            }),
            (
                "connections_active",
                "Upstream connections open or being opened now.",
                G,
                |c| &c.active,
            ),
            (
                "connect_errors",
                "Upstream connect attempts that failed or timed out.",
                C,
                |c| &c.connect_errors,
            ),
            ("received_bytes", "Bytes received from upstream.", C, |c| {
                &c.bytes_in
            }),
            ("sent_bytes", "Bytes sent to upstream.", C, |c| &c.bytes_out),
        ];
        let sum_cluster = |c: &crate::upstream::Cluster, f: F| -> u64 {
            c.endpoints
                .iter()
                .map(|ep| ep.stats.workers.sum(f))
                .fold(0, u64::wrapping_add)
        };
        for (suffix, help, ty, f) in &endpoint_metrics {
            family(
                e,
                &format!("corelane_cluster_{suffix}"),
                help,
                *ty,
                t.clusters
                    .iter()
                    .map(|c| ([("cluster", c.name.as_str())], sum_cluster(c, *f)))
                    .collect::<Vec<(L1, u64)>>(),
            )?;
        }
        family(
            e,
            "corelane_cluster_upstream_unavailable",
            "Client connections failed because no endpoint could be reached.",
            C,
            t.clusters
                .iter()
                .map(|c| {
                    (
                        [("cluster", c.name.as_str())],
                        c.stats.workers.sum(|k| &k.unavailable),
                    )
                })
                .collect::<Vec<(L1, u64)>>(),
        )?;
        let cluster_hist = t
            .clusters
            .iter()
            .map(|c| {
                let mut h = Exported::empty();
                for ep in c.endpoints.iter() {
                    if let Some(x) = self.histograms.get(ep.stats.uid) {
                        h.add(x);
                    }
                }
                ([("cluster", c.name.as_str())], h)
            })
            .collect::<Vec<(L1, Exported)>>();
        histograms(
            e,
            "corelane_cluster_connect_duration_seconds",
            "Time to establish upstream connections.",
            cluster_hist,
        )?;

        let addrs: Vec<Vec<String>> = t
            .clusters
            .iter()
            .map(|c| c.endpoints.iter().map(|ep| ep.addr.to_string()).collect())
            .collect();
        let eps = || {
            t.clusters.iter().zip(&addrs).flat_map(|(c, a)| {
                c.endpoints
                    .iter()
                    .zip(a)
                    .map(move |(ep, addr)| (c.name.as_str(), addr.as_str(), ep))
            })
        };
        for (suffix, help, ty, f) in &endpoint_metrics {
            family(
                e,
                &format!("corelane_endpoint_{suffix}"),
                help,
                *ty,
                eps()
                    .map(|(c, a, ep)| ([("cluster", c), ("endpoint", a)], ep.stats.workers.sum(*f)))
                    .collect::<Vec<(L2, u64)>>(),
            )?;
        }
        let ep_hist = eps()
            .map(|(c, a, ep)| {
                let mut h = Exported::empty();
                if let Some(x) = self.histograms.get(ep.stats.uid) {
                    h.add(x);
                }
                ([("cluster", c), ("endpoint", a)], h)
            })
            .collect::<Vec<(L2, Exported)>>();
        histograms(
            e,
            "corelane_endpoint_connect_duration_seconds",
            "Time to establish upstream connections.",
            ep_hist,
        )?;
        Ok(())
    }
}
