//! The mapping language's tests: each feature, the Lloyd's bordereaux samples, and properties.
//! One test executable with a module per file (each executable links the crate and its
//! dependencies once). Run one file's tests with
//! `cargo test -p carrierhub-mapping --test integration -- language::`.

mod language;
mod lloyds;
mod properties;
