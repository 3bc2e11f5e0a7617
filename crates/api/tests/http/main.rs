//! The API's tests over real HTTP: the gateway's authentication, limits and caching, OIDC
//! tokens, the OpenAPI document against the router, and rate limits shared through Redis. One
//! test executable with a module per area, since each links the whole API (the warehouse's
//! DataFusion included). Run one area with `cargo test -p carrierhub-api --test http -- oidc::`.

mod gateway;
mod oidc;
mod openapi;
mod ratelimit;
