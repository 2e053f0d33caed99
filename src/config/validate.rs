//! Turns the raw [`File`] into a checked [`Config`]: applies defaults, parses addresses and
//! durations, resolves cluster references and enforces limits. Every error names the key it is
//! about (`listeners.web.cluster`) and the reason.
//!
//! Binding addresses is not checked here (that needs sockets); see `worker::listener`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use super::ConfigError;
use super::file::{ClusterFile, EndpointFile, File, ListenerFile};
use super::http::{HttpClusterFile, HttpListenerFile};
use super::model::{
    AdminConfig, ClusterConfig, Config, EndpointConfig, KeyedListener, ListenerConfig, LogConfig,
    Protocol, ReadFrom, Sharding, defaults, limits,
};
use crate::shard::ring::default_point_name;

/// Checks `file` and builds the validated configuration.
pub fn validate(file: File) -> Result<Config, ConfigError> {
    let workers = match file.workers {
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(0) => return Err(invalid("workers", "must be at least 1")),
        Some(n) if n > limits::MAX_WORKERS => {
            return Err(invalid(
                "workers",
                format!("{n} is more than the limit of {}", limits::MAX_WORKERS),
            ));
        }
        Some(n) => n,
    };
    let buffer_size = file.buffer_size.unwrap_or(defaults::BUFFER_SIZE);
    if !(limits::MIN_BUFFER..=limits::MAX_BUFFER).contains(&buffer_size) {
        return Err(invalid(
            "buffer_size",
            format!(
                "{buffer_size} is outside {}..={} bytes",
                limits::MIN_BUFFER,
                limits::MAX_BUFFER
            ),
        ));
    }
    let admin = file.admin.unwrap_or_default();
    let admin = AdminConfig {
        listen: match admin.listen {
            Some(s) => parse_addr("admin.listen", &s)?,
            None => defaults::ADMIN_LISTEN,
        },
    };
    let log = file.log.unwrap_or_default();
    let log = LogConfig {
        level: log.level.unwrap_or_else(|| defaults::LOG_LEVEL.to_owned()),
        format: log.format.unwrap_or_default(),
        access_log: log.access_log.filter(|p| p != "-").map(Into::into),
    };
    tracing_subscriber::EnvFilter::try_new(&log.level)
        .map_err(|e| invalid("log.level", format!("{:?}: {e}", log.level)))?;

    let clusters = file
        .clusters
        .into_iter()
        .map(|(name, c)| cluster(name, c))
        .collect::<Result<Vec<_>, _>>()?;
    let cluster_index: HashMap<&str, usize> = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();

    let mut listeners = Vec::with_capacity(file.listeners.len());
    let mut by_addr: HashMap<SocketAddr, String> = HashMap::new();
    by_addr.insert(admin.listen, "admin.listen".to_owned());
    for (name, l) in file.listeners {
        let key = format!("listeners.{name}");
        let l = listener(&key, name, l, &cluster_index)?;
        if let Some(other) = by_addr.insert(l.listen, format!("{key}.listen")) {
            return Err(invalid(
                format!("{key}.listen"),
                format!("address {} is already used by {other}", l.listen),
            ));
        }
        if l.protocol != Protocol::Http && clusters[l.cluster].tls.is_some() {
            return Err(invalid(
                format!("clusters.{}.tls", clusters[l.cluster].name),
                format!("{key} is not an http listener: TLS to upstreams is for http listeners"),
            ));
        }
        if let Some(r) = l.mysql.as_ref().and_then(|m| m.replicas) {
            super::mysql::check_replicas(&key, &clusters[r])?;
        }
        if matches!(l.protocol, Protocol::Redis | Protocol::Memcache)
            && clusters[l.cluster].outlier.is_some()
        {
            return Err(invalid(
                format!("clusters.{}.outlier", clusters[l.cluster].name),
                format!(
                    "{key} shards keys over this cluster: sharded clusters eject failing servers with auto_eject_hosts (twemproxy's rule), not outlier"
                ),
            ));
        }
        listeners.push(l);
    }

    Ok(Config {
        workers,
        pin_workers: file.pin_workers.unwrap_or(false),
        shutdown_timeout: match file.shutdown_timeout {
            Some(s) => parse_duration("shutdown_timeout", &s)?,
            None => defaults::SHUTDOWN_TIMEOUT,
        },
        buffer_size,
        admin,
        log,
        listeners,
        clusters,
    })
}

fn listener(
    key: &str,
    name: String,
    l: ListenerFile,
    clusters: &HashMap<&str, usize>,
) -> Result<ListenerConfig, ConfigError> {
    check_name(key, &name)?;
    let listen = parse_addr(&format!("{key}.listen"), &l.listen)?;
    let cluster = *clusters.get(l.cluster.as_str()).ok_or_else(|| {
        let mut known: Vec<&str> = clusters.keys().copied().collect();
        known.sort_unstable();
        invalid(
            format!("{key}.cluster"),
            format!(
                "unknown cluster {:?} (defined clusters: [{}])",
                l.cluster,
                known.join(", ")
            ),
        )
    })?;
    let backlog = l.backlog.unwrap_or(defaults::BACKLOG);
    if backlog == 0 {
        return Err(invalid(format!("{key}.backlog"), "must be at least 1"));
    }
    let max_connections = match l.max_connections {
        None => None,
        Some(n) => Some(NonZeroU32::new(n).ok_or_else(|| {
            invalid(
                format!("{key}.max_connections"),
                "must be at least 1 (leave it out for no limit)",
            )
        })?),
    };
    let idle_timeout = match l.idle_timeout {
        Some(s) => positive_duration(&format!("{key}.idle_timeout"), &s)?,
        None => defaults::IDLE_TIMEOUT,
    };
    let park_after = match l.park_after {
        None => Some(defaults::PARK_AFTER),
        Some(s) => Some(parse_duration(&format!("{key}.park_after"), &s)?).filter(|d| !d.is_zero()),
    };
    let protocol = l.protocol.unwrap_or_default();
    if l.auth.is_some() && protocol != Protocol::Redis {
        return Err(invalid(
            format!("{key}.auth"),
            "only redis listeners authenticate clients",
        ));
    }
    let bounded = |field: &str, v: Option<u64>, default: usize, max: u64| match v {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(invalid(
            format!("{key}.{field}"),
            format!("{n} is outside 1..={max}"),
        )),
    };
    let keyed = KeyedListener {
        auth: l.auth,
        max_pipeline: bounded(
            "max_pipeline",
            l.max_pipeline.map(u64::from),
            defaults::MAX_PIPELINE,
            u64::from(limits::MAX_PIPELINE),
        )?,
        max_bulk_len: bounded(
            "max_bulk_len",
            l.max_bulk_len,
            defaults::MAX_BULK_LEN,
            limits::MAX_BULK_LEN,
        )?,
        max_args: bounded(
            "max_args",
            l.max_args.map(u64::from),
            defaults::MAX_ARGS,
            u64::from(limits::MAX_ARGS),
        )?,
        max_query_buffer: bounded(
            "max_query_buffer",
            l.max_query_buffer,
            defaults::MAX_QUERY_BUFFER,
            limits::MAX_QUERY_BUFFER,
        )?,
    };
    let http_keys = HttpListenerFile {
        header_timeout: l.header_timeout,
        request_timeout: l.request_timeout,
        total_timeout: l.total_timeout,
        max_header_size: l.max_header_size,
        max_headers: l.max_headers,
        max_body: l.max_body,
        fast_path: l.fast_path,
        http2_max_concurrent_streams: l.http2_max_concurrent_streams,
        http2_stream_window: l.http2_stream_window,
        http2_connection_window: l.http2_connection_window,
        routes: l.routes,
        request_headers: l.request_headers,
        response_headers: l.response_headers,
    };
    let given = [
        ("header_timeout", http_keys.header_timeout.is_some()),
        ("request_timeout", http_keys.request_timeout.is_some()),
        ("total_timeout", http_keys.total_timeout.is_some()),
        ("max_header_size", http_keys.max_header_size.is_some()),
        ("max_headers", http_keys.max_headers.is_some()),
        ("max_body", http_keys.max_body.is_some()),
        ("fast_path", http_keys.fast_path.is_some()),
        (
            "http2_max_concurrent_streams",
            http_keys.http2_max_concurrent_streams.is_some(),
        ),
        (
            "http2_stream_window",
            http_keys.http2_stream_window.is_some(),
        ),
        (
            "http2_connection_window",
            http_keys.http2_connection_window.is_some(),
        ),
        ("routes", !http_keys.routes.is_empty()),
        ("request_headers", http_keys.request_headers.is_some()),
        ("response_headers", http_keys.response_headers.is_some()),
        ("access_log", l.access_log.is_some()),
    ];
    if protocol != Protocol::Http {
        if let Some((field, _)) = given.iter().find(|(_, set)| *set) {
            return Err(invalid(
                format!("{key}.{field}"),
                "applies to protocol = \"http\" listeners only",
            ));
        }
    }
    let http = super::http::listener(key, http_keys, clusters)?;
    let mysql = match (protocol, l.mysql) {
        (Protocol::Mysql, Some(m)) => Some(super::mysql::listener(key, m, cluster, clusters)?),
        (Protocol::Mysql, None) => {
            return Err(invalid(
                format!("{key}.mysql"),
                "protocol = \"mysql\" needs a [mysql] table with the users clients log in as",
            ));
        }
        (_, Some(_)) => {
            return Err(invalid(
                format!("{key}.mysql"),
                "applies to protocol = \"mysql\" listeners only",
            ));
        }
        (_, None) => None,
    };
    let tls = match l.tls {
        None => None,
        Some(_) if matches!(protocol, Protocol::Redis | Protocol::Memcache) => {
            return Err(invalid(
                format!("{key}.tls"),
                "TLS is terminated on tcp, http and mysql listeners only",
            ));
        }
        Some(t) => Some(super::tls::listener(&format!("{key}.tls"), t)?),
    };
    Ok(ListenerConfig {
        name,
        listen,
        protocol,
        cluster,
        backlog,
        max_connections,
        idle_timeout,
        park_after,
        keyed,
        http,
        tls,
        access_log: l.access_log.unwrap_or(false),
        mysql,
    })
}

fn cluster(name: String, c: ClusterFile) -> Result<ClusterConfig, ConfigError> {
    let key = format!("clusters.{name}");
    check_name(&key, &name)?;
    let sharding = sharding(&key, &c)?;
    if c.endpoints.is_empty() {
        return Err(invalid(
            format!("{key}.endpoints"),
            "a cluster needs at least one endpoint",
        ));
    }
    if c.endpoints.len() > limits::MAX_ENDPOINTS {
        return Err(invalid(
            format!("{key}.endpoints"),
            format!(
                "{} endpoints is more than the limit of {}",
                c.endpoints.len(),
                limits::MAX_ENDPOINTS
            ),
        ));
    }
    let mut endpoints = Vec::with_capacity(c.endpoints.len());
    let mut seen: HashMap<SocketAddr, String> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, e) in c.endpoints.into_iter().enumerate() {
        let ekey = format!("{key}.endpoints[{i}]");
        let e = endpoint(&ekey, e)?;
        for (addr, field) in std::iter::once((e.addr, "addr".to_owned())).chain(
            e.replicas
                .iter()
                .enumerate()
                .map(|(r, a)| (*a, format!("replicas[{r}]"))),
        ) {
            if let Some(first) = seen.insert(addr, format!("{ekey}.{field}")) {
                return Err(invalid(
                    format!("{ekey}.{field}"),
                    format!("duplicate address {addr} (also {first})"),
                ));
            }
        }
        if let Some(first) = names.insert(e.point_name.clone(), i) {
            return Err(invalid(
                format!("{ekey}.name"),
                format!(
                    "{:?} places this server where {key}.endpoints[{first}] is; names must differ",
                    e.point_name
                ),
            ));
        }
        endpoints.push(e);
    }
    let attempts = c.connect_attempts.unwrap_or(defaults::CONNECT_ATTEMPTS);
    if !(1..=limits::MAX_CONNECT_ATTEMPTS).contains(&attempts) {
        return Err(invalid(
            format!("{key}.connect_attempts"),
            format!("{attempts} is outside 1..={}", limits::MAX_CONNECT_ATTEMPTS),
        ));
    }
    if sharding.read_from == ReadFrom::Replica {
        if let Some(i) = endpoints.iter().position(|e| e.replicas.is_empty()) {
            return Err(invalid(
                format!("{key}.read_from"),
                format!(
                    "\"replica\" needs replicas on every endpoint; {key}.endpoints[{i}] has none"
                ),
            ));
        }
    }
    let cluster = ClusterConfig {
        name,
        lb: c.lb.unwrap_or_default(),
        connect_timeout: match c.connect_timeout {
            Some(s) => positive_duration(&format!("{key}.connect_timeout"), &s)?,
            None => defaults::CONNECT_TIMEOUT,
        },
        connect_attempts: (attempts as usize).min(endpoints.len()),
        endpoints,
        sharding,
        health_check: c
            .health_check
            .map(|h| super::health::check(&format!("{key}.health_check"), h))
            .transpose()?,
        outlier: c
            .outlier
            .map(|o| super::health::outlier(&format!("{key}.outlier"), o))
            .transpose()?,
        http: super::http::cluster(
            &key,
            HttpClusterFile {
                response_timeout: c.response_timeout,
                pool_max_idle: c.pool_max_idle,
                pool_idle_timeout: c.pool_idle_timeout,
                hash_on: c.hash_on,
                upstream_protocol: c.upstream_protocol,
            },
        )?,
        tls: c
            .tls
            .map(|t| super::tls::upstream(&format!("{key}.tls"), t))
            .transpose()?,
        panic_threshold: match c.panic_threshold {
            None => 0,
            Some(p) if p <= 100 => p,
            Some(p) => {
                return Err(invalid(
                    format!("{key}.panic_threshold"),
                    format!("{p} is outside 0..=100 (percent)"),
                ));
            }
        },
    };
    if let Err(e) = super::table::ring_of(&cluster) {
        return Err(invalid(format!("{key}.endpoints"), e.to_string()));
    }
    Ok(cluster)
}

/// The twemproxy-style settings of a cluster (used by redis and memcache listeners).
fn sharding(key: &str, c: &ClusterFile) -> Result<Sharding, ConfigError> {
    let hash_tag = match &c.hash_tag {
        None => None,
        Some(t) => match t.as_bytes() {
            &[open, close] => Some([open, close]),
            _ => {
                return Err(invalid(
                    format!("{key}.hash_tag"),
                    format!("{t:?} must be two characters, like \"{{}}\""),
                ));
            }
        },
    };
    let connections = c.server_connections.unwrap_or(1);
    if !(1..=limits::MAX_SERVER_CONNECTIONS).contains(&connections) {
        return Err(invalid(
            format!("{key}.server_connections"),
            format!(
                "{connections} is outside 1..={}",
                limits::MAX_SERVER_CONNECTIONS
            ),
        ));
    }
    let failure_limit = c
        .server_failure_limit
        .unwrap_or(defaults::SERVER_FAILURE_LIMIT);
    if failure_limit == 0 {
        return Err(invalid(
            format!("{key}.server_failure_limit"),
            "must be at least 1",
        ));
    }
    Ok(Sharding {
        hash: c.hash.unwrap_or_default(),
        hash_tag,
        distribution: c.distribution.unwrap_or_default(),
        timeout: match &c.timeout {
            Some(s) => positive_duration(&format!("{key}.timeout"), s)?,
            None => defaults::REQUEST_TIMEOUT,
        },
        server_connections: connections as usize,
        redis_auth: c.redis_auth.clone(),
        auto_eject_hosts: c.auto_eject_hosts.unwrap_or(false),
        server_failure_limit: failure_limit,
        server_retry_timeout: match &c.server_retry_timeout {
            Some(s) => positive_duration(&format!("{key}.server_retry_timeout"), s)?,
            None => defaults::SERVER_RETRY_TIMEOUT,
        },
        read_from: c.read_from.unwrap_or_default(),
    })
}

fn endpoint(key: &str, e: EndpointFile) -> Result<EndpointConfig, ConfigError> {
    let addr = parse_addr(&format!("{key}.addr"), &e.addr)?;
    let point_name = match e.name {
        None => default_point_name(&addr.ip().to_string(), addr.port()),
        Some(n) if !n.is_empty() && n.len() <= 256 && !n.contains(char::is_whitespace) => n,
        Some(n) => {
            return Err(invalid(
                format!("{key}.name"),
                format!("{n:?} must be 1..=256 characters without spaces"),
            ));
        }
    };
    let replicas = e
        .replicas
        .iter()
        .enumerate()
        .map(|(i, r)| parse_addr(&format!("{key}.replicas[{i}]"), r))
        .collect::<Result<Vec<_>, _>>()?;
    let weight = e.weight.unwrap_or(1);
    let weight = NonZeroU32::new(weight)
        .filter(|w| w.get() <= limits::MAX_WEIGHT)
        .ok_or_else(|| {
            invalid(
                format!("{key}.weight"),
                format!("{weight} is outside 1..={}", limits::MAX_WEIGHT),
            )
        })?;
    Ok(EndpointConfig {
        addr,
        weight,
        point_name,
        replicas,
    })
}

/// Names become metric labels and log fields: keep them to a safe alphabet.
fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= limits::MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "name {name:?} must be 1..={} characters of A-Z a-z 0-9 _ - .",
                limits::MAX_NAME_LEN
            ),
        ))
    }
}

fn parse_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    let addr: SocketAddr = s.parse().map_err(|_| {
        invalid(
            key,
            format!("{s:?} is not an IP:port address (use [::1]:80 for IPv6)"),
        )
    })?;
    if addr.port() == 0 {
        return Err(invalid(key, format!("{s:?}: port 0 is not allowed")));
    }
    Ok(addr)
}

pub(super) fn parse_duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(s).map_err(|e| {
        invalid(
            key,
            format!("{s:?} is not a duration like \"500ms\" or \"30s\": {e}"),
        )
    })?;
    if d > MAX_DURATION {
        return Err(invalid(key, format!("{s:?} is longer than 30 days")));
    }
    Ok(d)
}

pub(super) fn positive_duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration(key, s)?;
    if d.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(d)
}

/// The longest duration any setting takes: deadlines computed from it must not overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

pub(super) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::model::{LbPolicy, Protocol, defaults};
    use crate::config::{ConfigError, parse};

    const MIN: &str = r#"
        [listeners.web]
        listen = "127.0.0.1:7100"
        cluster = "app"
        [clusters.app]
        endpoints = [{ addr = "127.0.0.1:18080" }, { addr = "[::1]:18090", weight = 5 }]
    "#;

    fn err(text: &str) -> ConfigError {
        parse(text).unwrap_err()
    }

    #[test]
    fn defaults_are_applied() {
        let c = parse(MIN).unwrap();
        assert!(c.workers >= 1);
        assert!(!c.pin_workers);
        assert_eq!(c.shutdown_timeout, defaults::SHUTDOWN_TIMEOUT);
        assert_eq!(c.buffer_size, defaults::BUFFER_SIZE);
        assert_eq!(c.admin.listen, defaults::ADMIN_LISTEN);
        assert_eq!(c.log.level, "info");
        let l = &c.listeners[0];
        assert_eq!(
            (l.protocol, l.backlog, l.max_connections, l.idle_timeout),
            (Protocol::Tcp, 1024, None, defaults::IDLE_TIMEOUT)
        );
        assert_eq!(l.park_after, Some(defaults::PARK_AFTER));
        let off = parse(&MIN.replace(
            "cluster = \"app\"\n",
            "cluster = \"app\"\npark_after = \"0s\"\n",
        ))
        .unwrap();
        assert_eq!(off.listeners[0].park_after, None, "0s turns parking off");
        let k = &c.clusters[0];
        assert_eq!(
            (k.lb, k.connect_timeout, k.connect_attempts),
            (LbPolicy::RoundRobin, defaults::CONNECT_TIMEOUT, 2)
        );
        assert_eq!(k.endpoints[1].weight.get(), 5);
        assert_eq!(k.endpoints[1].addr.to_string(), "[::1]:18090");
    }

    #[test]
    fn empty_file_is_a_valid_proxy_with_nothing_to_do() {
        let c = parse("").unwrap();
        assert!(c.listeners.is_empty() && c.clusters.is_empty());
    }

    #[test]
    fn each_error_names_its_key() {
        let cases: &[(&str, &str)] = &[
            ("workers = 0", "workers"),
            ("workers = 5000", "workers"),
            ("buffer_size = 10", "buffer_size"),
            ("shutdown_timeout = \"-1s\"", "shutdown_timeout"),
            ("[admin]\nlisten = \"nowhere\"", "admin.listen"),
            ("[log]\nlevel = \"loud=[\"", "log.level"),
            ("[log]\nformat = \"xml\"", "log.format"),
        ];
        for (text, key) in cases {
            assert_eq!(err(text).key(), *key, "{text}");
        }
        let listener_cases: &[(&str, &str, &str)] = &[
            (
                "cluster = \"app\"",
                "cluster = \"nope\"",
                "listeners.web.cluster",
            ),
            (
                "listen = \"127.0.0.1:7100\"",
                "listen = \"127.0.0.1:0\"",
                "listeners.web.listen",
            ),
            (
                "cluster = \"app\"",
                "cluster = \"app\"\nbacklog = 0",
                "listeners.web.backlog",
            ),
            (
                "cluster = \"app\"",
                "cluster = \"app\"\nmax_connections = 0",
                "listeners.web.max_connections",
            ),
            (
                "cluster = \"app\"",
                "cluster = \"app\"\nidle_timeout = \"0s\"",
                "listeners.web.idle_timeout",
            ),
            (
                "cluster = \"app\"",
                "cluster = \"app\"\nprotocol = \"sctp\"",
                "listeners.web.protocol",
            ),
            (
                "cluster = \"app\"",
                "cluster = \"app\"\npark_after = \"soon\"",
                "listeners.web.park_after",
            ),
            ("[listeners.web]", "[listeners.\"we b\"]", "listeners.we b"),
            (
                "endpoints = [",
                "connect_attempts = 17\nendpoints = [",
                "clusters.app.connect_attempts",
            ),
            (
                "endpoints = [",
                "connect_timeout = \"soon\"\nendpoints = [",
                "clusters.app.connect_timeout",
            ),
            (
                "weight = 5",
                "weight = 1001",
                "clusters.app.endpoints[1].weight",
            ),
            (
                "[::1]:18090",
                "127.0.0.1:18080",
                "clusters.app.endpoints[1].addr",
            ),
        ];
        for (from, to, key) in listener_cases {
            assert!(MIN.contains(from), "{from}");
            let e = err(&MIN.replacen(from, to, 1));
            assert_eq!(e.key(), *key, "{to}: {e}");
        }
    }

    #[test]
    fn sharding_keys_are_checked() {
        let cases: &[(&str, &str)] = &[
            ("hash_tag = \"{\"", "clusters.app.hash_tag"),
            ("hash = \"sha1\"", "clusters.app.hash"),
            ("server_connections = 0", "clusters.app.server_connections"),
            (
                "server_failure_limit = 0",
                "clusters.app.server_failure_limit",
            ),
            ("read_from = \"replica\"", "clusters.app.read_from"),
            ("timeout = \"0s\"", "clusters.app.timeout"),
        ];
        for (line, key) in cases {
            let e = err(&MIN.replacen("endpoints = [", &format!("{line}\nendpoints = ["), 1));
            assert_eq!(e.key(), *key, "{line}: {e}");
        }
        let e = err(&MIN.replacen("cluster = \"app\"", "cluster = \"app\"\nauth = \"pw\"", 1));
        assert_eq!(e.key(), "listeners.web.auth");
        let named = MIN.replace(
            "{ addr = \"127.0.0.1:18080\" }, { addr = \"[::1]:18090\", weight = 5 }",
            "{ addr = \"127.0.0.1:18080\", name = \"a\" }, { addr = \"[::1]:18090\", name = \"a\" }",
        );
        assert_eq!(err(&named).key(), "clusters.app.endpoints[1].name");
    }

    #[test]
    fn admin_and_listener_addresses_must_differ() {
        let e = err(&format!("[admin]\nlisten = \"127.0.0.1:7100\"\n{MIN}"));
        assert_eq!(
            e.to_string(),
            "listeners.web.listen: address 127.0.0.1:7100 is already used by admin.listen"
        );
    }

    #[test]
    fn connect_attempts_are_capped_at_the_endpoint_count() {
        let c = parse(&MIN.replacen("endpoints = [", "connect_attempts = 9\nendpoints = [", 1))
            .unwrap();
        assert_eq!(c.clusters[0].connect_attempts, 2);
    }
}
