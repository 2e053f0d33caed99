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
use super::stats::{EndpointCounters, ListenerCounters};
use super::stats::{Refusal, RouteStats, StatusClasses};
use crate::config::model::Protocol;
use crate::config::table::RoutingTable;
use crate::proto::http::h2::frame::REASON_NAMES;
use crate::upstream::Endpoint;
use std::sync::atomic::Ordering::Relaxed;

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
type L3<'a> = [(&'static str, &'a str); 3];

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

type ListenerField = fn(&ListenerCounters) -> &Counter;
type EndpointField = fn(&EndpointCounters) -> &Counter;

/// `corelane_listener_<suffix>`, labelled by listener.
#[rustfmt::skip]
const LISTENER_SERIES: [(&str, &str, MetricType, ListenerField); 6] = [
    ("connections", "Connections accepted.", MetricType::Counter, |c| &c.accepted),
    ("connections_active", "Client connections open now.", MetricType::Gauge, |c| &c.active),
    ("connections_parked", "Client connections open now and parked while idle (no task, no buffer).", MetricType::Gauge, |c| &c.parked),
    ("connections_rejected", "Connections closed at once because max_connections was reached.", MetricType::Counter, |c| &c.rejected),
    ("received_bytes", "Bytes received from clients.", MetricType::Counter, |c| &c.bytes_in),
    ("sent_bytes", "Bytes sent to clients.", MetricType::Counter, |c| &c.bytes_out),
];

/// `corelane_endpoint_<suffix>` per endpoint and `corelane_cluster_<suffix>` summed per cluster.
#[rustfmt::skip]
const ENDPOINT_SERIES: [(&str, &str, MetricType, EndpointField); 7] = [
    ("connections", "Upstream connections established.", MetricType::Counter, |c| &c.connections),
    ("connections_active", "Upstream connections open or being opened now.", MetricType::Gauge, |c| &c.active),
    ("connect_errors", "Upstream connect attempts that failed or timed out.", MetricType::Counter, |c| &c.connect_errors),
    ("received_bytes", "Bytes received from upstream.", MetricType::Counter, |c| &c.bytes_in),
    ("sent_bytes", "Bytes sent to upstream.", MetricType::Counter, |c| &c.bytes_out),
    ("requests", "Requests sent to upstream (redis and memcache listeners; statements and other commands on mysql listeners).", MetricType::Counter, |c| &c.requests),
    ("request_errors", "Requests answered with an error because the upstream failed, timed out or was backing off (redis and memcache listeners; on mysql listeners, commands whose server connection was lost).", MetricType::Counter, |c| &c.request_errors),
];

const CONNECT_HELP: &str = "Time to establish upstream connections.";

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let (p, t, e) = (&self.process, &self.table, &mut enc);
        family(
            e,
            "corelane_build_info",
            "Build information; always 1.",
            MetricType::Gauge,
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
        let reloads = [
            ([("result", "ok")], p.reloads_ok),
            ([("result", "error")], p.reloads_error),
        ];
        family(
            e,
            "corelane_config_reloads",
            "Reloads of the control file by result.",
            MetricType::Counter,
            reloads,
        )?;
        family(
            e,
            "corelane_access_log_dropped_batches",
            "Batches of access log lines dropped because the writer could not keep up.",
            MetricType::Counter,
            [(
                [("log", "access")],
                crate::proto::http::access_log::DROPPED.load(Relaxed),
            )],
        )?;
        let last_ok = p.last_reload_success_unix as u64;
        gauge(
            e,
            "corelane_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the control file.",
            last_ok,
        )?;

        for (suffix, help, ty, field) in LISTENER_SERIES {
            let rows = t.listeners.iter().map(|l| {
                (
                    [("listener", l.config.name.as_str())],
                    l.stats.workers.sum(field),
                )
            });
            family::<L1>(e, &format!("corelane_listener_{suffix}"), help, ty, rows)?;
        }

        let addrs: Vec<Vec<String>> = t
            .clusters
            .iter()
            .map(|c| c.endpoints.iter().map(|ep| ep.addr.to_string()).collect())
            .collect();
        let endpoints = || {
            t.clusters.iter().zip(&addrs).flat_map(|(c, a)| {
                c.endpoints.iter().zip(a).map(move |(ep, addr)| {
                    (
                        [("cluster", c.name.as_str()), ("endpoint", addr.as_str())],
                        ep,
                    )
                })
            })
        };
        for (suffix, help, ty, field) in ENDPOINT_SERIES {
            let rows = t.clusters.iter().map(|c| {
                let sum = c
                    .endpoints
                    .iter()
                    .map(|ep| ep.stats.workers.sum(field))
                    .fold(0, u64::wrapping_add);
                ([("cluster", c.name.as_str())], sum)
            });
            family::<L1>(e, &format!("corelane_cluster_{suffix}"), help, ty, rows)?;
        }
        let unavailable = t.clusters.iter().map(|c| {
            (
                [("cluster", c.name.as_str())],
                c.stats.workers.sum(|k| &k.unavailable),
            )
        });
        family::<L1>(
            e,
            "corelane_cluster_upstream_unavailable",
            "Client connections failed because no endpoint could be reached.",
            MetricType::Counter,
            unavailable,
        )?;
        let cluster_hist = t.clusters.iter().map(|c| {
            let mut h = Exported::empty();
            c.endpoints
                .iter()
                .filter_map(|ep| self.histograms.get(ep.stats.uid))
                .for_each(|x| h.add(x));
            ([("cluster", c.name.as_str())], h)
        });
        histograms::<L1>(
            e,
            "corelane_cluster_connect_duration_seconds",
            CONNECT_HELP,
            cluster_hist,
        )?;

        for (suffix, help, ty, field) in ENDPOINT_SERIES {
            let rows = endpoints().map(|(labels, ep)| (labels, ep.stats.workers.sum(field)));
            family::<L2>(e, &format!("corelane_endpoint_{suffix}"), help, ty, rows)?;
        }
        let endpoint_hist = endpoints().map(|(labels, ep)| {
            let mut h = Exported::empty();
            if let Some(x) = self.histograms.get(ep.stats.uid) {
                h.add(x);
            }
            (labels, h)
        });
        histograms::<L2>(
            e,
            "corelane_endpoint_connect_duration_seconds",
            CONNECT_HELP,
            endpoint_hist,
        )?;
        health(e, endpoints)?;
        http(e, t, &self.histograms)
    }
}

/// HTTP series: responses by status class and latency to the response headers, per route
/// (`route="default"`: no route matched) and per cluster.
fn http(e: &mut DescriptorEncoder, t: &RoutingTable, hist: &Merged) -> fmt::Result {
    let refused = t
        .listeners
        .iter()
        .filter(|l| l.config.protocol == Protocol::Http)
        .flat_map(|l| {
            Refusal::ALL.iter().enumerate().map(move |(i, why)| {
                (
                    [
                        ("listener", l.config.name.as_str()),
                        ("status", why.label()),
                    ],
                    l.stats.workers.sum(|c| &c.http_refused[i]),
                )
            })
        });
    let http_listeners = || {
        t.listeners
            .iter()
            .filter(|l| l.config.protocol == Protocol::Http)
    };
    let resets = http_listeners().flat_map(|l| {
        let name = l.config.name.as_str();
        [
            (
                [("listener", name), ("by", "client")],
                l.stats.workers.sum(|c| &c.h2_resets_received),
            ),
            (
                [("listener", name), ("by", "corelane")],
                l.stats.workers.sum(|c| &c.h2_resets_sent),
            ),
        ]
    });
    family::<L2>(
        e,
        "corelane_http2_resets",
        "HTTP/2 streams reset (RST_STREAM): by the client, or by corelane with an error code (a refused or malformed stream, a cancelled tunnel, a failed response).",
        MetricType::Counter,
        resets,
    )?;
    let errors = http_listeners().flat_map(|l| {
        (1..REASON_NAMES.len()).map(move |code| {
            (
                [
                    ("listener", l.config.name.as_str()),
                    ("error", REASON_NAMES[code]),
                ],
                l.stats.workers.sum(|c| &c.h2_connection_errors[code]),
            )
        })
    });
    family::<L2>(
        e,
        "corelane_http2_connection_errors",
        "HTTP/2 connections corelane ended with a GOAWAY carrying an error, by error code (ENHANCE_YOUR_CALM: a flood or rapid resets).",
        MetricType::Counter,
        errors,
    )?;
    family::<L2>(
        e,
        "corelane_http_refused_requests",
        "HTTP requests answered before they were routed, by status: 400 malformed (over HTTP/2, also a request reset as malformed), 408 request not in within header_timeout, 414 target too long, 431 head too large, 501 CONNECT over HTTP/2.",
        MetricType::Counter,
        refused,
    )?;
    let routes: Vec<(&str, &str, &RouteStats)> = t
        .listeners
        .iter()
        .flat_map(|l| {
            l.config
                .http
                .route_names()
                .zip(l.routes.iter())
                .map(move |(n, r)| (l.config.name.as_str(), n, &**r))
        })
        .collect();
    let rows = routes.iter().flat_map(|(l, n, r)| {
        StatusClasses::LABELS
            .iter()
            .enumerate()
            .map(move |(i, class)| {
                (
                    [("listener", *l), ("route", *n), ("class", *class)],
                    r.workers.sum(|c| &c.responses.0[i]),
                )
            })
    });
    family::<L3>(
        e,
        "corelane_http_responses",
        "HTTP responses by route and status class (corelane's own error responses included).",
        MetricType::Counter,
        rows,
    )?;
    let latency = routes.iter().map(|(l, n, r)| {
        let mut h = Exported::empty();
        if let Some(x) = hist.get(r.uid) {
            h.add(x);
        }
        ([("listener", *l), ("route", *n)], h)
    });
    histograms::<L2>(
        e,
        "corelane_http_response_duration_seconds",
        "Time from a request's arrival to its response headers, by route.",
        latency,
    )?;
    let rows = t.clusters.iter().flat_map(|c| {
        StatusClasses::LABELS
            .iter()
            .enumerate()
            .map(move |(i, class)| {
                (
                    [("cluster", c.name.as_str()), ("class", *class)],
                    c.stats.workers.sum(|k| &k.http_responses.0[i]),
                )
            })
    });
    family::<L2>(
        e,
        "corelane_cluster_http_responses",
        "HTTP responses to requests forwarded to the cluster, by status class.",
        MetricType::Counter,
        rows,
    )?;
    let latency = t.clusters.iter().map(|c| {
        let mut h = Exported::empty();
        if let Some(x) = hist.get(c.stats.uid) {
            h.add(x);
        }
        ([("cluster", c.name.as_str())], h)
    });
    histograms::<L1>(
        e,
        "corelane_cluster_http_response_duration_seconds",
        "Time from a request's arrival to its response headers, for requests forwarded to the cluster.",
        latency,
    )
}

/// Health series per endpoint: usable or not, transitions, ejections, check latencies.
fn health<'a, I>(e: &mut DescriptorEncoder, endpoints: impl Fn() -> I) -> fmt::Result
where
    I: Iterator<Item = (L2<'a>, &'a Endpoint)>,
{
    let up = endpoints().map(|(labels, ep)| (labels, u64::from(ep.health.usable())));
    family::<L2>(
        e,
        "corelane_endpoint_up",
        "1 when the endpoint takes traffic: its active check passes (or it has none) and outlier detection has not ejected it.",
        MetricType::Gauge,
        up,
    )?;
    let transitions = endpoints().flat_map(|([c, ep], x)| {
        [
            ([c, ep, ("to", "up")], x.health.went_up.load(Relaxed)),
            ([c, ep, ("to", "down")], x.health.went_down.load(Relaxed)),
        ]
    });
    family::<L3>(
        e,
        "corelane_endpoint_health_transitions",
        "Changes of the active check's verdict.",
        MetricType::Counter,
        transitions,
    )?;
    let ejections = endpoints().map(|(labels, ep)| (labels, ep.health.ejections.load(Relaxed)));
    family::<L2>(
        e,
        "corelane_endpoint_ejections",
        "Ejections by outlier detection.",
        MetricType::Counter,
        ejections,
    )?;
    let checks = endpoints().filter_map(|(labels, ep)| {
        let d = ep.health.detail();
        let h = d.latency.as_ref().filter(|_| d.checked)?;
        let mut x = Exported::empty();
        x.add(h);
        Some((labels, x))
    });
    histograms::<L2>(
        e,
        "corelane_endpoint_health_check_duration_seconds",
        "Time taken by active health checks.",
        checks,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::time::Duration;

    #[test]
    fn sums_workers_and_endpoints_into_series() {
        let cfg = parse(
            r#"
            [listeners.web]
            listen = "127.0.0.1:7100"
            cluster = "app"
            [clusters.app]
            endpoints = [{ addr = "10.0.0.1:80" }, { addr = "10.0.0.2:80" }]
            "#,
        )
        .unwrap();
        let table = Arc::new(RoutingTable::build(
            cfg,
            7,
            2,
            None,
            &crate::tls::TlsSet::default(),
        ));
        let l = &table.listeners[0].stats.workers;
        l.get(0).accepted.add(3);
        l.get(1).accepted.add(4);
        let eps = &table.clusters[0].endpoints;
        eps[0].stats.workers.get(0).connect_errors.add(2);
        eps[1].stats.workers.get(1).connect_errors.add(5);
        let w = crate::metrics::histogram::WorkerHistograms::default();
        w.record(eps[0].stats.uid, Duration::from_micros(300));
        let mut histograms = Merged::default();
        histograms.add(w.snapshot(&table.histogram_uids()));
        let text = render(Scrape {
            table,
            histograms,
            process: ProcessInfo {
                version: "9.9.9",
                workers: 2,
                generation: 7,
                reloads_ok: 6,
                reloads_error: 1,
                last_reload_success_unix: 1.5e9,
                draining: false,
            },
        });
        for line in [
            "corelane_config_generation 7",
            "corelane_config_reloads_total{result=\"error\"} 1",
            "corelane_listener_connections_total{listener=\"web\"} 7",
            "corelane_cluster_connect_errors_total{cluster=\"app\"} 7",
            "corelane_endpoint_connect_errors_total{cluster=\"app\",endpoint=\"10.0.0.2:80\"} 5",
            "corelane_endpoint_connect_duration_seconds_bucket{le=\"0.00025\",cluster=\"app\",endpoint=\"10.0.0.1:80\"} 0",
            "corelane_endpoint_connect_duration_seconds_bucket{le=\"0.0005\",cluster=\"app\",endpoint=\"10.0.0.1:80\"} 1",
            "corelane_cluster_connect_duration_seconds_count{cluster=\"app\"} 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
