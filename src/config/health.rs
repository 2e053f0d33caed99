//! Validation of a cluster's health settings: `[clusters.NAME.health_check]` (active checks)
//! and `[clusters.NAME.outlier]` (passive ejection). Defaults are HAProxy's for checks
//! (2 s interval, rise 2, fall 3) and Envoy's for ejection (5 failures, 30 s doubling to 300 s,
//! at most 10% of a cluster ejected).
//!
//! Only checks values; running checks is `control::checks`, ejecting is `upstream::health`.

use std::time::Duration;

use super::ConfigError;
use super::file::{CheckKind, HealthCheckFile, OutlierFile};
use super::model::{HealthCheck, HttpCheck, MysqlCheck, Outlier, defaults, limits};
use super::validate::{invalid, parse_duration, positive_duration};

pub fn check(key: &str, h: HealthCheckFile) -> Result<HealthCheck, ConfigError> {
    let interval = match &h.interval {
        Some(s) => positive_duration(&format!("{key}.interval"), s)?,
        None => defaults::CHECK_INTERVAL,
    };
    if interval < limits::MIN_CHECK_INTERVAL {
        return Err(invalid(
            format!("{key}.interval"),
            format!("must be at least {:?}", limits::MIN_CHECK_INTERVAL),
        ));
    }
    let timeout = match &h.timeout {
        Some(s) => positive_duration(&format!("{key}.timeout"), s)?,
        None => defaults::CHECK_TIMEOUT.min(interval),
    };
    let jitter = match &h.jitter {
        Some(s) => parse_duration(&format!("{key}.jitter"), s)?,
        None => interval / 10,
    };
    let count = |field: &str, v: Option<u32>, default: u32| match v {
        None => Ok(default),
        Some(n) if (1..=limits::MAX_RISE_FALL).contains(&n) => Ok(n),
        Some(n) => Err(invalid(
            format!("{key}.{field}"),
            format!("{n} is outside 1..={}", limits::MAX_RISE_FALL),
        )),
    };
    let mysql = match h.kind {
        CheckKind::Mysql => Some(MysqlCheck {
            user: h.user.clone().ok_or_else(|| {
                invalid(
                    format!("{key}.user"),
                    "a mysql check needs the user it logs in as",
                )
            })?,
            password: h.password.clone().unwrap_or_default(),
            max_replication_lag: match &h.max_replication_lag {
                Some(s) => Some(parse_duration(&format!("{key}.max_replication_lag"), s)?),
                None => None,
            },
        }),
        _ => {
            let mysql_only = [
                ("user", h.user.is_some()),
                ("password", h.password.is_some()),
                ("max_replication_lag", h.max_replication_lag.is_some()),
            ];
            if let Some((field, _)) = mysql_only.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    format!("{key}.{field}"),
                    "applies to kind = \"mysql\" only",
                ));
            }
            None
        }
    };
    let rise = count("rise", h.rise, defaults::CHECK_RISE)?;
    let fall = count("fall", h.fall, defaults::CHECK_FALL)?;
    if h.kind != CheckKind::Http {
        let http_only = [
            ("method", h.method.is_some()),
            ("path", h.path.is_some()),
            ("host", h.host.is_some()),
            ("expect_status", h.expect_status.is_some()),
            ("expect_body", h.expect_body.is_some()),
        ];
        if let Some((field, _)) = http_only.iter().find(|(_, set)| *set) {
            return Err(invalid(
                format!("{key}.{field}"),
                "applies to kind = \"http\" only",
            ));
        }
    }
    Ok(HealthCheck {
        kind: h.kind,
        mysql,
        interval,
        timeout,
        jitter,
        rise,
        fall,
        initial: h.initial.unwrap_or_default(),
        http: http(
            key,
            h.method,
            h.path,
            h.host,
            h.expect_status,
            h.expect_body,
        )?,
    })
}

fn http(
    key: &str,
    method: Option<String>,
    path: Option<String>,
    host: Option<String>,
    expect_status: Option<Vec<u16>>,
    expect_body: Option<String>,
) -> Result<HttpCheck, ConfigError> {
    let method = method.unwrap_or_else(|| "GET".to_owned());
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(invalid(
            format!("{key}.method"),
            format!("{method:?} is not an HTTP method like \"GET\" or \"HEAD\""),
        ));
    }
    let path = path.unwrap_or_else(|| "/".to_owned());
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(invalid(
            format!("{key}.path"),
            format!("{path:?} must start with / and have no spaces or control characters"),
        ));
    }
    if let Some(h) = &host {
        if h.is_empty() || h.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(invalid(
                format!("{key}.host"),
                format!("{h:?} is not a host name"),
            ));
        }
    }
    let expect_status = expect_status.unwrap_or_default();
    if let Some(s) = expect_status.iter().find(|s| !(100..=599).contains(*s)) {
        return Err(invalid(
            format!("{key}.expect_status"),
            format!("{s} is not an HTTP status (100..=599)"),
        ));
    }
    Ok(HttpCheck {
        method,
        path,
        host,
        expect_status,
        expect_body,
    })
}

pub fn outlier(key: &str, o: OutlierFile) -> Result<Outlier, ConfigError> {
    let failures = o
        .consecutive_failures
        .unwrap_or(defaults::CONSECUTIVE_FAILURES);
    if !(1..=limits::MAX_CONSECUTIVE_FAILURES).contains(&failures) {
        return Err(invalid(
            format!("{key}.consecutive_failures"),
            format!(
                "{failures} is outside 1..={}",
                limits::MAX_CONSECUTIVE_FAILURES
            ),
        ));
    }
    let time = |field: &str, v: &Option<String>, default: Duration| match v {
        Some(s) => positive_duration(&format!("{key}.{field}"), s),
        None => Ok(default),
    };
    let base = time(
        "base_ejection_time",
        &o.base_ejection_time,
        defaults::BASE_EJECTION_TIME,
    )?;
    let max = time(
        "max_ejection_time",
        &o.max_ejection_time,
        defaults::MAX_EJECTION_TIME.max(base),
    )?;
    if max < base {
        return Err(invalid(
            format!("{key}.max_ejection_time"),
            "must not be less than base_ejection_time",
        ));
    }
    let percent = o
        .max_ejection_percent
        .unwrap_or(defaults::MAX_EJECTION_PERCENT);
    if percent > 100 {
        return Err(invalid(
            format!("{key}.max_ejection_percent"),
            format!("{percent} is outside 0..=100"),
        ));
    }
    Ok(Outlier {
        consecutive_failures: failures,
        base_ejection_time: base,
        max_ejection_time: max,
        max_ejection_percent: percent,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::model::{CheckKind, InitialHealth, defaults};
    use crate::config::parse;
    use std::time::Duration;

    fn with(extra: &str) -> String {
        format!(
            "[listeners.l]\nlisten = \"127.0.0.1:7001\"\ncluster = \"c\"\n\
             [clusters.c]\nendpoints = [{{ addr = \"127.0.0.1:9001\" }}]\n{extra}"
        )
    }

    fn error_key(extra: &str) -> String {
        parse(&with(extra)).unwrap_err().key().to_owned()
    }

    #[test]
    fn defaults_and_values() {
        let c = parse(&with("")).unwrap();
        assert_eq!(c.clusters[0].health_check, None);
        assert_eq!(c.clusters[0].outlier, None);
        assert_eq!(c.clusters[0].panic_threshold, 0);

        let c = parse(&with(
            "panic_threshold = 50\n[clusters.c.health_check]\nkind = \"http\"\ninterval = \"200ms\"\n\
             fall = 2\npath = \"/healthz\"\nexpect_status = [200, 204]\ninitial = \"unhealthy\"\n\
             [clusters.c.outlier]\nconsecutive_failures = 3\nbase_ejection_time = \"1s\"\n",
        ))
        .unwrap();
        let cl = &c.clusters[0];
        assert_eq!(cl.panic_threshold, 50);
        let h = cl.health_check.as_ref().unwrap();
        assert_eq!(h.kind, CheckKind::Http);
        assert_eq!(h.interval, Duration::from_millis(200));
        assert_eq!(h.timeout, Duration::from_millis(200), "capped at interval");
        assert_eq!(h.jitter, Duration::from_millis(20));
        assert_eq!((h.rise, h.fall), (defaults::CHECK_RISE, 2));
        assert_eq!(h.initial, InitialHealth::Unhealthy);
        assert_eq!(h.http.method, "GET");
        assert_eq!(h.http.path, "/healthz");
        assert_eq!(h.http.expect_status, vec![200, 204]);
        let o = cl.outlier.as_ref().unwrap();
        assert_eq!(o.consecutive_failures, 3);
        assert_eq!(o.base_ejection_time, Duration::from_secs(1));
        assert_eq!(o.max_ejection_time, defaults::MAX_EJECTION_TIME);
        assert_eq!(o.max_ejection_percent, defaults::MAX_EJECTION_PERCENT);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            ("panic_threshold = 101", "clusters.c.panic_threshold"),
            (
                "[clusters.c.health_check]\nkind = \"smtp\"",
                "clusters.c.health_check.kind",
            ),
            (
                "[clusters.c.health_check]\nkind = \"tcp\"\ninterval = \"1ms\"",
                "clusters.c.health_check.interval",
            ),
            (
                "[clusters.c.health_check]\nkind = \"tcp\"\nrise = 0",
                "clusters.c.health_check.rise",
            ),
            (
                "[clusters.c.health_check]\nkind = \"tcp\"\nfall = 101",
                "clusters.c.health_check.fall",
            ),
            (
                "[clusters.c.health_check]\nkind = \"tcp\"\npath = \"/\"",
                "clusters.c.health_check.path",
            ),
            (
                "[clusters.c.health_check]\nkind = \"http\"\npath = \"x\"",
                "clusters.c.health_check.path",
            ),
            (
                "[clusters.c.health_check]\nkind = \"http\"\nmethod = \"get it\"",
                "clusters.c.health_check.method",
            ),
            (
                "[clusters.c.health_check]\nkind = \"http\"\nexpect_status = [700]",
                "clusters.c.health_check.expect_status",
            ),
            (
                "[clusters.c.health_check]\nkind = \"tcp\"\ntimeout = \"0s\"",
                "clusters.c.health_check.timeout",
            ),
            (
                "[clusters.c.health_check]\nkind = \"tcp\"\nretries = 3",
                "clusters.c.health_check.retries",
            ),
            (
                "[clusters.c.outlier]\nconsecutive_failures = 0",
                "clusters.c.outlier.consecutive_failures",
            ),
            (
                "[clusters.c.outlier]\nbase_ejection_time = \"10s\"\nmax_ejection_time = \"1s\"",
                "clusters.c.outlier.max_ejection_time",
            ),
            (
                "[clusters.c.outlier]\nmax_ejection_percent = 200",
                "clusters.c.outlier.max_ejection_percent",
            ),
        ] {
            assert_eq!(error_key(extra), key, "{extra}");
        }
    }

    #[test]
    fn outlier_is_refused_on_sharded_clusters() {
        let text = with("[clusters.c.outlier]\n")
            .replace("cluster = \"c\"", "cluster = \"c\"\nprotocol = \"redis\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key(), "clusters.c.outlier");
        assert!(e.to_string().contains("auto_eject_hosts"), "{e}");
    }
}
