//! The canonical records: what every carrier's feed becomes.

use crate::codes::{ClaimStatus, Coded, LineOfBusiness, PartyKind, PolicyStatus};
use crate::ids::{CarrierId, ClaimNumber, PolicyNumber};
use crate::money::Money;
use crate::transactions::{ClaimTransactionKind, PremiumTransactionKind};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A carrier whose feeds CarrierHub receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carrier {
    pub id: CarrierId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// The person or organisation a policy insures.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InsuredParty {
    /// The carrier's own reference for the party, when it sends one.
    pub reference: Option<String>,
    pub kind: PartyKind,
    pub name: String,
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2, when known.
    pub country: Option<String>,
}

/// One cover within a policy: what is insured, up to which limit, above which deductible.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Coverage {
    pub code: String,
    pub limit: Option<Money>,
    pub deductible: Option<Money>,
    pub premium: Option<Money>,
}

/// A policy as the carrier reports it at one point in time. Its natural key is
/// (carrier, number).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Policy {
    pub carrier: CarrierId,
    pub number: PolicyNumber,
    pub line_of_business: Coded<LineOfBusiness>,
    pub status: Coded<PolicyStatus>,
    pub effective_date: NaiveDate,
    pub expiration_date: NaiveDate,
    /// Annual (written) premium of the current term.
    pub premium: Money,
    /// Producer code: the book of business the policy belongs to.
    pub producer: Option<String>,
    pub insured: InsuredParty,
    pub coverages: Vec<Coverage>,
}

/// A claim as the carrier reports it, with cumulative paid and outstanding reserve.
/// Its natural key is (carrier, number).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Claim {
    pub carrier: CarrierId,
    pub number: ClaimNumber,
    pub policy_number: PolicyNumber,
    pub loss_date: NaiveDate,
    pub reported_date: NaiveDate,
    pub status: Coded<ClaimStatus>,
    pub cause: Option<String>,
    /// Cumulative amount paid to date.
    pub paid: Money,
    /// Outstanding case reserve.
    pub reserve: Money,
}

/// A movement of premium on a policy, derived from the versions the carrier reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PremiumTransaction {
    pub kind: PremiumTransactionKind,
    pub amount: Money,
    pub effective_date: NaiveDate,
}

/// A movement of money on a claim, derived from the versions the carrier reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimTransaction {
    pub kind: ClaimTransactionKind,
    pub amount: Money,
}

/// Which kind of canonical record a feed produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Policy,
    Claim,
}

/// Any record a mapping can produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CanonicalRecord {
    Policy(Policy),
    Claim(Claim),
}

impl CanonicalRecord {
    pub fn kind(&self) -> RecordKind {
        match self {
            Self::Policy(_) => RecordKind::Policy,
            Self::Claim(_) => RecordKind::Claim,
        }
    }
}

/// SHA-256 of a record's canonical JSON: equal records hash equal, so an unchanged record
/// is recognised without comparing field by field.
pub fn content_hash<T: Serialize>(record: &T) -> String {
    let json = serde_json::to_vec(record).expect("canonical records always serialise");
    hex::encode(Sha256::digest(json))
}

impl Policy {
    pub fn content_hash(&self) -> String {
        content_hash(self)
    }
}

impl Claim {
    pub fn content_hash(&self) -> String {
        content_hash(self)
    }
}
