//! A portfolio: several carriers' feeds, mappings and ground truth written into one
//! directory, for `carrierhub gen`, the demo and reconciliation tests.

use crate::carriers::{carriers, CarrierProfile, FeedFormat};
use crate::defects::Defects;
use crate::truth::{ClaimTruth, PolicyTruth};
use crate::{claim_count, write_claim_feed_with, write_policy_feed, ClaimFeedOptions, FeedOptions};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Which of the synthetic carriers ([`carriers`]) to generate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CarrierSelection {
    /// Every carrier.
    #[default]
    All,
    /// The first N carriers, in the order of [`carriers`] (the three delimited-text carriers
    /// come first). N above the number of carriers is an error.
    First(usize),
    /// These carriers, by id, in the order given. An unknown id is an error that lists the
    /// known ones.
    Only(Vec<String>),
}

impl CarrierSelection {
    /// The selected profiles.
    pub fn profiles(&self) -> io::Result<Vec<CarrierProfile>> {
        let all = carriers();
        let known = || all.iter().map(|c| c.id).collect::<Vec<_>>().join(", ");
        match self {
            Self::All => Ok(all.clone()),
            Self::First(n) if *n <= all.len() => Ok(all[..*n].to_vec()),
            Self::First(n) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{n} carriers asked for, but there are {} synthetic carriers: {}",
                    all.len(),
                    known()
                ),
            )),
            Self::Only(ids) => ids
                .iter()
                .map(|id| {
                    all.iter().find(|c| c.id == id).cloned().ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!(
                                "unknown carrier '{id}'; synthetic carriers are: {}",
                                known()
                            ),
                        )
                    })
                })
                .collect(),
        }
    }
}

/// What [`generate`] writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenOptions {
    pub carriers: CarrierSelection,
    /// Policy records per carrier (valid and defective).
    pub policies: usize,
    pub seed: u64,
    /// 1 for a first delivery; 2 or more re-deliver the same policies with 10% changed and
    /// about 3% cancelled. Later deliveries' policy files are named `…-d{delivery}.{ext}`.
    pub delivery: u32,
    /// Share of records made defective in every feed, `0.01` = 1% (rounded to whole records),
    /// spread over the kinds that fit each feed's format
    /// ([`CarrierProfile::policy_defect_kinds`], [`CarrierProfile::claim_defect_kinds`]).
    pub defect_rate: f64,
    /// Also write claim feeds (on the policies of delivery 1).
    pub claims: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            carriers: CarrierSelection::All,
            policies: 10_000,
            seed: 2026,
            delivery: 1,
            defect_rate: 0.0,
            claims: true,
        }
    }
}

impl GenOptions {
    /// The name of the ground-truth file [`generate`] writes: `truth.json` for delivery 1,
    /// `truth-d{delivery}.json` for later ones (so that deliveries can share a directory).
    pub fn truth_file_name(&self) -> String {
        truth_file_name(self.delivery)
    }
}

fn truth_file_name(delivery: u32) -> String {
    if delivery <= 1 {
        "truth.json".to_owned()
    } else {
        format!("truth-d{delivery}.json")
    }
}

/// One carrier's files as written by [`generate`] or [`generate_portfolio`].
#[derive(Debug, Clone)]
pub struct GeneratedCarrier {
    pub profile: CarrierProfile,
    pub policy_file: PathBuf,
    /// The claim feed; written only when `wrote_claims` (claims were asked for).
    pub claim_file: PathBuf,
    pub policy_mapping_file: PathBuf,
    pub claim_mapping_file: PathBuf,
    pub policy_truth: PolicyTruth,
    /// Default (all zero) when no claim feed was written.
    pub claim_truth: ClaimTruth,
    pub wrote_claims: bool,
    /// The defects injected into each feed.
    pub policy_defects: Defects,
    pub claim_defects: Defects,
}

/// The ground truth of a generated portfolio, as written to `truth.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortfolioTruth {
    pub seed: u64,
    /// Policy records per carrier.
    pub policies: usize,
    pub delivery: u32,
    /// The rate asked for; `None` for the demo's fixed mix of defects ([`demo_defects`]).
    pub defect_rate: Option<f64>,
    pub carriers: Vec<CarrierTruth>,
}

/// One carrier's part of [`PortfolioTruth`]. File names are relative to the directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarrierTruth {
    pub id: String,
    pub name: String,
    pub policy_format: FeedFormat,
    pub claim_format: FeedFormat,
    pub policy_file: String,
    pub policy_mapping: String,
    /// `None` when no claim feed was written.
    pub claim_file: Option<String>,
    pub claim_mapping: String,
    pub policy_defects: Defects,
    pub claim_defects: Defects,
    pub policies: PolicyTruth,
    /// `None` when no claim feed was written.
    pub claims: Option<ClaimTruth>,
}

impl PortfolioTruth {
    /// Reads a `truth.json` written by [`generate`]. ([`PolicyTruth::defect_lines`], which
    /// the file does not repeat, is rebuilt from [`PolicyTruth::defects`].)
    pub fn read(path: &Path) -> io::Result<Self> {
        let bytes = std::fs::read(path)?;
        let mut truth: Self = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        for c in &mut truth.carriers {
            c.policies.defect_lines = c
                .policies
                .defects
                .iter()
                .map(|d| (d.line, d.kind.label()))
                .collect();
        }
        Ok(truth)
    }

    /// The truth of carrier `id`.
    pub fn carrier(&self, id: &str) -> Option<&CarrierTruth> {
        self.carriers.iter().find(|c| c.id == id)
    }
}

/// Writes the selected carriers' feeds (policy feed of `delivery`, and claim feeds if asked),
/// both mapping files of each, and the ground truth as `truth.json`
/// ([`GenOptions::truth_file_name`]) into `dir` (created if missing).
///
/// The same options give byte-identical files. Fails with `InvalidInput` for an unknown
/// carrier, delivery 0, or a rate that asks for more defects than records.
pub fn generate(dir: &Path, opts: &GenOptions) -> io::Result<Vec<GeneratedCarrier>> {
    let profiles = opts.carriers.profiles()?;
    let plans = profiles
        .into_iter()
        .map(|profile| {
            let policy_defects = Defects::at_rate(
                opts.defect_rate,
                opts.policies,
                profile.policy_defect_kinds(),
            );
            let claim_defects = if opts.claims && opts.defect_rate > 0.0 {
                let claims = claim_count(&profile, opts.policies, opts.seed);
                Defects::at_rate(opts.defect_rate, claims, profile.claim_defect_kinds())
            } else {
                Defects::default()
            };
            (profile, policy_defects, claim_defects)
        })
        .collect();
    write_portfolio(
        dir,
        plans,
        opts.policies,
        opts.seed,
        opts.delivery,
        opts.claims,
        Some(opts.defect_rate),
    )
}

/// The defects the demo portfolio injects into policy feeds: a few per carrier, of different
/// kinds, so that the demo has rejected records to explain. None for feeds under 50 rows;
/// roughly one defect of each kind per 1000 rows above that.
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
        "harbour" => Defects {
            invalid_dates: n,
            missing_required: n,
            ..Defects::default()
        },
        "meridian" => Defects {
            malformed_records: n,
            not_a_number: n,
            ..Defects::default()
        },
        "alpine" => Defects {
            unknown_codes: n,
            missing_required: n,
            ..Defects::default()
        },
        "keystone" => Defects {
            shifted_lines: n,
            invalid_dates: n,
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

/// The defects the demo portfolio injects into claim feeds: one in each claim feed of the
/// carriers that do not write delimited text (whose claim feeds therefore stay as they were),
/// for feeds of 50 policies or more.
pub fn demo_claim_defects(profile: &CarrierProfile, policies: usize) -> Defects {
    if policies < 50 {
        return Defects::default();
    }
    match profile.id {
        "harbour" => Defects {
            unknown_codes: 1,
            ..Defects::default()
        },
        "meridian" => Defects {
            malformed_records: 1,
            ..Defects::default()
        },
        "alpine" => Defects {
            negative_reserve: 1,
            ..Defects::default()
        },
        "keystone" => Defects {
            invalid_dates: 1,
            ..Defects::default()
        },
        _ => Defects::default(),
    }
}

/// Writes every carrier's delivery-1 policy feed (with [`demo_defects`]), claim feed (with
/// [`demo_claim_defects`]), both mapping files and `truth.json` into `dir` (created if
/// missing), and returns the paths with the truths.
pub fn generate_portfolio(
    dir: &Path,
    policies_per_carrier: usize,
    seed: u64,
) -> io::Result<Vec<GeneratedCarrier>> {
    let plans = carriers()
        .into_iter()
        .map(|profile| {
            let policy_defects = demo_defects(&profile, policies_per_carrier);
            let mut claim_defects = demo_claim_defects(&profile, policies_per_carrier);
            if claim_defects.total() > claim_count(&profile, policies_per_carrier, seed) {
                claim_defects = Defects::default();
            }
            (profile, policy_defects, claim_defects)
        })
        .collect();
    write_portfolio(dir, plans, policies_per_carrier, seed, 1, true, None)
}

fn write_portfolio(
    dir: &Path,
    plans: Vec<(CarrierProfile, Defects, Defects)>,
    policies: usize,
    seed: u64,
    delivery: u32,
    claims: bool,
    defect_rate: Option<f64>,
) -> io::Result<Vec<GeneratedCarrier>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    let mut truth = PortfolioTruth {
        seed,
        policies,
        delivery,
        defect_rate,
        carriers: Vec::new(),
    };
    for (profile, policy_defects, claim_defects) in plans {
        let policy_name = profile.policy_file_name_for(delivery);
        let policy_file = dir.join(&policy_name);
        let claim_file = dir.join(profile.claim_file_name);
        let policy_mapping_file = dir.join(profile.policy_mapping_file_name());
        let claim_mapping_file = dir.join(profile.claim_mapping_file_name());

        let opts = FeedOptions {
            policies,
            seed,
            delivery,
            defects: policy_defects.clone(),
        };
        let policy_truth = write_file(&policy_file, |w| write_policy_feed(&profile, &opts, w))?;
        let claim_truth = if claims {
            let opts = ClaimFeedOptions {
                policies,
                seed,
                defects: claim_defects.clone(),
                policy_defects: policy_defects.clone(),
            };
            write_file(&claim_file, |w| write_claim_feed_with(&profile, &opts, w))?
        } else {
            ClaimTruth::default()
        };
        std::fs::write(&policy_mapping_file, profile.policy_mapping)?;
        std::fs::write(&claim_mapping_file, profile.claim_mapping)?;
        truth.carriers.push(CarrierTruth {
            id: profile.id.to_owned(),
            name: profile.name.to_owned(),
            policy_format: profile.policy_format,
            claim_format: profile.claim_format,
            policy_file: policy_name,
            policy_mapping: profile.policy_mapping_file_name(),
            claim_file: claims.then(|| profile.claim_file_name.to_owned()),
            claim_mapping: profile.claim_mapping_file_name(),
            policy_defects: policy_defects.clone(),
            claim_defects: claim_defects.clone(),
            policies: policy_truth.clone(),
            claims: claims.then(|| claim_truth.clone()),
        });
        out.push(GeneratedCarrier {
            profile,
            policy_file,
            claim_file,
            policy_mapping_file,
            claim_mapping_file,
            policy_truth,
            claim_truth,
            wrote_claims: claims,
            policy_defects,
            claim_defects,
        });
    }
    let json = serde_json::to_vec_pretty(&truth).map_err(io::Error::other)?;
    std::fs::write(dir.join(truth_file_name(delivery)), json)?;
    Ok(out)
}

/// Creates `path` and writes it; the feed writers buffer themselves.
fn write_file<T>(path: &Path, write: impl FnOnce(&mut File) -> io::Result<T>) -> io::Result<T> {
    let mut file = File::create(path)?;
    let truth = write(&mut file)?;
    file.flush()?;
    Ok(truth)
}
