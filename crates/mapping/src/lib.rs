//! Declarative per-carrier mappings: a TOML file that says how one carrier's feed becomes
//! canonical records. Onboarding a carrier means writing one of these, not Rust.
//!
//! The life of a mapping: [`MappingSpec::parse`] checks the file itself (unknown keys, code
//! tables whose targets are not canonical codes, bad date formats); [`MappingSpec::bind`]
//! checks it against a payload's header (every mapped column exists); [`BoundMapping::map`]
//! turns one raw record into a canonical record or the list of its field errors.

mod bind;
mod spec;
mod values;

pub use bind::{BoundMapping, FieldError};
pub use spec::{Conventions, FieldSpec, MappingError, MappingSpec, SourceSpec};
pub use values::{parse_date, parse_decimal, DecimalFormat};
