//! The canonical insurance model every carrier's feed is mapped into.
//!
//! Architecture invariant: this crate does no I/O. Every type here *parses*: once a
//! `PolicyNumber`, `Money` or `CarrierId` exists it is valid, so the rest of the system never
//! re-checks it.

mod codes;
mod entities;
mod ids;
mod money;
mod transactions;
mod validation;

pub use codes::{
    ClaimStatus, Coded, LineOfBusiness, PartyKind, PolicyStatus, TransactionType, UnknownCode,
};
pub use entities::{
    CanonicalRecord, Carrier, Claim, ClaimTransaction, Coverage, InsuredParty, Policy,
    PolicyTransaction, PremiumTransaction, RecordKind,
};
pub use ids::{CarrierId, ClaimNumber, IdError, PolicyNumber};
pub use money::{Currency, Money, MoneyError};
pub use transactions::{
    derive_claim_transactions, derive_premium_transactions, ClaimTransactionKind,
    PremiumTransactionKind,
};
pub use validation::{RuleViolation, Validate};
