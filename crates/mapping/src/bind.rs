//! A mapping bound to one payload's header, ready to map records fast.

use crate::spec::{
    extra_key, Case, CheckSpec, ClaimFields, CodeList, FieldSpec, KeepExtras, MappingError,
    MappingSpec, PolicyFields, RouteSpec, SkipSpec, Target,
};
use crate::values::{excel_serial_date, parse_amount, parse_date, parse_decimal, DecimalFormat};
use carrierhub_formats::{RecordData, SourceRecord, Value};
use carrierhub_model::{
    CanonicalRecord, CarrierId, Claim, ClaimNumber, Coded, Coverage, Currency, InsuredParty, Money,
    PartyKind, Policy, PolicyNumber, PolicyTransaction, RecordKind, RuleViolation, Validate,
};
use chrono::NaiveDate;
use regex::Regex;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

/// What kind of rule a field error broke; dry runs group errors by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A required value is empty or missing.
    Required,
    /// The value is not of the field's type (a date, an amount, a currency, an id).
    Type,
    /// The code is not in the field's code table, or not a canonical code.
    UnknownCode,
    /// `regex`, `split` or `pattern` did not match.
    Pattern,
    /// `one_of` failed.
    OneOf,
    /// `min` or `max` failed.
    Range,
    /// A list or object where one value belongs.
    Shape,
    /// A record rule of `[[checks]]`.
    Check,
    /// `[route]` knows no kind for the record's value.
    Route,
    /// A rule of the canonical model (a negative premium, an end before the start…).
    Model,
}

impl ErrorKind {
    /// The kind as it is serialised (`unknown_code`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Type => "type",
            Self::UnknownCode => "unknown_code",
            Self::Pattern => "pattern",
            Self::OneOf => "one_of",
            Self::Range => "range",
            Self::Shape => "shape",
            Self::Check => "check",
            Self::Route => "route",
            Self::Model => "model",
        }
    }
}

/// Why one field of one record could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The canonical field, e.g. `premium` or `coverages[0].limit`.
    pub field: String,
    /// The source column (or path) it was read from, when it came from the payload.
    pub column: Option<String>,
    pub value: String,
    pub reason: String,
    pub kind: ErrorKind,
}

/// What mapping one source record produced.
// Returned once per record and consumed at once: boxing the record would cost an
// allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// A canonical record that passed every check.
    Record(CanonicalRecord),
    /// A record the mapping says to leave out (`[[skip]]` or a `route.skip` value).
    Skipped(String),
    /// Every error of the record, so the carrier can fix them all at once.
    Rejected(Vec<FieldError>),
}

/// A path into a tree record: `insured/name`, `coverages/0/limit`, `@id`.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    segments: Vec<(String, Option<usize>)>,
    text: String,
}

impl Path {
    pub(crate) fn parse(text: &str) -> Path {
        let segments = text
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let key = s.replace("~1", "/").replace("~0", "~");
                let index = key.parse::<usize>().ok();
                (key, index)
            })
            .collect();
        Path {
            segments,
            text: text.to_owned(),
        }
    }

    fn resolve<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut at = root;
        for (key, index) in &self.segments {
            at = match (at, index) {
                (Value::List(_), Some(i)) => at.index(*i)?,
                // A number on a single object is a key if it has one, else the object
                // itself as the only element (XML writes a child that occurs once without
                // a list).
                (Value::Map(_), index) => match (at.get(key), index) {
                    (Some(v), _) => v,
                    (None, Some(0)) => at,
                    (None, _) => return None,
                },
                (_, Some(0)) => at,
                _ => return None,
            };
        }
        Some(at)
    }

    /// The path's keys without list indices, for reporting which fields are read.
    pub(crate) fn keys(&self) -> Vec<&str> {
        self.segments
            .iter()
            .filter(|(_, i)| i.is_none())
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Source {
    Column {
        index: usize,
        name: String,
    },
    Path(Path),
    Constant(String),
    Concat {
        parts: Vec<Source>,
        separator: String,
    },
}

impl Source {
    fn describe(&self) -> Option<String> {
        match self {
            Source::Column { name, .. } => Some(name.clone()),
            Source::Path(p) => Some(p.text.clone()),
            Source::Constant(_) => None,
            Source::Concat { parts, .. } => Some(
                parts
                    .iter()
                    .filter_map(Source::describe)
                    .collect::<Vec<_>>()
                    .join(" + "),
            ),
        }
    }
}

/// Where a field's value is looked up: a row of a tabular payload, or a node of a tree.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Row(&'a [Value]),
    Tree(&'a Value),
}

/// A source value before transforms.
enum Raw<'a> {
    Empty,
    Value(&'a Value),
    Text(String),
}

#[derive(Debug, Clone)]
struct BoundField {
    name: String,
    source: Source,
    trim: bool,
    regex: Option<Regex>,
    split: Option<(String, i64)>,
    case: Option<Case>,
    default: Option<String>,
    /// Normalised carrier code → canonical code.
    codes: Option<(String, HashMap<String, String>)>,
    fallback: Option<String>,
    /// The carrier codes as the mapping spells them, for error messages.
    known_codes: Vec<String>,
    date_formats: Vec<String>,
    excel_serial: bool,
    decimal: DecimalFormat,
    percent: bool,
    scale: Option<Decimal>,
    required: bool,
    min: Option<String>,
    max: Option<String>,
    pattern: Option<Regex>,
    /// Allowed values, normalised for comparison, and as the mapping spells them.
    one_of: Option<(Vec<String>, String)>,
}

#[derive(Debug, Clone)]
struct BoundCoverage {
    each: Option<Path>,
    code: BoundField,
    limit: Option<BoundField>,
    deductible: Option<BoundField>,
    premium: Option<BoundField>,
}

#[derive(Debug, Clone)]
struct PolicyBound {
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
}

#[derive(Debug, Clone)]
struct ClaimBound {
    number: BoundField,
    policy_number: BoundField,
    loss_date: BoundField,
    reported_date: BoundField,
    status: BoundField,
    cause: Option<BoundField>,
    paid: BoundField,
    reserve: BoundField,
    currency: Option<BoundField>,
}

#[derive(Debug, Clone)]
struct TransactionBound {
    policy_number: BoundField,
    reference: BoundField,
    transaction_type: BoundField,
    effective_date: BoundField,
    premium: BoundField,
    currency: Option<BoundField>,
}

#[derive(Debug, Clone)]
enum BoundTarget {
    Policy(Box<PolicyBound>),
    Claim(Box<ClaimBound>),
    Transaction(Box<TransactionBound>),
}

impl BoundTarget {
    fn kind(&self) -> RecordKind {
        match self {
            BoundTarget::Policy(_) => RecordKind::Policy,
            BoundTarget::Claim(_) => RecordKind::Claim,
            BoundTarget::Transaction(_) => RecordKind::Transaction,
        }
    }
}

#[derive(Debug, Clone)]
struct BoundRoute {
    source: Source,
    /// Normalised value → kind; `None` means skip.
    values: HashMap<String, Option<RecordKind>>,
    listed: Vec<String>,
}

#[derive(Debug, Clone)]
enum SkipTest {
    Equals(String),
    Matches(Regex),
    Empty(bool),
    OneOf(Vec<String>),
}

#[derive(Debug, Clone)]
struct BoundSkip {
    source: Source,
    test: SkipTest,
}

/// Which source fields a record keeps as extras.
#[derive(Debug, Clone)]
enum BoundExtras {
    None,
    /// Tabular payloads: these columns, under these keys.
    Columns(Vec<(usize, String)>),
    /// Tree payloads: every leaf outside lists whose key path no field reads.
    Unread(HashSet<String>),
    /// Tree payloads: these paths, under these keys.
    Paths(Vec<(Path, String)>),
}

/// A mapping whose columns have been found in a payload's header.
#[derive(Debug, Clone)]
pub struct BoundMapping {
    targets: Vec<BoundTarget>,
    route: Option<BoundRoute>,
    skip: Vec<BoundSkip>,
    date_order: Vec<Vec<String>>,
    default_currency: Option<Currency>,
    /// Header columns no field reads; reported so nothing is ignored unknowingly.
    pub unmapped_columns: Vec<String>,
    /// Canonical field → the source column (or path) it is read from.
    columns_by_field: HashMap<String, String>,
    /// Paths a tree record is read at (keys only), for reporting unread fields.
    read_paths: Vec<Vec<String>>,
    /// Numeric cells in date fields are Excel serial dates.
    spreadsheet: bool,
    extras: BoundExtras,
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
    read_paths: Vec<Vec<String>>,
}

impl Binder<'_> {
    fn column(&mut self, name: &str, col: &str) -> Source {
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
    }

    fn index(&mut self, name: &str, i: usize) -> Source {
        if i > self.headers.len() {
            self.missing.push(format!(
                "column {i} (for {name}, beyond the header's {} columns)",
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
    }

    fn path(&mut self, text: &str, each: Option<&Path>) -> Source {
        let path = Path::parse(text);
        let mut keys: Vec<String> = each
            .map(|e| e.keys().into_iter().map(str::to_owned).collect())
            .unwrap_or_default();
        keys.extend(path.keys().into_iter().map(str::to_owned));
        self.read_paths.push(keys);
        Source::Path(path)
    }

    fn source(
        &mut self,
        name: &str,
        column: Option<&str>,
        index: Option<usize>,
        path: Option<&str>,
        each: Option<&Path>,
    ) -> Source {
        if let Some(i) = index {
            self.index(name, i)
        } else if let Some(p) = path {
            self.path(p, each)
        } else {
            self.column(name, column.unwrap_or_default())
        }
    }

    fn bind(&mut self, name: &str, f: &FieldSpec, each: Option<&Path>) -> BoundField {
        let conv = &self.spec.conventions;
        let tree = !self.spec.format.is_tabular();
        let source = if let Some(v) = &f.value {
            Source::Constant(v.clone())
        } else if let Some(parts) = &f.concat {
            Source::Concat {
                parts: parts
                    .iter()
                    .map(|p| {
                        if tree {
                            self.path(p, each)
                        } else {
                            self.column(name, p)
                        }
                    })
                    .collect(),
                separator: f.separator.clone().unwrap_or_else(|| " ".into()),
            }
        } else {
            self.source(name, f.column.as_deref(), f.index, f.path.as_deref(), each)
        };
        let table = f.codes.as_ref().and_then(|t| self.spec.code_table(t));
        let codes = table.map(|t| {
            (
                f.codes.clone().unwrap_or_default(),
                t.iter()
                    .map(|(k, v)| (normalise_code(k), v.clone()))
                    .collect(),
            )
        });
        let known_codes = table
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(described) = source.describe() {
            self.bound_columns.insert(name.to_owned(), described);
        }
        // Patterns were compiled when the mapping was parsed; these cannot fail.
        let compile = |p: &Option<String>| p.as_ref().and_then(|p| Regex::new(p).ok());
        BoundField {
            name: name.to_owned(),
            source,
            trim: f.trim.unwrap_or(true),
            regex: compile(&f.regex),
            split: f.split.as_ref().map(|s| (s.separator.clone(), s.part)),
            case: f.case,
            default: f.default.clone(),
            codes,
            fallback: f.fallback.clone(),
            known_codes,
            date_formats: f
                .date_format
                .clone()
                .unwrap_or_else(|| conv.date_format.clone()),
            excel_serial: f.excel_serial.unwrap_or(conv.excel_serial),
            decimal: DecimalFormat {
                decimal_separator: f.decimal_separator.unwrap_or(conv.decimal_separator),
                thousands_separator: f.thousands_separator.or(conv.thousands_separator),
            },
            percent: f.percent.unwrap_or(false),
            scale: f
                .scale
                .as_deref()
                .and_then(|s| parse_decimal(s, DecimalFormat::default()).ok()),
            required: f.required.unwrap_or(false),
            min: f.min.clone(),
            max: f.max.clone(),
            pattern: compile(&f.pattern),
            one_of: f.one_of.as_ref().map(|v| {
                (
                    v.iter().map(|s| s.trim().to_lowercase()).collect(),
                    v.join(", "),
                )
            }),
        }
    }

    fn opt(
        &mut self,
        name: &str,
        f: &Option<crate::spec::FieldSpecOrColumn>,
    ) -> Option<BoundField> {
        f.as_ref().map(|f| self.bind(name, &f.0, None))
    }

    fn policy(&mut self, fields: &PolicyFields) -> PolicyBound {
        let f = fields;
        PolicyBound {
            number: self.bind("number", &f.number.0, None),
            line_of_business: self.bind("line_of_business", &f.line_of_business.0, None),
            status: self.bind("status", &f.status.0, None),
            effective_date: self.bind("effective_date", &f.effective_date.0, None),
            expiration_date: self.bind("expiration_date", &f.expiration_date.0, None),
            premium: self.bind("premium", &f.premium.0, None),
            currency: self.opt("currency", &f.currency),
            producer: self.opt("producer", &f.producer),
            insured_reference: self.opt("insured.reference", &f.insured.reference),
            insured_kind: self.opt("insured.kind", &f.insured.kind),
            insured_name: self.opt("insured.name", &f.insured.name),
            insured_postal_code: self.opt("insured.postal_code", &f.insured.postal_code),
            insured_country: self.opt("insured.country", &f.insured.country),
            coverages: f
                .coverages
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let each = c.each.as_deref().map(Path::parse);
                    let e = each.as_ref();
                    let opt =
                        |b: &mut Self, n: &str, f: &Option<crate::spec::FieldSpecOrColumn>| {
                            f.as_ref()
                                .map(|f| b.bind(&format!("coverages[{i}].{n}"), &f.0, e))
                        };
                    BoundCoverage {
                        code: self.bind(&format!("coverages[{i}].code"), &c.code.0, e),
                        limit: opt(self, "limit", &c.limit),
                        deductible: opt(self, "deductible", &c.deductible),
                        premium: opt(self, "premium", &c.premium),
                        each,
                    }
                })
                .collect(),
        }
    }

    fn claim(&mut self, f: &ClaimFields) -> ClaimBound {
        ClaimBound {
            number: self.bind("number", &f.number.0, None),
            policy_number: self.bind("policy_number", &f.policy_number.0, None),
            loss_date: self.bind("loss_date", &f.loss_date.0, None),
            reported_date: self.bind("reported_date", &f.reported_date.0, None),
            status: self.bind("status", &f.status.0, None),
            cause: self.opt("cause", &f.cause),
            paid: self.bind("paid", &f.paid.0, None),
            reserve: self.bind("reserve", &f.reserve.0, None),
            currency: self.opt("currency", &f.currency),
        }
    }

    fn route(&mut self, r: &RouteSpec) -> BoundRoute {
        let source = self.source(
            "route",
            r.column.as_deref(),
            r.index,
            r.path.as_deref(),
            None,
        );
        let mut values = HashMap::new();
        let mut listed = Vec::new();
        for (kind, list) in [
            (Some(RecordKind::Policy), &r.policy),
            (Some(RecordKind::Claim), &r.claim),
            (Some(RecordKind::Transaction), &r.transaction),
            (None, &r.skip),
        ] {
            for v in list {
                values.insert(normalise_code(v), kind);
                listed.push(v.clone());
            }
        }
        BoundRoute {
            source,
            values,
            listed,
        }
    }

    fn skip(&mut self, s: &SkipSpec, i: usize) -> BoundSkip {
        let source = self.source(
            &format!("skip[{}]", i + 1),
            s.column.as_deref(),
            s.index,
            s.path.as_deref(),
            None,
        );
        let test = if let Some(e) = &s.equals {
            SkipTest::Equals(e.trim().to_lowercase())
        } else if let Some(m) = &s.matches {
            SkipTest::Matches(Regex::new(m).expect("checked when parsed"))
        } else if let Some(e) = s.empty {
            SkipTest::Empty(e)
        } else {
            SkipTest::OneOf(
                s.one_of
                    .iter()
                    .flatten()
                    .map(|v| v.trim().to_lowercase())
                    .collect(),
            )
        };
        BoundSkip { source, test }
    }
}

impl MappingSpec {
    /// Binds the mapping to a payload: finds every mapped column in `headers` (reporting
    /// all missing ones at once). Tree formats have no header: pass `&[]`.
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
            read_paths: Vec::new(),
        };
        let targets = self
            .targets
            .iter()
            .map(|t| match t {
                Target::Policy(p) => BoundTarget::Policy(Box::new(b.policy(p))),
                Target::Claim(c) => BoundTarget::Claim(Box::new(b.claim(c))),
                Target::Transaction(t) => BoundTarget::Transaction(Box::new(TransactionBound {
                    policy_number: b.bind("policy_number", &t.policy_number.0, None),
                    reference: b.bind("reference", &t.reference.0, None),
                    transaction_type: b.bind("type", &t.transaction_type.0, None),
                    effective_date: b.bind("effective_date", &t.effective_date.0, None),
                    premium: b.bind("premium", &t.premium.0, None),
                    currency: b.opt("currency", &t.currency),
                })),
            })
            .collect();
        let route = self.route.as_ref().map(|r| b.route(r));
        let skip = self
            .skip
            .iter()
            .enumerate()
            .map(|(i, s)| b.skip(s, i))
            .collect();
        let unmapped: Vec<(usize, String)> = headers
            .iter()
            .enumerate()
            .zip(&b.used)
            .filter(|(_, used)| !**used)
            .map(|((i, h), _)| (i, h.clone()))
            .collect();
        let tabular = self.format.is_tabular();
        let extras = match (&self.extras, tabular) {
            (KeepExtras::None, _) => BoundExtras::None,
            (KeepExtras::Unmapped, true) => BoundExtras::Columns(
                unmapped
                    .iter()
                    .map(|(i, h)| (*i, extra_key(h)))
                    .filter(|(_, k)| !k.is_empty())
                    .collect(),
            ),
            (KeepExtras::Unmapped, false) => BoundExtras::Unread(
                b.read_paths
                    .iter()
                    .map(|keys| keys.join("/").to_lowercase())
                    .collect(),
            ),
            (KeepExtras::Only(names), true) => {
                let mut columns = Vec::new();
                for name in names {
                    match b.columns.get(&normalise_column(name)) {
                        Some(&i) => columns.push((i, extra_key(name))),
                        None => b.missing.push(format!("'{name}' (for extras)")),
                    }
                }
                BoundExtras::Columns(columns)
            }
            (KeepExtras::Only(paths), false) => BoundExtras::Paths(
                paths
                    .iter()
                    .map(|p| (Path::parse(p), extra_key(&p.replace('/', "_"))))
                    .collect(),
            ),
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
        let unmapped_columns = unmapped.into_iter().map(|(_, h)| h).collect();
        Ok(BoundMapping {
            targets,
            route,
            skip,
            date_order: self
                .checks
                .iter()
                .filter(|c: &&CheckSpec| c.rule == "date_order")
                .map(|c| c.fields.clone())
                .collect(),
            default_currency: self
                .conventions
                .currency
                .as_deref()
                .and_then(|c| Currency::parse(c).ok()),
            unmapped_columns,
            columns_by_field: b.bound_columns,
            read_paths: b.read_paths,
            spreadsheet: self.format.is_spreadsheet(),
            extras,
        })
    }
}

fn resolve<'a>(source: &'a Source, scope: Scope<'a>) -> Result<Raw<'a>, String> {
    match (source, scope) {
        (Source::Constant(c), _) => Ok(Raw::Text(c.clone())),
        (Source::Column { index, .. }, Scope::Row(values)) => {
            Ok(values.get(*index).map(Raw::Value).unwrap_or(Raw::Empty))
        }
        (Source::Path(path), Scope::Tree(root)) => {
            Ok(path.resolve(root).map(Raw::Value).unwrap_or(Raw::Empty))
        }
        (Source::Concat { parts, separator }, _) => {
            let mut out = Vec::new();
            for p in parts {
                match resolve(p, scope)? {
                    Raw::Empty => {}
                    Raw::Text(t) => out.push(t.trim().to_owned()),
                    Raw::Value(v) => match v.as_text() {
                        Some(t) => out.push(t.trim().to_owned()),
                        None if v.is_empty() => {}
                        None => return Err(format!("expected one value, found {}", v.kind())),
                    },
                }
            }
            out.retain(|s| !s.is_empty());
            Ok(Raw::Text(out.join(separator)))
        }
        (Source::Column { name, .. }, Scope::Tree(_)) => {
            Err(format!("column '{name}' cannot be read from a tree record"))
        }
        (Source::Path(p), Scope::Row(_)) => {
            Err(format!("path '{}' cannot be read from a row", p.text))
        }
    }
}

/// Reads the fields of one record, collecting every error rather than stopping at the first.
struct RecordReader<'a> {
    scope: Scope<'a>,
    spreadsheet: bool,
    errors: Vec<FieldError>,
}

impl<'a> RecordReader<'a> {
    fn fail(&mut self, f: &BoundField, value: &str, kind: ErrorKind, reason: impl Into<String>) {
        self.errors.push(FieldError {
            field: f.name.clone(),
            column: f.source.describe(),
            value: value.to_owned(),
            reason: reason.into(),
            kind,
        });
    }

    fn resolve(&mut self, f: &'a BoundField, scope: Scope<'a>) -> Option<Raw<'a>> {
        match resolve(&f.source, scope) {
            Ok(raw) => Some(raw),
            Err(reason) => {
                self.fail(f, "", ErrorKind::Shape, reason);
                None
            }
        }
    }

    /// The value after the text transforms (trim, regex, split, case, default) and the
    /// text checks (pattern, one_of); `None` when empty or failed.
    fn transformed(&mut self, f: &'a BoundField, scope: Scope<'a>) -> Option<String> {
        let raw = self.resolve(f, scope)?;
        let text: Cow<str> = match &raw {
            Raw::Empty => Cow::Borrowed(""),
            Raw::Text(t) => Cow::Borrowed(t.as_str()),
            Raw::Value(v) => match v.as_text() {
                Some(t) => t,
                None if v.is_empty() => Cow::Borrowed(""),
                None => {
                    let what = v.kind();
                    self.fail(
                        f,
                        "",
                        ErrorKind::Shape,
                        format!("expected one value, found {what}"),
                    );
                    return None;
                }
            },
        };
        self.apply(f, &text)
    }

    fn apply(&mut self, f: &BoundField, text: &str) -> Option<String> {
        // A NUL is never text a carrier meant, and PostgreSQL cannot store it: refused here,
        // where the error can name the field, rather than failing a whole batch later.
        if let Some(at) = text.find('\0') {
            self.fail(
                f,
                &text.replace('\0', "\\0"),
                ErrorKind::Type,
                format!("the value contains a NUL character (at byte {at})"),
            );
            return None;
        }
        let mut value: Cow<str> = if f.trim {
            Cow::Borrowed(text.trim())
        } else {
            Cow::Borrowed(text)
        };
        if !value.trim().is_empty() {
            if let Some(re) = &f.regex {
                let Some(caps) = re.captures(&value) else {
                    let v = value.into_owned();
                    self.fail(
                        f,
                        &v,
                        ErrorKind::Pattern,
                        format!("'{v}' does not match /{}/", re.as_str()),
                    );
                    return None;
                };
                let m = caps.get(1).or_else(|| caps.get(0)).expect("a match");
                value = Cow::Owned(m.as_str().trim().to_owned());
            }
            if let Some((sep, part)) = &f.split {
                let parts: Vec<&str> = value.split(sep.as_str()).collect();
                let idx = if *part > 0 {
                    (*part - 1) as usize
                } else {
                    parts.len().wrapping_sub(part.unsigned_abs() as usize)
                };
                let picked = parts.get(idx).map(|p| p.trim().to_owned());
                let count = parts.len();
                match picked {
                    Some(p) => value = Cow::Owned(p),
                    None => {
                        let v = value.into_owned();
                        self.fail(
                            f,
                            &v,
                            ErrorKind::Pattern,
                            format!(
                                "'{v}' has {count} part(s) separated by '{sep}'; part {part} was asked for"
                            ),
                        );
                        return None;
                    }
                }
            }
            if let Some(case) = f.case {
                value = Cow::Owned(match case {
                    Case::Upper => value.to_uppercase(),
                    Case::Lower => value.to_lowercase(),
                    Case::Title => title_case(&value),
                });
            }
        }
        let value = if value.trim().is_empty() {
            f.default.clone()?
        } else {
            value.into_owned()
        };
        if let Some(p) = &f.pattern {
            if !p.is_match(&value) {
                self.fail(
                    f,
                    &value,
                    ErrorKind::Pattern,
                    format!("'{value}' does not match the pattern /{}/", p.as_str()),
                );
                return None;
            }
        }
        if let Some((allowed, shown)) = &f.one_of {
            if !allowed.contains(&value.trim().to_lowercase()) {
                self.fail(
                    f,
                    &value,
                    ErrorKind::OneOf,
                    format!("'{value}' is not one of {shown}"),
                );
                return None;
            }
        }
        Some(value)
    }

    /// Translates through the field's code table (with its fallback), for free-text fields.
    fn translate(&mut self, f: &BoundField, value: String) -> Option<String> {
        let Some((table, codes)) = &f.codes else {
            return Some(value);
        };
        match codes.get(&normalise_code(&value)) {
            Some(v) => Some(v.clone()),
            None => match f.fallback.as_deref() {
                Some("keep") => Some(value),
                Some(fb) => Some(fb.to_owned()),
                None => {
                    self.fail(
                        f,
                        &value,
                        ErrorKind::UnknownCode,
                        format!(
                            "unknown code '{value}' (code table '{table}' knows: {})",
                            f.known_codes.join(", ")
                        ),
                    );
                    None
                }
            },
        }
    }

    fn text_in(&mut self, f: &'a BoundField, scope: Scope<'a>) -> Option<String> {
        let v = self.transformed(f, scope)?;
        self.translate(f, v)
    }

    fn required_in(&mut self, f: &'a BoundField, scope: Scope<'a>) -> Option<String> {
        let before = self.errors.len();
        let v = self.transformed(f, scope);
        if v.is_none() {
            if self.errors.len() == before {
                self.fail(f, "", ErrorKind::Required, "required value is empty");
            }
            return None;
        }
        self.translate(f, v?)
    }

    fn required(&mut self, f: &'a BoundField) -> Option<String> {
        self.required_in(f, self.scope)
    }

    /// An optional text field; `required = true` in the mapping makes it required.
    fn optional(&mut self, f: Option<&'a BoundField>) -> Option<String> {
        let f = f?;
        if f.required {
            self.required(f)
        } else {
            self.text_in(f, self.scope)
        }
    }

    fn code<T: FromStr>(&mut self, f: &'a BoundField, list: CodeList) -> Option<Coded<T>>
    where
        T::Err: std::fmt::Display,
    {
        let before = self.errors.len();
        let Some(original) = self.transformed(f, self.scope) else {
            if self.errors.len() == before {
                self.fail(f, "", ErrorKind::Required, "required value is empty");
            }
            return None;
        };
        // A `value` or `default` the mapping itself gives may already be a canonical code.
        let own = matches!(f.source, Source::Constant(_)) || f.default.as_ref() == Some(&original);
        let canonical = match &f.codes {
            Some((table, codes)) => match codes.get(&normalise_code(&original)) {
                Some(c) => c.clone(),
                None if own && original.parse::<T>().is_ok() => original.clone(),
                None => match f.fallback.as_deref() {
                    Some("keep") => original.clone(),
                    Some(fb) => fb.to_owned(),
                    None => {
                        self.fail(
                            f,
                            &original,
                            ErrorKind::UnknownCode,
                            format!(
                                "unknown {} code '{original}' (code table '{table}' knows: {})",
                                list.label(),
                                f.known_codes.join(", ")
                            ),
                        );
                        return None;
                    }
                },
            },
            None => original.clone(),
        };
        match canonical.parse::<T>() {
            Ok(v) => Some(Coded::new(v, original)),
            Err(e) => {
                self.fail(f, &original, ErrorKind::UnknownCode, e.to_string());
                None
            }
        }
    }

    fn date(&mut self, f: &'a BoundField) -> Option<NaiveDate> {
        let raw = self.resolve(f, self.scope)?;
        let date = match raw {
            Raw::Value(Value::DateTime(d)) => d.date(),
            Raw::Value(Value::Number(n)) if self.spreadsheet || f.excel_serial => {
                match excel_serial_date(n) {
                    Ok(d) => d,
                    Err(e) => {
                        self.fail(f, n, ErrorKind::Type, e);
                        return None;
                    }
                }
            }
            _ => {
                let text = self.required(f)?;
                let serial = f.excel_serial
                    && !text.is_empty()
                    && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
                // The date formats first: `20250131` is a date in `%Y%m%d`, not a serial.
                let parsed = parse_date(&text, &f.date_formats).or_else(|e| {
                    if serial {
                        excel_serial_date(&text)
                    } else {
                        Err(e)
                    }
                });
                match parsed {
                    Ok(d) => d,
                    Err(e) => {
                        self.fail(f, &text, ErrorKind::Type, e);
                        return None;
                    }
                }
            }
        };
        let shown = date.to_string();
        for (bound, below) in [(&f.min, true), (&f.max, false)] {
            let Some(b) = bound else { continue };
            let limit = NaiveDate::parse_from_str(b, "%Y-%m-%d").expect("checked when parsed");
            if (below && date < limit) || (!below && date > limit) {
                self.fail(
                    f,
                    &shown,
                    ErrorKind::Range,
                    format!(
                        "{shown} is {} {b}",
                        if below {
                            "before the minimum"
                        } else {
                            "after the maximum"
                        }
                    ),
                );
                return None;
            }
        }
        Some(date)
    }

    fn amount_in(
        &mut self,
        f: &'a BoundField,
        scope: Scope<'a>,
        required: bool,
    ) -> Option<Option<Decimal>> {
        let raw = self.resolve(f, scope)?;
        // Numbers in JSON and spreadsheet cells are written with '.', whatever the
        // carrier's conventions for text.
        let (text, format) = match raw {
            Raw::Text(t) => (t, f.decimal),
            Raw::Empty => (String::new(), f.decimal),
            Raw::Value(Value::Number(n)) => (n.clone(), DecimalFormat::default()),
            Raw::Value(v) => match v.as_text() {
                Some(t) => (t.into_owned(), f.decimal),
                None if v.is_empty() => (String::new(), f.decimal),
                None => {
                    self.fail(
                        f,
                        "",
                        ErrorKind::Shape,
                        format!("expected an amount, found {}", v.kind()),
                    );
                    return None;
                }
            },
        };
        let before = self.errors.len();
        let Some(value) = self.apply(f, &text) else {
            if self.errors.len() > before {
                return None;
            }
            if required || f.required {
                self.fail(f, "", ErrorKind::Required, "required value is empty");
                return None;
            }
            return Some(None);
        };
        let v = parse_amount(&value, format, f.percent, f.scale);
        let parsed = (value, v);
        let (text, amount) = match parsed {
            (text, Ok(v)) => (text, v),
            (text, Err(e)) => {
                self.fail(f, &text, ErrorKind::Type, e);
                return None;
            }
        };
        for (bound, below) in [(&f.min, true), (&f.max, false)] {
            let Some(b) = bound else { continue };
            let limit = parse_decimal(b, DecimalFormat::default()).expect("checked when parsed");
            if (below && amount < limit) || (!below && amount > limit) {
                self.fail(
                    f,
                    &text,
                    ErrorKind::Range,
                    format!(
                        "{amount} is {} {b}",
                        if below {
                            "below the minimum"
                        } else {
                            "above the maximum"
                        }
                    ),
                );
                return None;
            }
        }
        Some(Some(amount))
    }

    fn money(&mut self, f: &'a BoundField, currency: Option<Currency>) -> Option<Money> {
        let amount = self.amount_in(f, self.scope, true)??;
        currency.map(|c| Money::new(amount, c))
    }

    fn optional_money_in(
        &mut self,
        f: Option<&'a BoundField>,
        scope: Scope<'a>,
        currency: Option<Currency>,
    ) -> Option<Option<Money>> {
        let Some(f) = f else { return Some(None) };
        let amount = self.amount_in(f, scope, false)?;
        Some(amount.and_then(|a| currency.map(|c| Money::new(a, c))))
    }

    fn currency(
        &mut self,
        f: Option<&'a BoundField>,
        default: Option<Currency>,
    ) -> Option<Currency> {
        let Some(f) = f else { return default };
        let before = self.errors.len();
        let Some(raw) = self.transformed(f, self.scope) else {
            if self.errors.len() > before {
                return None;
            }
            return match default {
                Some(c) => Some(c),
                None => {
                    self.fail(f, "", ErrorKind::Required, "required value is empty");
                    None
                }
            };
        };
        // A code table may translate the carrier's spelling; the usual symbols are built in.
        let code = match &f.codes {
            Some(_) => self.translate(f, raw.clone())?,
            None => crate::values::CURRENCY_SYMBOLS
                .iter()
                .find(|(s, _)| *s == raw.trim())
                .map(|(_, iso)| (*iso).to_owned())
                .unwrap_or_else(|| raw.clone()),
        };
        match Currency::parse(&code) {
            Ok(c) => Some(c),
            Err(e) => {
                self.fail(f, &raw, ErrorKind::Type, e.to_string());
                None
            }
        }
    }

    fn reference<T>(
        &mut self,
        f: &'a BoundField,
        parse: fn(&str) -> Result<T, carrierhub_model::IdError>,
    ) -> Option<T> {
        let raw = self.required(f)?;
        match parse(&raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(f, &raw, ErrorKind::Type, e.to_string());
                None
            }
        }
    }
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if c.is_alphanumeric() {
            if start {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
            start = false;
        } else {
            out.push(c);
            start = true;
        }
    }
    out
}

impl BoundMapping {
    /// The source column (or path) a canonical field is read from, if it is read from one.
    pub fn source_column(&self, field: &str) -> Option<&str> {
        self.columns_by_field.get(field).map(String::as_str)
    }

    /// The key paths that fields read from tree records (list indices left out).
    pub fn read_paths(&self) -> &[Vec<String>] {
        &self.read_paths
    }

    /// Maps one source record for `carrier`: skip rules, routing, every field (so the error
    /// list is complete), the mapping's record checks and the model's rules.
    pub fn map_record(&self, carrier: &CarrierId, record: &SourceRecord) -> Mapped {
        let scope = match &record.data {
            RecordData::Row(values) => Scope::Row(values),
            RecordData::Tree(value) => Scope::Tree(value),
        };
        for s in &self.skip {
            if let Some(reason) = skip_matches(s, scope) {
                return Mapped::Skipped(reason);
            }
        }
        let target = match &self.route {
            None => &self.targets[0],
            Some(route) => {
                let value = match resolve(&route.source, scope) {
                    Ok(Raw::Text(t)) => t,
                    Ok(Raw::Value(v)) => v.as_text().map(Cow::into_owned).unwrap_or_default(),
                    _ => String::new(),
                };
                match route.values.get(&normalise_code(&value)) {
                    Some(None) => {
                        return Mapped::Skipped(format!(
                            "record type '{}' is skipped",
                            value.trim()
                        ))
                    }
                    Some(Some(kind)) => self
                        .targets
                        .iter()
                        .find(|t| t.kind() == *kind)
                        .expect("checked when parsed: a routed kind has its section"),
                    None => {
                        return Mapped::Rejected(vec![FieldError {
                            field: "record type".into(),
                            column: route.source.describe(),
                            value: value.trim().to_owned(),
                            reason: format!(
                                "record type '{}' is not routed; expected one of {}",
                                value.trim(),
                                route.listed.join(", ")
                            ),
                            kind: ErrorKind::Route,
                        }])
                    }
                }
            }
        };
        let mut r = RecordReader {
            scope,
            spreadsheet: self.spreadsheet,
            errors: Vec::new(),
        };
        let mapped = match target {
            BoundTarget::Policy(p) => self.policy(&mut r, p, carrier),
            BoundTarget::Claim(c) => self.claim(&mut r, c, carrier),
            BoundTarget::Transaction(t) => self.transaction(&mut r, t, carrier),
        };
        let Some(record) = mapped.filter(|_| r.errors.is_empty()) else {
            return Mapped::Rejected(r.errors);
        };
        let mut errors = self.check_dates(&record);
        let violations: Vec<RuleViolation> = match &record {
            CanonicalRecord::Policy(p) => p.violations(),
            CanonicalRecord::Claim(c) => c.violations(),
            CanonicalRecord::Transaction(t) => t.violations(),
        };
        errors.extend(violations.into_iter().map(|v| FieldError {
            column: self.source_column(&v.field).map(str::to_owned),
            field: v.field,
            value: v.value,
            reason: v.reason,
            kind: ErrorKind::Model,
        }));
        if !errors.is_empty() {
            return Mapped::Rejected(errors);
        }
        let mut record = record;
        let extras = self.extras_of(scope);
        if !extras.is_empty() {
            match &mut record {
                CanonicalRecord::Policy(p) => p.extras = extras,
                CanonicalRecord::Claim(c) => c.extras = extras,
                CanonicalRecord::Transaction(_) => {}
            }
        }
        Mapped::Record(record)
    }

    /// The record's extras: the kept source fields that have a value, by key.
    fn extras_of(&self, scope: Scope<'_>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut keep = |key: &str, value: &Value| {
            if let Some(text) = value.as_text() {
                let text = text.trim();
                // NUL cannot be stored (PostgreSQL); such an extra is left out.
                if !text.is_empty() && !key.is_empty() && !text.contains('\0') {
                    out.entry(key.to_owned()).or_insert_with(|| text.to_owned());
                }
            }
        };
        match (&self.extras, scope) {
            (BoundExtras::None, _) => {}
            (BoundExtras::Columns(columns), Scope::Row(values)) => {
                for (i, key) in columns {
                    if let Some(v) = values.get(*i) {
                        keep(key, v);
                    }
                }
            }
            (BoundExtras::Paths(paths), Scope::Tree(root)) => {
                for (path, key) in paths {
                    if let Some(v) = path.resolve(root) {
                        keep(key, v);
                    }
                }
            }
            (BoundExtras::Unread(read), Scope::Tree(root)) => {
                unread_leaves(root, &mut String::new(), read, &mut keep);
            }
            _ => {}
        }
        out
    }

    fn check_dates(&self, record: &CanonicalRecord) -> Vec<FieldError> {
        let date = |name: &str| -> Option<NaiveDate> {
            match record {
                CanonicalRecord::Policy(p) => match name {
                    "effective_date" => Some(p.effective_date),
                    "expiration_date" => Some(p.expiration_date),
                    _ => None,
                },
                CanonicalRecord::Claim(c) => match name {
                    "loss_date" => Some(c.loss_date),
                    "reported_date" => Some(c.reported_date),
                    _ => None,
                },
                CanonicalRecord::Transaction(t) => match name {
                    "effective_date" => Some(t.effective_date),
                    _ => None,
                },
            }
        };
        let mut errors = Vec::new();
        for fields in &self.date_order {
            for pair in fields.windows(2) {
                if let (Some(a), Some(b)) = (date(&pair[0]), date(&pair[1])) {
                    if a > b {
                        errors.push(FieldError {
                            field: pair[1].clone(),
                            column: self.source_column(&pair[1]).map(str::to_owned),
                            value: b.to_string(),
                            reason: format!(
                                "{} {b} is before {} {a}",
                                pair[1].replace('_', " "),
                                pair[0].replace('_', " ")
                            ),
                            kind: ErrorKind::Check,
                        });
                    }
                }
            }
        }
        errors
    }

    fn policy<'a>(
        &self,
        r: &mut RecordReader<'a>,
        p: &'a PolicyBound,
        carrier: &CarrierId,
    ) -> Option<CanonicalRecord> {
        let number = r.reference(&p.number, PolicyNumber::parse);
        let lob = r.code(&p.line_of_business, CodeList::LineOfBusiness);
        let status = r.code(&p.status, CodeList::PolicyStatus);
        let effective = r.date(&p.effective_date);
        let expiration = r.date(&p.expiration_date);
        let ccy = r.currency(p.currency.as_ref(), self.default_currency);
        let premium = r.money(&p.premium, ccy);
        let kind = match &p.insured_kind {
            Some(f) => r.code::<PartyKind>(f, CodeList::PartyKind).map(|c| c.value),
            None => Some(PartyKind::Person),
        };
        let name = match &p.insured_name {
            Some(f) => r.required(f),
            None => Some(String::new()),
        };
        let insured = InsuredParty {
            reference: r.optional(p.insured_reference.as_ref()),
            kind: kind.unwrap_or(PartyKind::Person),
            name: name.unwrap_or_default(),
            postal_code: r.optional(p.insured_postal_code.as_ref()),
            country: r
                .optional(p.insured_country.as_ref())
                .map(|c| c.to_uppercase()),
        };
        let producer = r.optional(p.producer.as_ref());
        let mut covs = Vec::new();
        for c in &p.coverages {
            match &c.each {
                None => {
                    if let Some(cov) = coverage(r, c, r.scope, ccy, None) {
                        covs.push(cov);
                    }
                }
                Some(each) => {
                    let Scope::Tree(root) = r.scope else { continue };
                    let items = each.resolve(root).map(Value::items).unwrap_or(&[]);
                    for (i, item) in items.iter().enumerate() {
                        if let Some(cov) = coverage(r, c, Scope::Tree(item), ccy, Some(i)) {
                            covs.push(cov);
                        }
                    }
                }
            }
        }
        Some(CanonicalRecord::Policy(Policy {
            extras: BTreeMap::new(),
            carrier: carrier.clone(),
            number: number?,
            line_of_business: lob?,
            status: status?,
            effective_date: effective?,
            expiration_date: expiration?,
            premium: premium?,
            producer,
            insured,
            coverages: covs,
        }))
    }

    fn claim<'a>(
        &self,
        r: &mut RecordReader<'a>,
        c: &'a ClaimBound,
        carrier: &CarrierId,
    ) -> Option<CanonicalRecord> {
        let number = r.reference(&c.number, ClaimNumber::parse);
        let policy_number = r.reference(&c.policy_number, PolicyNumber::parse);
        let loss = r.date(&c.loss_date);
        let reported = r.date(&c.reported_date);
        let status = r.code(&c.status, CodeList::ClaimStatus);
        let cause = r.optional(c.cause.as_ref());
        let ccy = r.currency(c.currency.as_ref(), self.default_currency);
        let paid = r.money(&c.paid, ccy);
        let reserve = r.money(&c.reserve, ccy);
        Some(CanonicalRecord::Claim(Claim {
            extras: BTreeMap::new(),
            carrier: carrier.clone(),
            number: number?,
            policy_number: policy_number?,
            loss_date: loss?,
            reported_date: reported?,
            status: status?,
            cause,
            paid: paid?,
            reserve: reserve?,
        }))
    }
}

impl BoundMapping {
    fn transaction<'a>(
        &self,
        r: &mut RecordReader<'a>,
        t: &'a TransactionBound,
        carrier: &CarrierId,
    ) -> Option<CanonicalRecord> {
        let policy_number = r.reference(&t.policy_number, PolicyNumber::parse);
        let reference = r.required(&t.reference);
        let transaction_type = r.code(&t.transaction_type, CodeList::TransactionType);
        let effective = r.date(&t.effective_date);
        let ccy = r.currency(t.currency.as_ref(), self.default_currency);
        let premium = r.money(&t.premium, ccy);
        Some(CanonicalRecord::Transaction(PolicyTransaction {
            carrier: carrier.clone(),
            policy_number: policy_number?,
            reference: reference?,
            transaction_type: transaction_type?,
            effective_date: effective?,
            premium: premium?,
        }))
    }
}

/// One coverage in `scope`; element `item` of an `each` list names its errors.
fn coverage<'a>(
    r: &mut RecordReader<'a>,
    c: &'a BoundCoverage,
    scope: Scope<'a>,
    ccy: Option<Currency>,
    item: Option<usize>,
) -> Option<Coverage> {
    let before = r.errors.len();
    let code = r.text_in(&c.code, scope);
    let limit = r.optional_money_in(c.limit.as_ref(), scope, ccy);
    let deductible = r.optional_money_in(c.deductible.as_ref(), scope, ccy);
    let premium = r.optional_money_in(c.premium.as_ref(), scope, ccy);
    if let Some(i) = item {
        // `coverages[0].limit` names the mapping's coverage; the element number tells the
        // carrier which one of the record's list failed.
        for e in &mut r.errors[before..] {
            e.field = format!("{} (element {})", e.field, i + 1);
        }
    }
    let (limit, deductible, premium) = (limit?, deductible?, premium?);
    // A tabular coverage group left blank is not a cover: no amounts, and no code read from
    // the record (a constant code alone does not make one).
    let no_amounts = limit.is_none() && deductible.is_none() && premium.is_none();
    let code_from_record = !matches!(c.code.source, Source::Constant(_)) && code.is_some();
    if item.is_none() && no_amounts && !code_from_record {
        return None;
    }
    let Some(code) = code else {
        if item.is_some() || r.errors.len() == before {
            r.fail(&c.code, "", ErrorKind::Required, "required value is empty");
        }
        return None;
    };
    Some(Coverage {
        code,
        limit,
        deductible,
        premium,
    })
}

/// Calls `keep` for every scalar leaf outside lists whose key path no field reads.
fn unread_leaves(
    value: &Value,
    path: &mut String,
    read: &HashSet<String>,
    keep: &mut impl FnMut(&str, &Value),
) {
    match value {
        Value::Map(entries) => {
            for (key, v) in entries {
                let len = path.len();
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(&key.to_lowercase());
                if !read.contains(path.as_str()) {
                    unread_leaves(v, path, read, keep);
                }
                path.truncate(len);
            }
        }
        // Lists are structured data a mapping reads with `each`; their leaves are not extras.
        Value::List(_) | Value::Null => {}
        leaf => keep(&extra_key(&path.replace('/', "_")), leaf),
    }
}

fn skip_matches(s: &BoundSkip, scope: Scope<'_>) -> Option<String> {
    let value = match resolve(&s.source, scope) {
        Ok(Raw::Text(t)) => t,
        Ok(Raw::Value(v)) => v.as_text().map(Cow::into_owned).unwrap_or_default(),
        _ => String::new(),
    };
    let v = value.trim();
    let hit = match &s.test {
        SkipTest::Equals(e) => v.to_lowercase() == *e,
        SkipTest::Matches(re) => re.is_match(v),
        SkipTest::Empty(e) => v.is_empty() == *e,
        SkipTest::OneOf(list) => list.contains(&v.to_lowercase()),
    };
    hit.then(|| {
        format!(
            "skipped: {} is '{v}'",
            s.source.describe().unwrap_or_default()
        )
    })
}
