//! JSON documents: Meridian Direct's claims, as its claims system's export endpoint returns
//! them: one pretty-printed document, the export's metadata first, the claims in an array at
//! `/data/claims`, their count last.
//!
//! ```text
//! {
//!   "export": {
//!     "generated_at": "2025-12-31T23:00:00Z",
//!     "carrier": "meridian",
//!     "resource": "claims"
//!   },
//!   "data": {
//!     "claims": [
//!       {
//!         "claim_id": "clm_5b0e7d13",
//!         "claim_number": "MRC-2025-000001",
//!         …
//!       },
//!       …
//!     ]
//!   },
//!   "count": 2
//! }
//! ```
//!
//! Written as a stream, one claim at a time (the count comes after the array, where the
//! export knows it). A claim spans several lines; its line in the truth is the line of its
//! opening `{`, which is where the JSON reader places the record.

use crate::claim::{tally_claim, ClaimBook, ClaimFate, ClaimRecord};
use crate::defects::DefectKind;
use crate::policy::carrier_key;
use crate::rng::{Rng, Stream};
use crate::row::{write_amount, write_date, AmountStyle, DateStyle};
use crate::truth::{ClaimTally, Position};
use crate::ClaimTruth;
use chrono::NaiveDate;
use std::io::{self, BufWriter, Write};

/// When the export ran: the evening of the date the feeds describe.
const GENERATED_AT: &str = "2025-12-31T23:00:00Z";

/// A streaming pretty-printer in the style of `JSON.stringify(value, null, 2)`: two spaces
/// per level, `"key": value`, one member or element per line. Text accumulates in `buf`
/// until [`Pretty::flush`]; the open objects and arrays are a stack, so a document of any
/// length is written in pieces.
struct Pretty {
    buf: String,
    /// For each open object or array, innermost last: whether it is still empty.
    empty: Vec<bool>,
    /// The 1-based line the next character goes on.
    line: u64,
}

impl Pretty {
    fn new() -> Self {
        Self {
            buf: String::with_capacity(1024),
            empty: Vec::new(),
            line: 1,
        }
    }

    fn newline(&mut self) {
        self.buf.push('\n');
        self.line += 1;
        for _ in 0..self.empty.len() {
            self.buf.push_str("  ");
        }
    }

    /// Starts a member or element of the innermost object or array, on a line of its own.
    fn item(&mut self) {
        if let Some(empty) = self.empty.last_mut() {
            if !*empty {
                self.buf.push(',');
            }
            *empty = false;
        }
        self.newline();
    }

    fn key(&mut self, name: &str) {
        self.item();
        self.buf.push('"');
        self.buf.push_str(name);
        self.buf.push_str("\": ");
    }

    /// Opens an object (`{`) or array (`[`) where a value goes.
    fn open(&mut self, bracket: char) {
        self.buf.push(bracket);
        self.empty.push(true);
    }

    /// Closes the innermost object (`}`) or array (`]`): on a line of its own unless empty.
    fn close(&mut self, bracket: char) {
        let empty = self.empty.pop().expect("an object or array is open");
        if !empty {
            self.newline();
        }
        self.buf.push(bracket);
    }

    /// A member whose value is written as given.
    fn raw(&mut self, name: &str, value: &str) {
        self.key(name);
        self.buf.push_str(value);
    }

    fn string(&mut self, name: &str, value: &str) {
        self.key(name);
        // serde_json escapes quotes, backslashes and control characters.
        self.buf
            .push_str(&serde_json::to_string(value).expect("a string serialises"));
    }

    fn date(&mut self, name: &str, value: NaiveDate) {
        self.key(name);
        self.buf.push('"');
        write_date(&mut self.buf, value, DateStyle::Iso);
        self.buf.push('"');
    }

    /// An amount in cents as a JSON number with two decimals: `1234.50`.
    fn amount(&mut self, name: &str, cents: i64, style: AmountStyle) {
        self.key(name);
        write_amount(&mut self.buf, cents, true, style);
    }

    /// Writes out what has accumulated.
    fn flush(&mut self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(self.buf.as_bytes())?;
        self.buf.clear();
        Ok(())
    }
}

/// One claim as an object of the `claims` array (the writer is where its `{` goes).
fn claim_object(
    book: &ClaimBook,
    row: u64,
    claim: &ClaimRecord,
    fate: ClaimFate,
    doc: &mut Pretty,
) {
    let profile = book.profile;
    let spec = profile.spec;
    let kind = match fate {
        ClaimFate::Defective(_, kind) => Some(kind),
        _ => None,
    };
    // The id and the time of day of the notification: presentation details from their own
    // stream.
    let mut r = Rng::keyed(book.seed, carrier_key(profile), Stream::Layout, 1, row);
    doc.open('{');
    doc.string("claim_id", &format!("clm_{:08x}", r.next_u64() as u32));
    doc.string("claim_number", &claim.number);
    doc.string("policy_number", &claim.policy_number);
    match kind {
        // The key is absent, as an API leaves out a null member.
        Some(DefectKind::MissingRequired) => {}
        Some(DefectKind::UnknownCode) => doc.string("status", spec.unknown_claim_status),
        _ => doc.string("status", claim.status_code(profile)),
    }
    doc.key("loss");
    doc.open('{');
    doc.date("date", claim.loss);
    doc.string("cause", claim.cause);
    doc.close('}');
    doc.key("reported_at");
    doc.buf.push('"');
    write_date(&mut doc.buf, claim.reported, DateStyle::Iso);
    doc.buf.push_str(&format!(
        "T{:02}:{:02}:{:02}Z\"",
        r.between(7, 21),
        r.below(60),
        r.below(60)
    ));
    doc.string("currency", spec.currencies[claim.policy.currency].0);
    if kind == Some(DefectKind::MalformedRecord) {
        // A paid amount that is not a number, written as Python's `json.dumps` writes such a
        // float: a bare NaN, which is not JSON. Brackets and quotes stay balanced, so the
        // reader finds the element's end, rejects it and goes on with the next one.
        doc.raw("paid", "NaN");
    } else {
        doc.amount("paid", claim.paid, spec.text.amount);
    }
    if kind == Some(DefectKind::NotANumber) {
        doc.string("reserve", "n/a");
    } else {
        doc.amount("reserve", claim.reserve, spec.text.amount);
    }
    doc.close('}');
}

/// The claims as one JSON document, records in the array at `/data/claims`; record `k` is
/// the `k`-th element, on the line of its `{`.
pub(crate) fn write_claims(book: &ClaimBook, out: &mut impl Write) -> io::Result<ClaimTruth> {
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut tally = ClaimTally::new(book.profile);
    let mut doc = Pretty::new();
    doc.open('{');
    doc.key("export");
    doc.open('{');
    doc.string("generated_at", GENERATED_AT);
    doc.string("carrier", book.profile.id);
    doc.string("resource", "claims");
    doc.close('}');
    doc.key("data");
    doc.open('{');
    doc.key("claims");
    doc.open('[');
    let mut count = 0u64;
    book.for_each(|row, claim, fate| {
        doc.item();
        let at = Position {
            record: row + 1,
            line: doc.line,
        };
        claim_object(book, row, claim, fate, &mut doc);
        doc.flush(&mut out)?;
        tally_claim(&mut tally, at, claim, fate, 0);
        count += 1;
        Ok(())
    })?;
    doc.close(']');
    doc.close('}');
    doc.raw("count", &count.to_string());
    doc.close('}');
    doc.buf.push('\n');
    doc.flush(&mut out)?;
    out.flush()?;
    Ok(tally.finish())
}

#[cfg(test)]
mod tests {
    use super::Pretty;

    #[test]
    fn pretty_prints_like_json_stringify_and_counts_lines() {
        let mut doc = Pretty::new();
        doc.open('{');
        doc.raw("a", "1");
        doc.key("b");
        doc.open('[');
        doc.close(']');
        doc.key("c");
        doc.open('[');
        doc.item();
        assert_eq!(doc.line, 5);
        doc.open('{');
        doc.string("d", "x\"y");
        doc.close('}');
        doc.close(']');
        doc.close('}');
        assert_eq!(
            doc.buf,
            "{\n  \"a\": 1,\n  \"b\": [],\n  \"c\": [\n    {\n      \"d\": \"x\\\"y\"\n    }\n  ]\n}"
        );
        assert_eq!(doc.line, 9);
        let v: serde_json::Value = serde_json::from_str(&doc.buf).unwrap();
        assert_eq!(v["c"][0]["d"], "x\"y");
    }
}
