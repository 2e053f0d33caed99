//! What a reload changes: which listener sockets to open and close, and which settings only
//! take effect on restart.
//!
//! Listeners are identified by their address: a listener whose address is unchanged keeps its
//! sockets (even if its name, cluster or timeouts change, which apply to its next connection).
//! This module only compares; binding and telling workers is the control plane's job.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::model::{Config, ListenerConfig};

/// The socket-level difference between the running listeners and a new configuration.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListenerDiff<'a> {
    /// Listeners of the new configuration whose address is not bound yet.
    pub added: Vec<&'a ListenerConfig>,
    /// Bound addresses that the new configuration no longer has.
    pub removed: Vec<SocketAddr>,
}

/// Compares the addresses bound now with the listeners of `new`.
pub fn listeners<'a>(bound: &HashSet<SocketAddr>, new: &'a Config) -> ListenerDiff<'a> {
    let wanted: HashSet<SocketAddr> = new.listeners.iter().map(|l| l.listen).collect();
    let mut removed: Vec<SocketAddr> = bound.difference(&wanted).copied().collect();
    removed.sort_unstable();
    ListenerDiff {
        added: new
            .listeners
            .iter()
            .filter(|l| !bound.contains(&l.listen))
            .collect(),
        removed,
    }
}

/// Keys whose new value is ignored until the process restarts, with a human-readable note.
pub fn restart_only(old: &Config, new: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    let mut check = |changed: bool, key: &str| {
        if changed {
            notes.push(format!("{key} changed; it takes effect on restart"));
        }
    };
    check(old.workers != new.workers, "workers");
    check(old.pin_workers != new.pin_workers, "pin_workers");
    check(old.buffer_size != new.buffer_size, "buffer_size");
    check(old.admin != new.admin, "admin.listen");
    check(old.log != new.log, "log");
    for l in &new.listeners {
        if let Some(o) = old.listeners.iter().find(|o| o.listen == l.listen) {
            check(
                o.backlog != l.backlog,
                &format!("listeners.{}.backlog", l.name),
            );
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn cfg(listeners: &[(&str, &str)]) -> Config {
        let mut text = String::from("[clusters.c]\nendpoints = [{ addr = \"127.0.0.1:9\" }]\n");
        for (name, addr) in listeners {
            text.push_str(&format!(
                "[listeners.{name}]\nlisten = \"{addr}\"\ncluster = \"c\"\n"
            ));
        }
        parse(&text).unwrap()
    }

    #[test]
    fn unchanged_addresses_are_not_touched_even_when_renamed() {
        let bound: HashSet<SocketAddr> = ["127.0.0.1:7001".parse().unwrap()].into();
        let new = cfg(&[("renamed", "127.0.0.1:7001")]);
        assert_eq!(listeners(&bound, &new), ListenerDiff::default());
    }

    #[test]
    fn added_and_removed() {
        let bound: HashSet<SocketAddr> = [
            "127.0.0.1:7001".parse().unwrap(),
            "127.0.0.1:7002".parse().unwrap(),
        ]
        .into();
        let new = cfg(&[("a", "127.0.0.1:7001"), ("b", "127.0.0.1:7003")]);
        let d = listeners(&bound, &new);
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.added[0].name, "b");
        assert_eq!(d.removed, vec!["127.0.0.1:7002".parse().unwrap()]);
    }

    #[test]
    fn restart_only_keys_are_reported() {
        let old = cfg(&[("a", "127.0.0.1:7001")]);
        let mut new = old.clone();
        new.workers += 1;
        new.listeners[0].backlog = 7;
        let notes = restart_only(&old, &new);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("workers"));
        assert!(notes[1].starts_with("listeners.a.backlog"));
    }
}
