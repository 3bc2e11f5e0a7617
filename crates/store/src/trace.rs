//! W3C trace context (`traceparent`) across processes: the HTTP request that received a
//! submission, the change events it and its batches write to the outbox, the broker messages
//! the relay publishes, and the webhook requests that deliver them belong to one trace.
//!
//! The context is read from and given to `tracing` spans; it is only there when the process
//! exports traces (an OpenTelemetry layer is installed, `carrierhub --otlp-endpoint`).
//! Without one, [`current`] is `None`, nothing is stored, and a context received is passed on
//! unchanged ([`forward`]), so a trace goes on through a process that exports nothing.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (HTTP, broker messages) and the outbox column holding the context.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of the current span, when traces are exported.
pub fn current() -> Option<String> {
    of(&tracing::Span::current())
}

/// The `traceparent` naming `span` as the parent, when traces are exported.
pub fn of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_ref = context.span();
    let sc = span_ref.span_context();
    sc.is_valid().then(|| format(sc))
}

/// What to send on from `span`: its own context when traces are exported, otherwise the one
/// it received.
pub fn forward(span: &tracing::Span, received: Option<&str>) -> Option<String> {
    of(span).or_else(|| received.filter(|v| parse(v).is_some()).map(str::to_owned))
}

/// Makes `span` a child of the remote span `traceparent` names (a value that is not a valid
/// `traceparent` is ignored, as the W3C recommendation says). Call it before the span is
/// first entered.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(sc) = traceparent.and_then(parse) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
    }
}

fn format(sc: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )
}

/// A version-00 `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`,
/// lowercase, neither id all zeros.
pub fn parse(value: &str) -> Option<SpanContext> {
    let value = value.trim();
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if parts.next().is_some()
        || version != "00"
        || !lower_hex(trace, 32)
        || !lower_hex(span, 16)
        || !lower_hex(flags, 2)
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_the_w3c_header() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse(v).unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled());
        assert_eq!(format(&sc), v);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_an_exporter_a_received_context_is_passed_on() {
        let span = tracing::info_span!("t");
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        set_parent(&span, Some(v));
        assert_eq!(of(&span), None);
        assert_eq!(forward(&span, Some(v)).as_deref(), Some(v));
        assert_eq!(forward(&span, Some("garbage")), None);
    }
}
