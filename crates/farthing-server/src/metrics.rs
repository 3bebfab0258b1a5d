//! Prometheus metrics (SPEC O3) in the text exposition format: HTTP requests and latencies,
//! ledger batch sizes and commit times, webhook deliveries.
//!
//! Counters and histograms live behind one mutex each; they are touched once per request,
//! batch or delivery, which is cheap next to the work they measure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use farthing_store::BatchStats;

/// Upper bounds of latency buckets, in seconds.
const LATENCY_BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Upper bounds of settlement-lag buckets, in seconds (rails report whole seconds).
const SETTLEMENT_LAG_BUCKETS_S: [f64; 10] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0,
];
/// Upper bounds of batch-size buckets.
const SIZE_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0, 1024.0, 8192.0];

#[derive(Clone, Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (bound, count) in bounds.iter().zip(self.counts.iter_mut()) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let join = if labels.is_empty() { "" } else { "," };
        for (bound, count) in bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{join}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{join}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Registry {
    requests: BTreeMap<(String, String, u16), u64>,
    request_seconds: BTreeMap<String, Histogram>,
    batches: BTreeMap<(&'static str, bool), u64>,
    batch_groups: BTreeMap<&'static str, Histogram>,
    commit_seconds: BTreeMap<&'static str, Histogram>,
    deliveries: BTreeMap<(&'static str, String), u64>,
    refused: BTreeMap<&'static str, u64>,
    settlement_lag: BTreeMap<&'static str, Histogram>,
    /// Whether this instance runs the background work (always on SQLite).
    leader: bool,
}

/// The metrics of one server.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut registry)
    }

    /// One HTTP request on `route` (the matched pattern, never the raw path).
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.with(|r| {
            *r.requests
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
            r.request_seconds
                .entry(format!("method=\"{method}\",route=\"{route}\""))
                .or_default()
                .observe(&LATENCY_BUCKETS_S, elapsed.as_secs_f64());
        });
    }

    /// One ledger transaction of the `mode` ("live"/"test") store.
    pub fn observe_batch(&self, mode: &'static str, stats: &BatchStats) {
        self.with(|r| {
            *r.batches.entry((mode, stats.failed)).or_default() += 1;
            r.batch_groups
                .entry(mode)
                .or_default()
                .observe(&SIZE_BUCKETS, stats.groups as f64);
            r.commit_seconds
                .entry(mode)
                .or_default()
                .observe(&LATENCY_BUCKETS_S, stats.commit_time.as_secs_f64());
        });
    }

    /// One webhook delivery attempt and how it ended (`delivered`, `retry`, `failed`,
    /// `disabled`).
    pub fn observe_delivery(&self, mode: &'static str, result: &str) {
        self.with(|r| *r.deliveries.entry((mode, result.to_owned())).or_default() += 1);
    }

    /// A connection or request refused before any handler ran, by reason (`connection_cap`,
    /// or the rate limit that refused it).
    pub fn refused(&self, reason: &'static str) {
        self.with(|r| *r.refused.entry(reason).or_default() += 1);
    }

    /// A payment a rail reported, booked `lag_s` seconds after the rail says it happened.
    pub fn observe_settlement(&self, rail: &'static str, lag_s: f64) {
        self.with(|r| {
            r.settlement_lag
                .entry(rail)
                .or_default()
                .observe(&SETTLEMENT_LAG_BUCKETS_S, lag_s)
        });
    }

    /// Whether this instance leads the background work (see `workers::lead`).
    pub fn set_leader(&self, leads: bool) {
        self.with(|r| r.leader = leads);
    }

    /// Whether this instance leads the background work.
    pub fn leader(&self) -> bool {
        self.with(|r| r.leader)
    }

    /// A connection closed at once because `http.max_connections` were open.
    pub fn connection_refused(&self) {
        self.refused("connection_cap");
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.with(|r| {
            let mut out = String::new();
            out.push_str("# HELP farthing_http_requests_total HTTP requests by route and status.\n# TYPE farthing_http_requests_total counter\n");
            for ((method, route, status), count) in &r.requests {
                let _ = writeln!(
                    out,
                    "farthing_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
            out.push_str("# HELP farthing_http_request_duration_seconds HTTP request latency.\n# TYPE farthing_http_request_duration_seconds histogram\n");
            for (labels, histogram) in &r.request_seconds {
                histogram.render(
                    &mut out,
                    "farthing_http_request_duration_seconds",
                    labels,
                    &LATENCY_BUCKETS_S,
                );
            }
            out.push_str("# HELP farthing_ledger_batches_total Ledger transactions committed or failed.\n# TYPE farthing_ledger_batches_total counter\n");
            for ((mode, failed), count) in &r.batches {
                let _ = writeln!(
                    out,
                    "farthing_ledger_batches_total{{mode=\"{mode}\",failed=\"{failed}\"}} {count}"
                );
            }
            out.push_str("# HELP farthing_settlement_lag_seconds From when a rail says a payment happened to its booking, per rail.\n# TYPE farthing_settlement_lag_seconds histogram\n");
            for (rail, histogram) in &r.settlement_lag {
                histogram.render(
                    &mut out,
                    "farthing_settlement_lag_seconds",
                    &format!("rail=\"{rail}\""),
                    &SETTLEMENT_LAG_BUCKETS_S,
                );
            }
            out.push_str("# HELP farthing_ledger_batch_size Writes per ledger transaction (group commit).\n# TYPE farthing_ledger_batch_size histogram\n");
            for (mode, histogram) in &r.batch_groups {
                histogram.render(
                    &mut out,
                    "farthing_ledger_batch_size",
                    &format!("mode=\"{mode}\""),
                    &SIZE_BUCKETS,
                );
            }
            out.push_str("# HELP farthing_ledger_commit_duration_seconds Time of COMMIT with fsync.\n# TYPE farthing_ledger_commit_duration_seconds histogram\n");
            for (mode, histogram) in &r.commit_seconds {
                histogram.render(
                    &mut out,
                    "farthing_ledger_commit_duration_seconds",
                    &format!("mode=\"{mode}\""),
                    &LATENCY_BUCKETS_S,
                );
            }
            out.push_str("# HELP farthing_webhook_deliveries_total Webhook delivery attempts by result.\n# TYPE farthing_webhook_deliveries_total counter\n");
            for ((mode, result), count) in &r.deliveries {
                let _ = writeln!(
                    out,
                    "farthing_webhook_deliveries_total{{mode=\"{mode}\",result=\"{result}\"}} {count}"
                );
            }
            out.push_str("# HELP farthing_http_refused_total Connections and requests refused before a handler ran (connection cap, rate limits).\n# TYPE farthing_http_refused_total counter\n");
            for (reason, count) in &r.refused {
                let _ = writeln!(
                    out,
                    "farthing_http_refused_total{{reason=\"{reason}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP farthing_rail_payments_suspended_total Rail payments that could not be booked where they belong and are held in suspense (see `farthing audit`).\n# TYPE farthing_rail_payments_suspended_total counter\nfarthing_rail_payments_suspended_total {}",
                crate::settlement::suspended_total()
            );
            let _ = writeln!(
                out,
                "# HELP farthing_rail_payments_refused_total Rail reports refused before booking (impossible amounts, reports contradicting a settled payment).\n# TYPE farthing_rail_payments_refused_total counter\nfarthing_rail_payments_refused_total {}",
                crate::settlement::refused_total()
            );
            let _ = writeln!(
                out,
                "# HELP farthing_background_leader 1 while this instance runs the background work (webhooks, expiries, reminders, rail watchers), 0 while another instance on the same PostgreSQL database does.\n# TYPE farthing_background_leader gauge\nfarthing_background_leader {}",
                u8::from(r.leader)
            );
            out
        })
    }
}
