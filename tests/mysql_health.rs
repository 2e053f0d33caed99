//! The `mysql` health check against a real MariaDB primary and replica
//! (scripts/mariadb-pair.sh): login, `SELECT 1`, and for replicas `read_only` and lag.

mod common;

use std::net::SocketAddr;

use common::mariadb::Pair;
use common::*;

fn health(p: &Proxy, cluster: &str) -> serde_json::Value {
    let s = p.status();
    s["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cluster)
        .map(|c| c["endpoints"][0]["health"].clone())
        .unwrap_or_else(|| panic!("no cluster {cluster} in {s}"))
}

#[test]
fn mysql_checks_log_in_and_watch_replication() {
    let pair = Pair::start();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let check = |user: &str, password: &str, lag: Option<&str>| {
        format!(
            "kind = \"mysql\"\ninterval = \"100ms\"\nrise = 1\nfall = 1\nuser = \"{user}\"\npassword = \"{password}\"\n{}",
            lag.map(|l| format!("max_replication_lag = \"{l}\"\n"))
                .unwrap_or_default()
        )
    };
    let mut cfg = base_toml(admin, 1);
    for (name, addr, chk) in [
        (
            "primary",
            pair.primary,
            check("corelane_check", "corelane_check", None),
        ),
        (
            "replica",
            pair.replica,
            check("corelane_check", "corelane_check", Some("10s")),
        ),
        (
            "primary_as_replica",
            pair.primary,
            check("corelane_check", "corelane_check", Some("10s")),
        ),
        (
            "wrong_password",
            pair.primary,
            check("corelane_check", "nope", None),
        ),
    ] {
        cfg += &format!(
            "[clusters.{name}]\nendpoints = [{{ addr = \"{addr}\" }}]\n[clusters.{name}.health_check]\n{chk}"
        );
    }
    // A listener so the file has one (the checks do not need traffic).
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg += &listener_toml("db", listen, "primary", "");
    let p = Proxy::start(&cfg, admin);

    let settled = |cluster: &str, state: &str| {
        eventually(5, || {
            health(&p, cluster)["last_check"].is_object() && health(&p, cluster)["state"] == state
        })
    };
    assert!(settled("primary", "up"), "{}", health(&p, "primary"));
    assert!(settled("replica", "up"), "{}", health(&p, "replica"));
    assert!(
        settled("primary_as_replica", "down"),
        "{}",
        health(&p, "primary_as_replica")
    );
    assert!(
        health(&p, "primary_as_replica")["reason"]
            .as_str()
            .unwrap()
            .contains("not read_only")
    );
    assert!(
        settled("wrong_password", "down"),
        "{}",
        health(&p, "wrong_password")
    );
    let why = health(&p, "wrong_password")["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(why.contains("ERROR 1045 (28000)"), "{why}");

    // Replication stopped: the lag is NULL and the replica goes out; started: it comes back.
    pair.sql("replica", "STOP SLAVE");
    assert!(settled("replica", "down"), "{}", health(&p, "replica"));
    assert!(
        health(&p, "replica")["reason"]
            .as_str()
            .unwrap()
            .contains("replication is stopped")
    );
    pair.sql("replica", "START SLAVE");
    assert!(settled("replica", "up"), "{}", health(&p, "replica"));
}
