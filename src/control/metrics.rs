//! Prometheus text exposition (format 0.0.4) for `{"cmd":"metrics"}`.

use std::fmt::Write as _;

/// Kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter.
    Counter,
    /// Value that goes up and down.
    Gauge,
}

/// Builds an exposition document family by family.
#[derive(Debug, Default)]
pub struct Metrics {
    out: String,
}

impl Metrics {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a family with its samples: `(labels, value)`; labels are `(name, value)` pairs.
    pub fn family(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        samples: &[(Vec<(&str, String)>, f64)],
    ) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.out.push_str(name);
            if !labels.is_empty() {
                self.out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
                }
                self.out.push('}');
            }
            let _ = writeln!(self.out, " {}", format_value(*value));
        }
        self
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: f64) -> &mut Self {
        self.family(name, help, kind, &[(Vec::new(), value)])
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_exposition_format() {
        let mut m = Metrics::new();
        m.single("haserf_applies_total", "Plans applied.", Kind::Counter, 3.0);
        m.family(
            "haserf_members",
            "Members by status.",
            Kind::Gauge,
            &[(vec![("status", "alive".into())], 2.0)],
        );
        assert_eq!(
            m.finish(),
            "# HELP haserf_applies_total Plans applied.\n# TYPE haserf_applies_total counter\n\
             haserf_applies_total 3\n# HELP haserf_members Members by status.\n\
             # TYPE haserf_members gauge\nhaserf_members{status=\"alive\"} 2\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut m = Metrics::new();
        m.family(
            "x",
            "h",
            Kind::Gauge,
            &[(vec![("b", "a\"b\\c\nd".into())], 0.5)],
        );
        assert!(m.finish().contains("x{b=\"a\\\"b\\\\c\\nd\"} 0.5\n"));
    }
}
