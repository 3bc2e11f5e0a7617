//! The `Idempotency-Key` request header (IETF draft "The Idempotency-Key HTTP Header
//! Field") on the routes that create submissions: a client that sends a request again (after
//! a timeout, a crash, a lost connection) with the same key gets the first response, and
//! nothing new is created.
//!
//! - The key is claimed in the store once the request has been read (its fingerprint needs
//!   the whole body), before anything is created. Of concurrent requests with one key, one
//!   proceeds; the others are told it is in progress (409 with `Retry-After`).
//! - The same key with the same request (same fingerprint) returns the stored response, with
//!   `Idempotent-Replayed: true`. The same key with another request is a 409 that names the
//!   key: a key stands for one request.
//! - The *fingerprint* is a hash of the method and path, the carrier, the query parameters
//!   (sorted by name) and the body's content: for a multipart form, each part's name, file
//!   name and content, in the order sent (the file part is hashed as it is spooled), never
//!   the boundary, which clients may regenerate on every try; a raw body is hashed whole.
//! - Which outcomes are kept: a success, and a client error (400, 404, 422, …), so that a
//!   retry of a request that was wrong gets the same answer. Not kept: server errors (5xx),
//!   and the client errors that say "not now" rather than "not this" (408, 409, 425, 429):
//!   the key is released, and a retry runs as if it were the first. A request cut off by the
//!   client is finished all the same (the work does not hang on the connection), and its
//!   response kept for the retry. A request that fails before the key is claimed (a body
//!   that cannot be read or is too large, a malformed carrier or parameter) claims nothing.
//! - Keys are scoped by caller, route and carrier (one caller's key never answers with
//!   another's response) and kept for the configured time to live (24 hours by default); a sweeper removes the
//!   expired ones.

use crate::problem::Problem;
use crate::AppState;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use carrierhub_model::CarrierId;
use carrierhub_store::{IdempotencyClaim, IdempotencyRequest, IdempotentResponse, Store};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// The request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header that marks a replayed response.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// How long a key is kept unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a claim holds while its request is in flight. The work under a claim starts once
/// the upload is on disk (storing the document, the preflight, a few inserts), so it takes
/// seconds; a claim still open after this belongs to a process that died, and the next
/// request with the key takes it over.
const LOCK: Duration = Duration::from_secs(300);

/// What `Retry-After` says to a request whose key is in flight, in seconds.
const RETRY_AFTER_SECONDS: u64 = 2;

/// Longest key accepted.
const MAX_KEY_LENGTH: usize = 255;

/// Largest response body kept for replay (the responses under a key are small JSON).
const MAX_STORED_BODY: usize = 1024 * 1024;

/// How often expired keys are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(15 * 60);

/// The `Idempotency-Key` a request carries, if any. The draft makes it a structured-field
/// string (`"…"`); a bare value is accepted too, as most clients send one. An empty, overlong
/// or unprintable key is a 400.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Problem::bad_request(
            "send one Idempotency-Key header, not several",
        ));
    }
    let invalid = |why: &str| {
        Problem::bad_request(format!(
            "the Idempotency-Key header {why}; send a unique value per request, such as a UUID, \
             of at most {MAX_KEY_LENGTH} printable ASCII characters"
        ))
    };
    let text = value
        .to_str()
        .map_err(|_| invalid("is not printable ASCII"))?
        .trim();
    let key = match text.strip_prefix('"') {
        Some(quoted) => unquote(quoted).ok_or_else(|| invalid("is not a well-formed string"))?,
        None => text.to_owned(),
    };
    if key.is_empty() {
        return Err(invalid("is empty"));
    }
    if key.len() > MAX_KEY_LENGTH {
        return Err(invalid("is too long"));
    }
    if !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(invalid("is not printable ASCII"));
    }
    Ok(Some(key))
}

/// The rest of a structured-field string after its opening quote: `\"` and `\\` escapes,
/// then the closing quote at the very end.
fn unquote(rest: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                e @ ('"' | '\\') => out.push(e),
                _ => return None,
            },
            '"' => return chars.next().is_none().then_some(out),
            c => out.push(c),
        }
    }
    None
}

/// The query parameters in a fixed order, for a fingerprint.
pub fn canonical_query(query: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    pairs.sort();
    pairs
}

/// What a request asks, as a hash: equal for two sendings of the same request, different
/// as soon as anything that changes its effect differs. Every field is length-prefixed, so
/// no two different requests run together into the same bytes.
pub struct Fingerprint(Sha256);

impl Fingerprint {
    /// `path` is the path as requested (`/v1/carriers/acme/submissions`).
    pub fn new(path: &str, carrier: &CarrierId, query: &[(String, String)]) -> Self {
        let mut f = Self(Sha256::new());
        f.field(b"POST");
        f.field(path.as_bytes());
        f.field(carrier.as_str().as_bytes());
        f.field(&(query.len() as u64).to_le_bytes());
        for (name, value) in query {
            f.field(name.as_bytes());
            f.field(value.as_bytes());
        }
        f
    }

    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// A part of a multipart form, by the SHA-256 of its content.
    pub fn part(&mut self, name: &str, file_name: Option<&str>, content_sha256: &[u8]) {
        self.field(b"part");
        self.field(name.as_bytes());
        match file_name {
            Some(f) => {
                self.field(b"file_name");
                self.field(f.as_bytes());
            }
            None => self.field(b"no file_name"),
        }
        self.field(content_sha256);
    }

    /// A body that is not a form, by the SHA-256 of its bytes.
    pub fn body(&mut self, sha256: &[u8]) {
        self.field(b"body");
        self.field(sha256);
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// A value no other request has, in this process or another: only the request holding a
/// claim can complete or release it.
fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // A randomly seeded hasher: distinct across processes and hosts.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{random:016x}-{nanos:x}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `work` at most once per key: claims `key` in `scope` for the request `fingerprint`,
/// then runs `work` and keeps its response, or answers from what the key already holds.
/// `work` runs on a task of its own, so that a client hanging up does not cut it off between
/// creating the submission and keeping the response.
pub async fn once<F>(
    state: &AppState,
    scope: String,
    key: String,
    fingerprint: String,
    work: F,
) -> Result<Response, Problem>
where
    F: Future<Output = Response> + Send + 'static,
{
    let token = new_token();
    let claim = state
        .store
        .claim_idempotency_key(&IdempotencyRequest {
            scope: &scope,
            key: &key,
            fingerprint: &fingerprint,
            token: &token,
            ttl: state.idempotency_ttl,
            lock: LOCK,
        })
        .await?;
    match claim {
        IdempotencyClaim::Acquired => {}
        IdempotencyClaim::Completed(stored) => return Ok(replay(stored)),
        IdempotencyClaim::InProgress => return Ok(in_progress(&key)),
        IdempotencyClaim::Mismatch => return Err(mismatch(&key)),
    }
    let store = state.store.clone();
    // The tasks carry the request's span, so what they log names the request.
    let task = tokio::spawn(
        async move {
            let response = match tokio::spawn(work.in_current_span()).await {
                Ok(response) => response,
                Err(e) => Problem::internal(&e).into_response(),
            };
            settle(store, &scope, &key, &token, response).await
        }
        .in_current_span(),
    );
    task.await.map_err(|e| Problem::internal(&e))
}

/// Whether a response is the request's final answer, kept for its retries.
fn is_kept(status: StatusCode) -> bool {
    let not_now = [
        StatusCode::REQUEST_TIMEOUT,
        StatusCode::CONFLICT,
        StatusCode::TOO_EARLY,
        StatusCode::TOO_MANY_REQUESTS,
    ];
    !status.is_server_error() && !not_now.contains(&status)
}

/// Keeps `response` under the key (or releases the key when the response is not final) and
/// returns it.
async fn settle(
    store: Arc<dyn Store>,
    scope: &str,
    key: &str,
    token: &str,
    response: Response,
) -> Response {
    if !is_kept(response.status()) {
        release(
            store.as_ref(),
            scope,
            key,
            token,
            "the response is not final",
        )
        .await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, MAX_STORED_BODY).await {
        Ok(body) => body,
        Err(e) => {
            release(
                store.as_ref(),
                scope,
                key,
                token,
                "the response could not be read",
            )
            .await;
            return Problem::internal(&e).into_response();
        }
    };
    let kept = IdempotentResponse {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
    };
    match store
        .complete_idempotency_key(scope, key, token, &kept)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            idempotency_key = %key,
            "the idempotency key was taken over before its request finished; its response is not kept"
        ),
        Err(e) => tracing::error!(
            idempotency_key = %key,
            error = %e,
            "cannot keep the response of an idempotency key; retries with it are refused as in \
             progress until its lock runs out"
        ),
    }
    Response::from_parts(parts, Body::from(body))
}

/// Gives the key up: the next request with it runs as if it were the first.
async fn release(store: &dyn Store, scope: &str, key: &str, token: &str, why: &str) {
    match store.release_idempotency_key(scope, key, token).await {
        Ok(()) => tracing::debug!(idempotency_key = %key, why, "idempotency key released"),
        Err(e) => tracing::error!(
            idempotency_key = %key,
            error = %e,
            "cannot release an idempotency key; retries with it are refused as in progress \
             until its lock runs out"
        ),
    }
}

/// The kept response, marked as a replay.
fn replay(stored: IdempotentResponse) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() =
        StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

fn in_progress(key: &str) -> Response {
    let problem = Problem::new(
        StatusCode::CONFLICT,
        "idempotency-key-in-progress",
        "Request in progress",
        format!(
            "a request with the Idempotency-Key '{key}' is in progress; retry it once that \
             request has finished to get its response"
        ),
    )
    .with("idempotency_key", key);
    let mut response = problem.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}

fn mismatch(key: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "idempotency-key-reused",
        "Idempotency key reused",
        format!(
            "the Idempotency-Key '{key}' was sent earlier with a different request (another \
             body, query or path); a key stands for one request: use a new key for a new request"
        ),
    )
    .with("idempotency_key", key)
}

/// Removes expired keys now and then, for as long as the server runs.
pub async fn sweep_expired_keys(store: Arc<dyn Store>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match store.purge_idempotency_keys().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "expired idempotency keys removed"),
            Err(e) => tracing::warn!(error = %e, "cannot remove expired idempotency keys"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(IDEMPOTENCY_KEY, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn keys_are_read_bare_or_as_structured_strings() {
        assert_eq!(key_of(&headers(&[])).unwrap(), None);
        assert_eq!(
            key_of(&headers(&["8e03978e-40d5-43e8-bc93-6894a57f9324"])).unwrap(),
            Some("8e03978e-40d5-43e8-bc93-6894a57f9324".to_owned())
        );
        assert_eq!(
            key_of(&headers(&["\"abc\""])).unwrap(),
            Some("abc".to_owned())
        );
        assert_eq!(
            key_of(&headers(&[r#""a\"b\\c""#])).unwrap(),
            Some(r#"a"b\c"#.to_owned())
        );
        for bad in ["", "\"\"", "\"open", "\"a\"b", r#""\x""#] {
            assert_eq!(key_of(&headers(&[bad])).unwrap_err().status, 400, "{bad:?}");
        }
        assert!(key_of(&headers(&[&"k".repeat(MAX_KEY_LENGTH)])).is_ok());
        assert!(key_of(&headers(&[&"k".repeat(MAX_KEY_LENGTH + 1)])).is_err());
        assert!(key_of(&headers(&["a", "b"])).is_err());
    }

    #[test]
    fn fingerprints_tell_requests_apart_and_fields_do_not_run_together() {
        let acme = CarrierId::parse("acme").unwrap();
        let print = |path: &str, query: &[(&str, &str)], parts: &[(&str, &[u8])]| {
            let query: Vec<(String, String)> = query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let mut f = Fingerprint::new(path, &acme, &query);
            for (name, content) in parts {
                f.part(name, None, &Sha256::digest(content));
            }
            f.finish()
        };
        let base = print("/p", &[("mapping", "m")], &[("file", b"x")]);
        assert_eq!(base, print("/p", &[("mapping", "m")], &[("file", b"x")]));
        assert_ne!(base, print("/q", &[("mapping", "m")], &[("file", b"x")]));
        assert_ne!(base, print("/p", &[("mapping", "n")], &[("file", b"x")]));
        assert_ne!(base, print("/p", &[("mapping", "m")], &[("file", b"y")]));
        assert_ne!(base, print("/p", &[("mappin", "gm")], &[("file", b"x")]));
        assert_ne!(base, print("/p", &[], &[("file", b"x"), ("mapping", b"m")]));
        let mut named = Fingerprint::new("/p", &acme, &[("mapping".into(), "m".into())]);
        named.part("file", Some("a.csv"), &Sha256::digest(b"x"));
        assert_ne!(base, named.finish());
        let mut raw = Fingerprint::new("/p", &acme, &[("mapping".into(), "m".into())]);
        raw.body(&Sha256::digest(b"x"));
        assert_ne!(base, raw.finish());
    }

    #[test]
    fn final_answers_are_kept_and_transient_ones_are_not() {
        for kept in [200, 202, 400, 404, 413, 422] {
            assert!(is_kept(StatusCode::from_u16(kept).unwrap()), "{kept}");
        }
        for not in [408, 409, 425, 429, 500, 503] {
            assert!(!is_kept(StatusCode::from_u16(not).unwrap()), "{not}");
        }
    }

    #[test]
    fn tokens_are_unique() {
        let tokens: std::collections::HashSet<String> = (0..1000).map(|_| new_token()).collect();
        assert_eq!(tokens.len(), 1000);
    }
}
