//! The readers' tests: delimited and fixed-width text, trees (JSON, XML, EDI), spreadsheets,
//! hostile payloads, and properties.
//! One test executable with a module per file (each executable links the crate and its
//! dependencies once). Run one file's tests with
//! `cargo test -p carrierhub-formats --test integration -- hostile::`.

mod common;

mod hostile;
mod properties;
mod sheets;
mod text;
mod tree;
