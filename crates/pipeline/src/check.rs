//! The dry run: a payload read and mapped exactly as ingestion would, with nothing written.
//! It answers the questions of onboarding a carrier: what do the records become, what fails
//! and how often, which source columns does nothing read, which codes have no translation.

use crate::{open_bound, PipelineError};
use carrierhub_formats::{RecordData, Value};
use carrierhub_mapping::{ErrorKind, Mapped, MappingSpec};
use carrierhub_model::{CanonicalRecord, CarrierId, RecordKind};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

/// How much a dry run shows.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Mapped records to show.
    pub sample: usize,
    /// Examples to keep per distinct error.
    pub examples: usize,
    /// Stop after this many records (`None`: the whole payload).
    pub max_records: Option<u64>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            sample: 5,
            examples: 3,
            max_records: None,
        }
    }
}

/// A mapped record of the sample, with where it came from.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SampleRecord {
    pub record: u64,
    pub line: u64,
    pub canonical: CanonicalRecord,
}

/// One occurrence of an error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorExample {
    pub record: u64,
    pub line: u64,
    /// Spreadsheets: the sheet `line` is a row of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    pub value: Option<String>,
    pub reason: String,
}

/// Every occurrence of one distinct error: the same field, source and kind of failure.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorGroup {
    /// The canonical field; `None` for records the reader could not read.
    pub field: Option<String>,
    /// The source column or path.
    pub column: Option<String>,
    /// `required`, `type`, `unknown_code`, `pattern`, `one_of`, `range`, `shape`, `check`,
    /// `route`, `model`, or `unreadable`.
    pub kind: String,
    pub count: u64,
    pub examples: Vec<ErrorExample>,
}

/// A carrier code that no code table translates.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UnmappedCode {
    pub field: String,
    pub column: Option<String>,
    pub value: String,
    pub count: u64,
}

/// What a dry run found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckReport {
    pub mapping: String,
    pub format: String,
    pub file: String,
    /// Records read (mapped + rejected + skipped).
    pub records: u64,
    pub mapped: u64,
    pub rejected: u64,
    pub skipped: u64,
    /// Whether `max_records` stopped the run before the end of the payload.
    pub truncated: bool,
    /// Why the payload stopped being readable, if it did.
    pub fatal: Option<String>,
    pub sample: Vec<SampleRecord>,
    /// Distinct errors, most frequent first.
    pub errors: Vec<ErrorGroup>,
    /// Source columns (or, for JSON and XML, paths seen in the records) that no field reads.
    pub unmapped_columns: Vec<String>,
    /// Codes with no translation, most frequent first.
    pub unmapped_codes: Vec<UnmappedCode>,
    /// Whether mapped claims' policies were looked up (ingestion rejects a claim whose policy
    /// the carrier has not sent); see [`CheckReport::apply_known_policies`].
    pub references_checked: bool,
    /// Policy numbers mapped claims refer to that this payload does not define itself, with
    /// where each is referred to.
    #[serde(skip)]
    references: BTreeMap<String, Vec<(u64, u64)>>,
    #[serde(skip)]
    examples: usize,
}

impl CheckReport {
    /// The policy numbers the payload's claims refer to and does not itself define: look
    /// them up in the store and pass the known ones to [`Self::apply_known_policies`].
    pub fn referenced_policies(&self) -> Vec<String> {
        self.references.keys().cloned().collect()
    }

    /// Turns every mapped claim or transaction whose policy is neither in `known` nor in the
    /// payload into a rejection, as ingestion would: `policy_number` with kind `reference`.
    pub fn apply_known_policies(&mut self, known: &HashSet<String>) {
        let mut group = ErrorGroup {
            field: Some("policy_number".into()),
            column: None,
            kind: "reference".into(),
            count: 0,
            examples: Vec::new(),
        };
        let mut unknown = HashSet::new();
        for (number, places) in std::mem::take(&mut self.references) {
            if known.contains(&number) {
                continue;
            }
            unknown.insert(number.clone());
            group.count += places.len() as u64;
            for (record, line) in places {
                if group.examples.len() < self.examples {
                    group.examples.push(ErrorExample {
                        record,
                        line,
                        sheet: None,
                        value: Some(number.clone()),
                        reason: format!("policy '{number}' is not known for this carrier"),
                    });
                }
            }
        }
        self.references_checked = true;
        if group.count > 0 {
            self.mapped -= group.count;
            self.rejected += group.count;
            self.sample.retain(|s| match &s.canonical {
                CanonicalRecord::Claim(c) => !unknown.contains(c.policy_number.as_str()),
                CanonicalRecord::Transaction(t) => !unknown.contains(t.policy_number.as_str()),
                CanonicalRecord::Policy(_) => true,
            });
            self.errors.push(group);
            self.errors
                .sort_by(|a, b| b.count.cmp(&a.count).then(a.field.cmp(&b.field)));
        }
    }
}

/// Records of a tree payload whose paths are collected for `unmapped_columns`.
const PATH_SAMPLE: u64 = 1_000;

/// Reads and maps `path` with `spec` for `carrier`, writing nothing anywhere. A payload that
/// does not fit the mapping at all (unreadable, missing columns) is an error, as it would be
/// on ingestion.
pub fn check_file(
    spec: &MappingSpec,
    carrier: &CarrierId,
    path: &Path,
    file_name: &str,
    options: CheckOptions,
) -> Result<CheckReport, PipelineError> {
    if let Some(mc) = &spec.carrier {
        if mc != carrier {
            return Err(PipelineError::CarrierMismatch {
                mapping: spec.name.clone(),
                mapping_carrier: mc.to_string(),
                carrier: carrier.to_string(),
            });
        }
    }
    let (mut reader, bound) = open_bound(path, spec, file_name)?;
    let mut report = CheckReport {
        mapping: spec.name.clone(),
        format: spec.format.label().to_owned(),
        file: file_name.to_owned(),
        records: 0,
        mapped: 0,
        rejected: 0,
        skipped: 0,
        truncated: false,
        fatal: None,
        sample: Vec::new(),
        errors: Vec::new(),
        unmapped_columns: bound.unmapped_columns.clone(),
        unmapped_codes: Vec::new(),
        references_checked: false,
        references: BTreeMap::new(),
        examples: options.examples,
    };
    // Policies the payload itself defines satisfy its claims' references; only a mapping
    // that can produce claims needs them remembered.
    let claims_possible = spec
        .kinds
        .iter()
        .any(|k| matches!(k, RecordKind::Claim | RecordKind::Transaction));
    let mut defined: HashSet<String> = HashSet::new();
    let mut groups: BTreeMap<(Option<String>, Option<String>, String), ErrorGroup> =
        BTreeMap::new();
    let mut codes: BTreeMap<(String, Option<String>, String), u64> = BTreeMap::new();
    let mut seen_paths = BTreeSet::new();
    let mut add =
        |field: Option<String>, column: Option<String>, kind: String, example: ErrorExample| {
            let group = groups
                .entry((field.clone(), column.clone(), kind.clone()))
                .or_insert_with(|| ErrorGroup {
                    field,
                    column,
                    kind,
                    count: 0,
                    examples: Vec::new(),
                });
            group.count += 1;
            if group.examples.len() < options.examples {
                group.examples.push(example);
            }
        };
    while let Some(item) = reader.next_record() {
        if options.max_records.is_some_and(|max| report.records >= max) {
            report.truncated = true;
            break;
        }
        let item = match item {
            Ok(item) => item,
            Err(fatal) => {
                report.fatal = Some(fatal.to_string());
                break;
            }
        };
        report.records += 1;
        let source = match item {
            Ok(source) => source,
            Err(e) => {
                report.rejected += 1;
                add(
                    None,
                    e.column.clone(),
                    "unreadable".into(),
                    ErrorExample {
                        record: e.position.record,
                        line: e.position.line,
                        sheet: reader.sheet().map(str::to_owned),
                        value: e.value.clone(),
                        reason: e.reason.clone(),
                    },
                );
                continue;
            }
        };
        if report.records <= PATH_SAMPLE {
            if let RecordData::Tree(value) = &source.data {
                leaf_paths(value, &mut String::new(), &mut seen_paths);
            }
        }
        match bound.map_record(carrier, &source) {
            Mapped::Record(canonical) => {
                report.mapped += 1;
                match &canonical {
                    CanonicalRecord::Policy(p) if claims_possible => {
                        defined.insert(p.number.as_str().to_owned());
                    }
                    CanonicalRecord::Policy(_) => {}
                    CanonicalRecord::Claim(c) => report
                        .references
                        .entry(c.policy_number.as_str().to_owned())
                        .or_default()
                        .push((source.position.record, source.position.line)),
                    CanonicalRecord::Transaction(t) => report
                        .references
                        .entry(t.policy_number.as_str().to_owned())
                        .or_default()
                        .push((source.position.record, source.position.line)),
                }
                if report.sample.len() < options.sample {
                    report.sample.push(SampleRecord {
                        record: source.position.record,
                        line: source.position.line,
                        canonical,
                    });
                }
            }
            Mapped::Skipped(_) => report.skipped += 1,
            Mapped::Rejected(errors) => {
                report.rejected += 1;
                for e in errors {
                    if e.kind == ErrorKind::UnknownCode {
                        *codes
                            .entry((e.field.clone(), e.column.clone(), e.value.clone()))
                            .or_default() += 1;
                    }
                    add(
                        Some(e.field),
                        e.column,
                        e.kind.label().to_owned(),
                        ErrorExample {
                            record: source.position.record,
                            line: source.position.line,
                            sheet: reader.sheet().map(str::to_owned),
                            value: Some(e.value),
                            reason: e.reason,
                        },
                    );
                }
            }
        }
    }
    if !seen_paths.is_empty() {
        let read: BTreeSet<String> = bound
            .read_paths()
            .iter()
            .map(|keys| keys.join("/").to_lowercase())
            .collect();
        report.unmapped_columns = seen_paths
            .into_iter()
            .filter(|p| {
                let lower = p.to_lowercase();
                !read.contains(&lower)
                    && !read
                        .iter()
                        .any(|r| !r.is_empty() && lower.starts_with(&format!("{r}/")))
            })
            .collect();
    }
    report
        .references
        .retain(|number, _| !defined.contains(number));
    report.errors = groups.into_values().collect();
    report
        .errors
        .sort_by(|a, b| b.count.cmp(&a.count).then(a.field.cmp(&b.field)));
    let mut unmapped: Vec<UnmappedCode> = codes
        .into_iter()
        .map(|((field, column, value), count)| UnmappedCode {
            field,
            column,
            value,
            count,
        })
        .collect();
    unmapped.sort_by(|a, b| b.count.cmp(&a.count).then(a.value.cmp(&b.value)));
    report.unmapped_codes = unmapped;
    Ok(report)
}

/// Collects the key paths of a tree's leaves (`insured/name`, `coverages/limit`), list
/// positions left out.
fn leaf_paths(value: &Value, prefix: &mut String, out: &mut BTreeSet<String>) {
    match value {
        Value::Map(entries) => {
            for (key, v) in entries {
                let len = prefix.len();
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(key);
                leaf_paths(v, prefix, out);
                prefix.truncate(len);
            }
        }
        Value::List(items) => {
            for item in items {
                leaf_paths(item, prefix, out);
            }
        }
        _ => {
            if !prefix.is_empty() && !out.contains(prefix.as_str()) {
                out.insert(prefix.clone());
            }
        }
    }
}
