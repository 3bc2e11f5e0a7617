//! The broker's tests: the conformance suite run on every implementation, and the embedded and
//! NATS specifics.
//! One test executable with a module per file (each executable links the crate and its
//! dependencies once). Run one file's tests with
//! `cargo test -p carrierhub-broker --test integration -- conformance::`.

#[macro_use]
mod common;

mod conformance;
mod embedded;
mod nats;
