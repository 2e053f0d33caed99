//! MySQL read/write splitting against a real MariaDB primary (server_id 1) and replica
//! (server_id 2) from scripts/mariadb-pair.sh, with real clients: PyMySQL, the mariadb
//! command-line client and sysbench (prepared statements, binary protocol).
//!
//! Which server ran a statement is read from the statement itself (`@@server_id`), from the
//! servers' own counters (`Com_stmt_execute`), or from what only the primary accepts (the
//! replica is read_only, so a write sent there fails).

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::mariadb::{Pair, py};
use common::*;

const PRIMARY: &str = "1";
const REPLICA: &str = "2";

/// A control file: one mysql listener on `listen` over the pair, checks every 100 ms,
/// `mysql` holding extra lines for `[listeners.db.mysql]`.
fn config(admin: SocketAddr, listen: SocketAddr, pair: &Pair, mysql: &str, lag: &str) -> String {
    let check = |lag: Option<&str>| {
        format!(
            "kind = \"mysql\"\ninterval = \"100ms\"\nrise = 1\nfall = 1\nuser = \"corelane_check\"\npassword = \"corelane_check\"\n{}",
            lag.map(|l| format!("max_replication_lag = \"{l}\"\n"))
                .unwrap_or_default()
        )
    };
    format!(
        "{}{}[listeners.db.mysql]\nusers = [{{ user = \"app\", password = \"app\" }}, {{ user = \"other\", password = \"pw\", backend_user = \"app\", backend_password = \"app\" }}]\nreplicas = \"replicas\"\n{mysql}\n[clusters.primary]\nendpoints = [{{ addr = \"{}\" }}]\nconnect_timeout = \"500ms\"\n[clusters.primary.health_check]\n{}[clusters.replicas]\nendpoints = [{{ addr = \"{}\" }}]\nconnect_timeout = \"500ms\"\n[clusters.replicas.health_check]\n{}",
        base_toml(admin, 1),
        listener_toml(
            "db",
            listen,
            "primary",
            "protocol = \"mysql\"\nidle_timeout = \"60s\""
        ),
        pair.primary,
        check(None),
        pair.replica,
        check(Some(lag)),
    )
}

fn addrs() -> (SocketAddr, SocketAddr) {
    let p = free_ports(2);
    (
        SocketAddr::from(([127, 0, 0, 1], p[0])),
        SocketAddr::from(([127, 0, 0, 1], p[1])),
    )
}

/// Waits until corelane's checks see the replica in `state`.
fn replica_state(p: &Proxy, state: &str) -> bool {
    eventually(10, || {
        let s = p.status();
        s["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == "replicas")
            .is_some_and(|c| c["endpoints"][0]["health"]["state"] == state)
    })
}

fn setup_schema(pair: &Pair) {
    pair.sql(
        "primary",
        "CREATE TABLE shop.items (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(32)) ENGINE=InnoDB;
         INSERT INTO shop.items (v) VALUES ('a'), ('b'), ('c');
         CREATE SEQUENCE shop.seq;
         DELIMITER //
         CREATE PROCEDURE shop.opens_and_fails() BEGIN
           START TRANSACTION; INSERT INTO shop.items (v) VALUES ('p'); SELECT * FROM shop.nothing;
         END//",
    );
    pair.sync();
}

/// Every routing rule, seen through PyMySQL and `@@server_id`.
#[test]
fn statements_go_where_they_must() {
    let pair = Pair::start();
    setup_schema(&pair);
    let (admin, listen) = addrs();
    let p = Proxy::start(&config(admin, listen, &pair, "", "10s"), admin);
    assert!(replica_state(&p, "up"));

    let out = py(
        listen,
        r#"
c = connect()
sid = lambda sql: str(one(c, sql)[0])
print("select", sid("SELECT @@server_id"))
print("show", one(c, "SHOW VARIABLES LIKE 'server_id'")[1])
print("paren", sid("  ( SELECT @@server_id )"))
print("comment", sid("/* hello */ select @@server_id -- tail"))
print("for_update", sid("SELECT @@server_id FROM items WHERE id = 1 FOR UPDATE"))
print("share_mode", sid("SELECT @@server_id FROM items WHERE id = 1 LOCK IN SHARE MODE"))
print("get_lock", sid("SELECT @@server_id + GET_LOCK('k', 0) - 1"))
print("release_lock", sid("SELECT @@server_id + RELEASE_LOCK('k') - 1"))
print("is_free_lock", sid("SELECT @@server_id + IS_FREE_LOCK('k') - 1"))
print("last_insert_id", sid("SELECT @@server_id + LAST_INSERT_ID() * 0"))
print("identity", sid("SELECT @@server_id + COALESCE(@@identity, 0) * 0"))
print("nextval", sid("SELECT @@server_id + NEXTVAL(seq) * 0"))
print("hint_primary", sid("/* corelane:primary */ SELECT @@server_id"))
print("hint_replica", sid("/* corelane:replica */ SELECT @@server_id"))
# Writes: the replica is read_only, so any of these reaching it would fail.
cur = c.cursor()
cur.execute("INSERT INTO items (v) VALUES ('w')")
cur.execute("UPDATE items SET v = 'x' WHERE id = 1")
cur.execute("REPLACE INTO items (id, v) VALUES (2, 'y')")
cur.execute("DELETE FROM items WHERE v = 'nothing'")
cur.execute("CREATE TABLE IF NOT EXISTS ddl_test (x INT)")
cur.execute("DROP TABLE ddl_test")
print("writes ok")
# A transaction: everything on the primary, and it sees its own write at once.
cur.execute("BEGIN")
print("in_trx", sid("SELECT @@server_id"))
cur.execute("INSERT INTO items (v) VALUES ('trx')")
print("own_write", one(c, "SELECT COUNT(*) FROM items WHERE v = 'trx'")[0])
cur.execute("COMMIT")
print("after_commit", sid("SELECT @@server_id"))
cur.execute("START TRANSACTION")
print("start_trx", sid("SELECT @@server_id"))
cur.execute("ROLLBACK")
# autocommit off: a transaction until it is back on.
c.autocommit(False)
print("autocommit0", sid("SELECT @@server_id"))
c.commit()
print("autocommit0_after_commit", sid("SELECT @@server_id"))
c.autocommit(True)
print("autocommit1", sid("SELECT @@server_id"))
# A read-only transaction may run on the replica, all of it.
cur.execute("START TRANSACTION READ ONLY")
print("ro_trx", sid("SELECT @@server_id"), sid("SELECT @@server_id"))
cur.execute("COMMIT")
# SHOW WARNINGS goes where the previous statement ran.
cur.execute("SELECT @@server_id + CAST('1x' AS INT) * 0")
print("warnings_replica", len(one(c, "SHOW WARNINGS") or ()))
"#,
    );
    let got: Vec<(&str, &str)> = out
        .lines()
        .map(|l| l.split_once(' ').unwrap_or((l, "")))
        .collect();
    let want = [
        ("select", REPLICA),
        ("show", REPLICA),
        ("paren", REPLICA),
        ("comment", REPLICA),
        ("for_update", PRIMARY),
        ("share_mode", PRIMARY),
        ("get_lock", PRIMARY),
        ("release_lock", PRIMARY),
        ("is_free_lock", PRIMARY),
        ("last_insert_id", PRIMARY),
        ("identity", PRIMARY),
        ("nextval", PRIMARY),
        ("hint_primary", PRIMARY),
        ("hint_replica", REPLICA),
        ("writes", "ok"),
        ("in_trx", PRIMARY),
        ("own_write", "1"),
        ("after_commit", REPLICA),
        ("start_trx", PRIMARY),
        ("autocommit0", PRIMARY),
        ("autocommit0_after_commit", PRIMARY),
        ("autocommit1", REPLICA),
        ("ro_trx", "2 2"),
        ("warnings_replica", "3"),
    ];
    assert_eq!(got, want, "full output:\n{out}");

    // Session state: SET and USE replayed on a connection opened later; pinning.
    let out = py(
        listen,
        r#"
c = connect(database=None)
cur = c.cursor()
cur.execute("SET SESSION group_concat_max_len = 1234")   # opens the primary only
cur.execute("USE shop")
print("replayed", one(c, "SELECT @@server_id, @@group_concat_max_len, DATABASE()"))
cur.execute("SET NAMES latin1")                            # now runs on both
print("both", one(c, "SELECT @@server_id, @@character_set_client"),
      one(c, "/* corelane:primary */ SELECT @@server_id, @@character_set_client"))
c2 = connect()
cur2 = c2.cursor()
cur2.execute("SET @mine = 7")
print("uservar", one(c2, "SELECT @@server_id, @mine"))
print("pinned", one(c2, "SELECT @@server_id"))
c3 = connect()
c3.cursor().execute("CREATE TEMPORARY TABLE tmp (x INT)")
print("temp", one(c3, "SELECT @@server_id"))
c4 = connect(client_flag=CLIENT.MULTI_STATEMENTS)
cur4 = c4.cursor()
cur4.execute("SELECT @@server_id; SELECT 2")
print("multi", cur4.fetchone()[0])
print("after_multi", one(c4, "SELECT @@server_id")[0])
"#,
    );
    let want = "replayed (2, 1234, 'shop')\nboth (2, 'latin1') (1, 'latin1')\nuservar (1, 7)\npinned (1,)\ntemp (1,)\nmulti 1\nafter_multi 2";
    assert_eq!(out, want);

    // Harder cases: pinning inside a transaction; a failed CALL that left a transaction open
    // (an ERR carries no status flags); connections the servers closed while idle.
    let out = py(
        listen,
        r#"
c = connect()
cur = c.cursor()
cur.execute("BEGIN")
cur.execute("CREATE TEMPORARY TABLE tmp (x INT)")
cur.execute("COMMIT")
print("temp_in_trx", one(c, "SELECT @@server_id")[0])
c2 = connect()
print("failed_call", err(lambda: c2.cursor().execute("CALL opens_and_fails()")), one(c2, "SELECT @@server_id")[0])
c2.cursor().execute("ROLLBACK")
print("after_rollback", one(c2, "SELECT @@server_id")[0])
c3 = connect()
c3.cursor().execute("SET SESSION wait_timeout = 1")
print("opened", one(c3, "SELECT @@server_id")[0])
time.sleep(2.5)    # both servers close the session's idle connections
c3.cursor().execute("INSERT INTO items (v) VALUES ('after idle')")
print("after_idle", one(c3, "SELECT @@server_id")[0], one(c3, "SELECT @@server_id FOR UPDATE")[0])
time.sleep(2.5)
c3.cursor().execute("SET NAMES utf8mb4")            # a session command, connections closed
print("dup", err(lambda: c3.cursor().execute("INSERT INTO items (id, v) VALUES (1, 'dup')")))
time.sleep(2.5)
c3.cursor().execute("CREATE TEMPORARY TABLE t3 (x INT)")  # a pinning one, after a failed write
print("pinned_after_idle", one(c3, "SELECT @@server_id")[0])
"#,
    );
    assert_eq!(
        out,
        "temp_in_trx 1\nfailed_call 1146 1\nafter_rollback 2\nopened 2\nafter_idle 2 1\ndup 1062\npinned_after_idle 1"
    );

    // The mariadb command-line client, and a user mapped to other backend credentials.
    let out = Command::new("mariadb")
        .args(["-h127.0.0.1", &format!("-P{}", listen.port()), "-uother", "-ppw", "shop", "-N", "-B"])
        .args(["-e", "SELECT @@server_id; INSERT INTO items (v) VALUES ('cli'); SELECT @@server_id, COUNT(*) > 0 FROM items WHERE v = 'cli' FOR UPDATE"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n1\t1\n");

    // Wrong password, unknown user: ERR 1045 from corelane, as a server would say it.
    let out = py(
        listen,
        r#"
print(err(lambda: connect(password="nope")), err(lambda: connect(user="nobody")))
"#,
    );
    assert_eq!(out, "1045 1045");
    // KILL would reach a server with an id it does not know: refused, also when the command
    // takes two packets (over 16 MiB: corelane's reply must then carry sequence id 2).
    let out = py(
        listen,
        r#"
c = connect()
print(err(lambda: c.cursor().execute("KILL 1")), err(lambda: c.cursor().execute("KILL 1 /*" + "x" * (17 << 20) + "*/")), one(c, "SELECT 1")[0])
"#,
    );
    assert_eq!(out, "1235 1235 1");
}

/// Prepared statements (binary protocol) from sysbench: reads executed on the replica,
/// writes and transactions on the primary, with zero errors.
#[test]
fn prepared_statements_from_sysbench() {
    let pair = Pair::start();
    let (admin, listen) = addrs();
    let p = Proxy::start(&config(admin, listen, &pair, "", "10s"), admin);
    assert!(replica_state(&p, "up"));
    let sysbench = |test: &str, extra: &[&str], cmd: &str| {
        let out = Command::new("sysbench")
            .arg(test)
            .args([
                "--db-driver=mysql",
                "--mysql-host=127.0.0.1",
                "--mysql-user=app",
                "--mysql-password=app",
                "--mysql-db=shop",
            ])
            .arg(format!("--mysql-port={}", listen.port()))
            .args([
                "--tables=1",
                "--table-size=200",
                "--threads=2",
                "--time=2",
                "--db-ps-mode=auto",
            ])
            .args(extra)
            .arg(cmd)
            .output()
            .expect("sysbench must be installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "sysbench {test} {cmd}:\n{text}");
        text
    };
    sysbench("oltp_read_write", &[], "prepare");
    pair.sync();
    let executes = |s: &str| pair.counter(s, "Com_stmt_execute");
    let (p0, r0) = (executes("primary"), executes("replica"));
    let out = sysbench("oltp_read_only", &["--skip_trx=on"], "run");
    assert!(
        out.contains("ignored errors:                      0"),
        "{out}"
    );
    let (p1, r1) = (executes("primary"), executes("replica"));
    assert!(r1 - r0 > 100, "reads executed on the replica: {}", r1 - r0);
    assert!(p1 - p0 < 10, "reads executed on the primary: {}", p1 - p0);
    // corelane's own per-endpoint counters agree: the replica got the statements.
    let m = p.metrics();
    let sent = |cluster: &str, addr: SocketAddr| {
        metric(
            &m,
            &format!(
                "corelane_endpoint_requests_total{{cluster=\"{cluster}\",endpoint=\"{addr}\"}}"
            ),
        )
        .unwrap_or(0.0) as u64
    };
    assert!(sent("replicas", pair.replica) >= r1 - r0, "{m}");
    assert!(
        metric(
            &m,
            "corelane_listener_received_bytes_total{listener=\"db\"}"
        )
        .unwrap_or(0.0)
            > 0.0
    );

    // Read-write transactions: all on the primary (reads inside BEGIN included).
    // (sysbench retries deadlocks, which two threads on a small table do meet: the run
    // failing is what an error looks like.)
    sysbench("oltp_read_write", &[], "run");
    let (p2, r2) = (executes("primary"), executes("replica"));
    assert!(
        p2 - p1 > 100,
        "transactions executed on the primary: {}",
        p2 - p1
    );
    assert!(
        r2 - r1 < 10,
        "transaction statements executed on the replica: {}",
        r2 - r1
    );
}

/// The replica leaves reads when replication stops or lags past the limit, and when it is
/// killed; reads fall back to the primary and come back when it recovers. A killed primary
/// gives writes a clear error.
#[test]
fn replication_trouble_and_dead_backends() {
    let pair = Pair::start();
    setup_schema(&pair);
    let (admin, listen) = addrs();
    let strict = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = config(admin, listen, &pair, "", "1s")
        + &listener_toml("strict", strict, "primary", "protocol = \"mysql\"")
        + "[listeners.strict.mysql]\nusers = [{ user = \"app\", password = \"app\" }]\nreplicas = \"replicas\"\nno_replica = \"error\"\n";
    let p = Proxy::start(&cfg, admin);
    assert!(replica_state(&p, "up"));
    let sid = || py(listen, r#"print(one(connect(), "SELECT @@server_id")[0])"#);
    assert_eq!(sid(), REPLICA);

    // Replication stopped: the lag is NULL, reads go to the primary (or, with
    // no_replica = "error", get an error that says why).
    pair.sql("replica", "STOP SLAVE");
    assert!(replica_state(&p, "down"));
    assert_eq!(sid(), PRIMARY);
    let out = py(
        strict,
        r#"
c = connect()
try:
    one(c, "SELECT @@server_id")
except pymysql.MySQLError as e:
    print(e.args[0], "no usable replica" in e.args[1])
print(one(c, "SELECT @@server_id FOR UPDATE")[0])
"#,
    );
    assert_eq!(out, "1105 True\n1");
    pair.sql("replica", "START SLAVE");
    assert!(replica_state(&p, "up"));
    assert_eq!(sid(), REPLICA);

    // Lag beyond max_replication_lag (1s): the replica applies events 4 s late.
    pair.sql(
        "replica",
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 4; START SLAVE",
    );
    pair.sql("primary", "INSERT INTO shop.items (v) VALUES ('late')");
    assert!(replica_state(&p, "down"), "a replica 4 s behind stays up");
    assert_eq!(sid(), PRIMARY);
    pair.sql(
        "replica",
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE",
    );
    assert!(replica_state(&p, "up"));

    // A session whose replica dies: its next read goes to the primary at once.
    let out = py(
        listen,
        &format!(
            r#"
import subprocess
c = connect()
print(one(c, "SELECT @@server_id")[0])
subprocess.run(["kill", "-9", open("{}/replica.pid").read().strip()])
time.sleep(0.3)
print(one(c, "SELECT @@server_id")[0])
c2 = connect()
print(one(c2, "SELECT @@server_id")[0])
"#,
            pair.dir.display()
        ),
    );
    assert_eq!(out, "2\n1\n1");

    // The primary dies: a write gets an ERR that says so; the session is not hung.
    pair.kill("primary");
    let out = py(
        listen,
        r#"
c = connect()
try:
    c.cursor().execute("INSERT INTO items (v) VALUES ('z')")
    print("no error")
except pymysql.MySQLError as e:
    print(e.args[0], "unavailable" in e.args[1])
"#,
    );
    assert_eq!(out, "1105 True");
}

/// Idle sessions are parked (`park_after`) with their backend connections, and carry on where
/// they were: the same server connection, its transaction and session variables. A backend
/// connection lost while parked is replaced, unless the session's transaction was on it; a
/// parked session that idles out says COM_QUIT to its backends. Idle time counts from the
/// answer to the last command.
#[test]
fn idle_sessions_are_parked_with_their_connections() {
    let pair = Pair::start();
    setup_schema(&pair);
    let (admin, listen) = addrs();
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/certs");
    let cfg = config(admin, listen, &pair, "", "10s").replace(
        "idle_timeout = \"60s\"",
        "idle_timeout = \"6s\"\npark_after = \"200ms\"",
    ) + &format!(
        "[listeners.db.tls]\ncertificates = [{{ cert = \"{certs}/localhost.crt\", key = \"{certs}/localhost.key\", names = [\"localhost\"] }}]\n"
    );
    let p = Proxy::start(&cfg, admin);
    assert!(replica_state(&p, "up"));
    let out = py(
        listen,
        &format!(
            r#"
import urllib.request
def gauge(kind):
    m = urllib.request.urlopen("http://{admin}/metrics").read().decode()
    for line in m.splitlines():
        if line.startswith('corelane_listener_connections_%s{{listener="db"}}' % kind):
            return float(line.split()[-1])
def wait_parked(n):
    for _ in range(100):
        if gauge("parked") == n:
            return True
        time.sleep(0.05)
    return False
direct = pymysql.connect(host="127.0.0.1", port={primary}, user="app", password="app", database="shop", autocommit=True)
cid = lambda c: one(c, "/* corelane:primary */ SELECT CONNECTION_ID()")[0]

# a: a transaction and a session variable; b: a plain connection to the primary;
# t: a transaction whose connection will be killed.
a = connect()
a.cursor().execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
a.cursor().execute("BEGIN")
a.cursor().execute("INSERT INTO items (v) VALUES ('parked')")
a_id = cid(a)
b = connect()
b_id = cid(b)
t = connect()
t.cursor().execute("BEGIN")
t.cursor().execute("INSERT INTO items (v) VALUES ('lost')")
t_id = cid(t)
# s: over TLS, with a transaction and a session variable. (Its context tells a TLS connection
# cut without a close_notify from a clean end.)
import ssl
strict = ssl.create_default_context(cafile="{certs}/ca.crt")
strict.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
s = connect(ssl=strict, host="localhost")
s.cursor().execute("SET SESSION sql_mode = 'NO_ZERO_DATE'")
s.cursor().execute("BEGIN")
s_id = cid(s)
print("parked", wait_parked(4), gauge("active"))
direct.cursor().execute("KILL %d" % b_id)
direct.cursor().execute("KILL %d" % t_id)
time.sleep(0.2)

print("same connection", cid(a) == a_id)
print("in its transaction", one(a, "SELECT COUNT(*) FROM items WHERE v = 'parked'")[0], one(direct, "SELECT COUNT(*) FROM items WHERE v = 'parked'")[0])
print("sql_mode", one(a, "SELECT @@sql_mode")[0])
a.cursor().execute("ROLLBACK")
print("rolled back", one(a, "/* corelane:primary */ SELECT COUNT(*) FROM items WHERE v = 'parked'")[0])
print("tls", type(s._sock).__name__, cid(s) == s_id, one(s, "SELECT @@in_transaction, @@sql_mode"))
s.cursor().execute("ROLLBACK")
new_b = cid(b)
print("replaced", new_b != b_id)
print("transaction lost", err(lambda: t.cursor().execute("SELECT 1")))
print("closed", err(lambda: t.cursor().execute("SELECT 1")) is not None)
print("lost row", one(direct, "SELECT COUNT(*) FROM items WHERE v = 'lost'")[0])

# Parked until the idle timeout (6 s): closed, with COM_QUIT to its backend (a server counts
# a client that closes without one in Aborted_clients).
aborted = lambda: int(one(direct, "SHOW GLOBAL STATUS LIKE 'Aborted_clients'")[1])
before = aborted()
print("parked again", wait_parked(3))
for _ in range(200):
    if gauge("active") == 0:
        break
    time.sleep(0.05)
print("idled out", gauge("active"), gauge("parked"))
print("client closed", err(lambda: b.cursor().execute("SELECT 1")) is not None)
# A TLS session that idles out ends with a close_notify: its client reads a clean end, not a
# truncation (which raises with ragged EOFs not suppressed).
s._sock.suppress_ragged_eofs = False
try:
    print("tls closed cleanly", s._sock.recv(1))
except Exception as e:
    print("tls closed cleanly", repr(e))
for _ in range(100):
    if one(direct, "SELECT COUNT(*) FROM information_schema.processlist WHERE id = %d" % new_b)[0] == 0:
        break
    time.sleep(0.05)
print("backend gone", one(direct, "SELECT COUNT(*) FROM information_schema.processlist WHERE id IN (%d, %d, %d)" % (a_id, new_b, s_id))[0])
print("said goodbye", aborted() - before)

# Idle time counts from a command's answer: a statement longer than idle_timeout is not idleness.
l = connect()
slept = one(l, "SELECT SLEEP(6.5)")[0]
time.sleep(0.5)  # past a tick of the session's idle timer before the next command
print("long statement", slept, one(l, "SELECT 1")[0])
"#,
            primary = pair.primary.port(),
        ),
    );
    assert_eq!(
        out,
        "parked True 4.0\n\
         same connection True\n\
         in its transaction 1 0\n\
         sql_mode ANSI_QUOTES\n\
         rolled back 0\n\
         tls SSLSocket True (1, 'NO_ZERO_DATE')\n\
         replaced True\n\
         transaction lost 2013\n\
         closed True\n\
         lost row 0\n\
         parked again True\n\
         idled out 0.0 0.0\n\
         client closed True\n\
         tls closed cleanly b''\n\
         backend gone 0\n\
         said goodbye 0\n\
         long statement 0 1",
        "{}",
        p.log_text()
    );
}

/// Read-your-writes: by time, and by GTID (MASTER_GTID_WAIT on the replica).
#[test]
fn read_your_writes() {
    let pair = Pair::start();
    setup_schema(&pair);
    let (admin, listen) = addrs();
    let cfg = config(
        admin,
        listen,
        &pair,
        "read_your_writes = \"gtid\"\ngtid_wait_timeout = \"2s\"",
        "10s",
    ) + &listener_toml(
        "timed",
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        "primary",
        "protocol = \"mysql\"",
    ) + "[listeners.timed.mysql]\nusers = [{ user = \"app\", password = \"app\" }]\nreplicas = \"replicas\"\nread_your_writes = \"700ms\"\n";
    let p = Proxy::start(&cfg, admin);
    assert!(replica_state(&p, "up"));
    let timed: SocketAddr = p.status()["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "timed")
        .and_then(|l| l["listen"].as_str()?.parse().ok())
        .unwrap();

    // GTID: every read right after a write is served by the replica and sees the write.
    let out = py(
        listen,
        r#"
c = connect()
cur = c.cursor()
seen = set()
for i in range(30):
    cur.execute("INSERT INTO items (v) VALUES (%s)", ("g%d" % i,))
    seen.add(one(c, "SELECT @@server_id, COUNT(*) FROM items WHERE v = %s", ("g%d" % i,)))
print(sorted(seen))
# The write's own warnings are still there to be read: the GTID is read later, before the
# next replica read.
cur.execute("INSERT IGNORE INTO items (v) VALUES (REPEAT('x', 40))")
print(one(c, "SHOW WARNINGS")[1], one(c, "SELECT @@server_id, COUNT(*) FROM items WHERE v = REPEAT('x', 32)"))
"#,
    );
    assert_eq!(out, "[(2, 1)]\n1265 (2, 1)");

    // Time: reads go to the primary for 700 ms after a write.
    let out = py(
        timed,
        r#"
c = connect()
print(one(c, "SELECT @@server_id")[0])
c.cursor().execute("INSERT INTO items (v) VALUES ('t')")
print(one(c, "SELECT @@server_id")[0])
time.sleep(0.9)
print(one(c, "SELECT @@server_id")[0])
"#,
    );
    assert_eq!(out, "2\n1\n2");
}

/// caching_sha2_password (MySQL 8's default) by its fast path, and COM_CHANGE_USER /
/// COM_RESET_CONNECTION clearing session state.
#[test]
fn caching_sha2_and_session_reset() {
    let pair = Pair::start();
    let (admin, listen) = addrs();
    let p = Proxy::start(
        &config(
            admin,
            listen,
            &pair,
            "auth_plugin = \"caching_sha2_password\"",
            "10s",
        ),
        admin,
    );
    assert!(replica_state(&p, "up"));
    let out = py(
        listen,
        r#"
c = connect()
print(one(c, "SELECT @@server_id")[0])
print(err(lambda: connect(password="bad")))
c.cursor().execute("SET @x = 1")
print(one(c, "SELECT @@server_id, @x"))
c.ping()
c2 = connect()
c2.cursor().execute("SET @x = 5")
c2._execute_command(31, b"")   # COM_RESET_CONNECTION
c2._read_ok_packet()
print(one(c2, "SELECT @@server_id, @x"))
# COM_CHANGE_USER, from libmariadb (python3-mysqldb): a new login, a fresh session.
import MySQLdb
m = MySQLdb.connect(host="127.0.0.1", port=c.port, user="app", password="app", database="shop")
m.autocommit(True)
def q(sql):
    cur = m.cursor()
    cur.execute(sql)
    return cur.fetchall()
q("SET @y = 3")
print(q("SELECT @@server_id, @y"))
m.change_user("other", "pw", "shop")
# A fresh session: not pinned any more (the replica reads), the user variable gone.
print(q("SELECT @@server_id"), q("SELECT @@server_id, @y"), q("SELECT CURRENT_USER()"))
try:
    m.change_user("other", "wrong", "shop")
    print("changed")
except MySQLdb.OperationalError as e:
    print(e.args[0])
"#,
    );
    assert_eq!(
        out,
        "2\n1045\n(1, 1)\n(1, None)\n((1, 3),)\n((2,),) ((1, None),) (('app@%',),)\n1045"
    );
}

/// TLS from clients (rustls, the SSL request of the MySQL handshake), and hostile input: a
/// malformed login, an oversized packet and an unknown command each get a MySQL ERR, and other
/// clients are not disturbed.
#[test]
fn tls_and_bad_input() {
    let pair = Pair::start();
    let (admin, listen) = addrs();
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/certs");
    let cfg = config(admin, listen, &pair, "max_packet = 4096", "10s")
        + &format!(
            "[listeners.db.tls]\nhandshake_timeout = \"1s\"\ncertificates = [{{ cert = \"{certs}/localhost.crt\", key = \"{certs}/localhost.key\", names = [\"localhost\"] }}]\n"
        );
    let p = Proxy::start(&cfg, admin);
    assert!(replica_state(&p, "up"));
    let out = py(
        listen,
        &format!(
            r#"
import ssl, socket, struct
c = connect(ssl={{"ca": "{certs}/ca.crt"}}, host="localhost")
print(type(c._sock).__name__, one(c, "SELECT @@server_id")[0])
plain = connect()
print(type(plain._sock).__name__, one(plain, "SELECT @@server_id")[0])

def raw_err(send):
    s = socket.create_connection(("127.0.0.1", {port}))
    s.recv(4096)                       # the greeting
    s.sendall(send)
    r = s.recv(4096)
    return r[4], struct.unpack("<H", r[5:7])[0]
print("junk login", raw_err(b"\x05\x00\x00\x01junk!"))
print("huge login", raw_err(b"\xff\xff\xff\x01" + b"x" * 100))
big = connect()
print("huge query", err(lambda: one(big, "SELECT '" + "x" * 5000 + "'")))

# Clients that stall during the login are dropped after handshake_timeout (1 s): one silent
# after the greeting, one silent after being asked to switch to mysql_native_password.
def stalled(send):
    s = socket.create_connection(("127.0.0.1", {port}))
    s.settimeout(5)
    s.recv(4096)
    if send:
        s.sendall(send)
        assert s.recv(4096)[4] == 0xFE          # the auth switch request
    t = time.time()
    closed = s.recv(4096) == b""
    return closed and time.time() - t < 3
caps = 0x200 | 0x8000 | 0x80000                   # PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH
login = struct.pack("<IIB", caps, 1 << 24, 45) + bytes(23) + b"app\0" + b"\0" + b"client_ed25519\0"
print("stalled", stalled(None), stalled(struct.pack("<I", len(login))[:3] + b"\x01" + login))

# A client switched to mysql_native_password that sends its first command with its answer:
# both are answered (the command is not lost when the session leaves its login).
import hashlib
def native(scramble, pw):
    h1 = hashlib.sha1(pw).digest()
    h3 = hashlib.sha1(scramble + hashlib.sha1(h1).digest()).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))
def pipelined_after_switch():
    s = socket.create_connection(("127.0.0.1", {port}))
    s.settimeout(3)
    s.recv(4096)
    s.sendall(struct.pack("<I", len(login))[:3] + b"\x01" + login)
    switch = s.recv(4096)
    scramble = switch[5 + len(b"mysql_native_password\0"):][:20]
    auth = native(scramble, b"app")
    s.sendall(struct.pack("<I", len(auth))[:3] + b"\x03" + auth + b"\x01\x00\x00\x00\x0e")
    buf, firsts = b"", []
    try:
        while len(firsts) < 2:
            buf += s.recv(4096)
            while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:3], "little"):
                n = int.from_bytes(buf[:3], "little")
                firsts.append(buf[4])
                buf = buf[4 + n:]
    except socket.timeout:
        pass
    return firsts
print("pipelined after a switch", pipelined_after_switch())

plain._execute_command(0x99, b"")
print("unknown command", err(plain._read_ok_packet))
print("still serving", one(plain, "SELECT 1")[0], one(c, "SELECT 1")[0])
"#,
            port = listen.port()
        ),
    );
    assert_eq!(
        out,
        "SSLSocket 2\nsocket 2\njunk login (255, 1043)\nhuge login (255, 1043)\nhuge query 1153\nstalled True True\npipelined after a switch [0, 0]\nunknown command 1047\nstill serving 1 1"
    );
}
