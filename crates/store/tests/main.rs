//! The store's tests: the conformance suite on both backends, and upgrades of older stores.
//! One test executable with a module per file (each executable links the crate and its
//! dependencies once). Run one file's tests with
//! `cargo test -p carrierhub-store --test integration -- conformance::`.

#[macro_use]
mod common;

mod conformance;
mod upgrade;
