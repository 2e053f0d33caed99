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
use super::model::{
    AdminConfig, ClusterConfig, Config, EndpointConfig, ListenerConfig, LogConfig, defaults, limits,
};

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
    Ok(ListenerConfig {
        name,
        listen,
        protocol: l.protocol.unwrap_or_default(),
        cluster,
        backlog,
        max_connections,
        idle_timeout,
    })
}

fn cluster(name: String, c: ClusterFile) -> Result<ClusterConfig, ConfigError> {
    let key = format!("clusters.{name}");
    check_name(&key, &name)?;
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
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, e) in c.endpoints.into_iter().enumerate() {
        let ekey = format!("{key}.endpoints[{i}]");
        let e = endpoint(&ekey, e)?;
        if let Some(first) = seen.insert(e.addr, i) {
            return Err(invalid(
                format!("{ekey}.addr"),
                format!(
                    "duplicate endpoint {} (also {key}.endpoints[{first}])",
                    e.addr
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
    Ok(ClusterConfig {
        name,
        lb: c.lb.unwrap_or_default(),
        connect_timeout: match c.connect_timeout {
            Some(s) => positive_duration(&format!("{key}.connect_timeout"), &s)?,
            None => defaults::CONNECT_TIMEOUT,
        },
        connect_attempts: (attempts as usize).min(endpoints.len()),
        endpoints,
    })
}

fn endpoint(key: &str, e: EndpointFile) -> Result<EndpointConfig, ConfigError> {
    let addr = parse_addr(&format!("{key}.addr"), &e.addr)?;
    let weight = e.weight.unwrap_or(1);
    let weight = NonZeroU32::new(weight)
        .filter(|w| w.get() <= limits::MAX_WEIGHT)
        .ok_or_else(|| {
            invalid(
                format!("{key}.weight"),
                format!("{weight} is outside 1..={}", limits::MAX_WEIGHT),
            )
        })?;
    Ok(EndpointConfig { addr, weight })
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

fn parse_duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s).map_err(|e| {
        invalid(
            key,
            format!("{s:?} is not a duration like \"500ms\" or \"30s\": {e}"),
        )
    })
}

fn positive_duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration(key, s)?;
    if d.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(d)
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}
