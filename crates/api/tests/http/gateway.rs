//! The gateway's layers on the real router over a SQLite store in a temporary directory:
//! served on a free port and called over HTTP, or with `oneshot` where the test needs a body
//! a client cannot send (one without a length, sent slowly).

use axum::body::{Body, Bytes};
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use carrierhub_api::gateway::{self, GatewayConfig, RequestId};
use carrierhub_api::{AppState, CorsConfig, MetricsRender};
use carrierhub_pipeline::{DocumentStore, Pipeline};
use reqwest::header::HeaderMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const MAX_UPLOAD: usize = 4 * 1024 * 1024;
const MIB: usize = 1024 * 1024;

/// What `/metrics` renders in these tests: large enough to be compressed, and known.
fn metrics_text() -> String {
    (0..400)
        .map(|i| format!("carrierhub_test_metric{{series=\"{i}\"}} {}\n", i * 7))
        .collect()
}

/// The API over a fresh SQLite store, with `gateway`.
struct Api {
    _dir: tempfile::TempDir,
    router: Router,
}

impl Api {
    async fn new(gateway: GatewayConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("carrierhub.db");
        let store = carrierhub_store::open_store(db.to_str().expect("UTF-8 path"))
            .await
            .expect("open the SQLite store");
        let pipeline = Pipeline::new(
            store.clone(),
            DocumentStore::new(dir.path().join("documents")),
        );
        let metrics: MetricsRender = Arc::new(metrics_text);
        let state = AppState {
            store,
            pipeline,
            relay: None,
            metrics: Some(metrics),
            max_upload_bytes: MAX_UPLOAD,
            idempotency_ttl: carrierhub_api::DEFAULT_IDEMPOTENCY_TTL,
            gateway,
            auth: carrierhub_api::Auth::development(),
            cache: carrierhub_api::ReadCache::new(100),
            rate_limits: None,
            webhooks_allow_private: false,
            query: None,
            live: Default::default(),
            readiness: None,
        };
        Self {
            router: carrierhub_api::router(state),
            _dir: dir,
        }
    }

    /// Serves the router on a free port; returns its base URL.
    async fn serve(&self) -> String {
        serve(self.router.clone()).await
    }
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().expect("ASCII header"))
}

fn is_uuid_v4(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && groups[2].starts_with('4')
        && s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
}

/// Status, headers and the problem+json body of a response that must be a problem.
async fn problem(r: reqwest::Response) -> (StatusCode, HeaderMap, serde_json::Value) {
    let status = r.status();
    let headers = r.headers().clone();
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/problem+json"),
        "{status}"
    );
    let body: serde_json::Value = r.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    (status, headers, body)
}

#[tokio::test]
async fn request_ids_are_generated_accepted_replaced_and_echoed() {
    let api = Api::new(GatewayConfig::default()).await;
    let base = api.serve().await;
    let c = client();

    // None sent: one is made, a new one per request.
    let a = c.get(format!("{base}/healthz")).send().await.unwrap();
    let b = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(a.status(), StatusCode::OK);
    let (a, b) = (
        header(a.headers(), "x-request-id").unwrap().to_owned(),
        header(b.headers(), "x-request-id").unwrap().to_owned(),
    );
    assert!(is_uuid_v4(&a), "{a}");
    assert!(is_uuid_v4(&b), "{b}");
    assert_ne!(a, b);

    // A sane one is kept.
    let r = c
        .get(format!("{base}/healthz"))
        .header("x-request-id", "client-abc_123.XYZ")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(r.headers(), "x-request-id"),
        Some("client-abc_123.XYZ")
    );
    let longest = "x".repeat(128);
    let r = c
        .get(format!("{base}/healthz"))
        .header("x-request-id", &longest)
        .send()
        .await
        .unwrap();
    assert_eq!(header(r.headers(), "x-request-id"), Some(longest.as_str()));

    // An insane one is replaced.
    for insane in [
        "x".repeat(129).into_bytes(),
        b"two words".to_vec(),
        b"caf\xc3\xa9".to_vec(),
        b"".to_vec(),
    ] {
        let r = c
            .get(format!("{base}/healthz"))
            .header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(&insane).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let id = header(r.headers(), "x-request-id").unwrap();
        assert!(is_uuid_v4(id), "{:?} became {id}", insane);
    }

    // Echoed on errors: 404, 405, 400.
    for (method, path, status) in [
        (
            reqwest::Method::GET,
            "/no/such/route",
            StatusCode::NOT_FOUND,
        ),
        (
            reqwest::Method::PUT,
            "/v1/policies",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            reqwest::Method::GET,
            "/v1/policies?bogus=1",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = c
            .request(method.clone(), format!("{base}{path}"))
            .header("x-request-id", "err-42")
            .send()
            .await
            .unwrap();
        let (got, headers, _) = problem(r).await;
        assert_eq!(got, status, "{method} {path}");
        assert_eq!(header(&headers, "x-request-id"), Some("err-42"));
        let r = c
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert!(is_uuid_v4(header(r.headers(), "x-request-id").unwrap()));
    }
}

/// A `MakeWriter` that keeps what is logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn handlers_and_every_log_line_of_a_request_see_its_id() {
    // Logged as `carrierhub serve` logs on a pipe (telemetry.rs): JSON lines, events
    // flattened, at its default levels.
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,tower_http=info"))
        .with_writer(logs.clone())
        .json()
        .flatten_event(true)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = gateway::apply(
        Router::new().route(
            "/whoami",
            get(|id: RequestId| async move {
                tracing::info!(answer = %id, "handler ran");
                id.0
            }),
        ),
        &GatewayConfig::default(),
        MAX_UPLOAD,
    );
    for sent in [Some("trace-me-123"), None] {
        let mut request = Request::get("/whoami");
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let echoed = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(body, echoed.as_bytes(), "the handler's RequestId");
        if let Some(id) = sent {
            assert_eq!(echoed, id);
        }

        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON log line"))
            .filter(|l: &serde_json::Value| l["span"]["request_id"] == echoed.as_str())
            .collect();
        let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
        assert!(messages.contains(&"handler ran"), "{text}");
        assert!(messages.contains(&"finished processing request"), "{text}");
        for line in &lines {
            assert_eq!(line["span"]["name"], "request", "{line}");
            assert_eq!(line["span"]["method"], "GET", "{line}");
            assert_eq!(line["span"]["path"], "/whoami", "{line}");
        }
        // Every line logged during the request is in its span.
        let all = text.lines().count();
        let ours = text
            .lines()
            .filter(|l| l.contains("\"request_id\""))
            .count();
        assert_eq!(all, ours, "{text}");
    }
}

#[tokio::test]
async fn responses_are_compressed_as_the_client_asks() {
    let api = Api::new(GatewayConfig::default()).await;
    let base = api.serve().await;
    let c = client();
    let plain = metrics_text();
    assert!(plain.len() > 10_000);

    // Without Accept-Encoding: as is.
    let r = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "content-encoding"), None);
    assert_eq!(r.text().await.unwrap(), plain);

    // gzip.
    let r = c
        .get(format!("{base}/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(r.headers(), "content-encoding"), Some("gzip"));
    assert!(header(r.headers(), "vary").is_some_and(|v| v.contains("accept-encoding")));
    let body = r.bytes().await.unwrap();
    assert!(body.len() < plain.len() / 3, "{} bytes", body.len());
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut decoded)
        .expect("gzip");
    assert_eq!(decoded, plain);

    // zstd, preferred by the client's weights.
    let r = c
        .get(format!("{base}/metrics"))
        .header("accept-encoding", "gzip;q=0.5, zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(header(r.headers(), "content-encoding"), Some("zstd"));
    let body = r.bytes().await.unwrap();
    assert!(body.len() < plain.len() / 3, "{} bytes", body.len());
    let decoded = zstd::decode_all(&body[..]).expect("zstd");
    assert_eq!(decoded, plain.as_bytes());

    // An encoding the server does not have: as is.
    let r = c
        .get(format!("{base}/metrics"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(header(r.headers(), "content-encoding"), None);
    assert_eq!(r.text().await.unwrap(), plain);

    // A tiny body is never compressed, problems included.
    for path in ["/healthz", "/no/such/route"] {
        let r = c
            .get(format!("{base}{path}"))
            .header("accept-encoding", "gzip, zstd")
            .send()
            .await
            .unwrap();
        assert_eq!(header(r.headers(), "content-encoding"), None, "{path}");
        let body: serde_json::Value = r.json().await.expect("plain JSON");
        assert!(body.is_object());
    }

    // Compression off.
    let api = Api::new(GatewayConfig {
        compression: false,
        ..GatewayConfig::default()
    })
    .await;
    let base = api.serve().await;
    let r = c
        .get(format!("{base}/metrics"))
        .header("accept-encoding", "gzip, zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(header(r.headers(), "content-encoding"), None);
    assert_eq!(r.text().await.unwrap(), plain);
}

const APP: &str = "https://app.example.com";

fn access_control_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

#[tokio::test]
async fn cors_preflights_are_answered_for_allowed_origins_only() {
    let api = Api::new(GatewayConfig {
        cors: CorsConfig {
            allowed_origins: vec![APP.into(), "http://localhost:5173".into()],
            ..CorsConfig::default()
        },
        ..GatewayConfig::default()
    })
    .await;
    let base = api.serve().await;
    let c = client();
    let preflight = |origin: &str| {
        c.request(reqwest::Method::OPTIONS, format!("{base}/v1/policies"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header(
                "access-control-request-headers",
                "authorization, x-request-id",
            )
            .send()
    };

    let r = preflight(APP).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let h = r.headers();
    assert_eq!(header(h, "access-control-allow-origin"), Some(APP));
    let methods = header(h, "access-control-allow-methods").unwrap();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );
    let allowed = header(h, "access-control-allow-headers").unwrap();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-request-id"),
        "{allowed}"
    );
    assert_eq!(header(h, "access-control-max-age"), Some("3600"));
    assert_eq!(header(h, "access-control-allow-credentials"), None);
    assert!(header(h, "vary").is_some_and(|v| v.contains("origin")));
    assert!(is_uuid_v4(header(h, "x-request-id").unwrap()));

    // Another origin: refused, and not one CORS header.
    let r = preflight("https://evil.example").await.unwrap();
    assert_eq!(access_control_headers(r.headers()), Vec::<String>::new());
    let (status, _, body) = problem(r).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("https://evil.example"),
        "{body}"
    );

    // The request itself: the allowed origin may read it, headers included.
    let r = c
        .get(format!("{base}/v1/carriers"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    assert!(header(r.headers(), "access-control-expose-headers")
        .is_some_and(|v| v.contains("x-request-id")));
    assert!(header(r.headers(), "vary").is_some_and(|v| v.contains("origin")));
    let r = c
        .get(format!("{base}/v1/carriers"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(access_control_headers(r.headers()), Vec::<String>::new());

    // CORS off (the default): no preflight is answered.
    let api = Api::new(GatewayConfig::default()).await;
    let base = api.serve().await;
    let r = c
        .request(reqwest::Method::OPTIONS, format!("{base}/v1/policies"))
        .header("origin", APP)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(access_control_headers(r.headers()), Vec::<String>::new());
    let (status, _, _) = problem(r).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_slow_handler_is_answered_503_problem() {
    let config = GatewayConfig {
        request_timeout_secs: 1,
        ..GatewayConfig::default()
    };
    let app = gateway::apply(
        Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "too late"
                }),
            )
            .route("/fast", get(|| async { "in time" })),
        &config,
        MAX_UPLOAD,
    );
    let base = serve(app).await;
    let c = client();
    let started = Instant::now();
    let r = c
        .get(format!("{base}/slow"))
        .header("x-request-id", "slow-1")
        .send()
        .await
        .unwrap();
    let (status, headers, body) = problem(r).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["type"], "https://carrierhub.dev/problems/timeout");
    assert_eq!(body["timeout_secs"], 1);
    assert_eq!(header(&headers, "x-request-id"), Some("slow-1"));
    let r = c.get(format!("{base}/fast")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "in time");
}

/// A body sent in `chunks` with `pause` before each, and no length.
fn slow_body(chunks: Vec<Bytes>, pause: Duration) -> Body {
    Body::from_stream(futures_util::stream::unfold(
        chunks.into_iter(),
        move |mut rest| async move {
            let chunk = rest.next()?;
            tokio::time::sleep(pause).await;
            Some((Ok::<_, std::io::Error>(chunk), rest))
        },
    ))
}

async fn oneshot(router: &Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body = axum::body::to_bytes(response.into_body(), MIB)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    if !status.is_success() {
        assert_eq!(content_type, "application/problem+json", "{body}");
    }
    (status, body)
}

#[tokio::test]
async fn uploads_have_their_own_time_limit() {
    // An upload sent over about 2 s, with no mapping named: read whole, then a 400.
    let upload = || {
        Request::post("/v1/carriers/acme/submissions")
            .body(slow_body(
                vec![Bytes::from_static(b"policy_number\n"); 4],
                Duration::from_millis(500),
            ))
            .unwrap()
    };
    let api = Api::new(GatewayConfig {
        request_timeout_secs: 1,
        upload_timeout_secs: 20,
        ..GatewayConfig::default()
    })
    .await;
    let (status, body) = oneshot(&api.router, upload()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("name the mapping"),
        "{body}"
    );

    let api = Api::new(GatewayConfig {
        request_timeout_secs: 20,
        upload_timeout_secs: 1,
        ..GatewayConfig::default()
    })
    .await;
    let (status, body) = oneshot(&api.router, upload()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["timeout_secs"], 1);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_problem_naming_it() {
    let api = Api::new(GatewayConfig::default()).await;
    let base = api.serve().await;
    let c = client();

    // Declared too large: refused before it is read.
    let r = c
        .post(format!("{base}/v1/submissions/1/replay"))
        .header("x-request-id", "big-1")
        .body(vec![b'#'; MIB + 1])
        .send()
        .await
        .unwrap();
    let (status, headers, body) = problem(r).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body["type"],
        "https://carrierhub.dev/problems/payload-too-large"
    );
    assert_eq!(body["limit_bytes"], MIB);
    assert!(
        body["detail"].as_str().unwrap().contains("1048576 bytes"),
        "{body}"
    );
    assert_eq!(header(&headers, "x-request-id"), Some("big-1"));

    // Within the limit: the route answers (no such submission).
    let r = c
        .post(format!("{base}/v1/submissions/1/replay"))
        .body(vec![b'#'; MIB])
        .send()
        .await
        .unwrap();
    let (status, _, _) = problem(r).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // No length, larger as it is read: the same 413.
    let chunked = || {
        Request::post("/v1/submissions/1/replay")
            .body(slow_body(
                vec![Bytes::from(vec![b'#'; MIB / 2]); 3],
                Duration::ZERO,
            ))
            .unwrap()
    };
    let (status, body) = oneshot(&api.router, chunked()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["limit_bytes"], MIB);
}

#[tokio::test]
async fn uploads_keep_their_own_size_limit() {
    let api = Api::new(GatewayConfig::default()).await;
    let base = api.serve().await;
    let c = client();

    // Larger than max_body_bytes, within max_upload_bytes: read whole (then a 400: no
    // mapping is named), on both upload routes.
    for path in ["/v1/carriers/acme/submissions", "/v1/mappings/check"] {
        let r = c
            .post(format!("{base}{path}"))
            .body(vec![b'a'; 2 * MIB])
            .send()
            .await
            .unwrap();
        let (status, _, body) = problem(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }

    // Declared larger than max_upload_bytes.
    let r = c
        .post(format!("{base}/v1/carriers/acme/submissions"))
        .body(vec![b'a'; MAX_UPLOAD + 1])
        .send()
        .await
        .unwrap();
    let (status, _, body) = problem(r).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["limit_bytes"], MAX_UPLOAD);

    // Found larger as it is read: a raw body, and a form's file part.
    let raw = Request::post("/v1/carriers/acme/submissions?mapping=m")
        .body(slow_body(
            vec![Bytes::from(vec![b'a'; MIB]); 5],
            Duration::ZERO,
        ))
        .unwrap();
    let (status, body) = oneshot(&api.router, raw).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["limit_bytes"], MAX_UPLOAD);

    let boundary = "gateway-test-boundary";
    let mut parts = vec![Bytes::from(format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"mapping\"\r\n\r\nm\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n"
    ))];
    parts.extend(std::iter::repeat_n(Bytes::from(vec![b'a'; MIB]), 5));
    parts.push(Bytes::from(format!("\r\n--{boundary}--\r\n")));
    let form = Request::post("/v1/carriers/acme/submissions")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(slow_body(parts, Duration::ZERO))
        .unwrap();
    let (status, body) = oneshot(&api.router, form).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["limit_bytes"], MAX_UPLOAD);
}
