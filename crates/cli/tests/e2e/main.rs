//! End-to-end tests of the `carrierhub` binary, driven as a user drives it: its commands, and
//! its HTTP API on a real server (SQLite by default; PostgreSQL, NATS and Redis where a test
//! says so). One test executable with a module per area: each executable links the whole stack
//! (DataFusion included), so one link instead of twenty, and the tests of every area share the
//! test threads. Run one area with `cargo test -p carrierhub --test e2e -- warehouse::`.

mod common;

mod api;
mod backup;
mod bad_input;
mod broker;
mod config;
mod events;
mod faults;
mod formats;
mod gateway;
mod idempotency;
mod ingest;
mod insights;
mod keys;
mod lifecycle;
mod live;
mod mapping;
mod postgres;
mod traces;
mod transactions;
mod warehouse;
