//! NDJSON API dumps: Meridian Direct's policies, one JSON object per line, as its policy
//! admin system's export endpoint streams them. (Its claims are one JSON document: see
//! `json.rs`.)
//!
//! Written by hand rather than through `serde_json::Value`, so that the key order is the
//! API's, amounts keep their two decimals (`1234.50`, a JSON number), and a defect can cut a
//! line exactly where an interrupted export would.

use crate::defects::DefectKind;
use crate::policy::{carrier_key, policy_number, status_code, PolicyBook, PolicyRow};
use crate::rng::{Rng, Stream};
use crate::row::{write_amount, write_date};
use crate::truth::{PolicyTally, Position};
use crate::PolicyTruth;
use chrono::NaiveDate;
use std::io::{self, BufWriter, Write};

/// Appends `"key":` after a comma unless the object just opened.
fn key(out: &mut String, key: &str) {
    if !out.ends_with('{') && !out.ends_with('[') {
        out.push(',');
    }
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
}

fn string(out: &mut String, name: &str, value: &str) {
    key(out, name);
    // serde_json escapes quotes, backslashes and control characters.
    out.push_str(&serde_json::to_string(value).expect("a string serialises"));
}

fn null(out: &mut String, name: &str) {
    key(out, name);
    out.push_str("null");
}

fn date(out: &mut String, name: &str, value: NaiveDate) {
    key(out, name);
    out.push('"');
    write_date(out, value, crate::row::DateStyle::Iso);
    out.push('"');
}

/// An amount in cents as a JSON number with two decimals: `1234.50`.
fn amount(out: &mut String, name: &str, cents: i64, style: crate::row::AmountStyle) {
    key(out, name);
    write_amount(out, cents, true, style);
}

fn whole(out: &mut String, name: &str, units: i64) {
    key(out, name);
    out.push_str(&units.to_string());
}

/// Cuts a serialised object about two thirds of the way in, as an export that died
/// mid-write leaves it: never valid JSON, since the closing brace is gone.
fn cut(line: &mut String) {
    let mut at = line.len() * 2 / 3;
    while !line.is_char_boundary(at) {
        at -= 1;
    }
    line.truncate(at);
}

/// A Canadian postal code (`K1A 0B1`) for the Canadian business, from the policy's own
/// layout stream.
fn canadian_postal_code(r: &mut Rng) -> String {
    const LETTERS: &[u8] = b"ABCEGHJKLMNPRSTVXY";
    let mut s = String::with_capacity(7);
    for i in 0..6 {
        if i == 3 {
            s.push(' ');
        }
        if i % 2 == 0 {
            s.push(char::from(LETTERS[r.below(LETTERS.len() as u64) as usize]));
        } else {
            s.push(char::from(b'0' + r.below(10) as u8));
        }
    }
    s
}

fn policy_line(book: &PolicyBook, row: &PolicyRow, out: &mut String) {
    let profile = book.profile;
    let spec = profile.spec;
    let p = &row.p;
    let kind = row.defect.map(|(_, k)| k);
    let currency = spec.currencies[p.currency].0;
    let mut layout = Rng::keyed(book.seed, carrier_key(profile), Stream::Layout, 0, p.index);
    out.clear();
    out.push('{');
    string(out, "id", &format!("pol_{:08x}", layout.next_u64() as u32));
    string(out, "policy_number", &policy_number(profile, p));
    string(
        out,
        "product",
        match kind {
            Some(DefectKind::UnknownCode) => spec.unknown_line_code,
            _ => spec.lines[p.line].code,
        },
    );
    string(out, "status", status_code(spec, p.status));
    if kind != Some(DefectKind::MissingRequired) {
        date(out, "effective_date", p.effective);
    }
    date(out, "expiration_date", p.expiration);
    string(out, "currency", currency);
    if kind == Some(DefectKind::NotANumber) {
        string(out, "total_premium", "n/a");
    } else {
        amount(out, "total_premium", p.premium, spec.text.amount);
    }
    key(out, "insured");
    out.push('{');
    if p.organisation {
        string(out, "type", spec.organisation);
        null(out, "first_name");
        null(out, "last_name");
        string(out, "company_name", &p.insured);
    } else {
        // US names are "First Last", first names being one word.
        let (first, last) = p.insured.split_once(' ').unwrap_or(("", &p.insured));
        string(out, "type", spec.person);
        string(out, "first_name", first);
        string(out, "last_name", last);
        null(out, "company_name");
    }
    key(out, "address");
    out.push('{');
    if currency == "CAD" {
        string(out, "postal_code", &canadian_postal_code(&mut layout));
        string(out, "country", "CA");
    } else {
        string(out, "postal_code", &p.postal_code);
        string(out, "country", "US");
    }
    out.push_str("}}");
    string(out, "producer", spec.producers[p.producer]);
    key(out, "coverages");
    out.push('[');
    for c in book.coverages(p) {
        if !out.ends_with('[') {
            out.push(',');
        }
        out.push('{');
        string(out, "code", c.code);
        whole(out, "limit", c.limit);
        whole(out, "deductible", c.deductible);
        amount(out, "premium", c.premium.unwrap_or(0), spec.text.amount);
        out.push('}');
    }
    out.push(']');
    string(out, "updated_at", "2025-12-31T23:00:00Z");
    out.push('}');
    if kind == Some(DefectKind::MalformedRecord) {
        cut(out);
    }
    out.push('\n');
}

/// One policy per line; record `k` is on line `k`.
pub(crate) fn write_policies(book: &PolicyBook, out: &mut impl Write) -> io::Result<PolicyTruth> {
    let spec = book.profile.spec;
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut tally = PolicyTally::new(book.profile);
    let mut line = String::with_capacity(1024);
    for index in 0..book.rows as u64 {
        let row = book.row(index);
        policy_line(book, &row, &mut line);
        out.write_all(line.as_bytes())?;
        let at = Position {
            record: index + 1,
            line: index + 1,
        };
        match row.defect {
            Some((_, kind)) => tally.defect(at, None, kind, spec.policy_missing_field, 0),
            None => tally.valid(&row.p, row.change, &book.coverages(&row.p)),
        }
    }
    out.flush()?;
    Ok(tally.finish())
}
