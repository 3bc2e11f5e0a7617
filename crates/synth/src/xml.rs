//! XML exports: Alpina Assekuranz's policy and claim extracts, written by hand (with proper
//! escaping) one record element at a time, pretty-printed as its core system writes them.

use crate::claim::{tally_claim, ClaimBook, ClaimFate};
use crate::defects::DefectKind;
use crate::policy::{carrier_key, policy_number, status_code, PolicyBook, AS_OF};
use crate::rng::{Rng, Stream};
use crate::row::{write_amount, write_date, AmountStyle, DateStyle};
use crate::truth::{ClaimTally, PolicyTally, Position};
use crate::{ClaimTruth, PolicyTruth};
use chrono::NaiveDate;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

/// Escapes text for element content and double-quoted attributes (an apostrophe needs no
/// escape there, and Swiss amounts are full of them: `1'234.50`).
pub(crate) fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

/// `<name>text</name>` on its own line at `indent`.
fn element(out: &mut String, indent: usize, name: &str, text: &str) {
    pad(out, indent);
    let _ = write!(out, "<{name}>");
    escape(out, text);
    let _ = writeln!(out, "</{name}>");
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn iso(date: NaiveDate) -> String {
    let mut s = String::with_capacity(10);
    write_date(&mut s, date, DateStyle::Iso);
    s
}

fn amount(cents: i64, style: AmountStyle) -> String {
    let mut s = String::with_capacity(16);
    write_amount(&mut s, cents, true, style);
    s
}

fn whole(units: i64, style: AmountStyle) -> String {
    let mut s = String::with_capacity(16);
    write_amount(&mut s, units * 100, false, style);
    s
}

/// The product names printed beside Alpina's line codes.
fn product_name(code: &str) -> &'static str {
    match code {
        "MF" => "Motorfahrzeug",
        "HR" => "Hausrat",
        "PH" => "Privathaftpflicht",
        "BH" => "Betriebshaftpflicht",
        "GS" => "Gebäude & Sachwerte Gewerbe",
        "TR" => "Transport",
        "LV" => "Lebensversicherung",
        _ => "",
    }
}

const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// `<PolicyExport><Policies><Policy id=…>…</Policy>…</Policies></PolicyExport>`; the first
/// `<Policy>` opens on line 4.
pub(crate) fn write_policies(book: &PolicyBook, out: &mut impl Write) -> io::Result<PolicyTruth> {
    let profile = book.profile;
    let spec = profile.spec;
    let style = spec.text.amount;
    let mut out = BufWriter::with_capacity(1 << 16, out);
    out.write_all(DECLARATION.as_bytes())?;
    writeln!(
        out,
        "<PolicyExport system=\"ALPINA-CORE\" created=\"{}T23:00:00\" delivery=\"{}\" count=\"{}\">",
        iso(AS_OF),
        book.delivery,
        book.rows
    )?;
    out.write_all(b"  <Policies>\n")?;
    let mut line = 4u64;
    let mut tally = PolicyTally::new(profile);
    let mut x = String::with_capacity(2048);
    for index in 0..book.rows as u64 {
        let row = book.row(index);
        let p = &row.p;
        let kind = row.defect.map(|(_, k)| k);
        let mut layout = Rng::keyed(book.seed, carrier_key(profile), Stream::Layout, 0, index);
        let currency = spec.currencies[p.currency].0;
        x.clear();
        x.push_str("    <Policy id=\"");
        escape(&mut x, &policy_number(profile, p));
        let _ = writeln!(x, "\" status=\"{}\">", status_code(spec, p.status));
        let line_code = match kind {
            Some(DefectKind::UnknownCode) => spec.unknown_line_code,
            _ => spec.lines[p.line].code,
        };
        pad(&mut x, 6);
        let _ = write!(x, "<Product line=\"{line_code}\">");
        escape(&mut x, product_name(line_code));
        x.push_str("</Product>\n");
        let start = match row.defect {
            Some((ordinal, DefectKind::InvalidDate)) => {
                spec.invalid_dates[ordinal % spec.invalid_dates.len()].to_owned()
            }
            _ => iso(p.effective),
        };
        pad(&mut x, 6);
        let _ = writeln!(
            x,
            "<Period start=\"{start}\" end=\"{}\"/>",
            iso(p.expiration)
        );
        if kind != Some(DefectKind::MissingRequired) {
            pad(&mut x, 6);
            let _ = writeln!(
                x,
                "<Premium currency=\"{currency}\">{}</Premium>",
                amount(p.premium, style)
            );
        }
        pad(&mut x, 6);
        let _ = writeln!(
            x,
            "<Insured ref=\"K-{:07}\" type=\"{}\">",
            layout.below(10_000_000),
            if p.organisation {
                spec.organisation
            } else {
                spec.person
            }
        );
        element(&mut x, 8, "Name", &p.insured);
        pad(&mut x, 8);
        x.push_str("<Address>\n");
        element(&mut x, 10, "PostalCode", &p.postal_code);
        // A few policyholders live in Liechtenstein, in the Swiss postal system.
        element(
            &mut x,
            10,
            "Country",
            if layout.chance(30) { "LI" } else { "CH" },
        );
        pad(&mut x, 8);
        x.push_str("</Address>\n");
        pad(&mut x, 6);
        x.push_str("</Insured>\n");
        element(&mut x, 6, "Agent", spec.producers[p.producer]);
        pad(&mut x, 6);
        x.push_str("<Coverages>\n");
        let coverages = book.coverages(p);
        for c in &coverages {
            pad(&mut x, 8);
            x.push_str("<Coverage code=\"");
            escape(&mut x, c.code);
            x.push_str("\">\n");
            element(&mut x, 10, "Limit", &whole(c.limit, style));
            element(&mut x, 10, "Deductible", &whole(c.deductible, style));
            element(
                &mut x,
                10,
                "Premium",
                &amount(c.premium.unwrap_or(0), style),
            );
            pad(&mut x, 8);
            x.push_str("</Coverage>\n");
        }
        pad(&mut x, 6);
        x.push_str("</Coverages>\n    </Policy>\n");
        out.write_all(x.as_bytes())?;

        let at = Position {
            record: index + 1,
            line,
        };
        match kind {
            Some(kind) => tally.defect(at, None, kind, spec.policy_missing_field, 0),
            None => tally.valid(p, row.change, &coverages),
        }
        line += x.bytes().filter(|b| *b == b'\n').count() as u64;
    }
    out.write_all(b"  </Policies>\n</PolicyExport>\n")?;
    out.flush()?;
    Ok(tally.finish())
}

/// `<ClaimExport><Claim number=… policy=…>…</Claim>…</ClaimExport>`; the first `<Claim>`
/// opens on line 3.
pub(crate) fn write_claims(book: &ClaimBook, out: &mut impl Write) -> io::Result<ClaimTruth> {
    let profile = book.profile;
    let spec = profile.spec;
    let style = spec.text.amount;
    let mut out = BufWriter::with_capacity(1 << 16, out);
    out.write_all(DECLARATION.as_bytes())?;
    writeln!(
        out,
        "<ClaimExport system=\"ALPINA-CORE\" created=\"{}T23:00:00\">",
        iso(AS_OF)
    )?;
    let mut line = 3u64;
    let mut tally = ClaimTally::new(profile);
    let mut x = String::with_capacity(1024);
    book.for_each(|row, claim, fate| {
        let kind = match fate {
            ClaimFate::Defective(ordinal, kind) => Some((ordinal, kind)),
            _ => None,
        };
        x.clear();
        x.push_str("  <Claim number=\"");
        escape(&mut x, &claim.number);
        x.push_str("\" policy=\"");
        escape(&mut x, &claim.policy_number);
        x.push_str("\">\n");
        let status = match kind {
            Some((_, DefectKind::UnknownCode)) => spec.unknown_claim_status,
            _ => claim.status_code(profile),
        };
        element(&mut x, 4, "Status", status);
        match kind {
            Some((_, DefectKind::MissingRequired)) => {}
            Some((ordinal, DefectKind::InvalidDate)) => element(
                &mut x,
                4,
                "LossDate",
                spec.invalid_dates[ordinal % spec.invalid_dates.len()],
            ),
            _ => element(&mut x, 4, "LossDate", &iso(claim.loss)),
        }
        element(&mut x, 4, "ReportedDate", &iso(claim.reported));
        element(&mut x, 4, "Cause", claim.cause);
        let _ = writeln!(
            x,
            "    <Amounts currency=\"{}\">",
            spec.currencies[claim.policy.currency].0
        );
        element(&mut x, 6, "Paid", &amount(claim.paid, style));
        let reserve = match kind {
            // A reserve release booked with the wrong sign: at least 100.00 below zero.
            Some((_, DefectKind::NegativeReserve)) => -claim.reserve.max(10_000),
            _ => claim.reserve,
        };
        element(&mut x, 6, "Reserve", &amount(reserve, style));
        x.push_str("    </Amounts>\n  </Claim>\n");
        out.write_all(x.as_bytes())?;
        let at = Position {
            record: row + 1,
            line,
        };
        tally_claim(&mut tally, at, claim, fate, 0);
        line += x.bytes().filter(|b| *b == b'\n').count() as u64;
        Ok(())
    })?;
    out.write_all(b"</ClaimExport>\n")?;
    out.flush()?;
    Ok(tally.finish())
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaping_covers_markup_characters() {
        let mut s = String::new();
        super::escape(&mut s, "Hansen & Söhne <\"AG\"> l'Orée");
        assert_eq!(s, "Hansen &amp; Söhne &lt;&quot;AG&quot;&gt; l'Orée");
    }
}
