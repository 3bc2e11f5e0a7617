//! Record-level rules on canonical records. A violation names the canonical field, the value
//! and the reason, so a rejected row can be explained to the carrier.

use crate::entities::{Claim, Policy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleViolation {
    pub field: String,
    pub value: String,
    pub reason: String,
}

impl RuleViolation {
    pub(crate) fn new(field: &str, value: impl ToString, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Rules every canonical record of a kind must satisfy, whatever carrier it came from.
pub trait Validate {
    fn violations(&self) -> Vec<RuleViolation>;
}

impl Validate for Policy {
    fn violations(&self) -> Vec<RuleViolation> {
        let mut out = Vec::new();
        if self.premium.is_negative() {
            out.push(RuleViolation::new(
                "premium",
                self.premium,
                "premium must not be negative",
            ));
        }
        if self.expiration_date <= self.effective_date {
            out.push(RuleViolation::new(
                "expiration_date",
                self.expiration_date,
                format!(
                    "expiration date must be after the effective date {}",
                    self.effective_date
                ),
            ));
        }
        if self.insured.name.trim().is_empty() {
            out.push(RuleViolation::new(
                "insured.name",
                "",
                "insured name is required",
            ));
        }
        for (i, cov) in self.coverages.iter().enumerate() {
            for (what, money) in [
                ("limit", cov.limit),
                ("deductible", cov.deductible),
                ("premium", cov.premium),
            ] {
                let Some(money) = money else { continue };
                let field = format!("coverages[{i}].{what}");
                if money.is_negative() {
                    out.push(RuleViolation::new(&field, money, "must not be negative"));
                }
                if money.currency != self.premium.currency {
                    out.push(RuleViolation::new(
                        &field,
                        money,
                        format!(
                            "currency differs from the policy's {}",
                            self.premium.currency
                        ),
                    ));
                }
            }
        }
        out
    }
}

impl Validate for crate::PolicyTransaction {
    fn violations(&self) -> Vec<RuleViolation> {
        let r = self.reference.trim();
        if r.is_empty() || r.len() > 64 || r.chars().any(char::is_control) {
            vec![RuleViolation::new(
                "reference",
                &self.reference,
                "a transaction reference is 1 to 64 characters, without control characters",
            )]
        } else {
            Vec::new()
        }
    }
}

impl Validate for Claim {
    fn violations(&self) -> Vec<RuleViolation> {
        let mut out = Vec::new();
        if self.reported_date < self.loss_date {
            out.push(RuleViolation::new(
                "reported_date",
                self.reported_date,
                format!("reported before the loss date {}", self.loss_date),
            ));
        }
        if self.reserve.is_negative() {
            out.push(RuleViolation::new(
                "reserve",
                self.reserve,
                "reserve must not be negative",
            ));
        }
        if self.paid.currency != self.reserve.currency {
            out.push(RuleViolation::new(
                "reserve",
                self.reserve,
                format!("currency differs from paid's {}", self.paid.currency),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

    pub(crate) fn policy(premium: &str) -> Policy {
        let eur = Currency::parse("EUR").unwrap();
        Policy {
            carrier: CarrierId::parse("acme").unwrap(),
            number: PolicyNumber::parse("P1").unwrap(),
            line_of_business: Coded::new(LineOfBusiness::Homeowners, "HH"),
            status: Coded::new(PolicyStatus::Active, "A"),
            effective_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            expiration_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            premium: Money::new(premium.parse::<Decimal>().unwrap(), eur),
            producer: None,
            insured: InsuredParty {
                reference: None,
                kind: PartyKind::Person,
                name: "Ada".into(),
                postal_code: None,
                country: None,
            },
            coverages: vec![],
            extras: Default::default(),
        }
    }

    #[test]
    fn negative_premium_and_inverted_dates_are_violations() {
        let mut p = policy("-1");
        p.expiration_date = p.effective_date;
        let fields: Vec<_> = p.violations().into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["premium", "expiration_date"]);
        assert!(policy("100").violations().is_empty());
    }

    #[test]
    fn premium_transactions_sum_to_the_current_premium() {
        let v1 = policy("100");
        let mut v2 = v1.clone();
        v2.premium = Money::new(Decimal::new(12050, 2), v1.premium.currency);
        let mut v3 = v2.clone();
        v3.status = Coded::new(PolicyStatus::Cancelled, "X");
        v3.premium = Money::new(Decimal::new(40, 0), v1.premium.currency);

        let mut all = derive_premium_transactions(None, &v1);
        all.extend(derive_premium_transactions(Some(&v1), &v2));
        all.extend(derive_premium_transactions(Some(&v2), &v3));
        let kinds: Vec<_> = all.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            [
                PremiumTransactionKind::NewBusiness,
                PremiumTransactionKind::Endorsement,
                PremiumTransactionKind::Cancellation
            ]
        );
        let total = all
            .iter()
            .fold(Decimal::ZERO, |acc, t| acc + t.amount.amount);
        assert_eq!(total, v3.premium.amount);
        assert!(derive_premium_transactions(Some(&v3), &v3).is_empty());
    }
}
