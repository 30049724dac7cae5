//! The two text formats a scrape can ask for, and the choice between them by the `Accept`
//! header, with q-values as Prometheus sends them (`application/openmetrics-text;
//! version=1.0.0,...;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`). Never fails: a scrape
//! that names nothing we speak gets the text format, as the Go client answers.

use prometheus_client::registry::Registry;

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// OpenMetrics 1.0.0: counter families are named without `_total`; ends with `# EOF`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: `HELP` and `TYPE` carry a counter's `_total` name.
    Text,
}

/// `Content-Type` of OpenMetrics 1.0.0.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Format {
    /// The `Content-Type` of a response in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format for an `Accept` header (several headers joined with `,`; empty when
    /// absent): the acceptable one with the highest q-value, the earlier on a tie; the text
    /// format when none is acceptable.
    pub(crate) fn negotiate(accept: &str) -> Format {
        let mut best: Option<(f32, Format)> = None;
        for range in accept.split(',') {
            let Some((format, q)) = Self::offer(range) else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, f)| f)
    }

    /// What we would serve for one media range of an `Accept` header, and its q-value.
    fn offer(range: &str) -> Option<(Format, f32)> {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next()?.to_ascii_lowercase();
        let (mut version, mut q) = (None, 1.0_f32);
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match key.trim().to_ascii_lowercase().as_str() {
                "version" => version = Some(value.to_owned()),
                "q" => {
                    q = value
                        .parse()
                        .ok()
                        .filter(|q: &f32| (0.0..=1.0).contains(q))?
                }
                _ => {}
            }
        }
        let format = match (media.as_str(), version.as_deref()) {
            ("application/openmetrics-text", None | Some("1.0.0")) => Format::OpenMetrics,
            ("text/plain", None | Some("0.0.4")) => Format::Text,
            ("*/*" | "text/*", _) => Format::Text,
            ("application/*", _) => Format::OpenMetrics,
            _ => return None,
        };
        Some((format, q))
    }
}

/// Every series of `registry` in `format`.
pub(super) fn render(registry: &Registry, format: Format) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry),
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, registry),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::Format::{self, OpenMetrics, Text};

    #[test]
    fn accept_headers_choose_the_format_by_q_value() {
        for (accept, want) in [
            // Prometheus 2.x, default scrape protocols.
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                OpenMetrics,
            ),
            // Prometheus 3.x with the text format preferred.
            (
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,*/*;q=0.1",
                Text,
            ),
            ("text/plain;version=0.0.4", Text),
            ("text/plain; version=0.0.4; charset=utf-8", Text),
            ("application/openmetrics-text; version=1.0.0", OpenMetrics),
            ("application/openmetrics-text", OpenMetrics),
            // curl's default, and no header at all.
            ("*/*", Text),
            ("", Text),
            // q=0 means "not this"; a version we do not speak is not a match.
            ("application/openmetrics-text;q=0,text/plain;q=0.2", Text),
            ("application/openmetrics-text;version=2.0.0", Text),
            (
                "text/plain;version=0.0.4;q=0.3,application/openmetrics-text;q=0.4",
                OpenMetrics,
            ),
            // A tie goes to the earlier range.
            ("application/openmetrics-text,text/plain", OpenMetrics),
            ("text/plain,application/openmetrics-text", Text),
            // Nothing we speak: the text format anyway.
            ("application/json", Text),
            ("application/openmetrics-text;q=bogus", Text),
        ] {
            assert_eq!(Format::negotiate(accept), want, "Accept: {accept}");
        }
        assert_eq!(
            Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(
            OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }
}
