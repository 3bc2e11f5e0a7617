//! Premium and claim transactions, derived from successive versions of a record.
//!
//! Carriers mostly report *states* (this policy, this premium, this claim's paid to date).
//! The transactions are the differences between consecutive states, so that the sum of a
//! policy's premium transactions always equals its current premium, and the sum of a claim's
//! payments its paid to date.

use crate::codes::PolicyStatus;
use crate::entities::{Claim, ClaimTransaction, Policy, PremiumTransaction};
use crate::money::Money;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PremiumTransactionKind {
    NewBusiness,
    Endorsement,
    Cancellation,
    Reinstatement,
    Renewal,
}

impl PremiumTransactionKind {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NewBusiness => "new_business",
            Self::Endorsement => "endorsement",
            Self::Cancellation => "cancellation",
            Self::Reinstatement => "reinstatement",
            Self::Renewal => "renewal",
        }
    }
}

impl fmt::Display for PremiumTransactionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClaimTransactionKind {
    Payment,
    Recovery,
    ReserveChange,
}

impl ClaimTransactionKind {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Payment => "payment",
            Self::Recovery => "recovery",
            Self::ReserveChange => "reserve_change",
        }
    }
}

impl fmt::Display for ClaimTransactionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The premium transactions that take a policy from `previous` to `next`.
///
/// A new policy is new business for its full premium. A later version is a renewal when the
/// term moved forward, a cancellation or reinstatement when the status crossed into or out of
/// cancelled, and an endorsement otherwise; its amount is the premium difference. A version that
/// changes neither premium nor status nor term produces no transaction.
pub fn derive_premium_transactions(
    previous: Option<&Policy>,
    next: &Policy,
) -> Vec<PremiumTransaction> {
    let Some(prev) = previous else {
        return vec![PremiumTransaction {
            kind: PremiumTransactionKind::NewBusiness,
            amount: next.premium,
            effective_date: next.effective_date,
        }];
    };
    let was_cancelled = prev.status.value == PolicyStatus::Cancelled;
    let is_cancelled = next.status.value == PolicyStatus::Cancelled;
    let kind = if next.effective_date > prev.effective_date {
        PremiumTransactionKind::Renewal
    } else if is_cancelled && !was_cancelled {
        PremiumTransactionKind::Cancellation
    } else if was_cancelled && !is_cancelled {
        PremiumTransactionKind::Reinstatement
    } else {
        PremiumTransactionKind::Endorsement
    };
    let delta = if prev.premium.currency == next.premium.currency {
        next.premium
            .checked_sub(&prev.premium)
            .unwrap_or(Money::zero(next.premium.currency))
    } else {
        // A change of currency reverses the old premium and writes the new one.
        return vec![
            PremiumTransaction {
                kind,
                amount: Money::new(-prev.premium.amount, prev.premium.currency),
                effective_date: next.effective_date,
            },
            PremiumTransaction {
                kind,
                amount: next.premium,
                effective_date: next.effective_date,
            },
        ];
    };
    let status_or_term_moved = kind != PremiumTransactionKind::Endorsement;
    if delta.amount.is_zero() && !status_or_term_moved {
        return Vec::new();
    }
    vec![PremiumTransaction {
        kind,
        amount: delta,
        effective_date: next.effective_date,
    }]
}

/// The claim transactions that take a claim from `previous` to `next`: a payment (or a
/// recovery when paid went down) and a reserve change.
pub fn derive_claim_transactions(previous: Option<&Claim>, next: &Claim) -> Vec<ClaimTransaction> {
    let (paid_before, reserve_before) = match previous {
        Some(p) if p.paid.currency == next.paid.currency => (p.paid, p.reserve),
        _ => (
            Money::zero(next.paid.currency),
            Money::zero(next.reserve.currency),
        ),
    };
    let mut out = Vec::new();
    if let Ok(paid) = next.paid.checked_sub(&paid_before) {
        if !paid.amount.is_zero() {
            let kind = if paid.is_negative() {
                ClaimTransactionKind::Recovery
            } else {
                ClaimTransactionKind::Payment
            };
            out.push(ClaimTransaction { kind, amount: paid });
        }
    }
    if let Ok(reserve) = next.reserve.checked_sub(&reserve_before) {
        if !reserve.amount.is_zero() {
            out.push(ClaimTransaction {
                kind: ClaimTransactionKind::ReserveChange,
                amount: reserve,
            });
        }
    }
    out
}
