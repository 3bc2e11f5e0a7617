//! The mapping file format (TOML). See `docs/mapping.md` for the user's guide.

use crate::values::{check_date_format, parse_decimal, DecimalFormat};
use carrierhub_formats::{FixedColumn, ReaderSpec, SourceFormat, TextEncoding};
use carrierhub_model::{
    CarrierId, ClaimStatus, LineOfBusiness, PartyKind, PolicyStatus, RecordKind, TransactionType,
};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("mapping {file}: {reason}")]
    Invalid { file: String, reason: String },
    #[error("mapping '{mapping}' does not fit the payload's header: {reason}")]
    Header { mapping: String, reason: String },
}

/// Letter case for the `case` transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    Upper,
    Lower,
    Title,
}

/// The `split` transform: keep one part of a value split on a separator.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub separator: String,
    /// 1-based; negative counts from the end (`-1` is the last part).
    pub part: i64,
}

/// Where a canonical field's value comes from, how it is transformed and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// A source column, by its header name (matched ignoring case and surrounding spaces).
    pub column: Option<String>,
    /// A source column by 1-based position, for files whose headers change.
    pub index: Option<usize>,
    /// A path into a JSON or XML record: `insured/name`, `coverages/0/limit`, `@id`.
    pub path: Option<String>,
    /// A constant, for values the feed does not carry.
    pub value: Option<String>,
    /// Several columns (or paths) joined with `separator`; empty parts are left out.
    pub concat: Option<Vec<String>>,
    /// The separator of `concat` (default one space).
    pub separator: Option<String>,
    /// Remove surrounding white space (default true).
    pub trim: Option<bool>,
    /// Keep the first capture group (or the whole match) of this regular expression.
    pub regex: Option<String>,
    pub split: Option<SplitSpec>,
    pub case: Option<Case>,
    /// Used when the source value is empty.
    pub default: Option<String>,
    /// The code table (under `[codes.NAME]`) that translates the carrier's codes.
    pub codes: Option<String>,
    /// The value used when the code table lacks a code; `"keep"` keeps the code as it is.
    pub fallback: Option<String>,
    /// Overrides the convention's date formats for this field.
    #[serde(default, deserialize_with = "one_or_many")]
    pub date_format: Option<Vec<String>>,
    /// Also accept Excel serial day numbers (`45747` = 2025-03-31).
    pub excel_serial: Option<bool>,
    pub decimal_separator: Option<char>,
    pub thousands_separator: Option<char>,
    /// The number is a percentage: `12.5%` or `12.5` reads as 0.125.
    pub percent: Option<bool>,
    /// Multiply the number by this factor (amounts reported in thousands: `"1000"`).
    pub scale: Option<String>,
    /// The value must not be empty (for fields the model leaves optional).
    pub required: Option<bool>,
    /// Inclusive lower bound: a number, or a date as `YYYY-MM-DD`.
    pub min: Option<String>,
    /// Inclusive upper bound: a number, or a date as `YYYY-MM-DD`.
    pub max: Option<String>,
    /// The value (after transforms) must match this regular expression.
    pub pattern: Option<String>,
    /// The value (after transforms, before code translation) must be one of these.
    pub one_of: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for FieldSpecOrColumn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldSpecOrColumn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a column name (or path), or a table such as { column = \"...\", codes = \"...\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FieldSpecOrColumn(FieldSpec {
                    column: Some(v.to_owned()),
                    ..Default::default()
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                FieldSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FieldSpecOrColumn)
            }
        }
        d.deserialize_any(V)
    }
}

/// `premium = "Column"` is shorthand for `premium = { column = "Column" }` (for tree
/// formats, `{ path = "Column" }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldSpecOrColumn(pub FieldSpec);

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(v),
    })
}

/// How the payload is written: the `[source]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    #[serde(default = "default_format")]
    pub format: String,
    /// One character, or `"tab"`.
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    #[serde(default = "default_quote")]
    pub quote: char,
    #[serde(default)]
    pub encoding: TextEncoding,
    /// 1-based line (or sheet row) of the header; lines above it are skipped.
    pub header_row: Option<usize>,
    /// Trailing data rows to drop (totals).
    #[serde(default)]
    pub footer_rows: usize,
    /// A spreadsheet's sheet to read.
    pub sheet: Option<String>,
    /// A spreadsheet's sheets to read, in order.
    #[serde(default)]
    pub sheets: Vec<String>,
    /// JSON: a JSON pointer to the array of records.
    pub records: Option<String>,
    /// XML: the repeated element that is one record.
    pub record_element: Option<String>,
    /// Fixed-width: the columns.
    #[serde(default)]
    pub layout: Vec<FixedColumn>,
}

fn default_format() -> String {
    "csv".into()
}
fn default_delimiter() -> String {
    ",".into()
}
fn default_quote() -> char {
    '"'
}

impl Default for SourceSpec {
    fn default() -> Self {
        Self {
            format: default_format(),
            delimiter: default_delimiter(),
            quote: default_quote(),
            encoding: TextEncoding::Utf8,
            header_row: None,
            footer_rows: 0,
            sheet: None,
            sheets: Vec::new(),
            records: None,
            record_element: None,
            layout: Vec::new(),
        }
    }
}

impl SourceSpec {
    pub fn delimiter_byte(&self) -> Result<u8, String> {
        match self.delimiter.as_str() {
            "tab" | "\\t" | "\t" => Ok(b'\t'),
            d if d.len() == 1 && d.is_ascii() => Ok(d.as_bytes()[0]),
            d => Err(format!(
                "source.delimiter '{d}' must be one ASCII character or \"tab\""
            )),
        }
    }

    pub fn source_format(&self) -> Result<SourceFormat, String> {
        SourceFormat::from_str(&self.format)
    }

    /// The checked reader options.
    fn reader_spec(&self) -> Result<ReaderSpec, String> {
        let format = self.source_format()?;
        let delimiter = if self.format.eq_ignore_ascii_case("tsv") && self.delimiter == "," {
            b'\t'
        } else {
            self.delimiter_byte()?
        };
        if !self.quote.is_ascii() {
            return Err(format!(
                "source.quote '{}' must be one ASCII character",
                self.quote
            ));
        }
        let only = |key: &str, set: bool, formats: &[SourceFormat]| {
            if set && !formats.contains(&format) {
                Err(format!(
                    "source.{key} does not apply to format '{}' (only to {})",
                    format.label(),
                    formats
                        .iter()
                        .map(|f| f.label())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            } else {
                Ok(())
            }
        };
        use SourceFormat::*;
        only(
            "sheets",
            self.sheet.is_some() || !self.sheets.is_empty(),
            &[Xlsx, Xls],
        )?;
        only("records", self.records.is_some(), &[Json])?;
        only("delimiter", self.delimiter != ",", &[Csv])?;
        only("quote", self.quote != '"', &[Csv])?;
        only(
            "encoding",
            self.encoding != TextEncoding::Utf8,
            &[Csv, Fixed, Json, Ndjson, Xml],
        )?;
        only("record_element", self.record_element.is_some(), &[Xml])?;
        only("layout", !self.layout.is_empty(), &[Fixed])?;
        only(
            "header_row",
            self.header_row.is_some(),
            &[Csv, Fixed, Xlsx, Xls],
        )?;
        only(
            "footer_rows",
            self.footer_rows > 0,
            &[Csv, Fixed, Xlsx, Xls],
        )?;
        if format == Xml && self.record_element.as_deref().is_none_or(str::is_empty) {
            return Err(
                "source.record_element is required for XML: the element that is one record".into(),
            );
        }
        if format == Fixed {
            if self.layout.is_empty() {
                return Err("source.layout is required for fixed-width files".into());
            }
            for c in &self.layout {
                if c.start == 0 || c.length == 0 {
                    return Err(format!(
                        "source.layout column '{}': start counts from 1 and length must be positive",
                        c.name
                    ));
                }
            }
        }
        if let Some(p) = &self.records {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(format!(
                    "source.records '{p}' must be a JSON pointer starting with '/'"
                ));
            }
        }
        let defaults = ReaderSpec::for_format(format);
        let header_row = self.header_row.unwrap_or(defaults.header_row);
        if header_row == 0 && format != Fixed {
            return Err("source.header_row counts from 1".into());
        }
        let mut sheets = self.sheets.clone();
        if let Some(s) = &self.sheet {
            sheets.insert(0, s.clone());
        }
        Ok(ReaderSpec {
            delimiter,
            quote: self.quote as u8,
            encoding: self.encoding,
            header_row,
            footer_rows: self.footer_rows,
            sheets,
            records: self.records.clone().unwrap_or_default(),
            record_element: self.record_element.clone().unwrap_or_default(),
            layout: self.layout.clone(),
            ..defaults
        })
    }
}

/// Defaults that apply to every field unless the field says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conventions {
    #[serde(
        default = "default_date_formats",
        deserialize_with = "required_one_or_many"
    )]
    pub date_format: Vec<String>,
    #[serde(default = "default_decimal_separator")]
    pub decimal_separator: char,
    pub thousands_separator: Option<char>,
    /// ISO 4217 currency used when no `currency` field is mapped.
    pub currency: Option<String>,
    /// Accept Excel serial day numbers in every date field.
    #[serde(default)]
    pub excel_serial: bool,
}

fn required_one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    one_or_many(d).map(Option::unwrap_or_default)
}
fn default_date_formats() -> Vec<String> {
    vec!["%Y-%m-%d".into()]
}
fn default_decimal_separator() -> char {
    '.'
}

impl Default for Conventions {
    fn default() -> Self {
        Self {
            date_format: default_date_formats(),
            decimal_separator: '.',
            thousands_separator: None,
            currency: None,
            excel_serial: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: String,
    carrier: Option<String>,
    record: Option<RecordKind>,
    #[serde(default = "one")]
    version: u32,
    description: Option<String>,
}

fn one() -> u32 {
    1
}

/// A source without transforms: for `[route]` and `[[skip]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteSpec {
    pub column: Option<String>,
    pub index: Option<usize>,
    pub path: Option<String>,
    #[serde(default)]
    pub policy: Vec<String>,
    #[serde(default)]
    pub claim: Vec<String>,
    #[serde(default)]
    pub transaction: Vec<String>,
    #[serde(default)]
    pub skip: Vec<String>,
}

/// One `[[skip]]` rule: a source and one test.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SkipSpec {
    pub column: Option<String>,
    pub index: Option<usize>,
    pub path: Option<String>,
    pub equals: Option<String>,
    pub matches: Option<String>,
    pub empty: Option<bool>,
    pub one_of: Option<Vec<String>>,
}

/// `[extras]`: which source fields the model has no place for are kept with each record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExtrasSpec {
    #[serde(default)]
    pub keep: KeepExtras,
}

/// `keep = "unmapped"` (every column or path no field reads), `"none"`, or a list of
/// columns (paths, for JSON and XML).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum KeepExtras {
    #[default]
    Unmapped,
    None,
    Only(Vec<String>),
}

impl<'de> Deserialize<'de> for KeepExtras {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        match Raw::deserialize(d)? {
            Raw::One(s) if s == "unmapped" => Ok(KeepExtras::Unmapped),
            Raw::One(s) if s == "none" => Ok(KeepExtras::None),
            Raw::One(s) => Err(de::Error::custom(format!(
                "extras.keep is \"unmapped\", \"none\" or a list of columns, not '{s}'"
            ))),
            Raw::Many(list) => Ok(KeepExtras::Only(list)),
        }
    }
}

impl Default for ExtrasSpec {
    fn default() -> Self {
        Self {
            keep: KeepExtras::Unmapped,
        }
    }
}

/// The key a source column or path is kept under in a record's extras: lower case, runs of
/// anything but letters and digits as one `_` (`Broker Code` → `broker_code`,
/// `insured/channel` → `insured_channel`).
pub fn extra_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// One `[[checks]]` record rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckSpec {
    pub rule: String,
    #[serde(default)]
    pub fields: Vec<String>,
    pub field: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    mapping: Header,
    #[serde(default)]
    source: SourceSpec,
    #[serde(default)]
    conventions: Conventions,
    fields: Option<toml::Table>,
    #[serde(default)]
    coverages: Vec<toml::Table>,
    policy: Option<toml::Table>,
    claim: Option<toml::Table>,
    transaction: Option<toml::Table>,
    route: Option<RouteSpec>,
    #[serde(default)]
    skip: Vec<SkipSpec>,
    #[serde(default)]
    checks: Vec<CheckSpec>,
    #[serde(default)]
    extras: ExtrasSpec,
    #[serde(default)]
    codes: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InsuredFields {
    pub reference: Option<FieldSpecOrColumn>,
    pub kind: Option<FieldSpecOrColumn>,
    pub name: Option<FieldSpecOrColumn>,
    pub postal_code: Option<FieldSpecOrColumn>,
    pub country: Option<FieldSpecOrColumn>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyFields {
    pub number: FieldSpecOrColumn,
    pub line_of_business: FieldSpecOrColumn,
    pub status: FieldSpecOrColumn,
    pub effective_date: FieldSpecOrColumn,
    pub expiration_date: FieldSpecOrColumn,
    pub premium: FieldSpecOrColumn,
    pub currency: Option<FieldSpecOrColumn>,
    pub producer: Option<FieldSpecOrColumn>,
    #[serde(default)]
    pub insured: InsuredFields,
    #[serde(default)]
    pub coverages: Vec<CoverageFields>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CoverageFields {
    /// A path to a list in a tree record: one coverage per element, with paths relative to
    /// the element.
    pub each: Option<String>,
    pub code: FieldSpecOrColumn,
    pub limit: Option<FieldSpecOrColumn>,
    pub deductible: Option<FieldSpecOrColumn>,
    pub premium: Option<FieldSpecOrColumn>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimFields {
    pub number: FieldSpecOrColumn,
    pub policy_number: FieldSpecOrColumn,
    pub loss_date: FieldSpecOrColumn,
    pub reported_date: FieldSpecOrColumn,
    pub status: FieldSpecOrColumn,
    pub cause: Option<FieldSpecOrColumn>,
    pub paid: FieldSpecOrColumn,
    pub reserve: FieldSpecOrColumn,
    pub currency: Option<FieldSpecOrColumn>,
}

/// A transaction on an existing policy: an additional or return premium, a cancellation, a
/// reinstatement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransactionFields {
    pub policy_number: FieldSpecOrColumn,
    pub reference: FieldSpecOrColumn,
    #[serde(rename = "type")]
    pub transaction_type: FieldSpecOrColumn,
    pub effective_date: FieldSpecOrColumn,
    pub premium: FieldSpecOrColumn,
    pub currency: Option<FieldSpecOrColumn>,
}

/// The fields of one canonical kind a mapping produces.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Policy(Box<PolicyFields>),
    Claim(Box<ClaimFields>),
    Transaction(Box<TransactionFields>),
}

impl Target {
    fn kind(&self) -> RecordKind {
        match self {
            Target::Policy(_) => RecordKind::Policy,
            Target::Claim(_) => RecordKind::Claim,
            Target::Transaction(_) => RecordKind::Transaction,
        }
    }
}

/// What a field is read as, which decides its typed parsing and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    Text,
    Code(CodeList),
    Date,
    Amount,
    Currency,
}

/// One field of a target, with its canonical name and type.
pub(crate) struct FieldRef<'a> {
    pub name: String,
    pub spec: &'a FieldSpec,
    pub ty: FieldType,
}

/// A parsed and checked mapping file.
#[derive(Debug, Clone)]
pub struct MappingSpec {
    pub name: String,
    pub carrier: Option<CarrierId>,
    /// The kind of record the mapping produces (the first, for a routed mapping).
    pub record: RecordKind,
    /// Every kind the mapping can produce.
    pub kinds: Vec<RecordKind>,
    pub version: u32,
    pub description: Option<String>,
    pub source: SourceSpec,
    pub format: SourceFormat,
    pub conventions: Conventions,
    /// SHA-256 of the file's text: two submissions with the same hash used the same rules.
    pub sha256: String,
    /// The file's text, kept so a submission records exactly what it was mapped with.
    pub text: String,
    pub(crate) reader: ReaderSpec,
    pub(crate) targets: Vec<Target>,
    pub(crate) route: Option<RouteSpec>,
    pub(crate) skip: Vec<SkipSpec>,
    pub(crate) checks: Vec<CheckSpec>,
    pub(crate) extras: KeepExtras,
    pub(crate) codes: BTreeMap<String, BTreeMap<String, String>>,
}

impl MappingSpec {
    /// Parses and checks a mapping. `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, MappingError> {
        let invalid = |reason: String| MappingError::Invalid {
            file: file.to_owned(),
            reason,
        };
        let mut parsed: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let carrier = parsed
            .mapping
            .carrier
            .as_deref()
            .map(CarrierId::parse)
            .transpose()
            .map_err(|e| invalid(format!("mapping.carrier: {e}")))?;
        let reader = parsed.source.reader_spec().map_err(&invalid)?;
        let tree = !reader.format.is_tabular();
        if tree {
            // As in fields, `column = "a/b"` names a path in a JSON or XML record.
            if let Some(r) = &mut parsed.route {
                if r.path.is_none() {
                    r.path = r.column.take();
                }
            }
            for s in &mut parsed.skip {
                if s.path.is_none() {
                    s.path = s.column.take();
                }
            }
        }

        let policy_target = |mut table: toml::Table,
                             coverages: Vec<toml::Table>,
                             section: &str|
         -> Result<Target, MappingError> {
            if !coverages.is_empty() {
                if table.contains_key("coverages") {
                    return Err(invalid(format!(
                        "coverages are given twice: in [{section}] and as [[coverages]]"
                    )));
                }
                table.insert(
                    "coverages".into(),
                    toml::Value::Array(coverages.into_iter().map(toml::Value::Table).collect()),
                );
            }
            let mut fields: PolicyFields = toml::Value::Table(table)
                .try_into()
                .map_err(|e| invalid(format!("[{section}] of a policy mapping: {e}")))?;
            if tree {
                paths_for_tree(&mut fields);
            }
            Ok(Target::Policy(Box::new(fields)))
        };
        let claim_target = |table: toml::Table, section: &str| -> Result<Target, MappingError> {
            let mut fields: ClaimFields = toml::Value::Table(table)
                .try_into()
                .map_err(|e| invalid(format!("[{section}] of a claim mapping: {e}")))?;
            if tree {
                claim_paths_for_tree(&mut fields);
            }
            Ok(Target::Claim(Box::new(fields)))
        };
        let transaction_target =
            |table: toml::Table, section: &str| -> Result<Target, MappingError> {
                let mut fields: TransactionFields = toml::Value::Table(table)
                    .try_into()
                    .map_err(|e| invalid(format!("[{section}] of a transaction mapping: {e}")))?;
                if tree {
                    for f in [
                        &mut fields.policy_number,
                        &mut fields.reference,
                        &mut fields.transaction_type,
                        &mut fields.effective_date,
                        &mut fields.premium,
                    ] {
                        to_path(f);
                    }
                    if let Some(c) = &mut fields.currency {
                        to_path(c);
                    }
                }
                Ok(Target::Transaction(Box::new(fields)))
            };

        let targets = match (&parsed.route, parsed.mapping.record) {
            (None, None) => {
                return Err(invalid(
                    "mapping.record is required: \"policy\", \"claim\" or \"transaction\" (or a [route] section)"
                        .into(),
                ))
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "a routed mapping has no mapping.record: [route] decides each record's kind"
                        .into(),
                ))
            }
            (None, Some(kind)) => {
                if parsed.policy.is_some() || parsed.claim.is_some() || parsed.transaction.is_some()
                {
                    return Err(invalid(
                        "[policy], [claim] and [transaction] sections belong to routed mappings; with mapping.record use [fields]".into(),
                    ));
                }
                let Some(fields) = parsed.fields else {
                    return Err(invalid("missing section [fields]".into()));
                };
                match kind {
                    RecordKind::Policy => vec![policy_target(fields, parsed.coverages, "fields")?],
                    RecordKind::Claim | RecordKind::Transaction => {
                        if !parsed.coverages.is_empty() {
                            return Err(invalid(
                                "[[coverages]] only apply to policy mappings".into(),
                            ));
                        }
                        if kind == RecordKind::Claim {
                            vec![claim_target(fields, "fields")?]
                        } else {
                            vec![transaction_target(fields, "fields")?]
                        }
                    }
                }
            }
            (Some(route), None) => {
                if parsed.fields.is_some() || !parsed.coverages.is_empty() {
                    return Err(invalid(
                        "a routed mapping puts its fields in [policy], [claim] and [transaction], not [fields]"
                            .into(),
                    ));
                }
                let mut targets = Vec::new();
                if let Some(t) = parsed.policy {
                    targets.push(policy_target(t, Vec::new(), "policy")?);
                } else if !route.policy.is_empty() {
                    return Err(invalid(
                        "route.policy sends records to policies, but there is no [policy] section"
                            .into(),
                    ));
                }
                if let Some(t) = parsed.claim {
                    targets.push(claim_target(t, "claim")?);
                } else if !route.claim.is_empty() {
                    return Err(invalid(
                        "route.claim sends records to claims, but there is no [claim] section"
                            .into(),
                    ));
                }
                if let Some(t) = parsed.transaction {
                    targets.push(transaction_target(t, "transaction")?);
                } else if !route.transaction.is_empty() {
                    return Err(invalid(
                        "route.transaction sends records to transactions, but there is no [transaction] section"
                            .into(),
                    ));
                }
                if targets.is_empty() {
                    return Err(invalid(
                        "a routed mapping needs a [policy], [claim] or [transaction] section"
                            .into(),
                    ));
                }
                targets
            }
        };
        let kinds: Vec<RecordKind> = targets.iter().map(Target::kind).collect();
        let spec = Self {
            name: parsed.mapping.name,
            carrier,
            record: kinds[0],
            kinds,
            version: parsed.mapping.version,
            description: parsed.mapping.description,
            format: reader.format,
            source: parsed.source,
            conventions: parsed.conventions,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            text: text.to_owned(),
            reader,
            targets,
            route: parsed.route,
            skip: parsed.skip,
            checks: parsed.checks,
            extras: parsed.extras.keep,
            codes: parsed.codes,
        };
        spec.check().map_err(invalid)?;
        Ok(spec)
    }

    /// How to read the payloads this mapping is for.
    pub fn reader_spec(&self) -> ReaderSpec {
        self.reader.clone()
    }

    /// Every field of a target with its canonical name and type.
    pub(crate) fn target_fields(target: &Target) -> Vec<FieldRef<'_>> {
        let mut out = Vec::new();
        match target {
            Target::Policy(fields) => {
                let f = fields.as_ref();
                let req = [
                    ("number", &f.number, FieldType::Text),
                    (
                        "line_of_business",
                        &f.line_of_business,
                        FieldType::Code(CodeList::LineOfBusiness),
                    ),
                    ("status", &f.status, FieldType::Code(CodeList::PolicyStatus)),
                    ("effective_date", &f.effective_date, FieldType::Date),
                    ("expiration_date", &f.expiration_date, FieldType::Date),
                    ("premium", &f.premium, FieldType::Amount),
                ];
                for (name, spec, ty) in req {
                    out.push(FieldRef {
                        name: name.into(),
                        spec: &spec.0,
                        ty,
                    });
                }
                let opt = [
                    ("currency", &f.currency, FieldType::Currency),
                    ("producer", &f.producer, FieldType::Text),
                    ("insured.reference", &f.insured.reference, FieldType::Text),
                    (
                        "insured.kind",
                        &f.insured.kind,
                        FieldType::Code(CodeList::PartyKind),
                    ),
                    ("insured.name", &f.insured.name, FieldType::Text),
                    (
                        "insured.postal_code",
                        &f.insured.postal_code,
                        FieldType::Text,
                    ),
                    ("insured.country", &f.insured.country, FieldType::Text),
                ];
                for (name, spec, ty) in opt {
                    if let Some(spec) = spec {
                        out.push(FieldRef {
                            name: name.into(),
                            spec: &spec.0,
                            ty,
                        });
                    }
                }
                for (i, c) in f.coverages.iter().enumerate() {
                    out.push(FieldRef {
                        name: format!("coverages[{i}].code"),
                        spec: &c.code.0,
                        ty: FieldType::Text,
                    });
                    for (name, spec) in [
                        ("limit", &c.limit),
                        ("deductible", &c.deductible),
                        ("premium", &c.premium),
                    ] {
                        if let Some(spec) = spec {
                            out.push(FieldRef {
                                name: format!("coverages[{i}].{name}"),
                                spec: &spec.0,
                                ty: FieldType::Amount,
                            });
                        }
                    }
                }
            }
            Target::Claim(fields) => {
                let f = fields.as_ref();
                let req = [
                    ("number", &f.number, FieldType::Text),
                    ("policy_number", &f.policy_number, FieldType::Text),
                    ("loss_date", &f.loss_date, FieldType::Date),
                    ("reported_date", &f.reported_date, FieldType::Date),
                    ("status", &f.status, FieldType::Code(CodeList::ClaimStatus)),
                    ("paid", &f.paid, FieldType::Amount),
                    ("reserve", &f.reserve, FieldType::Amount),
                ];
                for (name, spec, ty) in req {
                    out.push(FieldRef {
                        name: name.into(),
                        spec: &spec.0,
                        ty,
                    });
                }
                for (name, spec, ty) in [
                    ("cause", &f.cause, FieldType::Text),
                    ("currency", &f.currency, FieldType::Currency),
                ] {
                    if let Some(spec) = spec {
                        out.push(FieldRef {
                            name: name.into(),
                            spec: &spec.0,
                            ty,
                        });
                    }
                }
            }
            Target::Transaction(fields) => {
                let f = fields.as_ref();
                let req = [
                    ("policy_number", &f.policy_number, FieldType::Text),
                    ("reference", &f.reference, FieldType::Text),
                    (
                        "type",
                        &f.transaction_type,
                        FieldType::Code(CodeList::TransactionType),
                    ),
                    ("effective_date", &f.effective_date, FieldType::Date),
                    ("premium", &f.premium, FieldType::Amount),
                ];
                for (name, spec, ty) in req {
                    out.push(FieldRef {
                        name: name.into(),
                        spec: &spec.0,
                        ty,
                    });
                }
                if let Some(spec) = &f.currency {
                    out.push(FieldRef {
                        name: "currency".into(),
                        spec: &spec.0,
                        ty: FieldType::Currency,
                    });
                }
            }
        }
        out
    }

    fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("mapping.name must not be empty".into());
        }
        let tabular = self.format.is_tabular();
        for f in &self.conventions.date_format {
            check_date_format(f).map_err(|e| format!("conventions.date_format: {e}"))?;
        }
        if let Some(c) = &self.conventions.currency {
            carrierhub_model::Currency::parse(c)
                .map_err(|e| format!("conventions.currency: {e}"))?;
        }
        let check_source = |what: &str,
                            column: bool,
                            index: Option<usize>,
                            path: bool,
                            others: usize|
         -> Result<(), String> {
            let count = [column, index.is_some(), path]
                .iter()
                .filter(|b| **b)
                .count()
                + others;
            if count != 1 {
                return Err(format!(
                    "{what}: give exactly one of {}",
                    if tabular {
                        "`column`, `index`, `value` or `concat`"
                    } else {
                        "`path`, `value` or `concat`"
                    }
                ));
            }
            if tabular && path {
                return Err(format!(
                    "{what}: `path` reads JSON and XML records; a {} file has columns (use `column` or `index`)",
                    self.format.label()
                ));
            }
            if !tabular && (column || index.is_some()) {
                return Err(format!(
                    "{what}: a {} record has no columns; use `path`",
                    self.format.label()
                ));
            }
            if index == Some(0) {
                return Err(format!("{what}: `index` counts from 1"));
            }
            Ok(())
        };
        for target in &self.targets {
            let section = if self.route.is_some() {
                match target.kind() {
                    RecordKind::Policy => "policy",
                    RecordKind::Claim => "claim",
                    RecordKind::Transaction => "transaction",
                }
            } else {
                "fields"
            };
            let fields = Self::target_fields(target);
            let has_currency_field = fields.iter().any(|f| f.name == "currency");
            if !has_currency_field && self.conventions.currency.is_none() {
                return Err(format!(
                    "no currency for [{section}]: map a `currency` field or set conventions.currency"
                ));
            }
            if let Target::Policy(p) = target {
                for (i, c) in p.coverages.iter().enumerate() {
                    if c.each.is_some() && tabular {
                        return Err(format!(
                            "{section}.coverages[{i}].each: `each` reads a list in a JSON or XML record; a {} file has columns",
                            self.format.label()
                        ));
                    }
                }
            }
            for FieldRef { name, spec, ty, .. } in fields {
                let what = format!("{section}.{name}");
                check_source(
                    &what,
                    spec.column.is_some(),
                    spec.index,
                    spec.path.is_some(),
                    spec.value.is_some() as usize + spec.concat.is_some() as usize,
                )?;
                if spec.separator.is_some() && spec.concat.is_none() {
                    return Err(format!("{what}: `separator` belongs to `concat`"));
                }
                if let Some(parts) = &spec.concat {
                    if parts.is_empty() {
                        return Err(format!("{what}: `concat` needs at least one source"));
                    }
                }
                for pattern in [&spec.regex, &spec.pattern].into_iter().flatten() {
                    regex::Regex::new(pattern)
                        .map_err(|e| format!("{what}: regular expression /{pattern}/: {e}"))?;
                }
                if let Some(split) = &spec.split {
                    if split.part == 0 || split.separator.is_empty() {
                        return Err(format!(
                            "{what}: split needs a separator and a part counted from 1 (or -1 for the last)"
                        ));
                    }
                }
                for f in spec.date_format.iter().flatten() {
                    check_date_format(f).map_err(|e| format!("{what}: {e}"))?;
                }
                let date_only = spec.date_format.is_some() || spec.excel_serial.is_some();
                if date_only && ty != FieldType::Date {
                    return Err(format!(
                        "{what}: `date_format` and `excel_serial` apply to date fields only"
                    ));
                }
                let amount_only = spec.percent.is_some()
                    || spec.scale.is_some()
                    || spec.decimal_separator.is_some()
                    || spec.thousands_separator.is_some();
                if amount_only && ty != FieldType::Amount {
                    return Err(format!(
                        "{what}: `percent`, `scale` and separators apply to amounts only"
                    ));
                }
                if let Some(scale) = &spec.scale {
                    parse_decimal(scale, DecimalFormat::default())
                        .map_err(|e| format!("{what}: scale: {e}"))?;
                }
                for (key, bound) in [("min", &spec.min), ("max", &spec.max)] {
                    let Some(bound) = bound else { continue };
                    match ty {
                        FieldType::Amount => {
                            parse_decimal(bound, DecimalFormat::default())
                                .map_err(|e| format!("{what}: {key}: {e}"))?;
                        }
                        FieldType::Date => {
                            chrono::NaiveDate::parse_from_str(bound, "%Y-%m-%d").map_err(|_| {
                                format!("{what}: {key} '{bound}' is not a date as YYYY-MM-DD")
                            })?;
                        }
                        _ => {
                            return Err(format!(
                                "{what}: `{key}` applies to amounts and dates only"
                            ))
                        }
                    }
                }
                if spec.fallback.is_some() && spec.codes.is_none() {
                    return Err(format!(
                        "{what}: `fallback` is the value for codes the table lacks; give `codes` too"
                    ));
                }
                if spec.codes.is_some() && matches!(ty, FieldType::Amount | FieldType::Date) {
                    return Err(format!(
                        "{what}: `codes` translate text and codes; amounts and dates are read by their format"
                    ));
                }
                if let Some(table) = &spec.codes {
                    let Some(entries) = self.codes.get(table) else {
                        return Err(format!(
                            "{what}: code table '{table}' is not defined (add [codes.{table}])"
                        ));
                    };
                    if let FieldType::Code(list) = ty {
                        for (from, to) in entries {
                            list.check(to)
                                .map_err(|e| format!("codes.{table}: '{from}' maps to {e}"))?;
                        }
                        if let Some(fb) = spec.fallback.as_deref().filter(|f| *f != "keep") {
                            list.check(fb)
                                .map_err(|e| format!("{what}: fallback: {e}"))?;
                        }
                    }
                }
                if let (FieldType::Code(list), Some(value)) =
                    (ty, spec.value.as_ref().or(spec.default.as_ref()))
                {
                    // The mapping's own value is a canonical code, or a carrier code its
                    // table translates.
                    let in_table = spec.codes.as_ref().is_some_and(|t| {
                        self.codes.get(t).is_some_and(|entries| {
                            entries
                                .keys()
                                .any(|k| k.trim().eq_ignore_ascii_case(value.trim()))
                        })
                    });
                    if !in_table {
                        list.check(value).map_err(|e| format!("{what}: {e}"))?;
                    }
                }
            }
        }
        if let Some(route) = &self.route {
            check_source(
                "route",
                route.column.is_some(),
                route.index,
                route.path.is_some(),
                0,
            )?;
            let mut seen = BTreeMap::new();
            for (kind, values) in [
                ("policy", &route.policy),
                ("claim", &route.claim),
                ("transaction", &route.transaction),
                ("skip", &route.skip),
            ] {
                for v in values {
                    if let Some(other) = seen.insert(v.trim().to_lowercase(), kind) {
                        return Err(format!(
                            "route: value '{v}' is listed for both {other} and {kind}"
                        ));
                    }
                }
            }
        }
        for (i, s) in self.skip.iter().enumerate() {
            let what = format!("skip[{}]", i + 1);
            check_source(&what, s.column.is_some(), s.index, s.path.is_some(), 0)?;
            let tests = s.equals.is_some() as usize
                + s.matches.is_some() as usize
                + s.empty.is_some() as usize
                + s.one_of.is_some() as usize;
            if tests != 1 {
                return Err(format!(
                    "{what}: give exactly one test: `equals`, `matches`, `empty` or `one_of`"
                ));
            }
            if let Some(m) = &s.matches {
                regex::Regex::new(m)
                    .map_err(|e| format!("{what}: regular expression /{m}/: {e}"))?;
            }
        }
        for (i, c) in self.checks.iter().enumerate() {
            let what = format!("checks[{}]", i + 1);
            match c.rule.as_str() {
                "date_order" => {
                    if c.fields.len() < 2 {
                        return Err(format!(
                            "{what}: date_order needs `fields` with two or more date fields"
                        ));
                    }
                    for f in &c.fields {
                        let is_date = self.targets.iter().any(|t| {
                            Self::target_fields(t)
                                .iter()
                                .any(|r| r.name == *f && r.ty == FieldType::Date)
                        });
                        if !is_date {
                            return Err(format!(
                                "{what}: '{f}' is not a date field of this mapping (date fields: effective_date, expiration_date, loss_date, reported_date)"
                            ));
                        }
                    }
                }
                "reference_exists" => {
                    if c.field.as_deref() != Some("policy_number")
                        || !self.kinds.contains(&RecordKind::Claim)
                    {
                        return Err(format!(
                            "{what}: reference_exists checks a claim's `field = \"policy_number\"`"
                        ));
                    }
                }
                other => {
                    return Err(format!(
                        "{what}: unknown rule '{other}'; rules: date_order, reference_exists"
                    ))
                }
            }
        }
        Ok(())
    }

    /// The code table named `table`.
    pub(crate) fn code_table(&self, table: &str) -> Option<&BTreeMap<String, String>> {
        self.codes.get(table)
    }
}

/// In tree formats the shorthand `field = "a/b"` is a path, not a column.
fn to_path(f: &mut FieldSpecOrColumn) {
    if let Some(c) = f.0.column.take() {
        f.0.path = Some(c);
    }
}

fn paths_for_tree(p: &mut PolicyFields) {
    for f in [
        &mut p.number,
        &mut p.line_of_business,
        &mut p.status,
        &mut p.effective_date,
        &mut p.expiration_date,
        &mut p.premium,
    ] {
        to_path(f);
    }
    for f in [
        &mut p.currency,
        &mut p.producer,
        &mut p.insured.reference,
        &mut p.insured.kind,
        &mut p.insured.name,
        &mut p.insured.postal_code,
        &mut p.insured.country,
    ]
    .into_iter()
    .flatten()
    {
        to_path(f);
    }
    for c in &mut p.coverages {
        to_path(&mut c.code);
        for f in [&mut c.limit, &mut c.deductible, &mut c.premium]
            .into_iter()
            .flatten()
        {
            to_path(f);
        }
    }
}

fn claim_paths_for_tree(c: &mut ClaimFields) {
    for f in [
        &mut c.number,
        &mut c.policy_number,
        &mut c.loss_date,
        &mut c.reported_date,
        &mut c.status,
        &mut c.paid,
        &mut c.reserve,
    ] {
        to_path(f);
    }
    for f in [&mut c.cause, &mut c.currency].into_iter().flatten() {
        to_path(f);
    }
}

/// The canonical code lists a code table may translate into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeList {
    LineOfBusiness,
    PolicyStatus,
    ClaimStatus,
    PartyKind,
    TransactionType,
}

impl CodeList {
    pub(crate) fn check(&self, value: &str) -> Result<(), String> {
        let r = match self {
            Self::LineOfBusiness => LineOfBusiness::from_str(value).map(|_| ()),
            Self::PolicyStatus => PolicyStatus::from_str(value).map(|_| ()),
            Self::ClaimStatus => ClaimStatus::from_str(value).map(|_| ()),
            Self::TransactionType => TransactionType::from_str(value).map(|_| ()),
            Self::PartyKind => PartyKind::from_str(value).map(|_| ()),
        };
        r.map_err(|e| e.to_string())
    }

    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::LineOfBusiness => "line of business",
            Self::PolicyStatus => "policy status",
            Self::ClaimStatus => "claim status",
            Self::TransactionType => "transaction type",
            Self::PartyKind => "party kind",
        }
    }
}
