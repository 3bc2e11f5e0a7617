//! Claim feeds: about one claim per eight policies, each on a real policy of the same seed,
//! with a loss inside the policy term and amounts that fit the claim's status.

use crate::carriers::{CarrierProfile, NumberStyle};
use crate::policy::{base_policy, carrier_key, policy_number, write_header_row, AS_OF};
use crate::rng::{Rng, Stream};
use crate::row::RowWriter;
use crate::ClaimTruth;
use chrono::{Datelike, Days, NaiveDate};
use rust_decimal::Decimal;
use std::io::{self, BufWriter, Write};

/// Claim status in carrier-neutral terms, in the order of `CarrierSpec::claim_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimState {
    Open = 0,
    Closed = 1,
    Reopened = 2,
    Denied = 3,
}

const STATE_WEIGHTS: [(ClaimState, u32); 4] = [
    (ClaimState::Open, 45),
    (ClaimState::Closed, 45),
    (ClaimState::Reopened, 4),
    (ClaimState::Denied, 6),
];

fn claim_number(profile: &CarrierProfile, loss: NaiveDate, sequence: u64) -> String {
    match profile.spec.numbers {
        NumberStyle::Northwind => format!("CLM{}-{:06}", loss.year(), sequence),
        NumberStyle::Rheinland => format!("S-{}-{:07}", loss.year(), sequence),
        NumberStyle::Thames => format!("TSC/{sequence:06}"),
    }
}

pub(crate) fn write_claim_feed(
    profile: &CarrierProfile,
    policies: usize,
    seed: u64,
    out: &mut impl Write,
) -> io::Result<ClaimTruth> {
    let spec = profile.spec;
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut w = RowWriter::new(spec.text);
    write_header_row(&mut w, spec, spec.claim_header, &mut out)?;
    let mut paid = vec![0i128; spec.currencies.len()];
    let mut reserve = vec![0i128; spec.currencies.len()];
    let mut seen = vec![false; spec.currencies.len()];
    let mut truth = ClaimTruth::default();
    let mut sequence = 0u64;
    for index in 0..policies as u64 {
        let mut r = Rng::keyed(seed, carrier_key(profile), Stream::Claim, 0, index);
        // 10% of policies have one claim and 2.5% two: 0.125 claims per policy.
        let ticket = r.below(10_000);
        let count = if ticket < 1_000 {
            1
        } else if ticket < 1_125 {
            2
        } else {
            0
        };
        if count == 0 {
            continue;
        }
        let p = base_policy(profile, seed, index);
        let line = &spec.lines[p.line];
        for _ in 0..count {
            sequence += 1;
            // A loss inside the term, and not after the date the feed describes.
            let last = (p.expiration - Days::new(1)).min(AS_OF);
            let span = (last - p.effective).num_days() as u64;
            let loss = p.effective + Days::new(r.below(span + 1));
            // Most losses are reported within a week, some take months (liability especially).
            let lag = match r.below(10) {
                0..=5 => r.below(8),
                6..=8 => r.between(8, 45) as u64,
                _ => r.between(46, 180) as u64,
            };
            // Not reported after the date the feed describes.
            let reported = (loss + Days::new(lag)).min(AS_OF);
            let state = STATE_WEIGHTS[r.weighted(STATE_WEIGHTS.iter().map(|(_, w)| *w))].0;
            let severity = r.skewed(line.severity.0, line.severity.1);
            let (paid_cents, reserve_cents) = match state {
                ClaimState::Closed => (severity, 0),
                ClaimState::Open => {
                    let paid = severity * r.between(0, 60) / 100;
                    (paid, (severity - paid).max(100))
                }
                ClaimState::Reopened => {
                    let paid = severity * r.between(50, 90) / 100;
                    (paid, (severity - paid).max(100) + severity / 5)
                }
                ClaimState::Denied => (0, 0),
            };
            let cause = r.pick(spec.causes[line.peril as usize]);

            w.begin(spec.text.delimiter);
            w.text(&claim_number(profile, loss, sequence));
            w.text(&policy_number(profile, &p));
            w.date(loss);
            w.date(reported);
            w.text(spec.claim_status[state as usize]);
            w.text(cause);
            w.amount(paid_cents);
            w.amount(reserve_cents);
            if spec.multi_currency() {
                w.text(spec.currencies[p.currency].0);
            }
            w.end_row();
            out.write_all(w.bytes())?;

            truth.rows += 1;
            truth.valid += 1;
            paid[p.currency] += i128::from(paid_cents);
            reserve[p.currency] += i128::from(reserve_cents);
            seen[p.currency] = true;
        }
    }
    out.flush()?;
    for (i, (code, _)) in spec.currencies.iter().enumerate() {
        if seen[i] {
            let code = (*code).to_owned();
            truth
                .paid_by_currency
                .insert(code.clone(), Decimal::from_i128_with_scale(paid[i], 2));
            truth
                .reserve_by_currency
                .insert(code, Decimal::from_i128_with_scale(reserve[i], 2));
        }
    }
    Ok(truth)
}
