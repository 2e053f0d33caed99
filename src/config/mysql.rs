//! The MySQL part of the control file: `[listeners.NAME.mysql]`, what a `protocol = "mysql"`
//! listener needs beyond its (primary) cluster: the users clients log in as and the
//! credentials corelane logs in to the backends with, the cluster of read replicas, and the
//! read-your-writes rule.
//!
//! Replicas are a cluster of their own so that they get the cluster machinery for free: a load
//! balancing policy over several replicas, active `mysql` checks (with `max_replication_lag`,
//! which is how a lagging or stopped replica is taken out of reads) and outlier ejection.
//!
//! Not here: what the engine does with these (`proto::mysql`).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::file::CheckKind;
use super::model::ClusterConfig;
use super::validate::{invalid, positive_duration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlListenerFile {
    /// Who may log in through this listener.
    pub users: Vec<UserFile>,
    /// The cluster of read replicas; without one, every statement goes to the primary.
    pub replicas: Option<String>,
    /// Where a read goes when no replica is usable: `primary` (default) or `error`.
    pub no_replica: Option<NoReplica>,
    /// `off` (default), a duration (`"2s"`: a session's reads go to the primary for that long
    /// after its last write), or `gtid` (MariaDB: the replica waits for the session's last GTID
    /// with MASTER_GTID_WAIT, up to `gtid_wait_timeout`, else the read goes to the primary).
    pub read_your_writes: Option<String>,
    pub gtid_wait_timeout: Option<String>,
    /// The authentication method offered in the greeting.
    pub auth_plugin: Option<AuthPlugin>,
    /// The version string clients see in the greeting.
    pub server_version: Option<String>,
    /// Largest packet accepted from a client or a backend (MySQL's `max_allowed_packet`).
    pub max_packet: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFile {
    pub user: String,
    pub password: String,
    /// Who corelane logs in to the backends as; default: the same user and password.
    pub backend_user: Option<String>,
    pub backend_password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoReplica {
    /// The read goes to the primary.
    #[default]
    Primary,
    /// The read is answered with an error.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthPlugin {
    #[default]
    MysqlNativePassword,
    /// MySQL 8's default; corelane knows the password, so every login takes the fast path.
    CachingSha2Password,
}

impl AuthPlugin {
    pub fn name(self) -> &'static [u8] {
        match self {
            AuthPlugin::MysqlNativePassword => b"mysql_native_password",
            AuthPlugin::CachingSha2Password => b"caching_sha2_password",
        }
    }
}

/// How a session's reads see its own writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadYourWrites {
    Off,
    /// Reads go to the primary for this long after the session's last write.
    Primary(Duration),
    /// Reads wait on the replica for the session's last GTID, at most this long.
    Gtid(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlUser {
    pub user: String,
    pub password: String,
    pub backend_user: String,
    pub backend_password: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlListener {
    pub users: Vec<MysqlUser>,
    /// Index into the config's clusters.
    pub replicas: Option<usize>,
    pub no_replica: NoReplica,
    pub read_your_writes: ReadYourWrites,
    pub auth_plugin: AuthPlugin,
    pub server_version: String,
    pub max_packet: usize,
}

impl MysqlListener {
    /// The index in `users` of the user called `name`.
    pub fn user_index(&self, name: &[u8]) -> Option<usize> {
        self.users.iter().position(|u| u.user.as_bytes() == name)
    }
}

pub const DEFAULT_SERVER_VERSION: &str = "5.7.99-corelane";
pub const DEFAULT_MAX_PACKET: usize = 64 << 20;
pub const MAX_MAX_PACKET: u64 = 1 << 30;
pub const DEFAULT_GTID_WAIT: Duration = Duration::from_millis(100);

/// Checks `[listeners.NAME.mysql]` (`key` is `listeners.NAME`). `primary` is the listener's
/// cluster index.
pub fn listener(
    key: &str,
    f: MysqlListenerFile,
    primary: usize,
    clusters: &HashMap<&str, usize>,
) -> Result<MysqlListener, ConfigError> {
    let key = format!("{key}.mysql");
    if f.users.is_empty() {
        return Err(invalid(
            format!("{key}.users"),
            "at least one user is needed (clients log in to corelane)",
        ));
    }
    let mut users: Vec<MysqlUser> = Vec::with_capacity(f.users.len());
    for (i, u) in f.users.into_iter().enumerate() {
        let k = format!("{key}.users[{i}]");
        if u.user.is_empty() || u.user.len() > 80 || u.user.contains('\0') {
            return Err(invalid(
                format!("{k}.user"),
                "must be 1 to 80 bytes without NUL",
            ));
        }
        if users.iter().any(|o| o.user == u.user) {
            return Err(invalid(
                format!("{k}.user"),
                format!("user {:?} is listed twice", u.user),
            ));
        }
        if u.backend_password.is_some() && u.backend_user.is_none() {
            return Err(invalid(
                format!("{k}.backend_password"),
                "needs backend_user",
            ));
        }
        users.push(MysqlUser {
            backend_user: u.backend_user.unwrap_or_else(|| u.user.clone()),
            backend_password: u.backend_password.unwrap_or_else(|| u.password.clone()),
            user: u.user,
            password: u.password,
        });
    }
    let replicas = match &f.replicas {
        None => None,
        Some(name) => {
            let i = *clusters.get(name.as_str()).ok_or_else(|| {
                invalid(
                    format!("{key}.replicas"),
                    format!("unknown cluster {name:?}"),
                )
            })?;
            if i == primary {
                return Err(invalid(
                    format!("{key}.replicas"),
                    "must be another cluster than the listener's (the primary)",
                ));
            }
            Some(i)
        }
    };
    let read_your_writes = match f.read_your_writes.as_deref() {
        None | Some("off") => ReadYourWrites::Off,
        Some("gtid") => ReadYourWrites::Gtid(match &f.gtid_wait_timeout {
            Some(s) => positive_duration(&format!("{key}.gtid_wait_timeout"), s)?,
            None => DEFAULT_GTID_WAIT,
        }),
        Some(s) => ReadYourWrites::Primary(
            positive_duration(&format!("{key}.read_your_writes"), s).map_err(|_| {
                invalid(
                    format!("{key}.read_your_writes"),
                    format!("{s:?} is neither \"off\", \"gtid\" nor a duration like \"2s\""),
                )
            })?,
        ),
    };
    if f.gtid_wait_timeout.is_some() && !matches!(read_your_writes, ReadYourWrites::Gtid(_)) {
        return Err(invalid(
            format!("{key}.gtid_wait_timeout"),
            "applies with read_your_writes = \"gtid\" only",
        ));
    }
    let server_version = f
        .server_version
        .unwrap_or_else(|| DEFAULT_SERVER_VERSION.to_owned());
    if server_version.is_empty() || server_version.len() > 60 || server_version.contains('\0') {
        return Err(invalid(
            format!("{key}.server_version"),
            "must be 1 to 60 bytes without NUL",
        ));
    }
    let max_packet = match f.max_packet {
        None => DEFAULT_MAX_PACKET,
        Some(n) if (1024..=MAX_MAX_PACKET).contains(&n) => n as usize,
        Some(n) => {
            return Err(invalid(
                format!("{key}.max_packet"),
                format!("{n} is outside 1024..={MAX_MAX_PACKET}"),
            ));
        }
    };
    Ok(MysqlListener {
        users,
        replicas,
        no_replica: f.no_replica.unwrap_or_default(),
        read_your_writes,
        auth_plugin: f.auth_plugin.unwrap_or_default(),
        server_version,
        max_packet,
    })
}

/// A replica cluster must be checked as replicas: that is what keeps a lagging or stopped
/// replica out of reads.
pub fn check_replicas(key: &str, c: &ClusterConfig) -> Result<(), ConfigError> {
    let lag_checked = c.health_check.as_ref().is_some_and(|h| {
        h.kind == CheckKind::Mysql
            && h.mysql
                .as_ref()
                .is_some_and(|m| m.max_replication_lag.is_some())
    });
    if lag_checked {
        Ok(())
    } else {
        Err(invalid(
            format!("clusters.{}.health_check", c.name),
            format!(
                "{key}.mysql.replicas reads from this cluster: it needs kind = \"mysql\" checks with max_replication_lag, or a lagging or stopped replica would serve reads"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn file(mysql: &str, replica_check: &str) -> String {
        format!(
            r#"
            [listeners.db]
            listen = "127.0.0.1:7306"
            protocol = "mysql"
            cluster = "primary"
            [listeners.db.mysql]
            {mysql}
            [clusters.primary]
            endpoints = [{{ addr = "127.0.0.1:13306" }}]
            [clusters.replicas]
            endpoints = [{{ addr = "127.0.0.1:13307" }}]
            {replica_check}
            "#
        )
    }

    const USERS: &str = r#"users = [{ user = "app", password = "app" }]"#;
    const LAG_CHECK: &str = r#"
            [clusters.replicas.health_check]
            kind = "mysql"
            user = "c"
            password = "c"
            max_replication_lag = "5s""#;

    fn key_of(text: &str) -> String {
        parse(text).unwrap_err().key().to_owned()
    }

    #[test]
    fn a_full_listener_is_read() {
        let c = parse(&file(
            &format!(
                "{USERS}\nreplicas = \"replicas\"\nread_your_writes = \"gtid\"\ngtid_wait_timeout = \"50ms\"\nno_replica = \"error\"\nauth_plugin = \"caching_sha2_password\"\nmax_packet = 4096"
            ),
            LAG_CHECK,
        ))
        .unwrap();
        let m = c.listeners[0].mysql.as_ref().unwrap();
        assert_eq!(m.replicas, Some(1));
        assert_eq!(
            m.read_your_writes,
            ReadYourWrites::Gtid(Duration::from_millis(50))
        );
        assert_eq!(m.no_replica, NoReplica::Error);
        assert_eq!(m.auth_plugin, AuthPlugin::CachingSha2Password);
        assert_eq!(m.max_packet, 4096);
        assert_eq!(m.users[0].backend_user, "app");
        assert_eq!(m.server_version, DEFAULT_SERVER_VERSION);
        let c = parse(&file(&format!("{USERS}\nread_your_writes = \"2s\""), "")).unwrap();
        let m = c.listeners[0].mysql.as_ref().unwrap();
        assert_eq!(
            m.read_your_writes,
            ReadYourWrites::Primary(Duration::from_secs(2))
        );
        assert_eq!(m.replicas, None);
    }

    #[test]
    fn mistakes_name_their_key() {
        // A replica cluster without lag checks could serve stale reads.
        assert_eq!(
            key_of(&file(&format!("{USERS}\nreplicas = \"replicas\""), "")),
            "clusters.replicas.health_check"
        );
        assert_eq!(key_of(&file("users = []", "")), "listeners.db.mysql.users");
        assert_eq!(
            key_of(&file(&format!("{USERS}\nreplicas = \"nope\""), "")),
            "listeners.db.mysql.replicas"
        );
        assert_eq!(
            key_of(&file(&format!("{USERS}\nreplicas = \"primary\""), "")),
            "listeners.db.mysql.replicas"
        );
        assert_eq!(
            key_of(&file(&format!("{USERS}\nread_your_writes = \"soon\""), "")),
            "listeners.db.mysql.read_your_writes"
        );
        assert_eq!(
            key_of(&file(&format!("{USERS}\ngtid_wait_timeout = \"1s\""), "")),
            "listeners.db.mysql.gtid_wait_timeout"
        );
        assert_eq!(
            key_of(&file(&format!("{USERS}\nmax_packet = 10"), "")),
            "listeners.db.mysql.max_packet"
        );
        assert_eq!(
            key_of(&file(
                r#"users = [{ user = "a", password = "x" }, { user = "a", password = "y" }]"#,
                ""
            )),
            "listeners.db.mysql.users[1].user"
        );
        // The table is required on mysql listeners and refused on others.
        let text = file("", "").replace("[listeners.db.mysql]", "");
        assert_eq!(key_of(&text), "listeners.db.mysql");
        let tcp = file(USERS, "").replace("protocol = \"mysql\"", "protocol = \"tcp\"");
        assert_eq!(key_of(&tcp), "listeners.db.mysql");
    }
}
