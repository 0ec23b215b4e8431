//! Prometheus metrics: one registry per agent, owned by [`crate::agent`], that every
//! component adds its families to; served as OpenMetrics text on `--metrics-bind`
//! ([`http`]), on the status socket (`{"cmd":"metrics"}`) and by `haserf metrics`.
//!
//! How a component adds its families (names and help texts live in [`names`]):
//! - state it already keeps as a snapshot (gossip stats, the reconciler status) is encoded
//!   at scrape time by a [`Collector`] registered with [`MetricsRegistry::register_collector`],
//!   using [`encode_counter`] / [`encode_gauge`];
//! - events it observes (latencies, counts of things nobody else keeps) go in a live metric
//!   (`Counter`, `Histogram`, a `Family` of them) registered once with
//!   [`MetricsRegistry::register`] and updated in place — see [`latency::Latency`].
//!
//! The encoder is `prometheus-client`'s OpenMetrics 1.0 text (the format Prometheus
//! negotiates first; counters' samples end in `_total`, the document in `# EOF`). Label
//! values are escaped here ([`LabelValue`]), since the encoder writes them as given.

pub mod http;
pub mod latency;
pub mod names;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::encoding::{EncodeLabelValue, EncodeMetric, LabelValueEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry};

use names::{Family, Kind};

/// `Content-Type` of the exposition [`MetricsRegistry::encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The agent's registry; cheap to clone, shared by every component.
#[derive(Clone)]
pub struct MetricsRegistry {
    inner: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRegistry")
    }
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsRegistry {
    /// A registry holding the standard `process_*` families (CPU, memory, file
    /// descriptors, threads, start time; Linux `/proc/self`) and `haserf_build_info`.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        if let Err(e) =
            kubert_prometheus_process::register(registry.sub_registry_with_prefix("process"))
        {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        registry.register_collector(Box::new(BuildInfo));
        MetricsRegistry {
            inner: Arc::new(Mutex::new(registry)),
        }
    }

    /// Registers a live metric under a family of [`names`] (its name and help).
    pub fn register(&self, family: &Family, metric: impl Metric) {
        lock(&self.inner).register(family.name, family.help, metric);
    }

    /// Registers a collector, asked for its families at every scrape.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        lock(&self.inner).register_collector(collector);
    }

    /// The whole exposition, `# EOF` included.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &lock(&self.inner)) {
            tracing::warn!(error = %e, "metrics encoding failed");
            out.clear();
            let _ = writeln!(out, "# EOF");
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A label value, escaped as the exposition format wants (`\\`, `\"`, `\n`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelValue(pub String);

impl From<&str> for LabelValue {
    fn from(s: &str) -> Self {
        LabelValue(s.to_string())
    }
}

impl From<String> for LabelValue {
    fn from(s: String) -> Self {
        LabelValue(s)
    }
}

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Label pairs of one sample, in the family's label order.
pub type Labels = Vec<(&'static str, LabelValue)>;

/// One sample's labels from values given in the family's label order.
pub fn labels(family: &Family, values: &[&str]) -> Labels {
    debug_assert_eq!(family.labels.len(), values.len(), "{}", family.name);
    family
        .labels
        .iter()
        .zip(values)
        .map(|(k, v)| (*k, LabelValue::from(*v)))
        .collect()
}

fn descriptor<'e>(
    encoder: &'e mut DescriptorEncoder<'_>,
    family: &'e Family,
) -> Result<prometheus_client::encoding::MetricEncoder<'e>, std::fmt::Error> {
    let kind = match family.kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
    };
    encoder.encode_descriptor(family.name, family.help, None, kind)
}

/// Encodes a counter family from a snapshot: one sample per `(labels, value)`; an
/// unlabelled family takes one sample with empty labels.
pub fn encode_counter(
    encoder: &mut DescriptorEncoder<'_>,
    family: &Family,
    samples: &[(Labels, u64)],
) -> std::fmt::Result {
    debug_assert_eq!(family.kind, Kind::Counter, "{}", family.name);
    encode_samples(encoder, family, samples, ConstCounter::new)
}

/// Encodes a gauge family from a snapshot (as [`encode_counter`]).
pub fn encode_gauge(
    encoder: &mut DescriptorEncoder<'_>,
    family: &Family,
    samples: &[(Labels, i64)],
) -> std::fmt::Result {
    debug_assert_eq!(family.kind, Kind::Gauge, "{}", family.name);
    encode_samples(encoder, family, samples, ConstGauge::new)
}

fn encode_samples<V: Copy, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    family: &Family,
    samples: &[(Labels, V)],
    metric_of: impl Fn(V) -> M,
) -> std::fmt::Result {
    let mut metric = descriptor(encoder, family)?;
    if let [(labels, value)] = samples {
        if labels.is_empty() {
            // no braces for an unlabelled sample
            return metric_of(*value).encode(metric);
        }
    }
    for (labels, value) in samples {
        metric_of(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

#[derive(Debug)]
struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let f = &names::BUILD_INFO;
        encode_gauge(
            &mut encoder,
            f,
            &[(labels(f, &[env!("CARGO_PKG_VERSION")]), 1)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl Collector for Fixed {
        fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
            encode_counter(&mut e, &names::APPLIES, &[(Vec::new(), 3)])?;
            let f = &names::SLOTS_USED;
            encode_gauge(&mut e, f, &[(labels(f, &["we\"b\\1\n"]), 2)])
        }
    }

    #[test]
    fn a_collector_s_families_are_encoded_with_total_suffixes_and_escaped_labels() {
        let m = MetricsRegistry::new();
        m.register_collector(Box::new(Fixed));
        let text = m.encode();
        assert!(text.contains("# TYPE haserf_applies counter\n"), "{text}");
        assert!(text.contains("\nhaserf_applies_total 3\n"), "{text}");
        assert!(
            text.contains("\nhaserf_slots_used{backend=\"we\\\"b\\\\1\\n\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("haserf_build_info{version=\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_process_families_are_there() {
        let text = MetricsRegistry::new().encode();
        for name in names::PROCESS {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing:\n{text}"
            );
        }
    }
}
