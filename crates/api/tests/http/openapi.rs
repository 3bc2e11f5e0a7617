//! The OpenAPI document against the router it describes: the same routes and methods, every
//! reference resolved, security on every route but the public ones (checked against the
//! server's answers too), `/openapi.json` served as built, and `/docs` rendered by a real
//! headless browser.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use carrierhub_api::openapi::{self, ROUTES};
use carrierhub_api::{AppState, Auth, GatewayConfig, MetricsRender};
use carrierhub_pipeline::{DocumentStore, Pipeline};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

struct Api {
    _dir: tempfile::TempDir,
    router: Router,
}

impl Api {
    async fn new(auth: Auth) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("carrierhub.db");
        let store = carrierhub_store::open_store(db.to_str().expect("UTF-8 path"))
            .await
            .expect("open the SQLite store");
        let pipeline = Pipeline::new(
            store.clone(),
            DocumentStore::new(dir.path().join("documents")),
        );
        let metrics: MetricsRender = Arc::new(|| "carrierhub_up 1\n".to_owned());
        let state = AppState {
            store,
            pipeline,
            relay: None,
            metrics: Some(metrics),
            max_upload_bytes: 1024 * 1024,
            idempotency_ttl: carrierhub_api::DEFAULT_IDEMPOTENCY_TTL,
            gateway: GatewayConfig::default(),
            auth,
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

    async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("a response");
        let status = response.status();
        // An event stream does not end: its status and headers are the answer.
        if response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
        {
            return (status, Value::Null);
        }
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let router = self.router.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }
}

/// A concrete path for a route's template.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{carrier}", "acme")
        .replace("{delivery}", "1")
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            if [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .contains(&method.as_str())
            {
                out.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    out
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    reference
        .strip_prefix("#/")?
        .split('/')
        .try_fold(doc, |node, key| {
            node.get(key.replace("~1", "/").replace("~0", "~"))
        })
}

fn refs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_openapi_3_1_and_describes_exactly_the_routes() {
    let doc = openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let documented: BTreeSet<(String, String)> = operations(doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(routed.len(), ROUTES.len(), "a route is listed twice");
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without an operation: {missing:?}; operations without a route: {extra:?}"
    );

    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(doc) {
        let what = format!("{method} {path}");
        let id = op["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id.to_owned()), "{what}: operationId {id} twice");
        assert!(op["tags"][0].is_string(), "{what}: no tag");
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{what}: no success response"
        );
        for (status, response) in responses {
            assert!(
                response["headers"]["X-Request-Id"]["required"] == true,
                "{what} {status}: X-Request-Id"
            );
            if path == "/readyz" && status == "503" {
                // Not ready is an answer, not an error: the same report as 200, check by check.
                assert!(
                    response["content"]["application/json"]["schema"]["$ref"]
                        == "#/components/schemas/ReadyReport",
                    "{what} {status}: not the readiness report"
                );
            } else if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    response["content"]["application/problem+json"]["schema"]["$ref"]
                        == "#/components/schemas/Problem",
                    "{what} {status}: not problem+json"
                );
            }
        }
        for status in ["400", "503"] {
            assert!(responses.contains_key(status), "{what}: no {status}");
        }
        let streaming = responses
            .get("200")
            .is_some_and(|r| r["content"]["text/event-stream"].is_object());
        if method == "GET" && !streaming {
            assert!(responses.contains_key("304"), "{what}: no 304");
            assert_eq!(
                responses["200"]["headers"]["ETag"]["required"], true,
                "{what}: ETag"
            );
        }
        if method == "POST" {
            assert!(responses.contains_key("413"), "{what}: no 413");
        }
        // Path parameters are declared exactly as the template names them.
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().expect("a name").to_owned())
            .collect();
        let templated: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, templated, "{what}: path parameters");
    }

    let mut all = Vec::new();
    refs(doc, &mut all);
    for r in all {
        assert!(resolve(doc, &r).is_some(), "unresolved $ref {r}");
    }
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert_eq!(schemes["api_key"]["scheme"], "bearer");
    assert_eq!(schemes["api_key_header"]["in"], "header");
    assert_eq!(schemes["api_key_header"]["name"], "X-Api-Key");
    assert_eq!(schemes["oidc"]["bearerFormat"], "JWT");
}

#[test]
fn every_operation_but_the_public_ones_has_security() {
    let doc = openapi::document();
    for (method, path, op) in operations(doc) {
        let route = ROUTES
            .iter()
            .find(|r| r.method == method && r.path == path)
            .expect("a route");
        let security = op["security"].as_array();
        if route.public {
            assert!(security.is_none(), "{method} {path} is public");
            assert!(!op["responses"].as_object().unwrap().contains_key("401"));
        } else {
            let names: BTreeSet<&str> = security
                .unwrap_or_else(|| panic!("{method} {path} has no security"))
                .iter()
                .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
                .collect();
            assert_eq!(
                names,
                BTreeSet::from(["api_key", "api_key_header", "oidc"]),
                "{method} {path}"
            );
            assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
            assert!(op["responses"]["429"].is_object(), "{method} {path}: 429");
        }
    }
    let public: BTreeSet<&str> = ROUTES.iter().filter(|r| r.public).map(|r| r.path).collect();
    assert_eq!(
        public,
        BTreeSet::from(["/healthz", "/readyz", "/openapi.json", "/docs"])
    );
}

#[tokio::test]
async fn the_router_serves_exactly_the_methods_of_the_table() {
    let api = Api::new(Auth::development()).await;
    let paths: BTreeSet<&str> = ROUTES.iter().map(|r| r.path).collect();
    for path in paths {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let listed = ROUTES.iter().any(|r| r.path == path && r.method == method);
            let (status, body) = api.call(method, &concrete(path), &[]).await;
            if listed {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(
                    !(status == StatusCode::NOT_FOUND
                        && body["detail"]
                            .as_str()
                            .is_some_and(|d| d.starts_with("no route"))),
                    "{method} {path} is not routed: {body}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} answers without being in the table"
                );
            }
        }
    }
}

#[tokio::test]
async fn credentials_are_asked_exactly_where_the_document_says() {
    let api = Api::new(Auth::enforced(true, None, Duration::from_secs(1))).await;
    for route in ROUTES {
        let (status, body) = api.call(route.method, &concrete(route.path), &[]).await;
        if route.public {
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{route:?}: {body}");
            assert!(status.is_success(), "{route:?}: {status} {body}");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{route:?}: {body}");
        }
    }
    // Two credentials at once are refused, whatever they are.
    let (status, body) = api
        .call(
            "GET",
            "/v1/carriers",
            &[
                ("authorization", "Bearer chk_a_b"),
                ("x-api-key", "chk_a_b"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["detail"].as_str().unwrap().contains("not both"),
        "{body}"
    );
    // Public routes refuse unknown parameters like every other route.
    for route in ROUTES.iter().filter(|r| r.public) {
        let (status, body) = api
            .call(route.method, &format!("{}?nonsense=1", route.path), &[])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{route:?}");
        assert!(
            body["detail"].as_str().unwrap().contains("nonsense"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn openapi_json_is_served_as_built_and_docs_is_html() {
    let api = Api::new(Auth::enforced(true, None, Duration::from_secs(1))).await;
    let base = api.serve().await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers().contains_key("etag"));
    let served: Value = r.json().await.expect("JSON");
    assert_eq!(&served, openapi::document());

    let r = client
        .get(format!("{base}/docs"))
        .send()
        .await
        .expect("GET /docs");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(page.contains("/openapi.json"));
    // Self-contained: nothing is loaded from another host.
    for needle in ["http://", "https://", "src=\"//"] {
        assert!(!page.contains(needle), "/docs refers to {needle}");
    }
}

/// The headless browser: `chromium` (Debian's package) or another name of it on the PATH.
fn chromium() -> Option<String> {
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "headless_shell",
    ];
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
            .find(|p| p.is_file())
            .map(|p| p.to_string_lossy().into_owned())
    })
}

#[tokio::test]
async fn the_docs_page_renders_every_operation_in_a_real_browser() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: no chromium on the PATH to render /docs (apt-get install chromium)"
        );
        eprintln!("skipped: no chromium on the PATH to render /docs (apt-get install chromium)");
        return;
    };
    let api = Api::new(Auth::enforced(true, None, Duration::from_secs(1))).await;
    let base = api.serve().await;
    let profile = tempfile::tempdir().expect("a profile directory");
    let url = format!("{base}/docs");
    let mut command = std::process::Command::new(&browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&url);
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("chromium finished within 2 minutes")
    .expect("the blocking task")
    .expect("chromium runs");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && dom.contains("<body"),
        "chromium failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let doc = openapi::document();
    let ops = operations(doc);
    assert!(
        dom.contains(&format!("data-rendered=\"{}\"", ops.len())),
        "the page did not render the document:\n{}",
        &dom[..dom.len().min(3000)]
    );
    for (method, path, op) in &ops {
        let id = op["operationId"].as_str().unwrap();
        assert!(
            dom.contains(&format!("id=\"op-{id}\"")),
            "{method} {path} is not on the page"
        );
        assert!(
            dom.contains(&format!("data-method=\"{method}\" data-path=\"{path}\"")),
            "{method} {path} is not on the page"
        );
    }
    // Parameters, responses and schemas are rendered too.
    for needle in [
        "line_of_business",
        "Idempotency-Key",
        "application/problem+json",
        "needs credentials",
        "id=\"schema-PolicySummary\"",
        "Try it",
    ] {
        assert!(dom.contains(needle), "the page lacks {needle}");
    }
}
