//! Traces over OTLP/HTTP (protobuf), when an endpoint is configured (`--otlp-endpoint` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`); off otherwise. The spans are the `tracing` spans at the
//! level the log filter lets through (`request`, `process_submission`, `commit_batch`,
//! `publish_events`, `deliver_webhook`, …), exported in batches by a thread of their own
//! (`OTEL_BSP_*` tune it). `OTEL_SERVICE_NAME` names the service (default `carrierhub`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use opentelemetry_sdk::Resource;
use std::sync::OnceLock;
use tracing_subscriber::registry::LookupSpan;

static TRACER: OnceLock<Tracer> = OnceLock::new();

/// The exporter of this process; [`Traces::shutdown`] sends what is still buffered.
pub struct Traces(Option<SdkTracerProvider>);

/// The URL spans are posted to: a base URL (`http://collector:4318`) gets the signal's path
/// `/v1/traces`, as the OTLP specification says of `OTEL_EXPORTER_OTLP_ENDPOINT`; a URL that
/// already ends with it is kept.
fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Starts exporting to `endpoint`, when there is one. Call it before the log is set up (the
/// layer [`layer`] returns joins it) and outside the async runtime.
pub fn start(endpoint: Option<&str>) -> anyhow::Result<Traces> {
    let Some(endpoint) = endpoint.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(Traces(None));
    };
    let url = traces_url(endpoint);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        anyhow::bail!(
            "--otlp-endpoint '{endpoint}': expected an http:// or https:// URL (OTLP/HTTP, such as http://collector:4318)"
        );
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Client::new()?)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|e| anyhow::anyhow!("--otlp-endpoint '{endpoint}': {e}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "carrierhub".to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let _ = TRACER.set(provider.tracer("carrierhub"));
    Ok(Traces(Some(provider)))
}

/// The exporter's HTTP client: the workspace's reqwest (rustls on ring), on a runtime of its
/// own, because the batch processor exports from a thread of its own, outside the process's
/// runtime (which may be gone when the last spans are flushed).
#[derive(Debug)]
struct Client {
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let request = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body);
        self.runtime.block_on(async move {
            let response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let mut answer = http::Response::builder().status(status).body(body)?;
            *answer.headers_mut() = headers;
            Ok(answer)
        })
    }
}

/// The layer that turns spans into OpenTelemetry spans, when [`start`] configured an exporter.
pub fn layer<S>() -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, Tracer>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    TRACER
        .get()
        .map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer.clone()))
}

impl Traces {
    /// Exports the spans still buffered (waits for the exporter, a few seconds at most).
    pub fn shutdown(self) {
        if let Some(provider) = self.0 {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: traces not all exported: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_a_base_url_or_the_traces_url() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
