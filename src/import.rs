//! `corelane import-twemproxy`: reads a twemproxy (nutcracker) YAML file and writes an
//! equivalent corelane control file, as TOML text.
//!
//! Two steps, each testable alone: [`parse`] reads the pools with nutcracker's rules
//! (`nc_conf.c`: every value is a scalar, numbers are plain decimal digits, `servers` are
//! `host:port:weight [name]` split from the right), and [`render`] writes one listener and one
//! cluster per pool, in file order, with every setting spelled out (twemproxy's defaults
//! included) so that the output reads as a complete description.
//!
//! Key placement stays identical: hash, distribution, hash tag, weights and each server's
//! point name (the string ketama hashes) are carried over. Where corelane's default name for
//! an endpoint would differ from nutcracker's (a host name, a port written with leading zeros,
//! a non-canonical IPv6 literal), nutcracker's name is written out.
//!
//! What it does not do: host names are resolved once, here (corelane addresses are IP
//! literals; nutcracker resolves on every connect). Settings corelane lacks (`preconnect`,
//! `tcpkeepalive`) become comments; settings it cannot honour (unix sockets, `redis_db` other
//! than 0) are errors. Every error names the pool and the key. The output is not otherwise
//! validated: run `corelane check` on it.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use serde_yaml_ng::Value;

use crate::config::model::{defaults, limits};
use crate::shard::ring::default_point_name;
use crate::shard::{Distribution, HashFn};

/// Every key a nutcracker pool may have (`conf_commands` in `nc_conf.c`).
const POOL_KEYS: [&str; 17] = [
    "listen",
    "hash",
    "hash_tag",
    "distribution",
    "timeout",
    "backlog",
    "client_connections",
    "redis",
    "redis_auth",
    "redis_db",
    "preconnect",
    "tcpkeepalive",
    "auto_eject_hosts",
    "server_connections",
    "server_retry_timeout",
    "server_failure_limit",
    "servers",
];
/// nutcracker's defaults for keys a pool leaves out (`CONF_DEFAULT_*` in `nc_conf.h`).
const DEFAULT_BACKLOG: u32 = 512;
const DEFAULT_SERVER_CONNECTIONS: u32 = 1;
const DEFAULT_SERVER_RETRY_TIMEOUT_MS: u32 = 30_000;
const DEFAULT_SERVER_FAILURE_LIMIT: u32 = 2;
/// corelane's limit on an endpoint name (see `config::validate`).
const MAX_POINT_NAME_LEN: usize = 256;

/// Resolves a host name to addresses (the system resolver, or a fake one in tests).
pub type Resolver<'a> = &'a dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

/// Why a twemproxy file cannot be imported.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    Read(io::Error),
    /// The file is not YAML, or not a mapping of pool names to pools.
    File(String),
    /// A pool, or one of its settings (`key`), cannot be mapped to corelane.
    Pool {
        pool: String,
        key: Option<String>,
        reason: String,
    },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Read(e) => write!(f, "cannot read the file: {e}"),
            ImportError::File(reason) => f.write_str(reason),
            ImportError::Pool { pool, key, reason } => {
                if is_plain_name(pool) {
                    write!(f, "pool {pool}: ")?;
                } else {
                    write!(f, "pool {pool:?}: ")?;
                }
                match key {
                    Some(key) => write!(f, "{key}: {reason}"),
                    None => f.write_str(reason),
                }
            }
        }
    }
}

impl std::error::Error for ImportError {}

/// A pool as nutcracker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub listen: Addr,
    pub settings: Settings,
    pub servers: Vec<Server>,
}

/// A pool's scalar settings; `None` is a key the file leaves out (nutcracker's default
/// applies, see [`render`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub redis: Option<bool>,
    pub hash: Option<String>,
    pub hash_tag: Option<String>,
    pub distribution: Option<String>,
    /// Milliseconds; `None` and `Some(0)` both mean nutcracker waits forever.
    pub timeout: Option<u32>,
    pub backlog: Option<u32>,
    pub client_connections: Option<u32>,
    pub redis_auth: Option<String>,
    pub preconnect: Option<bool>,
    pub tcpkeepalive: Option<bool>,
    pub auto_eject_hosts: Option<bool>,
    pub server_connections: Option<u32>,
    /// Milliseconds.
    pub server_retry_timeout: Option<u32>,
    pub server_failure_limit: Option<u32>,
}

/// An address, and the `host:port` it was resolved from when the file gave a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub addr: SocketAddr,
    pub resolved_from: Option<String>,
}

/// One of a pool's `servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub addr: Addr,
    pub weight: u32,
    /// The endpoint `name` to write: the file's name, or nutcracker's default name where
    /// corelane's default would differ from it; `None` when corelane's default is the same.
    pub name: Option<String>,
}

impl Server {
    /// The name that places this server on the ring, in nutcracker and in corelane.
    pub fn point_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            default_point_name(&self.addr.addr.ip().to_string(), self.addr.addr.port())
        })
    }
}

/// Reads `path` and returns the corelane control file for it, resolving host names with the
/// system resolver.
pub fn import_file(path: &Path, admin: Option<SocketAddr>) -> Result<String, ImportError> {
    let text = std::fs::read_to_string(path).map_err(ImportError::Read)?;
    let pools = parse(&text, &system_resolver)?;
    check_addresses(&pools, admin)?;
    Ok(render(&path.display().to_string(), admin, &pools))
}

/// The system resolver (`getaddrinfo`).
pub fn system_resolver(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// Reads every pool of a nutcracker YAML document, in file order.
pub fn parse(yaml: &str, resolve: Resolver<'_>) -> Result<Vec<Pool>, ImportError> {
    let doc: Value = serde_yaml_ng::from_str(yaml)
        .map_err(|e| ImportError::File(format!("not a twemproxy YAML file: {e}")))?;
    let pools = match doc {
        Value::Mapping(m) if !m.is_empty() => m,
        Value::Null | Value::Mapping(_) => return Err(ImportError::File("no pools".into())),
        _ => {
            return Err(ImportError::File(
                "the top level must map pool names to pools".into(),
            ));
        }
    };
    pools
        .iter()
        .map(|(name, body)| {
            let name = scalar(name).map_err(|e| ImportError::File(format!("pool name {e}")))?;
            pool(name, body, resolve)
        })
        .collect()
}

/// One pool: checks its name, reads its keys in order, then checks its servers together.
fn pool(name: String, body: &Value, resolve: Resolver<'_>) -> Result<Pool, ImportError> {
    let fail = |key: Option<&str>, reason: String| ImportError::Pool {
        pool: name.clone(),
        key: key.map(str::to_owned),
        reason,
    };
    if !is_plain_name(&name) || name.len() > limits::MAX_NAME_LEN {
        return Err(fail(
            None,
            format!(
                "corelane names are 1..={} characters of A-Z a-z 0-9 _ - .; rename the pool",
                limits::MAX_NAME_LEN
            ),
        ));
    }
    let Value::Mapping(body) = body else {
        return Err(fail(None, "must be a mapping of settings".into()));
    };
    let (mut listen_at, mut servers_of, mut settings) = (None, None, Settings::default());
    for (key, value) in body {
        let key = scalar(key).map_err(|e| fail(None, format!("setting name {e}")))?;
        match key.as_str() {
            "listen" => {
                let addr = scalar(value).and_then(|text| listen(&text, resolve));
                listen_at = Some(addr.map_err(|r| fail(Some("listen"), r))?);
            }
            "servers" => {
                let s = servers(value, resolve).map_err(|(k, r)| fail(Some(&k), r))?;
                servers_of = Some(s);
            }
            _ => setting(&mut settings, &key, value).map_err(|r| fail(Some(&key), r))?,
        }
    }
    let listen = listen_at.ok_or_else(|| fail(Some("listen"), "missing".into()))?;
    let servers = servers_of
        .filter(|s| !s.is_empty())
        .ok_or_else(|| fail(Some("servers"), "the pool has no servers".into()))?;
    Ok(Pool {
        name,
        listen,
        settings,
        servers,
    })
}

/// Sets one scalar setting; `Err` is the reason.
fn setting(p: &mut Settings, key: &str, value: &Value) -> Result<(), String> {
    if !POOL_KEYS.contains(&key) {
        return Err(format!(
            "unknown twemproxy setting (known: {})",
            POOL_KEYS.join(", ")
        ));
    }
    let text = scalar(value)?;
    match key {
        "hash" => p.hash = Some(variant::<HashFn>(&text)?),
        "hash_tag" if text.len() == 2 => p.hash_tag = Some(text),
        "hash_tag" => return Err(format!("{text:?} is not two characters, like \"{{}}\"")),
        "distribution" => p.distribution = Some(variant::<Distribution>(&text)?),
        "timeout" => p.timeout = Some(number(&text)?),
        "backlog" => p.backlog = Some(number(&text)?),
        "client_connections" => p.client_connections = Some(number(&text)?),
        "redis" => p.redis = Some(boolean(&text)?),
        "redis_auth" => p.redis_auth = Some(text),
        "redis_db" => match number(&text)? {
            0 => {}
            n => return Err(format!("{n}: corelane serves database 0 only")),
        },
        "preconnect" => p.preconnect = Some(boolean(&text)?),
        "tcpkeepalive" => p.tcpkeepalive = Some(boolean(&text)?),
        "auto_eject_hosts" => p.auto_eject_hosts = Some(boolean(&text)?),
        "server_connections" => {
            let n = number(&text)?;
            if !(1..=limits::MAX_SERVER_CONNECTIONS).contains(&n) {
                return Err(format!(
                    "{n} is outside corelane's 1..={}",
                    limits::MAX_SERVER_CONNECTIONS
                ));
            }
            p.server_connections = Some(n);
        }
        "server_retry_timeout" => p.server_retry_timeout = Some(number(&text)?),
        "server_failure_limit" => p.server_failure_limit = Some(number(&text)?),
        _ => return Err(format!("{key} is not a scalar setting")),
    }
    Ok(())
}

/// A pool's `servers`; `Err` is the key (`servers[2]`) and the reason.
fn servers(value: &Value, resolve: Resolver<'_>) -> Result<Vec<Server>, (String, String)> {
    let Value::Sequence(items) = value else {
        return Err(("servers".into(), "must be a list".into()));
    };
    let mut out: Vec<Server> = Vec::with_capacity(items.len());
    let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("servers[{i}]");
        let s = scalar(item)
            .and_then(|text| server(&text, resolve))
            .map_err(|r| (key.clone(), r))?;
        if let Some(first) = by_addr.insert(s.addr.addr, i) {
            return Err((
                key,
                format!(
                    "address {} is also servers[{first}]'s; corelane needs one address per server",
                    s.addr.addr
                ),
            ));
        }
        if let Some(first) = by_name.insert(s.point_name(), i) {
            return Err((
                key,
                format!("name {:?} is also servers[{first}]'s", s.point_name()),
            ));
        }
        out.push(s);
    }
    Ok(out)
}

/// One `host:port:weight [name]`, split from the right as `conf_add_server` does.
pub fn server(text: &str, resolve: Resolver<'_>) -> Result<Server, String> {
    if text.starts_with('/') {
        return Err(format!("{text:?}: unix sockets are not supported"));
    }
    let bad = || format!("{text:?} is not host:port:weight");
    let (spec, name) = match text.rsplit_once(' ') {
        Some((spec, name)) => (spec, Some(name)),
        None => (text, None),
    };
    let (rest, weight) = spec.rsplit_once(':').ok_or_else(bad)?;
    let (host, port_text) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port = port(port_text).map_err(|r| format!("{text:?}: {r}"))?;
    let weight = number(weight).map_err(|r| format!("{text:?}: weight {r}"))?;
    if !(1..=limits::MAX_WEIGHT).contains(&weight) {
        return Err(format!(
            "{text:?}: weight {weight} is outside corelane's 1..={}",
            limits::MAX_WEIGHT
        ));
    }
    if let Some(n) = name
        && (n.is_empty() || n.len() > MAX_POINT_NAME_LEN || n.contains(char::is_whitespace))
    {
        return Err(format!(
            "{text:?}: name {n:?} must be 1..={MAX_POINT_NAME_LEN} characters without spaces"
        ));
    }
    let addr = resolve_host(host, port, resolve).map_err(|r| format!("{text:?}: {r}"))?;
    // nutcracker's name for a server without one: the host and port as written, or the
    // host alone on port 11211 (`conf_add_server`).
    let nutcracker = if port == 11211 {
        host.to_owned()
    } else {
        format!("{host}:{port_text}")
    };
    let corelane = default_point_name(&addr.addr.ip().to_string(), port);
    let name = match name {
        Some(n) => Some(n.to_owned()),
        None => (nutcracker != corelane).then_some(nutcracker),
    };
    Ok(Server { addr, weight, name })
}

/// A pool's `listen: host:port`.
pub fn listen(text: &str, resolve: Resolver<'_>) -> Result<Addr, String> {
    if text.starts_with('/') {
        return Err(format!(
            "{text:?}: unix sockets are not supported; listen on host:port"
        ));
    }
    let (host, port_text) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not host:port"))?;
    let port = port(port_text).map_err(|r| format!("{text:?}: {r}"))?;
    resolve_host(host, port, resolve).map_err(|r| format!("{text:?}: {r}"))
}

/// An IP literal (IPv6 with or without brackets), or a host name resolved now, IPv4 first.
fn resolve_host(host: &str, port: u16, resolve: Resolver<'_>) -> Result<Addr, String> {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(Addr {
            addr: SocketAddr::new(ip, port),
            resolved_from: None,
        });
    }
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    let addrs = resolve(host, port).map_err(|e| format!("cannot resolve {host:?}: {e}"))?;
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .ok_or_else(|| format!("{host:?} resolves to no address"))?;
    Ok(Addr {
        addr: *addr,
        resolved_from: Some(format!("{host}:{port}")),
    })
}

/// Pools must listen on different addresses, and not on the admin address.
pub fn check_addresses(pools: &[Pool], admin: Option<SocketAddr>) -> Result<(), ImportError> {
    let mut seen: HashMap<SocketAddr, String> = HashMap::new();
    if let Some(a) = admin {
        seen.insert(a, "--admin".into());
    }
    for p in pools {
        if let Some(first) = seen.insert(p.listen.addr, format!("pool {}", p.name)) {
            return Err(ImportError::Pool {
                pool: p.name.clone(),
                key: Some("listen".into()),
                reason: format!("address {} is also {first}'s", p.listen.addr),
            });
        }
    }
    Ok(())
}

/// The corelane control file for `pools`; `source` is named in the header comment.
pub fn render(source: &str, admin: Option<SocketAddr>, pools: &[Pool]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Generated by corelane import-twemproxy from {}",
        one_line(source)
    );
    if let Some(a) = admin {
        let _ = write!(out, "\n[admin]\nlisten = {}\n", quote(&a.to_string()));
    }
    for p in pools {
        render_listener(&mut out, p);
        render_cluster(&mut out, p);
    }
    out
}

fn render_listener(out: &mut String, p: &Pool) {
    let key = table_key(&p.name);
    let c = &p.settings;
    let redis = c.redis.unwrap_or(false);
    let _ = write!(out, "\n# twemproxy pool {}\n[listeners.{key}]\n", p.name);
    resolved_note(out, &p.listen, "");
    let _ = writeln!(out, "listen = {}", quote(&p.listen.addr.to_string()));
    let protocol = if redis { "redis" } else { "memcache" };
    let _ = writeln!(out, "protocol = {}", quote(protocol));
    let _ = writeln!(out, "cluster = {}", quote(&p.name));
    match c.backlog.unwrap_or(DEFAULT_BACKLOG) {
        0 => out.push_str("# twemproxy's backlog: 0; corelane's smallest is 1\nbacklog = 1\n"),
        n => {
            let _ = writeln!(out, "backlog = {n}");
        }
    }
    match c.client_connections {
        None | Some(0) => {}
        Some(n) => {
            let _ = writeln!(
                out,
                "# nutcracker reads client_connections but does not enforce it; corelane does\n\
                 max_connections = {n}"
            );
        }
    }
    match (&c.redis_auth, redis) {
        (Some(a), true) => {
            let _ = writeln!(out, "auth = {}", quote(a));
        }
        (Some(_), false) => out.push_str("# redis_auth is ignored: memcache has no AUTH\n"),
        (None, _) => {}
    }
}

fn render_cluster(out: &mut String, p: &Pool) {
    let key = table_key(&p.name);
    let c = &p.settings;
    let redis = c.redis.unwrap_or(false);
    let _ = write!(out, "\n[clusters.{key}]\n");
    let hash = c.hash.as_deref().unwrap_or("fnv1a_64");
    let _ = writeln!(out, "hash = {}", quote(hash));
    if let Some(t) = &c.hash_tag {
        let _ = writeln!(out, "hash_tag = {}", quote(t));
    }
    let dist = c.distribution.as_deref().unwrap_or("ketama");
    let _ = writeln!(out, "distribution = {}", quote(dist));
    match c.timeout {
        None | Some(0) => {
            let _ = writeln!(
                out,
                "# twemproxy has no timeout for this pool (it waits for replies forever);\n\
                 # corelane's defaults apply: timeout {}, connect_timeout {}",
                humantime::format_duration(defaults::REQUEST_TIMEOUT),
                humantime::format_duration(defaults::CONNECT_TIMEOUT),
            );
        }
        Some(ms) => {
            let t = quote(&millis(ms));
            let _ = write!(out, "timeout = {t}\nconnect_timeout = {t}\n");
        }
    }
    if let (Some(a), true) = (&c.redis_auth, redis) {
        let _ = writeln!(out, "redis_auth = {}", quote(a));
    }
    let conns = c.server_connections.unwrap_or(DEFAULT_SERVER_CONNECTIONS);
    let eject = c.auto_eject_hosts.unwrap_or(false);
    let _ = write!(
        out,
        "server_connections = {conns}\nauto_eject_hosts = {eject}\n"
    );
    match c
        .server_failure_limit
        .unwrap_or(DEFAULT_SERVER_FAILURE_LIMIT)
    {
        0 => out.push_str(
            "# twemproxy's server_failure_limit: 0 ejects on the first failure, as 1 does\n\
             server_failure_limit = 1\n",
        ),
        n => {
            let _ = writeln!(out, "server_failure_limit = {n}");
        }
    }
    match c
        .server_retry_timeout
        .unwrap_or(DEFAULT_SERVER_RETRY_TIMEOUT_MS)
    {
        0 => out.push_str(
            "# twemproxy's server_retry_timeout: 0 retries at once; corelane's smallest is 1ms\n\
             server_retry_timeout = \"1ms\"\n",
        ),
        ms => {
            let _ = writeln!(out, "server_retry_timeout = {}", quote(&millis(ms)));
        }
    }
    for (setting, value) in [
        ("preconnect", c.preconnect),
        ("tcpkeepalive", c.tcpkeepalive),
    ] {
        if let Some(v) = value {
            let _ = writeln!(
                out,
                "# twemproxy's {setting}: {v} is ignored: corelane has no such setting"
            );
        }
    }
    for s in &p.servers {
        let _ = write!(out, "\n[[clusters.{key}.endpoints]]\n");
        resolved_note(out, &s.addr, " (twemproxy resolves it on each connect)");
        let _ = writeln!(out, "addr = {}", quote(&s.addr.addr.to_string()));
        let _ = writeln!(out, "weight = {}", s.weight);
        if let Some(n) = &s.name {
            let _ = writeln!(out, "name = {}", quote(n));
        }
    }
}

/// Says where an address came from when the file named a host; `then` ends the sentence.
fn resolved_note(out: &mut String, a: &Addr, then: &str) {
    if let Some(host) = &a.resolved_from {
        let _ = writeln!(
            out,
            "# resolved from {} at import time{then}",
            one_line(host)
        );
    }
}

/// Milliseconds as a corelane duration: `"30s"` when whole seconds, else `"400ms"`.
pub fn millis(ms: u32) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(q, "\\u{:04X}", u32::from(c));
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// A table name part: bare when TOML allows it (a `.` would split it), else quoted.
fn table_key(name: &str) -> String {
    if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        name.to_owned()
    } else {
        quote(name)
    }
}

/// Text safe inside a `#` comment: control characters (a newline would end it) become `?`.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// corelane's name alphabet (length is checked separately).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A scalar's text, as nutcracker sees it (it reads every value as a string).
fn scalar(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null | Value::String(_) => Err("has no value".into()),
        _ => Err("must be a single value, not a list or a mapping".into()),
    }
}

/// nutcracker's `nc_atoi`: decimal digits only, at most `INT_MAX`.
fn number(text: &str) -> Result<u32, String> {
    let n = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse::<u32>().ok())
        .flatten()
        .filter(|&n| i32::try_from(n).is_ok());
    n.ok_or_else(|| format!("{text:?} is not a number"))
}

fn port(text: &str) -> Result<u16, String> {
    number(text)
        .ok()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("port {text:?} is not a number in 1..=65535"))
}

fn boolean(text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{text:?} is not true or false")),
    }
}

/// `text` if it names a variant of `T` (twemproxy's names are corelane's: `HashFn`,
/// `Distribution`); else serde's message, which lists the names.
fn variant<T: serde::de::DeserializeOwned>(text: &str) -> Result<String, String> {
    use serde::de::IntoDeserializer;
    let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        text.into_deserializer();
    T::deserialize(d)
        .map(|_| text.to_owned())
        .map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{Distribution, HashFn};

    /// `cache-a` has both families (IPv6 listed first), `v6only` has one, the rest fail.
    fn fake(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let ips: Vec<IpAddr> = match host {
            "cache-a" => vec!["fd00::1".parse().unwrap(), "10.0.0.1".parse().unwrap()],
            "cache-b" => vec!["10.0.0.2".parse().unwrap()],
            "v6only" => vec!["fd00::2".parse().unwrap()],
            "empty" => vec![],
            _ => return Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
        };
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }

    fn srv(text: &str) -> Result<Server, String> {
        server(text, &fake)
    }

    fn import(yaml: &str) -> Result<String, ImportError> {
        let pools = parse(yaml, &fake)?;
        check_addresses(&pools, None)?;
        Ok(render("test.yml", None, &pools))
    }

    fn import_err(yaml: &str) -> String {
        import(yaml).unwrap_err().to_string()
    }

    #[test]
    fn servers_split_from_the_right() {
        let s = srv("127.0.0.1:6379:3 server1").unwrap();
        assert_eq!(s.addr.addr, "127.0.0.1:6379".parse().unwrap());
        assert_eq!((s.weight, s.name.as_deref()), (3, Some("server1")));
        assert_eq!(s.addr.resolved_from, None);
        let s = srv("::1:6380:1").unwrap();
        assert_eq!(s.addr.addr, "[::1]:6380".parse().unwrap());
        assert_eq!(s.name, None, "corelane's default is ::1:6380 too");
    }

    #[test]
    fn ip_literals_get_a_name_only_where_the_defaults_differ() {
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1:6379:1", None),
            ("127.0.0.1:11211:1", None),
            ("10.1.2.3:11211:5", None),
            ("127.0.0.1:06379:1", Some("127.0.0.1:06379")),
            ("127.0.0.1:011211:1", None),
            ("0:0:0:0:0:0:0:1:6379:1", Some("0:0:0:0:0:0:0:1:6379")),
            ("[::1]:6379:1", Some("[::1]:6379")),
            ("[::1]:11211:1", Some("[::1]")),
        ];
        for (text, name) in cases {
            let s = srv(text).unwrap();
            assert_eq!(s.name.as_deref(), *name, "{text}");
        }
        assert_eq!(srv("127.0.0.1:011211:1").unwrap().point_name(), "127.0.0.1");
    }

    #[test]
    fn host_names_are_resolved_ipv4_first_and_keep_their_name() {
        let s = srv("cache-a:6379:2").unwrap();
        assert_eq!(s.addr.addr, "10.0.0.1:6379".parse().unwrap());
        assert_eq!(s.addr.resolved_from.as_deref(), Some("cache-a:6379"));
        assert_eq!(s.name.as_deref(), Some("cache-a:6379"));
        let s = srv("cache-a:11211:1").unwrap();
        assert_eq!(s.name.as_deref(), Some("cache-a"));
        let s = srv("v6only:6379:1").unwrap();
        assert_eq!(s.addr.addr, "[fd00::2]:6379".parse().unwrap());
        let s = srv("cache-b:6379:1 shard7").unwrap();
        assert_eq!(s.name.as_deref(), Some("shard7"));
    }

    #[test]
    fn bad_servers_say_why() {
        let cases: &[(&str, &str)] = &[
            ("x:y", "\"x:y\" is not host:port:weight"),
            ("127.0.0.1", "is not host:port:weight"),
            ("127.0.0.1:6379:1:", "weight \"\" is not a number"),
            ("127.0.0.1:0:1", "port \"0\" is not a number in 1..=65535"),
            ("127.0.0.1:70000:1", "port \"70000\""),
            (
                "127.0.0.1:6379:0",
                "weight 0 is outside corelane's 1..=1000",
            ),
            ("127.0.0.1:6379:1001", "weight 1001 is outside"),
            ("127.0.0.1:6379:-1", "weight \"-1\" is not a number"),
            ("127.0.0.1:6379:1 ", "name \"\" must be"),
            ("127.0.0.1:6379:1  two", "weight \"1 \" is not a number"),
            ("/tmp/redis.sock:1", "unix sockets are not supported"),
            (":6379:1", "the host is missing"),
            ("nowhere:6379:1", "cannot resolve \"nowhere\": no such host"),
            ("empty:6379:1", "\"empty\" resolves to no address"),
        ];
        for (text, want) in cases {
            let e = srv(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn listen_addresses() {
        let a = listen("127.0.0.1:22121", &fake).unwrap();
        assert_eq!(a.addr, "127.0.0.1:22121".parse().unwrap());
        let a = listen("cache-a:22121", &fake).unwrap();
        assert_eq!(a.addr, "10.0.0.1:22121".parse().unwrap());
        assert_eq!(a.resolved_from.as_deref(), Some("cache-a:22121"));
        assert_eq!(
            listen("[::1]:22121", &fake).unwrap().addr,
            "[::1]:22121".parse().unwrap()
        );
        for (text, want) in [
            ("/var/run/nutcracker.sock", "unix sockets are not supported"),
            ("/tmp/gamma 0666", "unix sockets are not supported"),
            ("127.0.0.1", "is not host:port"),
            ("127.0.0.1:http", "port \"http\""),
        ] {
            let e = listen(text, &fake).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn numbers_follow_nc_atoi() {
        assert_eq!(number("400"), Ok(400));
        assert_eq!(number("0"), Ok(0));
        assert_eq!(number("2147483647"), Ok(i32::MAX as u32));
        for bad in ["", "-1", "4.5", "400ms", "2147483648", "99999999999", " 1"] {
            assert!(number(bad).is_err(), "{bad:?}");
        }
        assert_eq!(boolean("true"), Ok(true));
        assert!(boolean("yes").is_err());
    }

    #[test]
    fn durations_and_strings_are_valid_toml() {
        assert_eq!(millis(400), "400ms");
        assert_eq!(millis(30_000), "30s");
        assert_eq!(millis(1_500), "1500ms");
        for ms in [1, 400, 1_500, 30_000] {
            let d = humantime::parse_duration(&millis(ms)).unwrap();
            assert_eq!(d.as_millis(), u128::from(ms));
        }
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "new\nline\ttab\r",
            "\u{1}\u{7f}",
            "é{}",
        ] {
            let doc: toml::Table = toml::from_str(&format!("k = {}", quote(s))).unwrap();
            assert_eq!(doc["k"].as_str(), Some(s));
        }
        assert_eq!(table_key("alpha_1-b"), "alpha_1-b");
        assert_eq!(table_key("a.b"), "\"a.b\"");
    }

    #[test]
    fn an_empty_pool_gets_twemproxys_defaults() {
        let text =
            import("p:\n  listen: 127.0.0.1:22121\n  servers:\n    - 127.0.0.1:11211:1\n").unwrap();
        for line in [
            "[listeners.p]",
            "protocol = \"memcache\"",
            "backlog = 512",
            "hash = \"fnv1a_64\"",
            "distribution = \"ketama\"",
            "server_connections = 1",
            "auto_eject_hosts = false",
            "server_failure_limit = 2",
            "server_retry_timeout = \"30s\"",
            "# twemproxy has no timeout for this pool (it waits for replies forever);",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert!(!text.contains("max_connections") && !text.contains("\ntimeout"));
        let cfg = crate::config::parse(&text).unwrap();
        let c = &cfg.clusters[0];
        assert_eq!(c.sharding.hash, HashFn::Fnv1a_64);
        assert_eq!(c.sharding.timeout, defaults::REQUEST_TIMEOUT);
        assert_eq!(c.endpoints[0].point_name, "127.0.0.1");
        assert_eq!(cfg.listeners[0].backlog, 512);
    }

    #[test]
    fn every_setting_is_mapped() {
        let yaml = "\
a.b:
  listen: cache-b:22121
  hash: murmur
  hash_tag: \"{}\"
  distribution: modula
  timeout: 400
  backlog: 0
  client_connections: 100
  redis: true
  redis_auth: s3\"cret
  redis_db: 0
  preconnect: true
  tcpkeepalive: false
  auto_eject_hosts: true
  server_connections: 4
  server_retry_timeout: 0
  server_failure_limit: 0
  servers:
    - cache-a:6379:2
    - 127.0.0.1:6380:1 two
";
        let text = import(yaml).unwrap();
        let cfg = crate::config::parse(&text).unwrap();
        let (l, c) = (&cfg.listeners[0], &cfg.clusters[0]);
        assert_eq!(l.name, "a.b");
        assert_eq!(l.listen, "10.0.0.2:22121".parse().unwrap());
        assert_eq!(l.backlog, 1);
        assert_eq!(l.max_connections.map(|n| n.get()), Some(100));
        assert_eq!(l.keyed.auth.as_deref(), Some("s3\"cret"));
        let s = &c.sharding;
        assert_eq!(
            (s.hash, s.distribution),
            (HashFn::Murmur, Distribution::Modula)
        );
        assert_eq!(s.hash_tag, Some(*b"{}"));
        assert_eq!(s.timeout.as_millis(), 400);
        assert_eq!(c.connect_timeout.as_millis(), 400);
        assert_eq!(s.redis_auth.as_deref(), Some("s3\"cret"));
        assert_eq!((s.server_connections, s.auto_eject_hosts), (4, true));
        assert_eq!(s.server_failure_limit, 1);
        assert_eq!(s.server_retry_timeout.as_millis(), 1);
        assert_eq!(c.endpoints[0].point_name, "cache-a:6379");
        assert_eq!(c.endpoints[0].weight.get(), 2);
        assert_eq!(c.endpoints[1].point_name, "two");
        for line in [
            "[listeners.\"a.b\"]",
            "[[clusters.\"a.b\".endpoints]]",
            "# resolved from cache-b:22121 at import time",
            "# twemproxy's preconnect: true is ignored: corelane has no such setting",
            "# twemproxy's tcpkeepalive: false is ignored: corelane has no such setting",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert_eq!(import(yaml).unwrap(), text, "the output is deterministic");
    }

    #[test]
    fn pools_keep_file_order() {
        let yaml = "zeta:\n  listen: 127.0.0.1:1\n  servers: [127.0.0.1:2:1]\n\
                    alpha:\n  listen: 127.0.0.1:3\n  servers: [127.0.0.1:4:1]\n";
        let names: Vec<String> = parse(yaml, &fake)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["zeta", "alpha"]);
    }

    #[test]
    fn errors_name_the_pool_and_the_key() {
        let base = "alpha:\n  listen: 127.0.0.1:22121\n  servers:\n    - 127.0.0.1:6379:1\n";
        let with = |extra: &str| format!("{base}  {extra}\n");
        let cases: Vec<(String, &str)> = vec![
            (
                with("redis_db: 3"),
                "pool alpha: redis_db: 3: corelane serves database 0 only",
            ),
            (
                with("sentinels: 1"),
                "pool alpha: sentinels: unknown twemproxy setting",
            ),
            (
                with("hash: sha1"),
                "pool alpha: hash: \"sha1\": unknown variant `sha1`, expected one of `one_at_a_time`",
            ),
            (
                with("hash_tag: \"{\""),
                "pool alpha: hash_tag: \"{\" is not two characters",
            ),
            (
                with("distribution: maglev"),
                "pool alpha: distribution: \"maglev\"",
            ),
            (
                with("timeout: 400ms"),
                "pool alpha: timeout: \"400ms\" is not a number",
            ),
            (
                with("redis: yes"),
                "pool alpha: redis: \"yes\" is not true or false",
            ),
            (
                with("server_connections: 0"),
                "pool alpha: server_connections: 0 is outside",
            ),
            (with("backlog:"), "pool alpha: backlog: has no value"),
            (
                with("hash: [md5]"),
                "pool alpha: hash: must be a single value",
            ),
            (
                with("listen: 127.0.0.1:1"),
                "duplicate entry with key \"listen\"",
            ),
            (
                base.replace("127.0.0.1:22121", "/tmp/gamma 0666"),
                "pool alpha: listen: \"/tmp/gamma 0666\": unix sockets are not supported",
            ),
            (
                format!("{base}    - x:y\n"),
                "pool alpha: servers[1]: \"x:y\" is not host:port:weight",
            ),
            (
                format!("{base}    - 127.0.0.1:6379:1 other\n"),
                "pool alpha: servers[1]: address 127.0.0.1:6379 is also servers[0]'s",
            ),
            (
                format!("{base}    - 127.0.0.2:6379:1 127.0.0.1:6379\n"),
                "pool alpha: servers[1]: name \"127.0.0.1:6379\" is also servers[0]'s",
            ),
            (
                base.replace("alpha", "we b"),
                "pool \"we b\": corelane names are 1..=64 characters",
            ),
            (
                base.replace("alpha", &"p".repeat(65)),
                "corelane names are 1..=64",
            ),
            (
                "alpha:\n  servers:\n    - 127.0.0.1:6379:1\n".into(),
                "pool alpha: listen: missing",
            ),
            (
                "alpha:\n  listen: 127.0.0.1:1\n".into(),
                "pool alpha: servers: the pool has no",
            ),
            (
                "alpha:\n  listen: 127.0.0.1:1\n  servers: []\n".into(),
                "servers: the pool has no",
            ),
            (
                "alpha: 1\n".into(),
                "pool alpha: must be a mapping of settings",
            ),
            (String::new(), "no pools"),
            ("- a\n".into(), "the top level must map pool names to pools"),
            ("a: [\n".into(), "not a twemproxy YAML file"),
            (
                format!("{base}beta:\n  listen: 127.0.0.1:22121\n  servers: [127.0.0.1:1:1]\n"),
                "pool beta: listen: address 127.0.0.1:22121 is also pool alpha's",
            ),
        ];
        for (yaml, want) in cases {
            let e = import_err(&yaml);
            assert!(e.contains(want), "{yaml}\n-> {e}\nwanted {want}");
        }
    }

    #[test]
    fn the_admin_address_is_written_and_kept_apart() {
        let yaml = "p:\n  listen: 127.0.0.1:22121\n  servers: [127.0.0.1:1:1]\n";
        let pools = parse(yaml, &fake).unwrap();
        let admin = Some("127.0.0.1:9901".parse().unwrap());
        let text = render("x", admin, &pools);
        assert!(
            text.contains("\n[admin]\nlisten = \"127.0.0.1:9901\"\n"),
            "{text}"
        );
        assert!(crate::config::parse(&text).is_ok());
        let clash = Some("127.0.0.1:22121".parse().unwrap());
        let e = check_addresses(&pools, clash).unwrap_err().to_string();
        assert_eq!(
            e,
            "pool p: listen: address 127.0.0.1:22121 is also --admin's"
        );
    }
}
