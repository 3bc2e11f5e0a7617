//! Deterministic synthetic carrier feeds with ground truth, for the demo, tests and
//! benchmarks.
//!
//! Three fictional carriers ([`carriers`]) each write policy and claim feeds in their own
//! layout, codes, encoding and conventions, and ship the mapping files that read them. Every
//! feed comes with its ground truth (row counts, rejected lines, premium totals), so a test can
//! check that ingestion got exactly the right answer rather than a plausible one.
//!
//! Architecture invariants:
//! - Streaming: feeds are written row by row; memory does not grow with the number of rows
//!   (only with the number of injected defects).
//! - Deterministic: policy `i` of a carrier is a pure function of (seed, carrier, i), so the
//!   same options give byte-identical files and a later delivery can regenerate and change
//!   the same policies.

mod carriers;
mod claim;
mod names;
mod policy;
mod rng;
mod row;

pub use carriers::{carrier, carriers, CarrierProfile};

use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The defect kinds as they appear in [`PolicyTruth::defect_lines`].
pub const DEFECT_KINDS: [&str; 5] = [
    "wrong_delimiter",
    "invalid_date",
    "negative_premium",
    "unknown_code",
    "truncated",
];

/// How many rows of each kind of defect to inject into a policy feed. Each defect replaces
/// one otherwise valid row.
#[derive(Debug, Clone, Default)]
pub struct Defects {
    /// Rows written with another delimiter than the file's.
    pub wrong_delimiter: usize,
    /// Rows whose effective date is impossible (`31.02.2025`) or not a date at all.
    pub invalid_dates: usize,
    /// Rows with a negative premium: they map, but fail the model's validation.
    pub negative_premium: usize,
    /// Rows whose line-of-business code is missing from the mapping's code table.
    pub unknown_codes: usize,
    /// The final row is cut off mid-row, with no line end.
    pub truncated_last_row: bool,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// Number of policy rows (valid and defective).
    pub policies: usize,
    pub seed: u64,
    /// 1 for the first delivery; 2 and later re-deliver the same policies, 10% of them changed
    /// and about 3% of them cancelled (see [`PolicyTruth::changed_vs_first`]).
    pub delivery: u32,
    pub defects: Defects,
}

/// The ground truth of a policy feed: what a correct ingestion must find.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyTruth {
    /// Data rows written (valid and defective), excluding the header.
    pub rows: usize,
    /// Rows a correct mapping accepts and the model validates.
    pub valid: usize,
    /// Defective rows; each injected defect counts once.
    pub rejected: usize,
    /// For delivery 2 and later: valid rows whose canonical record differs from the same
    /// policy in delivery 1 (as delivery 1 writes it without defects). Includes cancellations.
    pub changed_vs_first: usize,
    /// Valid rows whose status is cancelled.
    pub cancelled: usize,
    /// (canonical line of business, currency) to the premium summed over valid rows.
    pub premium_by_line: BTreeMap<(String, String), Decimal>,
    /// Currency to the premium summed over valid rows.
    pub premium_by_currency: BTreeMap<String, Decimal>,
    /// (1-based physical line in the file, defect kind from [`DEFECT_KINDS`]), in file order.
    pub defect_lines: Vec<(u64, &'static str)>,
}

/// The ground truth of a claim feed. Claim feeds carry no defects, so `valid == rows`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimTruth {
    pub rows: usize,
    pub valid: usize,
    /// Currency to cumulative paid, summed over claims.
    pub paid_by_currency: BTreeMap<String, Decimal>,
    /// Currency to outstanding reserve, summed over claims.
    pub reserve_by_currency: BTreeMap<String, Decimal>,
}

/// Writes `profile`'s policy feed to `out`, row by row, and returns its ground truth.
///
/// Fails with `InvalidInput` when `delivery` is 0 or more defects are asked for than there
/// are rows.
pub fn write_policy_feed(
    profile: &CarrierProfile,
    opts: &FeedOptions,
    out: &mut impl Write,
) -> io::Result<PolicyTruth> {
    policy::write_policy_feed(profile, opts, out)
}

/// Writes `profile`'s claim feed for policies `0..policies` of delivery 1 with `seed`.
///
/// About one claim per eight policies; each loss date lies in its policy's term and each
/// reported date on or after the loss date.
pub fn write_claim_feed(
    profile: &CarrierProfile,
    policies: usize,
    seed: u64,
    out: &mut impl Write,
) -> io::Result<ClaimTruth> {
    claim::write_claim_feed(profile, policies, seed, out)
}

/// One carrier's files as written by [`generate_portfolio`].
#[derive(Debug, Clone)]
pub struct GeneratedCarrier {
    pub profile: CarrierProfile,
    pub policy_file: PathBuf,
    pub claim_file: PathBuf,
    pub policy_mapping_file: PathBuf,
    pub claim_mapping_file: PathBuf,
    pub policy_truth: PolicyTruth,
    pub claim_truth: ClaimTruth,
}

/// The defects the demo portfolio injects: a few per carrier, of different kinds, so that
/// the demo has rejected rows to explain. None for feeds under 50 rows; roughly one defect
/// per 500 rows above that.
pub fn demo_defects(profile: &CarrierProfile, policies: usize) -> Defects {
    if policies < 50 {
        return Defects::default();
    }
    let n = (policies / 1000).max(1);
    match profile.id {
        "northwind" => Defects {
            wrong_delimiter: n,
            negative_premium: n,
            ..Defects::default()
        },
        "rheinland" => Defects {
            invalid_dates: 2 * n,
            unknown_codes: n,
            ..Defects::default()
        },
        _ => Defects {
            unknown_codes: n,
            invalid_dates: n,
            truncated_last_row: true,
            ..Defects::default()
        },
    }
}

/// Writes every carrier's delivery-1 policy feed (with [`demo_defects`]), claim feed and both
/// mapping files into `dir` (created if missing), and returns the paths with the truths.
pub fn generate_portfolio(
    dir: &Path,
    policies_per_carrier: usize,
    seed: u64,
) -> io::Result<Vec<GeneratedCarrier>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for profile in carriers() {
        let policy_file = dir.join(profile.policy_file_name);
        let claim_file = dir.join(profile.claim_file_name);
        let policy_mapping_file = dir.join(profile.policy_mapping_file_name());
        let claim_mapping_file = dir.join(profile.claim_mapping_file_name());

        let opts = FeedOptions {
            policies: policies_per_carrier,
            seed,
            delivery: 1,
            defects: demo_defects(&profile, policies_per_carrier),
        };
        let policy_truth = write_file(&policy_file, |w| write_policy_feed(&profile, &opts, w))?;
        let claim_truth = write_file(&claim_file, |w| {
            write_claim_feed(&profile, policies_per_carrier, seed, w)
        })?;
        std::fs::write(&policy_mapping_file, profile.policy_mapping)?;
        std::fs::write(&claim_mapping_file, profile.claim_mapping)?;
        out.push(GeneratedCarrier {
            profile,
            policy_file,
            claim_file,
            policy_mapping_file,
            claim_mapping_file,
            policy_truth,
            claim_truth,
        });
    }
    Ok(out)
}

/// Creates `path` and writes it; the feed writers buffer themselves.
fn write_file<T>(path: &Path, write: impl FnOnce(&mut File) -> io::Result<T>) -> io::Result<T> {
    let mut file = File::create(path)?;
    let truth = write(&mut file)?;
    file.flush()?;
    Ok(truth)
}
