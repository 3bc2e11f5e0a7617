//! Conditional reads: a strong `ETag` on every successful GET, `If-None-Match` answered
//! with 304, and `Cache-Control: private` (responses depend on who asks).
//!
//! The tag is a hash of the response body, so two responses have the same tag exactly when
//! they have the same bytes: a change to the resource, or a caller who sees it differently,
//! gives another tag.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Bodies larger than this are sent without a tag rather than held in memory to hash.
const MAX_TAGGED_BYTES: usize = 16 * 1024 * 1024;

/// `Cache-Control` of every tagged response: only the caller's own cache may keep it, and
/// it must ask again (with `If-None-Match`) before using it.
pub const CACHE_CONTROL: &str = "private, no-cache";

/// The strong entity tag of `body`: `"` + 128 bits of its SHA-256, base64url + `"`.
pub fn tag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    )
}

/// Whether `If-None-Match` names `tag` (or is `*`). Comparison is weak, as RFC 9110
/// requires for this header: `W/"x"` matches `"x"`.
pub fn none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// The middleware.
pub async fn conditional_get(request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let conditions = request.headers().clone();
    let response = next.run(request).await;
    // An event stream never ends: it is neither buffered nor tagged.
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if response.status() != StatusCode::OK
        || response.headers().contains_key(header::ETAG)
        || streaming
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_TAGGED_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return crate::Problem::internal(&*e.into_inner()).into_response();
        }
    };
    let tag = tag_of(&bytes);
    let value = HeaderValue::from_str(&tag).expect("base64 is a valid header value");
    parts.headers.insert(header::ETAG, value.clone());
    parts.headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if none_match(&conditions, &tag) {
        let mut not_modified = Response::new(Body::empty());
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        let headers = not_modified.headers_mut();
        headers.insert(header::ETAG, value);
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        );
        for name in [header::VARY, header::CONTENT_LOCATION, header::EXPIRES] {
            if let Some(v) = parts.headers.get(&name) {
                headers.insert(name, v.clone());
            }
        }
        return not_modified;
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_bytes_and_match_weakly() {
        let a = tag_of(b"{\"id\":1}");
        assert_eq!(a, tag_of(b"{\"id\":1}"));
        assert_ne!(a, tag_of(b"{\"id\":2}"));
        let mut h = HeaderMap::new();
        assert!(!none_match(&h, &a));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"other\", W/{a}")).unwrap(),
        );
        assert!(none_match(&h, &a));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&h, &a));
    }
}
