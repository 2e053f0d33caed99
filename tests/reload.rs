//! Hot reload through SIGHUP and POST /reload: listeners appear and vanish, endpoints change,
//! a bad file changes nothing, open connections are not disturbed.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;

use common::*;

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

fn echo_roundtrip(s: &mut std::net::TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

#[test]
fn sighup_adds_a_listener_and_changes_endpoints_without_disturbing_open_connections() {
    let (one, two) = (Backend::start("one"), Backend::start("two"));
    let (admin, l1, l2) = (addr(), addr(), addr());
    let v1 = base_toml(admin, 2)
        + &listener_toml("first", l1, "c", "")
        + &cluster_toml("c", "round_robin", &[(one.addr, 1)], "");
    let p = Proxy::start(&v1, admin);

    let mut open = connect_from(l1, None);
    assert_eq!(greeting(&mut open), "one");
    assert!(
        std::net::TcpStream::connect(l2).is_err(),
        "second listener not there yet"
    );

    let v2 = base_toml(admin, 2)
        + &listener_toml("first", l1, "c", "")
        + &listener_toml("second", l2, "d", "")
        + &cluster_toml("c", "round_robin", &[(two.addr, 1)], "")
        + &cluster_toml("d", "round_robin", &[(one.addr, 1)], "");
    p.write_config(&v2);
    let s = p.sighup_and_wait();
    assert_eq!(s["generation"], 2, "{s}");
    assert_eq!(s["last_reload"]["result"], "ok");

    // New connections follow the new table at once, on both listeners, on every worker.
    for _ in 0..20 {
        assert_eq!(which_backend(l1, None), "two");
        assert_eq!(which_backend(l2, None), "one");
    }
    // The connection opened before the reload keeps its upstream.
    echo_roundtrip(&mut open, b"still here");
    // Counters of what stayed were kept.
    let m = p.metrics();
    assert_eq!(
        metric(
            &m,
            "corelane_listener_connections_total{listener=\"first\"}"
        ),
        Some(21.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "corelane_config_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );
}

#[test]
fn bad_file_on_sighup_leaves_the_old_table_serving() {
    let b = Backend::start("b");
    let (admin, l1) = (addr(), addr());
    let good = base_toml(admin, 2)
        + &listener_toml("l", l1, "c", "")
        + &cluster_toml("c", "round_robin", &[(b.addr, 1)], "");
    let p = Proxy::start(&good, admin);
    let mut open = connect_from(l1, None);
    assert_eq!(greeting(&mut open), "b");

    // An unknown key, a reference to a missing cluster, broken TOML: each is refused.
    let bad_files = [
        (
            good.replace("[clusters.c]", "[clusters.c]\nlb_policy = \"x\""),
            "clusters.c",
        ),
        (
            good.replace("cluster = \"c\"", "cluster = \"nope\""),
            "listeners.l.cluster",
        ),
        (good.replace("[clusters.c]", "[clusters.c"), ""),
    ];
    for (i, (bad, key)) in bad_files.iter().enumerate() {
        p.write_config(bad);
        let s = p.sighup_and_wait();
        assert_eq!(s["generation"], 1, "{s}");
        assert_eq!(s["last_reload"]["result"], "error");
        let err = s["last_reload"]["error"].as_str().unwrap();
        assert!(err.contains(key), "error names {key}: {err}");
        assert_eq!(s["reloads"]["error"], (i + 1) as u64);
        // Still serving, old connections and new.
        assert_eq!(which_backend(l1, None), "b");
        echo_roundtrip(&mut open, b"ping");
    }
    let m = p.metrics();
    assert_eq!(
        metric(&m, "corelane_config_reloads_total{result=\"error\"}"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(metric(&m, "corelane_config_generation"), Some(1.0));
    assert!(p.log_text().contains("reload rejected"), "logged");

    // A good file afterwards is taken.
    p.write_config(&good);
    assert_eq!(p.sighup_and_wait()["generation"], 2);
}

#[test]
fn unbindable_listener_in_a_reload_changes_nothing() {
    let b = Backend::start("b");
    let (admin, l1) = (addr(), addr());
    let good = base_toml(admin, 1)
        + &listener_toml("l", l1, "c", "")
        + &cluster_toml("c", "round_robin", &[(b.addr, 1)], "");
    let p = Proxy::start(&good, admin);
    // 192.0.2.1 (TEST-NET-1) is not a local address: bind fails with EADDRNOTAVAIL.
    let bad = good.clone() + &listener_toml("x", "192.0.2.1:7000".parse().unwrap(), "c", "");
    p.write_config(&bad);
    let s = p.sighup_and_wait();
    assert_eq!(s["generation"], 1);
    let err = s["last_reload"]["error"].as_str().unwrap();
    assert!(
        err.starts_with("listeners.x.listen: cannot bind 192.0.2.1:7000"),
        "{err}"
    );
    assert_eq!(s["listeners"].as_array().unwrap().len(), 1);
    assert_eq!(which_backend(l1, None), "b");
}

#[test]
fn a_listener_on_the_running_admin_address_is_refused() {
    let b = Backend::start("b");
    let (admin, l1, new_admin) = (addr(), addr(), addr());
    let v1 = base_toml(admin, 1)
        + &listener_toml("l", l1, "c", "")
        + &cluster_toml("c", "round_robin", &[(b.addr, 1)], "");
    let p = Proxy::start(&v1, admin);
    // The file moves admin elsewhere (restart-only) and puts a listener on the old address.
    let v2 = base_toml(new_admin, 1)
        + &listener_toml("l", l1, "c", "")
        + &listener_toml("steal", admin, "c", "")
        + &cluster_toml("c", "round_robin", &[(b.addr, 1)], "");
    p.write_config(&v2);
    let s = p.sighup_and_wait();
    assert_eq!(s["generation"], 1, "{s}");
    let err = s["last_reload"]["error"].as_str().unwrap();
    assert!(err.starts_with("listeners.steal.listen: address"), "{err}");
    assert_eq!(http(admin, "GET", "/healthz").0, 200);
}

#[test]
fn post_reload_and_removed_listener_drains() {
    let b = Backend::start("b");
    let (admin, l1, l2) = (addr(), addr(), addr());
    let both = base_toml(admin, 2)
        + &listener_toml("keep", l1, "c", "")
        + &listener_toml("gone", l2, "c", "")
        + &cluster_toml("c", "round_robin", &[(b.addr, 1)], "");
    let p = Proxy::start(&both, admin);
    let mut draining = connect_from(l2, None);
    assert_eq!(greeting(&mut draining), "b");

    let one = base_toml(admin, 2)
        + &listener_toml("keep", l1, "c", "")
        + &cluster_toml("c", "round_robin", &[(b.addr, 1)], "");
    p.write_config(&one);
    let (code, body) = http(admin, "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"generation\":2"), "{body}");

    // The removed listener stops accepting on every worker...
    assert!(eventually(5, || std::net::TcpStream::connect(l2).is_err()));
    // ...its open connection carries on...
    echo_roundtrip(&mut draining, b"draining");
    // ...and the kept one was not touched.
    assert_eq!(which_backend(l1, None), "b");

    // A bad file through the API: 422 with the reason, generation unchanged.
    p.write_config("workers = 0\n");
    let (code, body) = http(admin, "POST", "/reload");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("workers: must be at least 1"), "{body}");
    assert_eq!(p.status()["generation"], 2);
}
