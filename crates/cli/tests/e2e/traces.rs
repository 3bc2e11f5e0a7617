//! Traces over OTLP: the binary, given `--otlp-endpoint`, exports one trace per upload that
//! runs from the HTTP request (continuing the caller's `traceparent`) through the relay's
//! publishing of `submission.received`, the worker's processing and its batches, the relay's
//! publishing of the change events, to the webhook delivery, whose request carries the
//! context on. The spans are received by an OTLP/HTTP receiver in this test, decoded with
//! the protocol's own protobuf types.

use crate::common;

use axum::body::Bytes;
use axum::http::HeaderMap;
use carrierhub_broker::testing::NatsServer;
use carrierhub_store::testing::TestDatabase;
use common::{Env, ACME_FEED, ACME_MAPPING};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One exported span, ids in hex.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    service: String,
}

#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    /// The `traceparent` headers of the webhook requests.
    hooks: Arc<Mutex<Vec<String>>>,
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) and a webhook endpoint (`POST /hook`)
/// on a free port; returns its base URL.
async fn receiver(received: Received) -> String {
    let spans = received.spans.clone();
    let hooks = received.hooks.clone();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let spans = spans.clone();
                async move {
                    assert_eq!(
                        headers.get("content-type").unwrap(),
                        "application/x-protobuf"
                    );
                    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    let mut spans = spans.lock().unwrap();
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .and_then(|a| a.value.as_ref())
                            .map(|v| format!("{:?}", v.value))
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for s in scope.spans {
                                spans.push(Span {
                                    name: s.name,
                                    trace_id: hex(&s.trace_id),
                                    span_id: hex(&s.span_id),
                                    parent: hex(&s.parent_span_id),
                                    service: service.clone(),
                                });
                            }
                        }
                    }
                    // An empty ExportTraceServiceResponse.
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        )
        .route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let hooks = hooks.clone();
                async move {
                    let value = headers
                        .get("traceparent")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    hooks.lock().unwrap().push(value);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// `serve` with `options`, exporting traces to `base` as service `service`.
fn serve(env: &Env, base: &str, service: &str, options: &[&str]) -> common::Server {
    let mut command = env.command();
    command
        .env("CARRIERHUB_LOG", "info")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_SERVICE_NAME", service)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--admin-bind",
            "127.0.0.1:0",
            "--webhooks-allow-private",
            "--otlp-endpoint",
            base,
        ])
        .args(options);
    common::Server::start(command)
}

/// Every role in one process, the embedded broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_upload_to_the_webhook() {
    let received = Received::default();
    let base = receiver(received.clone()).await;
    let env = Env::new();
    let server = serve(&env, &base, "carrierhub-test", &[]);
    upload_and_follow(&server, &base, &received, ["carrierhub-test"; 3]).await;
}

/// The API, the worker and the relay with the webhooks in three processes, on PostgreSQL and
/// NATS JetStream: the context crosses them through the outbox and the NATS headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_crosses_processes_through_the_outbox_and_nats() {
    let Some(db) = TestDatabase::create_or_skip("traces across processes").await else {
        return;
    };
    let Some(nats) = NatsServer::start_or_skip() else {
        return;
    };
    let received = Received::default();
    let base = receiver(received.clone()).await;
    let env = Env::with_database(db.url());
    let broker = nats.url();
    let api = serve(
        &env,
        &base,
        "carrierhub-api",
        &["--role", "api", "--broker", &broker],
    );
    let _worker = serve(
        &env,
        &base,
        "carrierhub-worker",
        &["--role", "worker", "--broker", &broker],
    );
    let _relay = serve(
        &env,
        &base,
        "carrierhub-relay",
        &["--role", "relay,webhooks", "--broker", &broker],
    );
    upload_and_follow(
        &api,
        &base,
        &received,
        ["carrierhub-api", "carrierhub-worker", "carrierhub-relay"],
    )
    .await;
}

/// Uploads with a caller's `traceparent` and checks the trace: `services` are those of the
/// API, the worker, and the relay (which runs the webhooks too).
async fn upload_and_follow(
    server: &common::Server,
    base: &str,
    received: &Received,
    services: [&str; 3],
) {
    let client = reqwest::Client::new();

    let r = client
        .post(server.url("/v1/webhooks"))
        .json(&serde_json::json!({
            "url": format!("{base}/hook"),
            "event_types": ["policy.created"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(ACME_FEED.to_vec()).file_name("acme.csv"),
        )
        .text("mapping_file", ACME_MAPPING);
    let r = client
        .post(server.url("/v1/carriers/acme/submissions"))
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let done = server.wait_for_submission(&client, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let policies = done["counts"]["inserted"].as_u64().unwrap() as usize;
    assert!(policies > 0, "{done}");

    // Wait for every policy's webhook and for the spans of the whole chain.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (spans, hooks) = loop {
        let spans: Vec<Span> = received.spans.lock().unwrap().clone();
        let hooks: Vec<String> = received.hooks.lock().unwrap().clone();
        let delivered = spans.iter().filter(|s| s.name == "deliver_webhook").count();
        if hooks.len() >= policies
            && delivered >= policies
            && spans.iter().any(|s| s.name == "commit_batch")
            && spans.iter().filter(|s| s.name == "publish_events").count() >= 2
        {
            break (spans, hooks);
        }
        assert!(
            Instant::now() < deadline,
            "the trace never completed: {} webhook calls, spans {:#?}",
            hooks.len(),
            spans
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Every span of the upload is in the caller's trace, each from the process of its role.
    let ours: Vec<&Span> = spans.iter().filter(|s| s.trace_id == TRACE).collect();
    let [api, worker, relay] = services;
    for s in &ours {
        let expected = match s.name.as_str() {
            "process_submission" | "commit_batch" => worker,
            "publish_events" | "deliver_webhook" => relay,
            _ => api,
        };
        assert!(s.service.contains(expected), "{s:?} is not from {expected}");
    }
    let by_id: HashMap<&str, &Span> = ours.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let parent_of = |s: &Span| -> &Span {
        by_id
            .get(s.parent.as_str())
            .unwrap_or_else(|| panic!("the parent of {s:?} is not in the trace"))
    };
    let named =
        |name: &str| -> Vec<&Span> { ours.iter().copied().filter(|s| s.name == name).collect() };

    // The request continues the caller's span.
    let requests: Vec<&Span> = named("POST /v1/carriers/{carrier}/submissions");
    assert_eq!(requests.len(), 1, "{ours:#?}");
    let request = requests[0];
    assert_eq!(request.parent, CALLER_SPAN);

    // The worker's processing is a child of the relay's publishing of submission.received,
    // itself a child of the request (the span that wrote the event).
    let process = named("process_submission");
    assert_eq!(process.len(), 1, "{ours:#?}");
    let published_received = parent_of(process[0]);
    assert_eq!(published_received.name, "publish_events");
    let mut ancestor = parent_of(published_received);
    while ancestor.span_id != request.span_id {
        ancestor = parent_of(ancestor);
    }

    // The batches are the processing's children; their change events are published by the
    // relay as children of the batch that wrote them.
    let batches = named("commit_batch");
    assert!(!batches.is_empty());
    for batch in &batches {
        assert_eq!(batch.parent, process[0].span_id, "{batch:?}");
    }
    let batch_ids: Vec<&str> = batches.iter().map(|b| b.span_id.as_str()).collect();
    assert!(
        named("publish_events")
            .iter()
            .any(|p| batch_ids.contains(&p.parent.as_str())),
        "no publish_events span under a batch: {ours:#?}"
    );

    // Each webhook delivery is a child of the batch that wrote its event, and its request
    // carries the delivery's own span as `traceparent`.
    let deliveries = named("deliver_webhook");
    assert_eq!(deliveries.len(), policies, "{ours:#?}");
    for d in &deliveries {
        assert!(batch_ids.contains(&d.parent.as_str()), "{d:?}");
    }
    assert_eq!(hooks.len(), policies);
    for header in &hooks {
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts.len(), 4, "traceparent {header:?}");
        assert_eq!(parts[1], TRACE, "{header}");
        assert!(
            deliveries.iter().any(|d| d.span_id == parts[2]),
            "{header} names no delivery span"
        );
    }
}
