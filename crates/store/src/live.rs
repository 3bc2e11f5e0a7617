//! Today's premium and claim movements, read by the published events that made them: the
//! feed of the API's live view (`GET /v1/insights/live`), which seeds its totals with one
//! read and then follows the events published after that point.
//!
//! Architecture invariants:
//! - A movement belongs to the event of the version that made it: a premium transaction to
//!   its policy version's event, a claim transaction to its claim version's event, a new
//!   claim to its `claim.created` event. It is counted for the UTC day of that event's
//!   `created_at` (the instant its batch began, which is also the transaction's
//!   `recorded_at`), and read by the event's publication position (`published_seq`).
//!   Reading positions `(a, b]` and then `(b, c]` therefore counts every movement of
//!   `(a, c]` exactly once, whatever the order events were committed in.
//! - A movement is keyed by the carrier, line and book (producer code) of the policy
//!   version it concerns: for a claim, the policy version current when the claim version
//!   was written. These never change afterwards, so a seed and the events it is followed by
//!   agree.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// What movements are summed by: a caller's scope is applied on `carrier` and `book`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LiveKey {
    pub carrier: String,
    pub line_of_business: String,
    /// The policy's producer code (its book), if it has one.
    pub book: Option<String>,
    pub currency: String,
}

/// Sums of movements. Amounts are exact decimals in the key's currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveAmounts {
    /// Premium transactions recorded (new business, endorsements, cancellations, …).
    pub premium_transactions: u64,
    /// Their sum: written premium (a cancellation's return premium is negative).
    pub premium_written: Decimal,
    /// Claims created.
    pub claims_new: u64,
    /// Claim transactions recorded.
    pub claim_transactions: u64,
    /// The change of incurred (paid + reserve) those transactions make.
    pub claims_incurred: Decimal,
    /// The change of paid (payments less recoveries).
    pub claims_paid: Decimal,
}

impl LiveAmounts {
    pub fn add(&mut self, other: &LiveAmounts) {
        self.premium_transactions += other.premium_transactions;
        self.premium_written += other.premium_written;
        self.claims_new += other.claims_new;
        self.claim_transactions += other.claim_transactions;
        self.claims_incurred += other.claims_incurred;
        self.claims_paid += other.claims_paid;
    }

    pub fn is_zero(&self) -> bool {
        *self == LiveAmounts::default()
    }
}

/// Movements of one key; a read may return several rows for the same key (the reader sums).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRow {
    pub key: LiveKey,
    pub amounts: LiveAmounts,
}

/// Which events' movements to read: published at positions `after < published_seq <=
/// through`, created in `[since, until)`.
#[derive(Debug, Clone, Copy)]
pub struct LiveRange {
    pub after: i64,
    pub through: i64,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}
