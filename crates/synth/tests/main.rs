//! The generator's tests: the feeds' truths, and every output format read back.
//! One test executable with a module per file (each executable links the crate and its
//! dependencies once). Run one file's tests with
//! `cargo test -p carrierhub-synth --test integration -- feeds::`.

mod feeds;
mod formats;
