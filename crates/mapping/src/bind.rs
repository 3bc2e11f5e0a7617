//! A mapping bound to one payload's header, ready to map records fast.

use crate::spec::{
    ClaimFields, CodeList, FieldSpec, Fields, MappingError, MappingSpec, PolicyFields,
};
use crate::values::{parse_date, parse_decimal, DecimalFormat};
use carrierhub_formats::RawRecord;
use carrierhub_model::{
    CanonicalRecord, CarrierId, Claim, ClaimNumber, Coded, Coverage, Currency, InsuredParty, Money,
    PartyKind, Policy, PolicyNumber,
};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::str::FromStr;

/// Why one field of one record could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The canonical field, e.g. `premium` or `coverages[0].limit`.
    pub field: String,
    /// The source column it was read from, when it came from one.
    pub column: Option<String>,
    pub value: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
enum Source {
    Column { index: usize, name: String },
    Constant(String),
}

#[derive(Debug, Clone)]
struct BoundField {
    name: String,
    source: Source,
    /// Normalised carrier code → canonical code.
    codes: Option<HashMap<String, String>>,
    /// The carrier codes as the mapping spells them, for error messages.
    known_codes: Vec<String>,
    date_formats: Vec<String>,
    decimal: DecimalFormat,
    default: Option<String>,
}

#[derive(Debug, Clone)]
struct BoundCoverage {
    code: BoundField,
    limit: Option<BoundField>,
    deductible: Option<BoundField>,
    premium: Option<BoundField>,
}

// One value per bound mapping, never stored in bulk: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum BoundFields {
    Policy {
        number: BoundField,
        line_of_business: BoundField,
        status: BoundField,
        effective_date: BoundField,
        expiration_date: BoundField,
        premium: BoundField,
        currency: Option<BoundField>,
        producer: Option<BoundField>,
        insured_reference: Option<BoundField>,
        insured_kind: Option<BoundField>,
        insured_name: Option<BoundField>,
        insured_postal_code: Option<BoundField>,
        insured_country: Option<BoundField>,
        coverages: Vec<BoundCoverage>,
    },
    Claim {
        number: BoundField,
        policy_number: BoundField,
        loss_date: BoundField,
        reported_date: BoundField,
        status: BoundField,
        cause: Option<BoundField>,
        paid: BoundField,
        reserve: BoundField,
        currency: Option<BoundField>,
    },
}

/// A mapping whose columns have been found in a payload's header.
#[derive(Debug, Clone)]
pub struct BoundMapping {
    fields: BoundFields,
    default_currency: Option<Currency>,
    /// Header columns no field reads; reported so nothing is ignored unknowingly.
    pub unmapped_columns: Vec<String>,
    /// Canonical field → the source column it is read from.
    columns_by_field: HashMap<String, String>,
}

fn normalise_column(name: &str) -> String {
    name.trim().to_lowercase()
}

fn normalise_code(code: &str) -> String {
    code.trim().to_lowercase()
}

struct Binder<'a> {
    spec: &'a MappingSpec,
    columns: HashMap<String, usize>,
    headers: &'a [String],
    missing: Vec<String>,
    used: Vec<bool>,
    bound_columns: HashMap<String, String>,
}

impl Binder<'_> {
    fn bind(&mut self, name: &str, f: &FieldSpec) -> BoundField {
        let conv = &self.spec.conventions;
        let source = if let Some(v) = &f.value {
            Source::Constant(v.clone())
        } else if let Some(i) = f.index {
            if i > self.headers.len() {
                self.missing.push(format!(
                    "column {i} (for {name}); the header has {}",
                    self.headers.len()
                ));
                Source::Constant(String::new())
            } else {
                self.used[i - 1] = true;
                Source::Column {
                    index: i - 1,
                    name: self.headers[i - 1].clone(),
                }
            }
        } else {
            let col = f.column.as_deref().unwrap_or_default();
            match self.columns.get(&normalise_column(col)) {
                Some(&index) => {
                    self.used[index] = true;
                    Source::Column {
                        index,
                        name: self.headers[index].clone(),
                    }
                }
                None => {
                    self.missing.push(format!("'{col}' (for {name})"));
                    Source::Constant(String::new())
                }
            }
        };
        let table = f.codes.as_ref().and_then(|t| self.spec.code_table(t));
        let codes = table.map(|t| {
            t.iter()
                .map(|(k, v)| (normalise_code(k), v.clone()))
                .collect()
        });
        let known_codes = table
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        if let Source::Column { name: column, .. } = &source {
            self.bound_columns.insert(name.to_owned(), column.clone());
        }
        BoundField {
            name: name.to_owned(),
            source,
            codes,
            known_codes,
            date_formats: f
                .date_format
                .clone()
                .unwrap_or_else(|| conv.date_format.clone()),
            decimal: DecimalFormat {
                decimal_separator: f.decimal_separator.unwrap_or(conv.decimal_separator),
                thousands_separator: f.thousands_separator.or(conv.thousands_separator),
            },
            default: f.default.clone(),
        }
    }

    fn opt(
        &mut self,
        name: &str,
        f: &Option<crate::spec::FieldSpecOrColumn>,
    ) -> Option<BoundField> {
        f.as_ref().map(|f| self.bind(name, &f.0))
    }
}

impl MappingSpec {
    /// Finds every mapped column in `headers`; reports all missing ones at once.
    pub fn bind(&self, headers: &[String]) -> Result<BoundMapping, MappingError> {
        let mut columns = HashMap::new();
        for (i, h) in headers.iter().enumerate() {
            columns.entry(normalise_column(h)).or_insert(i);
        }
        let mut b = Binder {
            spec: self,
            columns,
            headers,
            missing: Vec::new(),
            used: vec![false; headers.len()],
            bound_columns: HashMap::new(),
        };
        let fields = match &self.fields {
            Fields::Policy { fields, coverages } => {
                let PolicyFields {
                    number,
                    line_of_business,
                    status,
                    effective_date,
                    expiration_date,
                    premium,
                    currency,
                    producer,
                    insured,
                } = fields.as_ref();
                BoundFields::Policy {
                    number: b.bind("number", &number.0),
                    line_of_business: b.bind("line_of_business", &line_of_business.0),
                    status: b.bind("status", &status.0),
                    effective_date: b.bind("effective_date", &effective_date.0),
                    expiration_date: b.bind("expiration_date", &expiration_date.0),
                    premium: b.bind("premium", &premium.0),
                    currency: b.opt("currency", currency),
                    producer: b.opt("producer", producer),
                    insured_reference: b.opt("insured.reference", &insured.reference),
                    insured_kind: b.opt("insured.kind", &insured.kind),
                    insured_name: b.opt("insured.name", &insured.name),
                    insured_postal_code: b.opt("insured.postal_code", &insured.postal_code),
                    insured_country: b.opt("insured.country", &insured.country),
                    coverages: coverages
                        .iter()
                        .enumerate()
                        .map(|(i, c)| BoundCoverage {
                            code: b.bind(&format!("coverages[{i}].code"), &c.code.0),
                            limit: b.opt(&format!("coverages[{i}].limit"), &c.limit),
                            deductible: b.opt(&format!("coverages[{i}].deductible"), &c.deductible),
                            premium: b.opt(&format!("coverages[{i}].premium"), &c.premium),
                        })
                        .collect(),
                }
            }
            Fields::Claim(fields) => {
                let ClaimFields {
                    number,
                    policy_number,
                    loss_date,
                    reported_date,
                    status,
                    cause,
                    paid,
                    reserve,
                    currency,
                } = fields.as_ref();
                BoundFields::Claim {
                    number: b.bind("number", &number.0),
                    policy_number: b.bind("policy_number", &policy_number.0),
                    loss_date: b.bind("loss_date", &loss_date.0),
                    reported_date: b.bind("reported_date", &reported_date.0),
                    status: b.bind("status", &status.0),
                    cause: b.opt("cause", cause),
                    paid: b.bind("paid", &paid.0),
                    reserve: b.bind("reserve", &reserve.0),
                    currency: b.opt("currency", currency),
                }
            }
        };
        if !b.missing.is_empty() {
            return Err(MappingError::Header {
                mapping: self.name.clone(),
                reason: format!(
                    "columns not found: {}; the header has: {}",
                    b.missing.join(", "),
                    headers
                        .iter()
                        .map(|h| format!("'{h}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let columns_by_field = b.bound_columns.clone();
        let unmapped_columns = headers
            .iter()
            .zip(&b.used)
            .filter(|(_, used)| !**used)
            .map(|(h, _)| h.clone())
            .collect();
        Ok(BoundMapping {
            fields,
            default_currency: self
                .conventions
                .currency
                .as_deref()
                .and_then(|c| Currency::parse(c).ok()),
            unmapped_columns,
            columns_by_field,
        })
    }
}

/// Reads the fields of one record, collecting every error rather than stopping at the first.
struct RecordReader<'a> {
    record: &'a RawRecord,
    errors: Vec<FieldError>,
}

impl RecordReader<'_> {
    fn fail(&mut self, f: &BoundField, value: &str, reason: impl Into<String>) {
        self.errors.push(FieldError {
            field: f.name.clone(),
            column: match &f.source {
                Source::Column { name, .. } => Some(name.clone()),
                Source::Constant(_) => None,
            },
            value: value.to_owned(),
            reason: reason.into(),
        });
    }

    /// The value after its code table, for fields that are free text: a table translates
    /// the carrier's wording (a cause, a coverage code), and a value it lacks is an error.
    fn text(&mut self, f: &BoundField) -> Option<String> {
        let value = self.raw(f)?;
        let Some(table) = &f.codes else {
            return Some(value);
        };
        match table.get(&normalise_code(&value)) {
            Some(v) => Some(v.clone()),
            None => {
                self.fail(
                    f,
                    &value,
                    format!(
                        "unknown code '{value}'; the code table knows: {}",
                        f.known_codes.join(", ")
                    ),
                );
                None
            }
        }
    }

    /// The trimmed value, or the field's default when empty; `None` when still empty.
    fn raw(&self, f: &BoundField) -> Option<String> {
        let v = match &f.source {
            Source::Column { index, .. } => self
                .record
                .values
                .get(*index)
                .map(|s| s.trim())
                .unwrap_or(""),
            Source::Constant(c) => c.as_str(),
        };
        if v.is_empty() {
            f.default.clone()
        } else {
            Some(v.to_owned())
        }
    }

    fn required_raw(&mut self, f: &BoundField) -> Option<String> {
        let v = self.raw(f);
        if v.is_none() {
            self.fail(f, "", "required value is empty");
        }
        v
    }

    fn required(&mut self, f: &BoundField) -> Option<String> {
        if self.raw(f).is_none() {
            self.fail(f, "", "required value is empty");
            return None;
        }
        self.text(f)
    }

    fn optional(&mut self, f: Option<&BoundField>) -> Option<String> {
        f.and_then(|f| self.text(f))
    }

    fn code<T: FromStr>(&mut self, f: &BoundField, list: CodeList) -> Option<Coded<T>>
    where
        T::Err: std::fmt::Display,
    {
        let original = self.required_raw(f)?;
        let canonical = match &f.codes {
            Some(table) => match table.get(&normalise_code(&original)) {
                Some(c) => c.clone(),
                None => {
                    self.fail(
                        f,
                        &original,
                        format!(
                            "unknown {} code '{original}'; the code table knows: {}",
                            list.label(),
                            f.known_codes.join(", ")
                        ),
                    );
                    return None;
                }
            },
            None => original.clone(),
        };
        match canonical.parse::<T>() {
            Ok(v) => Some(Coded::new(v, original)),
            Err(e) => {
                self.fail(f, &original, e.to_string());
                None
            }
        }
    }

    fn date(&mut self, f: &BoundField) -> Option<NaiveDate> {
        let raw = self.required(f)?;
        parse_date(&raw, &f.date_formats)
            .map_err(|e| self.fail(f, &raw, e))
            .ok()
    }

    fn decimal_of(&mut self, f: &BoundField, raw: &str) -> Option<Decimal> {
        parse_decimal(raw, f.decimal)
            .map_err(|e| self.fail(f, raw, e))
            .ok()
    }

    fn money(&mut self, f: &BoundField, currency: Option<Currency>) -> Option<Money> {
        let raw = self.required(f)?;
        let amount = self.decimal_of(f, &raw)?;
        currency.map(|c| Money::new(amount, c))
    }

    fn optional_money(
        &mut self,
        f: Option<&BoundField>,
        currency: Option<Currency>,
    ) -> Option<Option<Money>> {
        let Some(f) = f else { return Some(None) };
        let Some(raw) = self.raw(f) else {
            return Some(None);
        };
        let amount = self.decimal_of(f, &raw)?;
        Some(currency.map(|c| Money::new(amount, c)))
    }

    fn currency(&mut self, f: Option<&BoundField>, default: Option<Currency>) -> Option<Currency> {
        match f {
            None => default,
            Some(f) => {
                let raw = self.raw(f);
                match raw {
                    None => match default {
                        Some(c) => Some(c),
                        None => {
                            self.fail(f, "", "required value is empty");
                            None
                        }
                    },
                    Some(raw) => {
                        // A code table may translate symbols such as '£' into ISO codes.
                        let code = self.text(f)?;
                        Currency::parse(&code)
                            .map_err(|e| self.fail(f, &raw, e.to_string()))
                            .ok()
                    }
                }
            }
        }
    }

    fn reference<T>(
        &mut self,
        f: &BoundField,
        parse: fn(&str) -> Result<T, carrierhub_model::IdError>,
    ) -> Option<T> {
        let raw = self.required(f)?;
        parse(&raw)
            .map_err(|e| self.fail(f, &raw, e.to_string()))
            .ok()
    }
}

impl CodeList {
    fn label(&self) -> &'static str {
        match self {
            Self::LineOfBusiness => "line of business",
            Self::PolicyStatus => "policy status",
            Self::ClaimStatus => "claim status",
            Self::PartyKind => "party kind",
        }
    }
}

impl BoundMapping {
    /// The source column a canonical field is read from, if it is read from one.
    pub fn source_column(&self, field: &str) -> Option<&str> {
        self.columns_by_field.get(field).map(String::as_str)
    }

    /// Maps one raw record for `carrier`. Every field is tried, so the error list is complete.
    pub fn map(
        &self,
        carrier: &CarrierId,
        record: &RawRecord,
    ) -> Result<CanonicalRecord, Vec<FieldError>> {
        let mut r = RecordReader {
            record,
            errors: Vec::new(),
        };
        let out = match &self.fields {
            BoundFields::Policy {
                number,
                line_of_business,
                status,
                effective_date,
                expiration_date,
                premium,
                currency,
                producer,
                insured_reference,
                insured_kind,
                insured_name,
                insured_postal_code,
                insured_country,
                coverages,
            } => {
                let number = r.reference(number, PolicyNumber::parse);
                let lob = r.code(line_of_business, CodeList::LineOfBusiness);
                let status = r.code(status, CodeList::PolicyStatus);
                let effective = r.date(effective_date);
                let expiration = r.date(expiration_date);
                let ccy = r.currency(currency.as_ref(), self.default_currency);
                let premium = r.money(premium, ccy);
                let kind = match insured_kind {
                    Some(f) => r.code::<PartyKind>(f, CodeList::PartyKind).map(|c| c.value),
                    None => Some(PartyKind::Person),
                };
                let name = match insured_name {
                    Some(f) => r.required(f),
                    None => Some(String::new()),
                };
                let insured = InsuredParty {
                    reference: r.optional(insured_reference.as_ref()),
                    kind: kind.unwrap_or(PartyKind::Person),
                    name: name.unwrap_or_default(),
                    postal_code: r.optional(insured_postal_code.as_ref()),
                    country: r
                        .optional(insured_country.as_ref())
                        .map(|c| c.to_uppercase()),
                };
                let producer = r.optional(producer.as_ref());
                let mut covs = Vec::new();
                for c in coverages {
                    let code = r.text(&c.code);
                    let limit = r.optional_money(c.limit.as_ref(), ccy);
                    let deductible = r.optional_money(c.deductible.as_ref(), ccy);
                    let cov_premium = r.optional_money(c.premium.as_ref(), ccy);
                    if let (Some(code), Some(limit), Some(deductible), Some(cov_premium)) =
                        (code, limit, deductible, cov_premium)
                    {
                        // A coverage with no amounts at all is a column left blank: not a cover.
                        if limit.is_some() || deductible.is_some() || cov_premium.is_some() {
                            covs.push(Coverage {
                                code,
                                limit,
                                deductible,
                                premium: cov_premium,
                            });
                        }
                    }
                }
                match (number, lob, status, effective, expiration, premium) {
                    (Some(number), Some(lob), Some(status), Some(e), Some(x), Some(premium))
                        if r.errors.is_empty() =>
                    {
                        Some(CanonicalRecord::Policy(Policy {
                            carrier: carrier.clone(),
                            number,
                            line_of_business: lob,
                            status,
                            effective_date: e,
                            expiration_date: x,
                            premium,
                            producer,
                            insured,
                            coverages: covs,
                        }))
                    }
                    _ => None,
                }
            }
            BoundFields::Claim {
                number,
                policy_number,
                loss_date,
                reported_date,
                status,
                cause,
                paid,
                reserve,
                currency,
            } => {
                let number = r.reference(number, ClaimNumber::parse);
                let policy_number = r.reference(policy_number, PolicyNumber::parse);
                let loss = r.date(loss_date);
                let reported = r.date(reported_date);
                let status = r.code(status, CodeList::ClaimStatus);
                let cause = r.optional(cause.as_ref());
                let ccy = r.currency(currency.as_ref(), self.default_currency);
                let paid = r.money(paid, ccy);
                let reserve = r.money(reserve, ccy);
                match (number, policy_number, loss, reported, status, paid, reserve) {
                    (
                        Some(number),
                        Some(policy_number),
                        Some(l),
                        Some(rep),
                        Some(status),
                        Some(paid),
                        Some(reserve),
                    ) if r.errors.is_empty() => Some(CanonicalRecord::Claim(Claim {
                        carrier: carrier.clone(),
                        number,
                        policy_number,
                        loss_date: l,
                        reported_date: rep,
                        status,
                        cause,
                        paid,
                        reserve,
                    })),
                    _ => None,
                }
            }
        };
        match out {
            Some(record) => Ok(record),
            None => Err(r.errors),
        }
    }
}
