//! The `/status` document: what is running, which generation, how the last reload went, and
//! per listener, cluster and endpoint the counters summed over workers, and each endpoint's
//! health.

use serde_json::{Value, json};

use super::{Control, unix_seconds};
use crate::upstream::health::Health;

pub fn render(ctl: &Control) -> Value {
    let t = ctl.tables.load();
    let last = &ctl.last_reload;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "generation": t.generation,
        "started_at": unix_seconds(ctl.started),
        "draining": ctl.draining,
        "workers": ctl.worker_count(),
        "reloads": { "ok": ctl.reloads_ok, "error": ctl.reloads_error },
        "last_reload": {
            "at": unix_seconds(last.at),
            "result": if last.error.is_some() { "error" } else { "ok" },
            "generation": last.generation,
            "error": last.error,
            "notes": last.notes,
        },
        "listeners": t.listeners.iter().map(|l| {
            let w = &l.stats.workers;
            json!({
                "name": l.config.name,
                "listen": l.config.listen.to_string(),
                "protocol": l.config.protocol,
                "cluster": t.clusters[l.config.cluster].name,
                "max_connections": l.config.max_connections.map(|m| m.get()),
                "connections": w.sum(|c| &c.accepted),
                "active": w.sum(|c| &c.active),
                "rejected": w.sum(|c| &c.rejected),
            })
        }).collect::<Vec<_>>(),
        "clusters": t.clusters.iter().map(|c| json!({
            "name": c.name,
            "lb": c.lb,
            "connect_timeout_ms": c.connect_timeout.as_millis() as u64,
            "connect_attempts": c.connect_attempts,
            "unavailable": c.stats.workers.sum(|k| &k.unavailable),
            "endpoints": c.endpoints.iter().map(|e| {
                let w = &e.stats.workers;
                json!({
                    "addr": e.addr.to_string(),
                    "weight": e.weight,
                    "connections": w.sum(|k| &k.connections),
                    "active": w.sum(|k| &k.active),
                    "connect_errors": w.sum(|k| &k.connect_errors),
                    "bytes_in": w.sum(|k| &k.bytes_in),
                    "bytes_out": w.sum(|k| &k.bytes_out),
                    "health": health(&e.health),
                })
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// An endpoint's health: `state` is "up", "down" (active check) or "ejected" (outlier
/// detection), with the reason it is out and the last check.
fn health(h: &Health) -> Value {
    let state = if !h.is_up() {
        "down"
    } else if h.ejected() {
        "ejected"
    } else {
        "up"
    };
    let why = h.why_out();
    let d = h.detail();
    json!({
        "state": state,
        "reason": why,
        "checked": d.checked,
        "passes_in_a_row": d.passes,
        "failures_in_a_row": d.fails,
        "last_check": d.last.as_ref().map(|l| json!({
            "at": unix_seconds(l.at),
            "ok": l.ok,
            "error": l.reason,
            "latency_ms": l.latency.as_secs_f64() * 1e3,
        })),
        "ejections": h.ejections.load(std::sync::atomic::Ordering::Relaxed),
        "last_ejection": d.eject_reason,
    })
}
