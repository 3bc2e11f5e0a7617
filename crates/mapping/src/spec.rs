//! The mapping file format (TOML). See `docs/mapping.md` for the user's guide.

use crate::values::check_date_format;
use carrierhub_formats::TextEncoding;
use carrierhub_model::{
    CarrierId, ClaimStatus, LineOfBusiness, PartyKind, PolicyStatus, RecordKind,
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

/// Where a canonical field's value comes from, and how to read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// A source column, by its header name (matched ignoring case and surrounding spaces).
    pub column: Option<String>,
    /// A source column by 1-based position, for files whose headers change.
    pub index: Option<usize>,
    /// A constant, for values the feed does not carry.
    pub value: Option<String>,
    /// The code table (under `[codes.NAME]`) that translates the carrier's codes.
    pub codes: Option<String>,
    /// Overrides the convention's date formats for this field.
    #[serde(default, deserialize_with = "one_or_many")]
    pub date_format: Option<Vec<String>>,
    pub decimal_separator: Option<char>,
    pub thousands_separator: Option<char>,
    /// Used when the source value is empty.
    pub default: Option<String>,
}

impl<'de> Deserialize<'de> for FieldSpecOrColumn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldSpecOrColumn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a column name, or a table such as { column = \"...\", codes = \"...\" }",
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

/// `premium = "Column"` is shorthand for `premium = { column = "Column" }`.
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

/// How the payload is encoded.
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
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: String,
    carrier: Option<String>,
    record: RecordKind,
    #[serde(default = "one")]
    version: u32,
    description: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    mapping: Header,
    #[serde(default)]
    source: SourceSpec,
    #[serde(default)]
    conventions: Conventions,
    fields: toml::Table,
    #[serde(default)]
    coverages: Vec<toml::Table>,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CoverageFields {
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

#[derive(Debug, Clone)]
pub(crate) enum Fields {
    Policy {
        fields: Box<PolicyFields>,
        coverages: Vec<CoverageFields>,
    },
    Claim(Box<ClaimFields>),
}

/// A parsed and checked mapping file.
#[derive(Debug, Clone)]
pub struct MappingSpec {
    pub name: String,
    pub carrier: Option<CarrierId>,
    pub record: RecordKind,
    pub version: u32,
    pub description: Option<String>,
    pub source: SourceSpec,
    pub conventions: Conventions,
    /// SHA-256 of the file's text: two submissions with the same hash used the same rules.
    pub sha256: String,
    /// The file's text, kept so a submission records exactly what it was mapped with.
    pub text: String,
    pub(crate) fields: Fields,
    pub(crate) codes: BTreeMap<String, BTreeMap<String, String>>,
}

impl MappingSpec {
    /// Parses and checks a mapping. `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, MappingError> {
        let invalid = |reason: String| MappingError::Invalid {
            file: file.to_owned(),
            reason,
        };
        let parsed: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let carrier = parsed
            .mapping
            .carrier
            .as_deref()
            .map(CarrierId::parse)
            .transpose()
            .map_err(|e| invalid(format!("mapping.carrier: {e}")))?;
        let fields = match parsed.mapping.record {
            RecordKind::Policy => {
                let fields: PolicyFields = toml::Value::Table(parsed.fields)
                    .try_into()
                    .map_err(|e| invalid(format!("[fields] of a policy mapping: {e}")))?;
                let coverages = parsed
                    .coverages
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| {
                        toml::Value::Table(t)
                            .try_into()
                            .map_err(|e| invalid(format!("[[coverages]] number {}: {e}", i + 1)))
                    })
                    .collect::<Result<Vec<CoverageFields>, _>>()?;
                Fields::Policy {
                    fields: Box::new(fields),
                    coverages,
                }
            }
            RecordKind::Claim => {
                if !parsed.coverages.is_empty() {
                    return Err(invalid(
                        "[[coverages]] only apply to policy mappings".into(),
                    ));
                }
                let fields: ClaimFields = toml::Value::Table(parsed.fields)
                    .try_into()
                    .map_err(|e| invalid(format!("[fields] of a claim mapping: {e}")))?;
                Fields::Claim(Box::new(fields))
            }
        };
        let spec = Self {
            name: parsed.mapping.name,
            carrier,
            record: parsed.mapping.record,
            version: parsed.mapping.version,
            description: parsed.mapping.description,
            source: parsed.source,
            conventions: parsed.conventions,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            text: text.to_owned(),
            fields,
            codes: parsed.codes,
        };
        spec.check().map_err(invalid)?;
        Ok(spec)
    }

    /// Every field spec with its canonical name, and the code list it must produce.
    pub(crate) fn field_specs(&self) -> Vec<(String, &FieldSpec, Option<CodeList>)> {
        let mut out = Vec::new();
        match &self.fields {
            Fields::Policy { fields, coverages } => {
                out.push(("number".into(), &fields.number.0, None));
                out.push((
                    "line_of_business".into(),
                    &fields.line_of_business.0,
                    Some(CodeList::LineOfBusiness),
                ));
                out.push((
                    "status".into(),
                    &fields.status.0,
                    Some(CodeList::PolicyStatus),
                ));
                out.push(("effective_date".into(), &fields.effective_date.0, None));
                out.push(("expiration_date".into(), &fields.expiration_date.0, None));
                out.push(("premium".into(), &fields.premium.0, None));
                let opt = [
                    ("currency", &fields.currency, None),
                    ("producer", &fields.producer, None),
                    ("insured.reference", &fields.insured.reference, None),
                    (
                        "insured.kind",
                        &fields.insured.kind,
                        Some(CodeList::PartyKind),
                    ),
                    ("insured.name", &fields.insured.name, None),
                    ("insured.postal_code", &fields.insured.postal_code, None),
                    ("insured.country", &fields.insured.country, None),
                ];
                for (name, f, list) in opt {
                    if let Some(f) = f {
                        out.push((name.to_owned(), &f.0, list));
                    }
                }
                for (i, c) in coverages.iter().enumerate() {
                    out.push((format!("coverages[{i}].code"), &c.code.0, None));
                    for (name, f) in [
                        ("limit", &c.limit),
                        ("deductible", &c.deductible),
                        ("premium", &c.premium),
                    ] {
                        if let Some(f) = f {
                            out.push((format!("coverages[{i}].{name}"), &f.0, None));
                        }
                    }
                }
            }
            Fields::Claim(fields) => {
                out.push(("number".into(), &fields.number.0, None));
                out.push(("policy_number".into(), &fields.policy_number.0, None));
                out.push(("loss_date".into(), &fields.loss_date.0, None));
                out.push(("reported_date".into(), &fields.reported_date.0, None));
                out.push((
                    "status".into(),
                    &fields.status.0,
                    Some(CodeList::ClaimStatus),
                ));
                out.push(("paid".into(), &fields.paid.0, None));
                out.push(("reserve".into(), &fields.reserve.0, None));
                for (name, f) in [("cause", &fields.cause), ("currency", &fields.currency)] {
                    if let Some(f) = f {
                        out.push((name.to_owned(), &f.0, None));
                    }
                }
            }
        }
        out
    }

    fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("mapping.name must not be empty".into());
        }
        if self.source.format != "csv" {
            return Err(format!(
                "source.format '{}' is not supported yet; supported: csv",
                self.source.format
            ));
        }
        self.source.delimiter_byte()?;
        for f in &self.conventions.date_format {
            check_date_format(f).map_err(|e| format!("conventions.date_format: {e}"))?;
        }
        if let Some(c) = &self.conventions.currency {
            carrierhub_model::Currency::parse(c)
                .map_err(|e| format!("conventions.currency: {e}"))?;
        }
        let has_currency_field = self.field_specs().iter().any(|(n, _, _)| n == "currency");
        if !has_currency_field && self.conventions.currency.is_none() {
            return Err("no currency: map a `currency` field or set conventions.currency".into());
        }
        for (name, spec, list) in self.field_specs() {
            let sources = [
                spec.column.is_some(),
                spec.index.is_some(),
                spec.value.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if sources != 1 {
                return Err(format!(
                    "fields.{name}: give exactly one of `column`, `index` or `value`"
                ));
            }
            if spec.index == Some(0) {
                return Err(format!("fields.{name}: `index` counts from 1"));
            }
            for f in spec.date_format.iter().flatten() {
                check_date_format(f).map_err(|e| format!("fields.{name}: {e}"))?;
            }
            if let Some(table) = &spec.codes {
                let Some(entries) = self.codes.get(table) else {
                    return Err(format!(
                        "fields.{name}: code table '{table}' is not defined (add [codes.{table}])"
                    ));
                };
                if let Some(list) = list {
                    for (from, to) in entries {
                        list.check(to)
                            .map_err(|e| format!("codes.{table}: '{from}' maps to {e}"))?;
                    }
                }
            }
            if let (Some(list), Some(value)) = (list, spec.value.as_ref().or(spec.default.as_ref()))
            {
                if spec.codes.is_none() {
                    list.check(value)
                        .map_err(|e| format!("fields.{name}: {e}"))?;
                }
            }
        }
        Ok(())
    }

    /// The code table named `table`, keys normalised for lookup.
    pub(crate) fn code_table(&self, table: &str) -> Option<&BTreeMap<String, String>> {
        self.codes.get(table)
    }
}

/// The canonical code lists a code table may translate into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeList {
    LineOfBusiness,
    PolicyStatus,
    ClaimStatus,
    PartyKind,
}

impl CodeList {
    fn check(&self, value: &str) -> Result<(), String> {
        let r = match self {
            Self::LineOfBusiness => LineOfBusiness::from_str(value).map(|_| ()),
            Self::PolicyStatus => PolicyStatus::from_str(value).map(|_| ()),
            Self::ClaimStatus => ClaimStatus::from_str(value).map(|_| ()),
            Self::PartyKind => PartyKind::from_str(value).map(|_| ()),
        };
        r.map_err(|e| e.to_string())
    }
}
