//! The health of one endpoint, shared by every worker and the control plane: the verdict of its
//! active check and its passive (outlier) ejection.
//!
//! One [`Health`] exists per endpoint of a cluster for the life of the process: a reload that
//! keeps the endpoint hands the same `Arc` to the new table (as it does counters), so an
//! endpoint that is down stays down, and its ejection history stays, across reloads.
//!
//! Who writes what:
//! - the control plane's checker ([`Health::record_check`]) flips `up` after `rise` passes or
//!   `fall` failures in a row;
//! - workers report data-path outcomes ([`Health::failure`], [`Health::success`]). A worker
//!   writes shared memory only on a failure, or on the first success after one, so a healthy
//!   endpoint's line is read by every worker and written by none: no contended atomic in the
//!   steady state. Failures in a row are counted across workers (as Envoy's detector counts
//!   them); when the count reaches `consecutive_failures` the endpoint is ejected for
//!   `base_ejection_time` × 2^n, capped at `max_ejection_time`, where n counts recent
//!   ejections and drops by one for every `base_ejection_time` spent in service.
//!
//! Workers read [`Health::usable`] when they pick an endpoint: two relaxed loads. They never
//! wait for the checker. The timer brings an ejected endpoint back (another run of
//! `consecutive_failures` ejects it again, for longer); an active check that sees a down
//! endpoint come back up also ends its ejection. `max_ejection_percent` is checked without a
//! lock, so workers ejecting at the same instant may overshoot it by one each.
//!
//! Not here: which endpoint is picked (`balancer`), running checks (`control::checks`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;

use super::Endpoint;
use crate::config::model::Outlier;

/// Bumped whenever an endpoint becomes usable or unusable other than by an ejection timing
/// out, so views built from health (the live rings of sharded clusters) know to rebuild.
pub static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Milliseconds on a process-wide monotonic clock (never 0).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

#[derive(Debug)]
pub struct Health {
    /// The active check's verdict (always true when the cluster has no check).
    up: AtomicBool,
    /// Ejected until this [`now_ms`]; 0 when not ejected.
    ejected_until: AtomicU64,
    /// When the last ejection ended ([`now_ms`]), for the decay of `level`.
    last_return: AtomicU64,
    /// Data-path failures in a row.
    consecutive: AtomicU32,
    /// The next ejection lasts `base_ejection_time` × 2^level.
    level: AtomicU32,
    /// Counters for /metrics.
    pub ejections: AtomicU64,
    pub went_up: AtomicU64,
    pub went_down: AtomicU64,
    /// What the control plane shows; never touched by workers.
    detail: Mutex<Detail>,
}

/// Check history and reasons, for /status and /metrics.
#[derive(Debug)]
pub struct Detail {
    pub checked: bool,
    /// Passing / failing checks in a row.
    pub passes: u32,
    pub fails: u32,
    pub last: Option<LastCheck>,
    /// Why the active check took the endpoint down.
    pub down_reason: Option<String>,
    /// Why the passive detector ejected it last.
    pub eject_reason: Option<String>,
    /// Check latencies in microseconds.
    pub latency: Option<Histogram<u64>>,
}

#[derive(Debug, Clone)]
pub struct LastCheck {
    pub at: SystemTime,
    pub ok: bool,
    pub reason: Option<String>,
    pub latency: Duration,
}

/// A change of the active verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

impl Health {
    pub fn new(up: bool) -> Self {
        Health {
            up: AtomicBool::new(up),
            ejected_until: AtomicU64::new(0),
            last_return: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            level: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
            went_up: AtomicU64::new(0),
            went_down: AtomicU64::new(0),
            detail: Mutex::new(Detail {
                checked: false,
                passes: 0,
                fails: 0,
                last: None,
                down_reason: None,
                eject_reason: None,
                // Auto-resizing, 2 significant digits (a valid precision, so always `Some`).
                latency: Histogram::new(2).ok(),
            }),
        }
    }

    /// Whether the data path may send to this endpoint now.
    #[inline]
    pub fn usable(&self) -> bool {
        self.up.load(Relaxed) && !self.ejected()
    }

    /// The active check's verdict.
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Whether a passive ejection is in force. The first reader after it times out clears it.
    #[inline]
    pub fn ejected(&self) -> bool {
        let until = self.ejected_until.load(Relaxed);
        if until == 0 {
            return false;
        }
        if now_ms() < until {
            return true;
        }
        if self
            .ejected_until
            .compare_exchange(until, 0, Relaxed, Relaxed)
            .is_ok()
        {
            self.last_return.store(until, Relaxed);
        }
        false
    }

    /// Milliseconds of ejection left, if ejected.
    pub fn ejected_for(&self) -> Option<u64> {
        let until = self.ejected_until.load(Relaxed);
        let now = now_ms();
        (until > now).then(|| until - now)
    }

    /// A data-path success: ends a run of failures.
    #[inline]
    pub fn success(&self) {
        if self.consecutive.load(Relaxed) != 0 {
            self.consecutive.store(0, Relaxed);
        }
    }

    /// A data-path failure (connect error or timeout, reset before any reply, HTTP 5xx) on
    /// `endpoints[me]`. Ejects the endpoint when the run reaches the limit, unless that would
    /// eject more of `endpoints` than `max_ejection_percent` allows. Returns whether this call
    /// ejected it.
    pub fn failure(&self, outlier: &Outlier, endpoints: &[Endpoint], why: &str) -> bool {
        let run = self.consecutive.fetch_add(1, Relaxed).saturating_add(1);
        if run < outlier.consecutive_failures || self.ejected() {
            return false;
        }
        let ejected = endpoints.iter().filter(|e| e.health.ejected()).count();
        let allowed = (endpoints.len() * outlier.max_ejection_percent as usize / 100).max(1);
        if ejected >= allowed {
            tracing::debug!(
                ejected,
                allowed,
                "outlier not ejected: max_ejection_percent reached"
            );
            return false;
        }
        let now = now_ms();
        let base = duration_ms(outlier.base_ejection_time).max(1);
        let quiet = now.saturating_sub(self.last_return.load(Relaxed));
        let decay = u32::try_from(quiet / base).unwrap_or(u32::MAX);
        let level = self.level.load(Relaxed).saturating_sub(decay).min(32);
        let time = base
            .saturating_mul(1u64 << level)
            .min(duration_ms(outlier.max_ejection_time));
        if self
            .ejected_until
            .compare_exchange(0, now + time, Relaxed, Relaxed)
            .is_err()
        {
            return false; // another worker ejected it first
        }
        self.level.store(level + 1, Relaxed);
        self.consecutive.store(0, Relaxed);
        self.ejections.fetch_add(1, Relaxed);
        EPOCH.fetch_add(1, Relaxed);
        let reason = format!("{run} failures in a row, last: {why}");
        tracing::warn!(%reason, ejected_ms = time, "endpoint ejected by outlier detection");
        self.detail().eject_reason = Some(reason);
        true
    }

    /// Records one active check and returns the transition it caused, if any: `fall` failures
    /// in a row take an up endpoint down, `rise` passes in a row bring a down one up (and end
    /// any passive ejection).
    pub fn record_check(
        &self,
        result: Result<(), String>,
        latency: Duration,
        rise: u32,
        fall: u32,
    ) -> Option<Transition> {
        let mut d = self.detail();
        d.checked = true;
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Some(h) = &mut d.latency {
            h.saturating_record(micros);
        }
        let ok = result.is_ok();
        if ok {
            d.passes = d.passes.saturating_add(1);
            d.fails = 0;
        } else {
            d.fails = d.fails.saturating_add(1);
            d.passes = 0;
        }
        d.last = Some(LastCheck {
            at: SystemTime::now(),
            ok,
            reason: result.as_ref().err().cloned(),
            latency,
        });
        let up = self.up.load(Relaxed);
        if up && !ok && d.fails >= fall {
            self.up.store(false, Relaxed);
            self.went_down.fetch_add(1, Relaxed);
            EPOCH.fetch_add(1, Relaxed);
            d.down_reason = result
                .err()
                .map(|r| format!("{fall} failed checks, last: {r}"));
            return Some(Transition::Down);
        }
        if !up && ok && d.passes >= rise {
            self.up.store(true, Relaxed);
            self.went_up.fetch_add(1, Relaxed);
            if self.ejected_until.swap(0, Relaxed) != 0 {
                self.last_return.store(now_ms(), Relaxed);
            }
            EPOCH.fetch_add(1, Relaxed);
            d.down_reason = None;
            return Some(Transition::Up);
        }
        None
    }

    /// The cluster no longer has outlier detection: an ejection in force ends now.
    pub fn end_ejection(&self) {
        if self.ejected_until.swap(0, Relaxed) != 0 {
            self.last_return.store(now_ms(), Relaxed);
            EPOCH.fetch_add(1, Relaxed);
        }
    }

    /// The cluster no longer checks this endpoint: it counts as up again.
    pub fn unchecked(&self) {
        let mut d = self.detail();
        d.checked = false;
        d.passes = 0;
        d.fails = 0;
        d.down_reason = None;
        if !self.up.swap(true, Relaxed) {
            EPOCH.fetch_add(1, Relaxed);
        }
    }

    /// The control plane's view (a lock no worker takes).
    pub fn detail(&self) -> MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the endpoint is not usable now, if it is not.
    pub fn why_out(&self) -> Option<String> {
        if !self.is_up() {
            let d = self.detail();
            return Some(
                d.down_reason
                    .clone()
                    .unwrap_or_else(|| "waiting for its first passing checks".to_owned()),
            );
        }
        self.ejected_for().map(|ms| {
            let why = self.detail().eject_reason.clone().unwrap_or_default();
            format!("ejected for {ms} ms more: {why}")
        })
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::stats::EndpointStats;

    fn endpoints(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint {
                addr: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                weight: 1,
                stats: Arc::new(EndpointStats::new(1)),
                health: Arc::new(Health::new(true)),
            })
            .collect()
    }

    fn outlier(failures: u32, base_ms: u64, max_ms: u64, percent: u32) -> Outlier {
        Outlier {
            consecutive_failures: failures,
            base_ejection_time: Duration::from_millis(base_ms),
            max_ejection_time: Duration::from_millis(max_ms),
            max_ejection_percent: percent,
        }
    }

    use std::sync::Arc;

    #[test]
    fn rise_and_fall_need_results_in_a_row() {
        let h = Health::new(true);
        let fail = || Err("refused".to_owned());
        let ms = Duration::from_millis(1);
        assert_eq!(h.record_check(fail(), ms, 2, 3), None);
        assert_eq!(h.record_check(fail(), ms, 2, 3), None);
        assert_eq!(
            h.record_check(Ok(()), ms, 2, 3),
            None,
            "a pass breaks the run"
        );
        assert_eq!(h.record_check(fail(), ms, 2, 3), None);
        assert_eq!(h.record_check(fail(), ms, 2, 3), None);
        assert!(h.usable());
        assert_eq!(h.record_check(fail(), ms, 2, 3), Some(Transition::Down));
        assert!(!h.usable());
        assert!(h.why_out().unwrap().contains("refused"));
        assert_eq!(h.record_check(Ok(()), ms, 2, 3), None);
        assert_eq!(h.record_check(Ok(()), ms, 2, 3), Some(Transition::Up));
        assert!(h.usable());
        assert_eq!(h.went_down.load(Relaxed), 1);
        assert_eq!(h.went_up.load(Relaxed), 1);
        assert_eq!(h.detail().latency.as_ref().unwrap().len(), 8);
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_resets_the_run() {
        let eps = endpoints(4);
        let o = outlier(3, 60_000, 600_000, 50);
        let h = &eps[0].health;
        assert!(!h.failure(&o, &eps, "x"));
        assert!(!h.failure(&o, &eps, "x"));
        h.success();
        assert!(!h.failure(&o, &eps, "x"));
        assert!(!h.failure(&o, &eps, "x"));
        assert!(h.failure(&o, &eps, "connect: refused"));
        assert!(!h.usable() && h.ejected());
        assert!(h.why_out().unwrap().contains("3 failures in a row"));
        let left = h.ejected_for().unwrap();
        assert!((59_000..=60_000).contains(&left), "{left}");
        assert_eq!(h.ejections.load(Relaxed), 1);
    }

    #[test]
    fn max_ejection_percent_keeps_a_floor_but_one_may_always_go() {
        let eps = endpoints(4);
        let o = outlier(1, 60_000, 600_000, 10);
        assert!(
            eps[0].health.failure(&o, &eps, "x"),
            "one may always be ejected"
        );
        assert!(
            !eps[1].health.failure(&o, &eps, "x"),
            "10% of 4 is less than two"
        );
        let o = outlier(1, 60_000, 600_000, 50);
        assert!(eps[1].health.failure(&o, &eps, "x"));
        assert!(!eps[2].health.failure(&o, &eps, "x"), "50% of 4 is two");
        assert_eq!(eps.iter().filter(|e| e.health.usable()).count(), 2);
    }

    #[test]
    fn ejection_time_doubles_up_to_the_cap_and_the_timer_brings_it_back() {
        let eps = endpoints(2);
        let o = outlier(1, 40, 100, 100);
        let h = &eps[0].health;
        let mut times = Vec::new();
        for _ in 0..4 {
            assert!(h.failure(&o, &eps, "x"));
            times.push(h.ejected_for().unwrap());
            // End the ejection now, as the timer would, without waiting.
            h.ejected_until.store(1, Relaxed);
            assert!(!h.ejected(), "the timer brought it back");
            // No quiet time in service before the next failure: the level keeps growing.
            h.last_return.store(now_ms(), Relaxed);
        }
        let near = |got: u64, want: u64| got <= want && got + 5 >= want;
        assert!(near(times[0], 40), "{times:?}");
        assert!(near(times[1], 80), "{times:?}");
        assert!(near(times[2], 100), "capped: {times:?}");
        assert!(near(times[3], 100), "capped: {times:?}");
        // Quiet time in service lowers the level by one per base_ejection_time: 4 - 3 = 1,
        // so the next ejection lasts 40 ms x 2^1.
        h.ejected_until.store(1, Relaxed);
        assert!(!h.ejected());
        std::thread::sleep(Duration::from_millis(3 * 40 + 5));
        h.last_return.store(now_ms() - (3 * 40 + 1), Relaxed);
        assert!(h.failure(&o, &eps, "x"));
        assert!(near(h.ejected_for().unwrap(), 80), "{:?}", h.ejected_for());
    }

    #[test]
    fn a_passing_check_after_a_down_period_ends_an_ejection() {
        let eps = endpoints(2);
        let h = &eps[0].health;
        let o = outlier(1, 60_000, 600_000, 100);
        let ms = Duration::from_millis(1);
        assert_eq!(
            h.record_check(Err("x".into()), ms, 1, 1),
            Some(Transition::Down)
        );
        assert!(h.failure(&o, &eps, "x"));
        assert_eq!(h.record_check(Ok(()), ms, 1, 1), Some(Transition::Up));
        assert!(h.usable(), "the check brought it back, ejection included");
    }
}
