//! Fuzzes the control-file parser and the routing-table build behind it.
//!
//! Invariants, not just "no panic": whatever text comes in, `parse` returns an error or a
//! configuration whose references resolve and whose limits hold, and building a routing
//! table from it and picking endpoints with every policy stays in bounds.
#![no_main]

use corelane::config::model::limits;
use corelane::config::table::RoutingTable;
use corelane::tls::TlsSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = corelane::config::parse(text) else { return };
    for l in &cfg.listeners {
        assert!(l.cluster < cfg.clusters.len());
        assert_ne!(l.listen.port(), 0);
    }
    for c in &cfg.clusters {
        assert!(!c.endpoints.is_empty() && c.endpoints.len() <= limits::MAX_ENDPOINTS);
        assert!(c.connect_attempts >= 1 && c.connect_attempts <= c.endpoints.len());
        assert!(c.endpoints.iter().all(|e| e.weight.get() <= limits::MAX_WEIGHT));
    }
    // No certificate is read here: TLS listeners get no server configuration.
    let table = RoutingTable::build(cfg, 1, 2, None, &TlsSet::default());
    for c in table.clusters.iter() {
        let n = c.endpoints.len();
        for healthy_only in [true, false] {
            let mut tried = Vec::new();
            while let Some(i) = c.balancer.pick(&c.endpoints, 1, b"192.0.2.7", &tried, healthy_only) {
                assert!(i < n && !tried.contains(&i), "pick {i} of {n}, tried {tried:?}");
                tried.push(i);
                if tried.len() > 4 {
                    break;
                }
            }
        }
    }
});
