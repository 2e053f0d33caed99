//! The process from outside: `check` and `run` on bad files, the admin API, graceful
//! shutdown on SIGTERM, `--version`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// Runs `corelane <cmd> -c <path>` to completion.
fn corelane(cmd: &str, path: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .args([cmd, "-c"])
        .arg(path)
        .output()
        .unwrap()
}

fn good(admin: SocketAddr, listen: SocketAddr) -> String {
    base_toml(admin, 2)
        + &listener_toml("web", listen, "app", "")
        + &cluster_toml(
            "app",
            "round_robin",
            &[("127.0.0.1:18080".parse().unwrap(), 1)],
            "",
        )
}

#[test]
fn bad_files_are_refused_by_check_and_run_naming_the_key() {
    let (admin, listen) = (addr(), addr());
    let ok = good(admin, listen);
    let cases = [
        (
            "unknown key",
            ok.replace("[clusters.app]", "[clusters.app]\nretries = 3"),
            "clusters.app.retries: unknown field `retries`",
        ),
        (
            "duplicate name",
            ok.clone() + &listener_toml("web", addr(), "app", ""),
            "listeners.web: duplicate key",
        ),
        (
            "unknown cluster",
            ok.replace("cluster = \"app\"", "cluster = \"api\""),
            "listeners.web.cluster: unknown cluster \"api\"",
        ),
        (
            "zero endpoints",
            ok.replace(
                "endpoints = [{ addr = \"127.0.0.1:18080\", weight = 1 }]",
                "endpoints = []",
            ),
            "clusters.app.endpoints: a cluster needs at least one endpoint",
        ),
        (
            "unbindable address",
            ok.replace(&listen.to_string(), "192.0.2.1:7100"),
            "listeners.web.listen: cannot bind 192.0.2.1:7100",
        ),
        (
            "bad duration",
            ok.replace("shutdown_timeout = \"5s\"", "shutdown_timeout = \"soon\""),
            "shutdown_timeout: \"soon\" is not a duration",
        ),
    ];
    assert!(ok.contains("endpoints = [{ addr = \"127.0.0.1:18080\", weight = 1 }]"));
    let dir = tempdir("bad");
    for (what, text, expected) in cases {
        let path = dir.join(format!("{}.toml", what.replace(' ', "_")));
        std::fs::write(&path, &text).unwrap();
        let out = corelane("check", &path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: check accepted it");
        assert!(err.contains(expected), "{what}: check said {err:?}");

        let out = corelane("run", &path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: run started");
        assert!(err.contains(expected), "{what}: run said {err:?}");
        assert!(
            try_http(admin, "GET", "/healthz").is_err(),
            "{what}: nothing was left bound"
        );
    }
    // The good file passes check.
    let path = dir.join("good.toml");
    std::fs::write(&path, &ok).unwrap();
    let out = corelane("check", &path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok (1 listeners, 1 clusters, 2 workers)")
    );
}

#[test]
fn check_passes_on_the_file_of_a_running_instance() {
    // The usual workflow: edit the running file, check it, then SIGHUP.
    let (admin, listen) = (addr(), addr());
    let p = Proxy::start(&good(admin, listen), admin);
    let out = corelane("check", &p.config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn port_taken_by_another_program_is_refused() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let admin = addr();
    let text = good(admin, busy);
    let path = tempdir("busy").join("c.toml");
    std::fs::write(&path, text).unwrap();
    let out = corelane("run", &path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "listeners.web.listen: cannot bind {busy}: Address already in use"
        )),
        "{err}"
    );
}

#[test]
fn version_is_printed() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("corelane {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn admin_api_answers_and_refuses_what_it_does_not_serve() {
    let (admin, listen) = (addr(), addr());
    let p = Proxy::start(&good(admin, listen), admin);
    assert_eq!(http(admin, "GET", "/healthz"), (200, "ok\n".into()));
    assert_eq!(http(admin, "GET", "/nope").0, 404);
    assert_eq!(http(admin, "DELETE", "/status").0, 405);
    assert_eq!(http(admin, "GET", "/reload").0, 405);
    let s = p.status();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["workers"], 2);
    assert_eq!(s["generation"], 1);
    assert_eq!(s["listeners"][0]["name"], "web");
    assert_eq!(s["listeners"][0]["listen"], listen.to_string());
    assert_eq!(s["clusters"][0]["endpoints"][0]["addr"], "127.0.0.1:18080");
    let m = p.metrics();
    for series in [
        "corelane_workers 2",
        "corelane_config_generation 1",
        "corelane_build_info{version=",
        "corelane_listener_connections_total{listener=\"web\"} 0",
        "corelane_endpoint_connect_duration_seconds_count{cluster=\"app\",endpoint=\"127.0.0.1:18080\"} 0",
        "# EOF",
    ] {
        assert!(m.contains(series), "missing {series}:\n{m}");
    }
}

/// A backend that sends `chunks` chunks of 1 KiB, one every `every`, then closes.
fn slow_backend(chunks: usize, every: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            thread::spawn(move || {
                for i in 0..chunks {
                    if s.write_all(&[i as u8; 1024]).is_err() {
                        return;
                    }
                    thread::sleep(every);
                }
            });
        }
    });
    addr
}

/// A proxy in front of a slow backend (`chunks` KiB, one every 50 ms) and a client that has
/// received the first KiB through it.
fn transfer_in_flight(
    chunks: usize,
    workers: usize,
    shutdown_timeout: &str,
) -> (Proxy, SocketAddr, std::net::TcpStream) {
    let backend = slow_backend(chunks, Duration::from_millis(50));
    let (admin, listen) = (addr(), addr());
    let cfg = base_toml(admin, workers).replace(
        "shutdown_timeout = \"5s\"",
        &format!("shutdown_timeout = \"{shutdown_timeout}\""),
    ) + &listener_toml("l", listen, "c", "")
        + &cluster_toml("c", "round_robin", &[(backend, 1)], "");
    let p = Proxy::start(&cfg, admin);
    let mut s = connect_from(listen, None);
    let mut first = [0u8; 1024];
    s.read_exact(&mut first).unwrap();
    (p, listen, s)
}

#[test]
fn sigterm_lets_the_transfer_in_flight_finish_then_exits_zero() {
    let (mut p, listen, mut s) = transfer_in_flight(20, 2, "5s");
    let admin = p.admin;

    p.signal(Signal::SIGTERM);
    // New connections are refused once the listeners are closed...
    assert!(
        eventually(5, || std::net::TcpStream::connect(listen).is_err()),
        "still accepting"
    );
    // ...the admin API says it is draining...
    assert_eq!(http(admin, "GET", "/healthz").0, 503);
    // ...and the transfer in flight completes.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len(), 19 * 1024);
    assert!(
        rest.chunks(1024)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == i as u8 + 1))
    );
    let status = p.wait_exit();
    assert!(status.success(), "{status}");
    assert!(
        p.log_text().contains("all connections closed; exiting"),
        "{}",
        p.log_text()
    );
}

#[test]
fn shutdown_timeout_bounds_the_drain() {
    let (mut p, _, mut s) = transfer_in_flight(1000, 1, "300ms");
    let started = Instant::now();
    p.signal(Signal::SIGTERM);
    let status = p.wait_exit();
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // The connection was cut: EOF or reset once buffered bytes are read.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.len() < 100 * 1024);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (admin, listen) = (addr(), addr());
    let cfg =
        good(admin, listen).replace("level = \"debug\"", "level = \"info\"\nformat = \"json\"");
    let p = Proxy::start(&cfg, admin);
    let log = p.log_text();
    let started = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .find(|v| v["message"] == "corelane started")
        .expect("start-up line");
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["workers"], 2);
}

#[test]
fn pinned_workers_run_on_one_core_each() {
    let (admin, listen) = (addr(), addr());
    let cfg = good(admin, listen).replace("workers = 2", "workers = 2\npin_workers = true");
    let p = Proxy::start(&cfg, admin);
    let allowed = |tid: &str| {
        let status =
            std::fs::read_to_string(format!("/proc/{}/task/{tid}/status", p.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let mut workers = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{}/task", p.child.id())).unwrap() {
        let tid = task.unwrap().file_name().into_string().unwrap();
        let comm =
            std::fs::read_to_string(format!("/proc/{}/task/{tid}/comm", p.child.id())).unwrap();
        if comm.trim().starts_with("corelane-w") {
            workers.push((comm.trim().to_owned(), allowed(&tid)));
        }
    }
    workers.sort();
    assert_eq!(workers.len(), 2, "{workers:?}");
    for (name, cpus) in &workers {
        assert!(
            cpus.parse::<usize>().is_ok(),
            "{name} may run on {cpus}, not one core"
        );
    }
    if std::thread::available_parallelism().unwrap().get() >= 2 {
        assert_ne!(workers[0].1, workers[1].1, "{workers:?}");
    }
}
