//! Deterministic synthetic carrier feeds with ground truth, for the demo, tests and
//! benchmarks.
//!
//! Seven fictional carriers ([`carriers`]) each write a policy feed and a claim feed in their
//! own format, layout, codes, encoding and conventions, and ship the mapping files that read
//! them (`examples/mappings/*.toml`):
//!
//! | carrier     | policy feed                                  | claim feed                         |
//! |-------------|----------------------------------------------|------------------------------------|
//! | `northwind` | CSV, comma, UTF-8, US dates and amounts      | CSV, same conventions              |
//! | `rheinland` | CSV, `;`, ISO-8859-1, decimal commas         | CSV, same conventions              |
//! | `thames`    | pipe-delimited, UK dates, three currencies   | pipe-delimited                     |
//! | `harbour`   | XLSX bordereau: two sheets, title rows, totals | UTF-16LE tab-delimited text with BOM |
//! | `meridian`  | NDJSON API dump, nested coverages            | JSON document, claims at `/data/claims` |
//! | `alpine`    | XML export, attributes and elements          | XML                                |
//! | `keystone`  | fixed-width mainframe extract, Windows-1252  | fixed-width                        |
//!
//! Every feed comes with its ground truth ([`PolicyTruth`], [`ClaimTruth`]): counts, money
//! totals, and every record a correct ingestion rejects with its record number, line, field
//! and reason. Defects are injected by count ([`Defects`]) or by rate
//! ([`Defects::at_rate`], [`GenOptions::defect_rate`]). [`generate`] writes a whole
//! portfolio into a directory with a `truth.json` ([`PortfolioTruth`]), for `carrierhub gen`:
//!
//! ```no_run
//! use carrierhub_synth::{generate, CarrierSelection, GenOptions, PortfolioTruth};
//! use std::path::Path;
//!
//! let dir = Path::new("/tmp/feeds");
//! let generated = generate(dir, &GenOptions {
//!     carriers: CarrierSelection::First(5), // or All, or Only(vec!["harbour".into()])
//!     policies: 10_000,
//!     defect_rate: 0.01,                    // about 1% of the records of every feed
//!     ..GenOptions::default()               // seed 2026, delivery 1, claims too
//! })?;
//! for g in &generated {
//!     let t = &g.policy_truth;
//!     println!("{} rows={} valid={} rejected={}", g.policy_file.display(), t.rows, t.valid, t.rejected);
//! }
//! let truth = PortfolioTruth::read(&dir.join("truth.json"))?; // the same truths, as JSON
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Architecture invariants:
//! - Streaming: feeds are written record by record; memory does not grow with the number of
//!   records (only with the number of injected defects). Workbooks are written in
//!   rust_xlsxwriter's constant-memory mode.
//! - Deterministic: policy `i` of a carrier is a pure function of (seed, carrier, i), so the
//!   same options give byte-identical files (workbooks included: their metadata carries a
//!   fixed date) and a later delivery can regenerate and change the same policies.

mod carriers;
mod claim;
mod defects;
mod fixed;
mod json;
mod names;
mod ndjson;
mod policy;
mod portfolio;
mod rng;
mod row;
mod truth;
mod xlsx;
mod xml;

pub use carriers::{carrier, carriers, CarrierProfile, FeedFormat};
pub use defects::{Defect, DefectKind, Defects};
pub use portfolio::{
    demo_claim_defects, demo_defects, generate, generate_portfolio, CarrierSelection, CarrierTruth,
    GenOptions, GeneratedCarrier, PortfolioTruth,
};
pub use truth::{ClaimTruth, PolicyTruth};

use std::io::{self, Write};

/// The defect kinds of the three delimited-text carriers, as they appear in
/// [`PolicyTruth::defect_lines`]. Every kind is in [`DefectKind::ALL`].
pub const DEFECT_KINDS: [&str; 5] = [
    "wrong_delimiter",
    "invalid_date",
    "negative_premium",
    "unknown_code",
    "truncated",
];

/// What policy feed to generate.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// Number of policy records (valid and defective).
    pub policies: usize,
    pub seed: u64,
    /// 1 for the first delivery; 2 and later re-deliver the same policies, 10% of them changed
    /// and about 3% of them cancelled (see [`PolicyTruth::changed_vs_first`]).
    pub delivery: u32,
    pub defects: Defects,
}

/// What claim feed to generate.
#[derive(Debug, Clone, Default)]
pub struct ClaimFeedOptions {
    /// The claims are on policies `0..policies` of the book (as delivery 1 reports them).
    pub policies: usize,
    pub seed: u64,
    /// Defects injected into the claim records (kinds from
    /// [`CarrierProfile::claim_defect_kinds`]), spread over the claims.
    pub defects: Defects,
    /// The defects of the policy feed generated alongside: claims on the policies it rejects
    /// are rejected too ([`DefectKind::PolicyRejected`]).
    pub policy_defects: Defects,
}

/// Writes `profile`'s policy feed to `out` and returns its ground truth.
///
/// The feed is in the carrier's format ([`CarrierProfile::policy_format`]). Text feeds are
/// written record by record; a workbook is assembled in temporary files (constant memory)
/// and then written to `out`. Fails with `InvalidInput` when `delivery` is 0, when more
/// defects are asked for than there are rows, or when a defect kind does not fit the feed
/// (see [`CarrierProfile::policy_defect_kinds`]).
pub fn write_policy_feed(
    profile: &CarrierProfile,
    opts: &FeedOptions,
    out: &mut (impl Write + Send),
) -> io::Result<PolicyTruth> {
    policy::write_policy_feed(profile, opts, out)
}

/// Writes `profile`'s claim feed for policies `0..policies` of delivery 1 with `seed`,
/// without defects.
///
/// About one claim per eight policies; each loss date lies in its policy's term and each
/// reported date on or after the loss date.
pub fn write_claim_feed(
    profile: &CarrierProfile,
    policies: usize,
    seed: u64,
    out: &mut impl Write,
) -> io::Result<ClaimTruth> {
    claim::write_claim_feed(
        profile,
        &ClaimFeedOptions {
            policies,
            seed,
            ..ClaimFeedOptions::default()
        },
        out,
    )
}

/// Writes `profile`'s claim feed with defects, and with the claims on the policies the
/// policy feed rejects counted as rejected (see [`ClaimTruth::policy_rejected`]).
pub fn write_claim_feed_with(
    profile: &CarrierProfile,
    opts: &ClaimFeedOptions,
    out: &mut impl Write,
) -> io::Result<ClaimTruth> {
    claim::write_claim_feed(profile, opts, out)
}

/// How many claims `profile`'s claim feed for policies `0..policies` holds (a cheap pass,
/// for sizing a rate of defects: `Defects::at_rate(rate, claim_count(..), kinds)`).
pub fn claim_count(profile: &CarrierProfile, policies: usize, seed: u64) -> usize {
    claim::claim_count(profile, policies, seed)
}
