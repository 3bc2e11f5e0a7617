//! Idempotency keys: what a store keeps so that a request sent again with the same
//! `Idempotency-Key` gets the first answer instead of doing the work twice.
//!
//! A key lives in a *scope* (the API composes it from the route and the carrier, and will add
//! the caller), so the same key sent to another route or for another carrier is another key.
//! Each key remembers the *fingerprint* of the request that first used it: the same key with
//! another fingerprint is a different request and is refused, never answered with the first
//! one's response.
//!
//! A key is first *claimed* by the request that will do the work (in flight, with a token only
//! that request knows), then either *completed* with the response to replay, or *released*
//! when the work failed in a way a retry may not (a server error): a released key is as if it
//! had never been sent. Claiming is atomic: of several requests claiming one key at once,
//! exactly one proceeds. A claim whose request never completed it (its process died) is
//! abandoned once its lock runs out, and the next request with the key takes it over. Keys
//! expire after their time to live and are then removed ([`crate::Store::purge_idempotency_keys`]).

use std::time::Duration;

/// A request claiming an idempotency key.
#[derive(Debug, Clone)]
pub struct IdempotencyRequest<'a> {
    /// Where the key applies: the same key in another scope is another key.
    pub scope: &'a str,
    /// The key as the client sent it.
    pub key: &'a str,
    /// What identifies the request (a hash of what it asks): the same key may only be used
    /// again with the same fingerprint.
    pub fingerprint: &'a str,
    /// A value unique to this request: only the holder of the claim can complete or release
    /// it, so a request whose claim was taken over cannot overwrite its successor's answer.
    pub token: &'a str,
    /// How long the key and its response are kept once claimed.
    pub ttl: Duration,
    /// How long the claim holds while the request is in flight. A claim still open after
    /// this was abandoned and is taken over by the next request with the key.
    pub lock: Duration,
}

/// The response kept for a completed key, replayed to every later request with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The response's headers, in order (names in lower case).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key was free (new, expired, released or abandoned): the caller now holds it and
    /// must complete or release it.
    Acquired,
    /// The key was completed by a request with the same fingerprint: its response.
    Completed(IdempotentResponse),
    /// A request with the same key and fingerprint is still in flight.
    InProgress,
    /// The key was used by a different request (another fingerprint), completed or not.
    Mismatch,
}
