//! Health checks and outlier detection through the real corelane binary, with real HTTP
//! backends (hyper) that are stopped and started under load.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::web::{Load, ResetBackend, WebBackend, get};
use common::*;

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// A TCP listener in front of `backends`, one connect attempt per client connection (so a
/// request sent to a dead backend fails instead of being retried elsewhere).
fn config(
    admin: SocketAddr,
    listen: SocketAddr,
    lb: &str,
    eps: &[SocketAddr],
    extra: &str,
) -> String {
    config_for("tcp", admin, listen, lb, eps, extra)
}

/// [`config`] with a listener of `protocol` (`tcp` or `http`).
fn config_for(
    protocol: &str,
    admin: SocketAddr,
    listen: SocketAddr,
    lb: &str,
    eps: &[SocketAddr],
    extra: &str,
) -> String {
    let eps: Vec<(SocketAddr, u32)> = eps.iter().map(|a| (*a, 1)).collect();
    base_toml(admin, 2)
        + &listener_toml("l", listen, "c", &format!("protocol = \"{protocol}\""))
        + &cluster_toml("c", lb, &eps, &format!("connect_attempts = 1\n{extra}"))
}

const HTTP_CHECK: &str = "[clusters.c.health_check]\nkind = \"http\"\npath = \"/healthz\"\ninterval = \"200ms\"\nfall = 2\nrise = 2\n";
const TCP_CHECK: &str =
    "[clusters.c.health_check]\nkind = \"tcp\"\ninterval = \"200ms\"\nfall = 2\nrise = 2\n";

fn endpoint_health(p: &Proxy, ep: SocketAddr) -> serde_json::Value {
    let s = p.status();
    s["clusters"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["addr"] == ep.to_string())
        .map(|e| e["health"].clone())
        .unwrap_or_else(|| panic!("no endpoint {ep} in {s}"))
}

fn state(p: &Proxy, ep: SocketAddr) -> String {
    endpoint_health(p, ep)["state"].as_str().unwrap().to_owned()
}

fn up_metric(p: &Proxy, ep: SocketAddr) -> Option<f64> {
    metric(
        &p.metrics(),
        &format!("corelane_endpoint_up{{cluster=\"c\",endpoint=\"{ep}\"}}"),
    )
}

/// Stops one of two backends under load and starts it again: requests fail only until the
/// check notices (fall = 2 checks 200 ms apart), none fail after that, and traffic returns
/// once `rise` checks pass.
fn stop_and_start_under_load(check: &str, protocol: &str) {
    let a = WebBackend::start("a");
    let mut b = WebBackend::start("b");
    let (admin, listen) = (addr(), addr());
    let p = Proxy::start(
        &config_for(
            protocol,
            admin,
            listen,
            "round_robin",
            &[a.addr, b.addr],
            check,
        ),
        admin,
    );
    assert!(eventually(5, || get(listen, None).is_ok()));

    let load = Load::start(listen, 4);
    thread::sleep(Duration::from_millis(500));
    b.stop();
    let stopped = Instant::now();
    assert!(
        eventually(3, || state(&p, b.addr) == "down"),
        "{}",
        endpoint_health(&p, b.addr)
    );
    let detected = stopped.elapsed();
    let h = endpoint_health(&p, b.addr);
    assert!(
        h["reason"].as_str().unwrap().contains("2 failed checks"),
        "{h}"
    );
    assert_eq!(up_metric(&p, b.addr), Some(0.0));
    thread::sleep(Duration::from_millis(1500));
    let hits_b = b.hits.load(std::sync::atomic::Ordering::SeqCst);
    b.restart();
    let restarted = Instant::now();
    assert!(
        eventually(3, || state(&p, b.addr) == "up"),
        "{}",
        endpoint_health(&p, b.addr)
    );
    assert!(
        eventually(3, || b.hits.load(std::sync::atomic::Ordering::SeqCst)
            > hits_b + 10),
        "traffic did not return to b"
    );
    let returned = restarted.elapsed();
    let log = load.finish();

    let failed: Vec<Duration> = log
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(at, _)| at.saturating_duration_since(stopped))
        .collect();
    let total = log.len();
    assert!(total > 200, "too little load: {total} requests");
    // Every failure was sent before detection (plus a check's worth of slack).
    let late: Vec<&Duration> = failed
        .iter()
        .filter(|d| **d > detected + Duration::from_millis(300))
        .collect();
    assert!(
        late.is_empty(),
        "failures after detection ({detected:?}): {late:?}"
    );
    assert!(
        detected < Duration::from_millis(1200),
        "detection took {detected:?}"
    );
    assert!(
        returned < Duration::from_secs(2),
        "return took {returned:?}"
    );
    // Without the check, half of all requests after the stop would have failed.
    let after_stop = log.iter().filter(|(at, _)| *at >= stopped).count();
    assert!(
        failed.len() * 4 < after_stop,
        "{} of {after_stop} failed",
        failed.len()
    );
    let m = p.metrics();
    let t = |to: &str| {
        metric(
            &m,
            &format!(
                "corelane_endpoint_health_transitions_total{{cluster=\"c\",endpoint=\"{}\",to=\"{to}\"}}",
                b.addr
            ),
        )
    };
    assert_eq!((t("down"), t("up")), (Some(1.0), Some(1.0)), "{m}");
    assert!(
        m.contains(&format!("corelane_endpoint_health_check_duration_seconds_count{{cluster=\"c\",endpoint=\"{}\"}}", a.addr)),
        "{m}"
    );
}

#[test]
fn http_checks_take_a_stopped_backend_out_and_bring_it_back() {
    stop_and_start_under_load(HTTP_CHECK, "tcp");
}

#[test]
fn http_checks_on_an_http_listener_take_a_stopped_backend_out_and_bring_it_back() {
    stop_and_start_under_load(HTTP_CHECK, "http");
}

#[test]
fn tcp_checks_take_a_stopped_backend_out_and_bring_it_back() {
    stop_and_start_under_load(TCP_CHECK, "tcp");
}

#[test]
fn http_check_fails_on_a_bad_status_even_when_the_port_answers() {
    let a = WebBackend::start("a");
    let b = WebBackend::start("b");
    let (admin, listen) = (addr(), addr());
    let p = Proxy::start(
        &config(admin, listen, "round_robin", &[a.addr, b.addr], HTTP_CHECK),
        admin,
    );
    b.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(eventually(3, || state(&p, b.addr) == "down"));
    let h = endpoint_health(&p, b.addr);
    assert_eq!(h["last_check"]["error"], "HTTP status 503", "{h}");
    let before = b.hits.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..20 {
        assert_eq!(get(listen, None).as_deref(), Ok("a"));
    }
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), before);
}

/// No active check: a backend that refuses connections is ejected after
/// `consecutive_failures` failures and retried when the ejection time is over.
#[test]
fn passive_ejection_without_active_checks() {
    let a = WebBackend::start("a");
    let dead = refused_addr();
    let (admin, listen) = (addr(), addr());
    let outlier = "[clusters.c.outlier]\nconsecutive_failures = 3\nbase_ejection_time = \"1s\"\n";
    let p = Proxy::start(
        &config(admin, listen, "round_robin", &[a.addr, dead], outlier),
        admin,
    );
    let errors = || {
        metric(
            &p.metrics(),
            &format!("corelane_endpoint_connect_errors_total{{cluster=\"c\",endpoint=\"{dead}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let mut failures = 0;
    for _ in 0..40 {
        if get(listen, None).is_err() {
            failures += 1;
        }
    }
    assert_eq!(failures, 3, "exactly the failures that eject it");
    assert_eq!(errors(), 3.0);
    let h = endpoint_health(&p, dead);
    assert_eq!(h["state"], "ejected", "{h}");
    assert!(
        h["reason"]
            .as_str()
            .unwrap()
            .contains("3 failures in a row"),
        "{h}"
    );
    assert_eq!(
        metric(
            &p.metrics(),
            &format!("corelane_endpoint_ejections_total{{cluster=\"c\",endpoint=\"{dead}\"}}")
        ),
        Some(1.0)
    );
    // After the ejection time it is tried again: one failure ejects it again, for 2 s now.
    assert!(eventually(3, || state(&p, dead) == "up"));
    let mut failures = 0;
    for _ in 0..20 {
        if get(listen, None).is_err() {
            failures += 1;
        }
    }
    assert!((1..=3).contains(&failures), "{failures}");
    assert_eq!(state(&p, dead), "ejected");
}

/// An HTTP backend that answers 200 on the check path but resets data requests passes its
/// active check and is ejected by the passive detector.
#[test]
fn a_backend_that_passes_checks_but_resets_requests_is_ejected() {
    resets_are_ejected("tcp", "reset before any reply");
}

#[test]
fn an_http_listener_ejects_a_backend_that_passes_checks_but_resets_requests() {
    resets_are_ejected("http", "failed before a response");
}

fn resets_are_ejected(protocol: &str, reason: &str) {
    let a = WebBackend::start("a");
    let bad = ResetBackend::start();
    let (admin, listen) = (addr(), addr());
    let extra = format!(
        "{HTTP_CHECK}[clusters.c.outlier]\nconsecutive_failures = 3\nbase_ejection_time = \"30s\"\n"
    );
    let p = Proxy::start(
        &config_for(
            protocol,
            admin,
            listen,
            "round_robin",
            &[a.addr, bad.addr],
            &extra,
        ),
        admin,
    );
    let mut failures = 0;
    for _ in 0..40 {
        match get(listen, None) {
            Ok(body) => assert_eq!(body, "a"),
            Err(_) => failures += 1,
        }
    }
    assert_eq!(failures, 3);
    assert_eq!(bad.resets.load(std::sync::atomic::Ordering::SeqCst), 3);
    thread::sleep(Duration::from_millis(600));
    let h = endpoint_health(&p, bad.addr);
    assert_eq!(h["state"], "ejected", "{h}");
    assert_eq!(
        h["last_check"]["ok"], true,
        "the active check still passes: {h}"
    );
    assert!(h["reason"].as_str().unwrap().contains(reason), "{h}");
}

/// Consistent hashing under failure: taking one of three endpoints down moves only its keys
/// (client addresses), and bringing it back restores the original placement exactly.
#[test]
fn consistent_hashing_moves_only_the_keys_of_a_down_endpoint() {
    for lb in ["ketama", "maglev"] {
        let a = WebBackend::start("a");
        let b = WebBackend::start("b");
        let mut c = WebBackend::start("c");
        let (admin, listen) = (addr(), addr());
        let p = Proxy::start(
            &config(admin, listen, lb, &[a.addr, b.addr, c.addr], TCP_CHECK),
            admin,
        );
        let clients: Vec<Ipv4Addr> = (1..=90).map(|i| Ipv4Addr::new(127, 0, 1, i)).collect();
        let place = || -> HashMap<Ipv4Addr, String> {
            clients
                .iter()
                .map(|ip| (*ip, get(listen, Some(*ip)).unwrap()))
                .collect()
        };
        let before = place();
        assert!(before.values().any(|n| n == "c"), "{lb}: c has keys");
        c.stop();
        assert!(eventually(3, || state(&p, c.addr) == "down"));
        let during = place();
        for ip in &clients {
            if before[ip] == "c" {
                assert_ne!(during[ip], "c", "{lb}");
            } else {
                assert_eq!(
                    during[ip], before[ip],
                    "{lb}: {ip} moved though its endpoint is up"
                );
            }
        }
        c.restart();
        assert!(eventually(3, || state(&p, c.addr) == "up"));
        assert_eq!(place(), before, "{lb}: placement restored");
    }
}

/// A reload during an outage keeps the down endpoint out, even when the check itself
/// changes; an endpoint added with `initial = "unhealthy"` gets traffic only after it passes.
#[test]
fn a_reload_during_an_outage_keeps_the_down_endpoint_out() {
    let a = WebBackend::start("a");
    let mut b = WebBackend::start("b");
    let n = WebBackend::start("new");
    let (admin, listen) = (addr(), addr());
    let p = Proxy::start(
        &config(admin, listen, "round_robin", &[a.addr, b.addr], HTTP_CHECK),
        admin,
    );
    b.stop();
    assert!(eventually(3, || state(&p, b.addr) == "down"));

    let slower = HTTP_CHECK.replace("200ms", "300ms") + "initial = \"unhealthy\"\n";
    p.write_config(&config(
        admin,
        listen,
        "round_robin",
        &[a.addr, b.addr, n.addr],
        &slower,
    ));
    let s = p.sighup_and_wait();
    assert_eq!(s["last_reload"]["result"], "ok", "{s}");
    assert_eq!(
        state(&p, b.addr),
        "down",
        "reload brought the down endpoint back"
    );
    assert_eq!(state(&p, n.addr), "down", "new endpoint starts unhealthy");
    let mut failures = 0;
    let mut seen_new = false;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        match get(listen, None) {
            Ok(body) => seen_new |= body == "new",
            Err(_) => failures += 1,
        }
    }
    assert_eq!(
        failures, 0,
        "a request went to the down endpoint after the reload"
    );
    assert!(
        seen_new,
        "the new endpoint never got traffic after passing its checks"
    );
    assert_eq!(state(&p, n.addr), "up");
}

/// When every endpoint fails its check, the cluster fails closed by default (the client's
/// connection is reset and the reason is logged) and fails open with a panic threshold.
#[test]
fn every_endpoint_down_fails_closed_or_open_by_panic_threshold() {
    let a = WebBackend::start("a");
    a.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    for (threshold, open) in [(0, false), (50, true)] {
        let (admin, listen) = (addr(), addr());
        let extra = format!("panic_threshold = {threshold}\n{HTTP_CHECK}");
        let p = Proxy::start(
            &config(admin, listen, "round_robin", &[a.addr], &extra),
            admin,
        );
        assert!(eventually(3, || state(&p, a.addr) == "down"));
        let r = get(listen, None);
        if open {
            assert_eq!(
                r.as_deref(),
                Ok("a"),
                "panic mode sends to the down endpoint"
            );
        } else {
            assert!(r.is_err(), "{r:?}");
            let m = p.metrics();
            assert_eq!(
                metric(
                    &m,
                    "corelane_cluster_upstream_unavailable_total{cluster=\"c\"}"
                ),
                Some(1.0),
                "{m}"
            );
            assert!(
                p.log_text().contains("endpoint is down (health check)"),
                "{}",
                p.log_text()
            );
        }
    }
}
