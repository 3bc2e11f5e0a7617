//! The pipeline's tests: documents, resuming an interrupted submission, and the worker.
//! One test executable with a module per file (each executable links the crate and its
//! dependencies once). Run one file's tests with
//! `cargo test -p carrierhub-pipeline --test integration -- documents::`.

mod documents;
mod resume;
mod worker;
