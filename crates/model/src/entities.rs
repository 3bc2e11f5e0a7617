//! The canonical records: what every carrier's feed becomes.

use crate::codes::{ClaimStatus, Coded, LineOfBusiness, PartyKind, PolicyStatus, TransactionType};
use crate::ids::{CarrierId, ClaimNumber, PolicyNumber};
use crate::money::Money;
use crate::transactions::{ClaimTransactionKind, PremiumTransactionKind};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A carrier whose feeds CarrierHub receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carrier {
    pub id: CarrierId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// The person or organisation a policy insures.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Coverage {
    pub code: String,
    pub limit: Option<Money>,
    pub deductible: Option<Money>,
    pub premium: Option<Money>,
}

/// A policy as the carrier reports it at one point in time. Its natural key is
/// (carrier, number).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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
    /// Source fields the canonical model has no place for, as the carrier sent them, by
    /// key (`broker_code`). Kept so nothing the carrier sent is lost, and filterable.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extras: BTreeMap<String, String>,
}

/// A claim as the carrier reports it, with cumulative paid and outstanding reserve.
/// Its natural key is (carrier, number).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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
    /// Source fields the canonical model has no place for (see [`Policy::extras`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extras: BTreeMap<String, String>,
}

/// A transaction a carrier reports on an existing policy (an additional or return premium, a
/// cancellation, a reinstatement) instead of the policy's new state. Applied to the current
/// version it gives the next one; its natural key is (carrier, policy number, reference), so
/// the same transaction sent twice is applied once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct PolicyTransaction {
    pub carrier: CarrierId,
    pub policy_number: PolicyNumber,
    /// The carrier's reference for the transaction, unique per policy.
    pub reference: String,
    pub transaction_type: Coded<TransactionType>,
    pub effective_date: NaiveDate,
    /// The change to the policy's premium: positive for an additional premium, negative
    /// for a return premium.
    pub premium: Money,
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
    Transaction,
}

/// Any record a mapping can produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CanonicalRecord {
    Policy(Policy),
    Claim(Claim),
    Transaction(PolicyTransaction),
}

impl CanonicalRecord {
    pub fn kind(&self) -> RecordKind {
        match self {
            Self::Policy(_) => RecordKind::Policy,
            Self::Claim(_) => RecordKind::Claim,
            Self::Transaction(_) => RecordKind::Transaction,
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

    /// The policy's canonical JSON and its content hash (the hash of exactly that text), for
    /// a writer that stores the JSON as well: the record is serialised once, not twice.
    pub fn canonical_json_and_hash(&self) -> (String, String) {
        let json = serde_json::to_string(self).expect("canonical records always serialise");
        let hash = hex::encode(Sha256::digest(json.as_bytes()));
        (json, hash)
    }
}

impl Claim {
    pub fn content_hash(&self) -> String {
        content_hash(self)
    }
}

impl PolicyTransaction {
    pub fn content_hash(&self) -> String {
        content_hash(self)
    }

    /// The policy after this transaction: the premium changed by `premium`, and the status
    /// cancelled or active again for a cancellation or reinstatement. Fails, naming the
    /// field, when the currencies differ or the premium would become negative.
    pub fn apply_to(&self, policy: &Policy) -> Result<Policy, crate::RuleViolation> {
        let premium = policy.premium.checked_add(&self.premium).map_err(|_| {
            crate::RuleViolation::new(
                "premium",
                self.premium,
                format!(
                    "the transaction is in {}, the policy's premium in {}",
                    self.premium.currency, policy.premium.currency
                ),
            )
        })?;
        if premium.is_negative() {
            return Err(crate::RuleViolation::new(
                "premium",
                self.premium,
                format!(
                    "the return premium exceeds the policy's premium {}",
                    policy.premium
                ),
            ));
        }
        let mut next = policy.clone();
        next.premium = premium;
        let status = match self.transaction_type.value {
            TransactionType::Endorsement => None,
            TransactionType::Cancellation => Some(PolicyStatus::Cancelled),
            TransactionType::Reinstatement => Some(PolicyStatus::Active),
        };
        if let Some(status) = status {
            next.status = Coded::new(status, self.transaction_type.original.clone());
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Currency, Money};
    use rust_decimal::Decimal;

    fn eur(cents: i64) -> Money {
        Money::new(Decimal::new(cents, 2), Currency::parse("EUR").unwrap())
    }

    fn policy() -> Policy {
        Policy {
            carrier: CarrierId::parse("c").unwrap(),
            number: PolicyNumber::parse("P1").unwrap(),
            line_of_business: Coded::new(LineOfBusiness::Homeowners, "HO"),
            status: Coded::new(PolicyStatus::Active, "A"),
            effective_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            expiration_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            premium: eur(100_000),
            producer: None,
            insured: InsuredParty {
                reference: None,
                kind: PartyKind::Person,
                name: "A".into(),
                postal_code: None,
                country: None,
            },
            coverages: vec![],
            extras: BTreeMap::new(),
        }
    }

    fn transaction(kind: TransactionType, original: &str, premium: Money) -> PolicyTransaction {
        PolicyTransaction {
            carrier: CarrierId::parse("c").unwrap(),
            policy_number: PolicyNumber::parse("P1").unwrap(),
            reference: "T1".into(),
            transaction_type: Coded::new(kind, original),
            effective_date: NaiveDate::from_ymd_opt(2025, 6, 1).unwrap(),
            premium,
        }
    }

    #[test]
    fn the_canonical_json_hashes_as_the_content_hash() {
        let p = policy();
        let (json, hash) = p.canonical_json_and_hash();
        assert_eq!(hash, p.content_hash());
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p);
    }

    #[test]
    fn a_transaction_gives_the_policys_next_state() {
        let ap = transaction(TransactionType::Endorsement, "AP", eur(15_000))
            .apply_to(&policy())
            .unwrap();
        assert_eq!(ap.premium, eur(115_000));
        assert_eq!(ap.status.value, PolicyStatus::Active);
        let cancelled = transaction(TransactionType::Cancellation, "CXL", eur(-40_000))
            .apply_to(&ap)
            .unwrap();
        assert_eq!(cancelled.premium, eur(75_000));
        assert_eq!(cancelled.status, Coded::new(PolicyStatus::Cancelled, "CXL"));
        let reinstated = transaction(TransactionType::Reinstatement, "RI", eur(0))
            .apply_to(&cancelled)
            .unwrap();
        assert_eq!(reinstated.status.value, PolicyStatus::Active);
    }

    #[test]
    fn a_transaction_cannot_make_the_premium_negative_or_change_currency() {
        let too_much = transaction(TransactionType::Endorsement, "RP", eur(-100_001));
        let err = too_much.apply_to(&policy()).unwrap_err();
        assert_eq!(err.field, "premium");
        assert!(err.reason.contains("exceeds"), "{}", err.reason);
        let usd = Money::new(Decimal::ONE, Currency::parse("USD").unwrap());
        let err = transaction(TransactionType::Endorsement, "AP", usd)
            .apply_to(&policy())
            .unwrap_err();
        assert!(
            err.reason.contains("USD") && err.reason.contains("EUR"),
            "{}",
            err.reason
        );
    }
}
