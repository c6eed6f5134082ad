//! Prometheus text for `GET /metrics`, built at scrape time from the
//! counters the nodes keep anyway (status, stats, policy runtime), so the
//! hot paths carry no second set of metric objects.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::policy_runtime::PolicyRuntime;

type Labels = Vec<(String, String)>;

/// One scrape's worth of metrics, rendered as Prometheus text.
pub struct Metrics {
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            registry: Registry::with_prefix("regionsync"),
        }
    }
}

impl Metrics {
    /// A counter.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        let c: Counter = Counter::default();
        c.inc_by(value);
        self.registry.register(name, help, c);
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) {
        let g: Gauge = Gauge::default();
        g.set(value);
        self.registry.register(name, help, g);
    }

    /// A counter per label set, e.g. full syncs by reason and outcome.
    pub fn counters<'a>(
        &mut self,
        name: &str,
        help: &str,
        values: impl IntoIterator<Item = (Vec<(&'a str, String)>, u64)>,
    ) {
        let family = Family::<Labels, Counter>::default();
        for (labels, v) in values {
            let labels = labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            family.get_or_create(&labels).inc_by(v);
        }
        self.registry.register(name, help, family);
    }

    /// A gauge per label set, e.g. lag per follower.
    pub fn gauges<'a>(
        &mut self,
        name: &str,
        help: &str,
        values: impl IntoIterator<Item = (Vec<(&'a str, String)>, i64)>,
    ) {
        let family = Family::<Labels, Gauge>::default();
        for (labels, v) in values {
            let labels = labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            family.get_or_create(&labels).set(v);
        }
        self.registry.register(name, help, family);
    }

    /// The node's history ring: its span, capacity and length. `next` is
    /// the node's next index (a follower's may run ahead of its ring's
    /// first record after a completion).
    pub fn history(&mut self, first: u64, next: u64, capacity: u64, length: u64) {
        self.gauge(
            "history_first_index",
            "Oldest index in the node's history ring",
            first as i64,
        );
        self.gauge("history_next_index", "The node's next index", next as i64);
        self.gauge(
            "history_capacity",
            "Records the ring can hold",
            capacity as i64,
        );
        self.gauge("history_length", "Records in the ring", length as i64);
    }

    /// The policy runtime's counters, the same on every node.
    pub fn policy(&mut self, p: &PolicyRuntime) {
        let s = p.stats();
        let info = p.info();
        self.gauges(
            "policy_info",
            "The active policy (value 1)",
            [(vec![("name", info.name), ("version", info.version)], 1)],
        );
        self.counter(
            "policy_calls",
            "Policy decisions asked for",
            s.calls.load(Ordering::Relaxed),
        );
        self.counter(
            "policy_errors",
            "Policy calls that trapped, timed out or were rejected",
            s.errors.load(Ordering::Relaxed),
        );
        self.counter(
            "policy_fallbacks",
            "Safe decisions taken instead of the policy's",
            s.fallbacks.load(Ordering::Relaxed),
        );
        self.counter(
            "policy_builtin_answers",
            "Decisions the built-in policy answered for a failed call",
            s.builtin_answers.load(Ordering::Relaxed),
        );
        self.counter(
            "policy_rollbacks",
            "Automatic rollbacks to the previous policy",
            s.rollbacks.load(Ordering::Relaxed),
        );
        self.counter(
            "policy_swaps",
            "Policy swaps done",
            s.swaps.load(Ordering::Relaxed),
        );
        self.counter(
            "policy_swaps_refused",
            "Policy swaps refused (the old policy stayed)",
            s.failed_swaps.load(Ordering::Relaxed),
        );
        if let Some(shadow) = p.shadow_status() {
            let (name, version) = (shadow.name, shadow.version);
            let decisions = shadow.by_function.into_iter().flat_map(|(function, c)| {
                [("same", c.same), ("differ", c.differ), ("failed", c.failed)].map(
                    |(outcome, n)| {
                        let labels = vec![
                            ("candidate", name.clone()),
                            ("function", function.clone()),
                            ("outcome", outcome.to_string()),
                        ];
                        (labels, n)
                    },
                )
            });
            self.counters(
                "policy_shadow_decisions",
                "Decisions asked of the shadow policy, by function and outcome against the live answer",
                decisions,
            );
            self.counters(
                "policy_shadow_skipped",
                "Decisions not shadowed because the candidate fell behind",
                [(
                    vec![("candidate", name), ("version", version)],
                    shadow.skipped,
                )],
            );
        }
    }

    /// The Prometheus text.
    pub fn render(self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
