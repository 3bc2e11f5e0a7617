//! The synthetic carriers: their file formats and layouts, code lists, conventions and books.
//!
//! They differ on purpose in every way real carriers do (file format, delimiter, encoding,
//! date order, decimal comma, column names, codes, one currency or many), so that onboarding
//! them by mapping file alone demonstrates the mapping format rather than assuming one shape.
//! The first three write delimited text; the others a spreadsheet bordereau, API exports
//! (NDJSON and a JSON document), an XML export and a mainframe extract.

use crate::defects::DefectKind;
use crate::names::Market;
use crate::row::{AmountStyle, DateStyle, TextEncoding, TextStyle};
use carrierhub_model::LineOfBusiness;
use serde::{Deserialize, Serialize};

/// The physical format of a feed, named as a mapping's `source.format` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedFormat {
    /// Delimited text (`csv`): any delimiter, encoding and quoting.
    Csv,
    /// An Office Open XML workbook (`xlsx`).
    Xlsx,
    /// One JSON document (`json`): the records are the elements of an array inside it, at
    /// a JSON pointer (the mapping's `source.records`).
    Json,
    /// Newline-delimited JSON (`ndjson`): one object per line.
    Ndjson,
    /// XML (`xml`): one element per record.
    Xml,
    /// Fixed-width text (`fixed`): columns at fixed character positions.
    Fixed,
}

impl FeedFormat {
    /// The `source.format` value of a mapping that reads this format.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Xlsx => "xlsx",
            Self::Json => "json",
            Self::Ndjson => "ndjson",
            Self::Xml => "xml",
            Self::Fixed => "fixed",
        }
    }
}

/// A synthetic carrier: who it is, its mapping files, and (privately) how it writes feeds.
#[derive(Debug, Clone)]
pub struct CarrierProfile {
    /// Carrier id slug, as used in CarrierHub (`northwind`).
    pub id: &'static str,
    pub name: &'static str,
    /// The policy mapping (TOML) that reads this carrier's policy feed.
    pub policy_mapping: &'static str,
    /// The claim mapping (TOML) that reads this carrier's claim feed.
    pub claim_mapping: &'static str,
    /// File name of a delivery-1 policy feed (see [`CarrierProfile::policy_file_name_for`]).
    pub policy_file_name: &'static str,
    pub claim_file_name: &'static str,
    pub policy_format: FeedFormat,
    pub claim_format: FeedFormat,
    pub(crate) spec: &'static CarrierSpec,
}

impl CarrierProfile {
    /// File name of the policy mapping, e.g. `northwind-policies.toml`.
    pub fn policy_mapping_file_name(&self) -> String {
        format!("{}-policies.toml", self.id)
    }

    /// File name of the claim mapping, e.g. `northwind-claims.toml`.
    pub fn claim_mapping_file_name(&self) -> String {
        format!("{}-claims.toml", self.id)
    }

    /// File name of the policy feed of `delivery`: [`CarrierProfile::policy_file_name`] for
    /// delivery 1, with `-d{delivery}` before the extension for later ones
    /// (`harbour-policies-d2.xlsx`).
    pub fn policy_file_name_for(&self, delivery: u32) -> String {
        if delivery <= 1 {
            return self.policy_file_name.to_owned();
        }
        match self.policy_file_name.rsplit_once('.') {
            Some((stem, ext)) => format!("{stem}-d{delivery}.{ext}"),
            None => format!("{}-d{delivery}", self.policy_file_name),
        }
    }

    /// The currencies this carrier writes business in, most common first.
    pub fn currencies(&self) -> Vec<&'static str> {
        self.spec.currencies.iter().map(|(c, _)| *c).collect()
    }

    /// The defect kinds this carrier's policy feed can carry (each one is rejected by its
    /// mapping). [`DefectKind::Truncated`], where listed, is one per file at most.
    pub fn policy_defect_kinds(&self) -> &'static [DefectKind] {
        self.spec.policy_defects
    }

    /// The defect kinds this carrier's claim feed can carry.
    pub fn claim_defect_kinds(&self) -> &'static [DefectKind] {
        self.spec.claim_defects
    }
}

/// All synthetic carriers, in a fixed order: the three delimited-text carriers first, then
/// one carrier per further format.
pub fn carriers() -> Vec<CarrierProfile> {
    vec![
        CarrierProfile {
            id: "northwind",
            name: "Northwind Mutual",
            policy_mapping: include_str!("../../../examples/mappings/northwind-policies.toml"),
            claim_mapping: include_str!("../../../examples/mappings/northwind-claims.toml"),
            policy_file_name: "northwind-policies.csv",
            claim_file_name: "northwind-claims.csv",
            policy_format: FeedFormat::Csv,
            claim_format: FeedFormat::Csv,
            spec: &NORTHWIND,
        },
        CarrierProfile {
            id: "rheinland",
            name: "Rheinland Versicherung AG",
            policy_mapping: include_str!("../../../examples/mappings/rheinland-policies.toml"),
            claim_mapping: include_str!("../../../examples/mappings/rheinland-claims.toml"),
            policy_file_name: "rheinland-policies.csv",
            claim_file_name: "rheinland-claims.csv",
            policy_format: FeedFormat::Csv,
            claim_format: FeedFormat::Csv,
            spec: &RHEINLAND,
        },
        CarrierProfile {
            id: "thames",
            name: "Thames & Severn Underwriting",
            policy_mapping: include_str!("../../../examples/mappings/thames-policies.toml"),
            claim_mapping: include_str!("../../../examples/mappings/thames-claims.toml"),
            policy_file_name: "thames-policies.csv",
            claim_file_name: "thames-claims.csv",
            policy_format: FeedFormat::Csv,
            claim_format: FeedFormat::Csv,
            spec: &THAMES,
        },
        CarrierProfile {
            id: "harbour",
            name: "Harbour Specialty",
            policy_mapping: include_str!("../../../examples/mappings/harbour-policies.toml"),
            claim_mapping: include_str!("../../../examples/mappings/harbour-claims.toml"),
            policy_file_name: "harbour-policies.xlsx",
            claim_file_name: "harbour-claims.txt",
            policy_format: FeedFormat::Xlsx,
            claim_format: FeedFormat::Csv,
            spec: &HARBOUR,
        },
        CarrierProfile {
            id: "meridian",
            name: "Meridian Direct",
            policy_mapping: include_str!("../../../examples/mappings/meridian-policies.toml"),
            claim_mapping: include_str!("../../../examples/mappings/meridian-claims.toml"),
            policy_file_name: "meridian-policies.ndjson",
            claim_file_name: "meridian-claims.json",
            policy_format: FeedFormat::Ndjson,
            claim_format: FeedFormat::Json,
            spec: &MERIDIAN,
        },
        CarrierProfile {
            id: "alpine",
            name: "Alpina Assekuranz AG",
            policy_mapping: include_str!("../../../examples/mappings/alpine-policies.toml"),
            claim_mapping: include_str!("../../../examples/mappings/alpine-claims.toml"),
            policy_file_name: "alpine-policies.xml",
            claim_file_name: "alpine-claims.xml",
            policy_format: FeedFormat::Xml,
            claim_format: FeedFormat::Xml,
            spec: &ALPINE,
        },
        CarrierProfile {
            id: "keystone",
            name: "Keystone Farm & Casualty Mutual",
            policy_mapping: include_str!("../../../examples/mappings/keystone-policies.toml"),
            claim_mapping: include_str!("../../../examples/mappings/keystone-claims.toml"),
            policy_file_name: "keystone-policies.dat",
            claim_file_name: "keystone-claims.dat",
            policy_format: FeedFormat::Fixed,
            claim_format: FeedFormat::Fixed,
            spec: &KEYSTONE,
        },
    ]
}

/// The carrier with this id, if it is one of [`carriers`].
pub fn carrier(id: &str) -> Option<CarrierProfile> {
    carriers().into_iter().find(|c| c.id == id)
}

/// What kind of loss a line suffers, which decides the causes its claims report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peril {
    Motor = 0,
    Property = 1,
    Liability = 2,
    Cyber = 3,
}

/// One of several coverages a policy of a line carries, for the feeds that list coverages.
#[derive(Debug)]
pub(crate) struct CoverageSpec {
    /// The code as the feed writes it.
    pub code: &'static str,
    /// The code a correct mapping produces (after its code table, if any).
    pub canonical: &'static str,
    /// Relative share of the policy premium.
    pub share: i64,
    /// Whole currency units.
    pub limits: &'static [i64],
    pub deductibles: &'static [i64],
    /// Per mille of policies that carry it (1000 = every policy).
    pub take_up: u64,
}

/// One line of business as a carrier sells it.
#[derive(Debug)]
pub(crate) struct LineSpec {
    /// The carrier's own code, as written in the feed.
    pub code: &'static str,
    pub canonical: LineOfBusiness,
    /// Relative share of the book.
    pub weight: u32,
    /// Annual premium range, in cents.
    pub premium: (i64, i64),
    /// Limits (sums insured) offered, in whole currency units.
    pub limits: &'static [i64],
    pub deductibles: &'static [i64],
    /// Share of insureds that are organisations, per mille.
    pub organisations: u64,
    /// Segment in the policy number, for carriers whose numbers carry one.
    pub number_tag: &'static str,
    pub peril: Peril,
    /// Claim severity range, in cents.
    pub severity: (i64, i64),
    /// The coverages a policy lists, for the feeds with a list of coverages per policy
    /// (empty: one coverage per policy, from `limits` and `deductibles`).
    pub coverages: &'static [CoverageSpec],
}

/// How a carrier numbers its policies and claims.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NumberStyle {
    /// `NW-AUTO-0000123`, claims `CLM2025-000045`.
    Northwind,
    /// `RV/2025/000123`, claims `S-2025-0000045`.
    Rheinland,
    /// `TS123456`, claims `TSC/000045`.
    Thames,
    /// `HSP/PI/000123`, claims `HSC-000045`.
    Harbour,
    /// `MRD-AUTO-0000123`, claims `MRC-2025-000045`.
    Meridian,
    /// `ALP-00000123`, claims `SCH-2025-000045`.
    Alpine,
    /// `KS00000123` (10 characters), claims `KC2025000045` (12).
    Keystone,
}

/// Everything that makes one carrier's feed look like that carrier's.
#[derive(Debug)]
pub(crate) struct CarrierSpec {
    pub market: Market,
    /// The physical conventions of the carrier's text feeds (delimited, fixed-width, XML):
    /// encoding, line ends, dates and amounts.
    pub text: TextStyle,
    /// The delimiter a misconfigured export falls back to (for the wrong-delimiter defect).
    pub wrong_delimiter: u8,
    /// Currencies with relative weights; more than one means a currency column.
    pub currencies: &'static [(&'static str, u32)],
    /// Column names of the delimited and spreadsheet feeds.
    pub policy_header: &'static [&'static str],
    pub claim_header: &'static [&'static str],
    pub lines: &'static [LineSpec],
    pub status_active: &'static str,
    pub status_cancelled: &'static str,
    /// A term that ended without renewal: expired, or lapsed in the UK market.
    pub status_ended: &'static str,
    pub person: &'static str,
    pub organisation: &'static str,
    pub producers: &'static [&'static str],
    /// A line code the mapping's code table does not know (for the unknown-code defect).
    pub unknown_line_code: &'static str,
    /// Values a date field should never hold (for the invalid-date defect).
    pub invalid_dates: &'static [&'static str],
    /// UK terms run "twelve months less a day": 01/03/2025 to 28/02/2026.
    pub term_less_a_day: bool,
    /// Claim status codes for open, closed, reopened and denied.
    pub claim_status: [&'static str; 4],
    /// A claim status the claim mapping's code table does not know.
    pub unknown_claim_status: &'static str,
    /// Causes of loss by [`Peril`].
    pub causes: [&'static [&'static str]; 4],
    pub numbers: NumberStyle,
    /// The code of the one coverage of a single-coverage feed, as the mapping names it.
    pub coverage_code: &'static str,
    /// The defect kinds each feed can carry.
    pub policy_defects: &'static [DefectKind],
    pub claim_defects: &'static [DefectKind],
    /// The canonical field a missing-value defect leaves out, per feed.
    pub policy_missing_field: &'static str,
    pub claim_missing_field: &'static str,
}

impl CarrierSpec {
    pub(crate) fn multi_currency(&self) -> bool {
        self.currencies.len() > 1
    }
}

/// What the three delimited-text carriers' feeds can get wrong.
const CSV_POLICY_DEFECTS: &[DefectKind] = &[
    DefectKind::WrongDelimiter,
    DefectKind::InvalidDate,
    DefectKind::NegativePremium,
    DefectKind::UnknownCode,
    DefectKind::Truncated,
];
const CSV_CLAIM_DEFECTS: &[DefectKind] = &[DefectKind::InvalidDate, DefectKind::UnknownCode];

const fn usd(units: i64) -> i64 {
    units * 100
}

static NORTHWIND: CarrierSpec = CarrierSpec {
    market: Market::Us,
    text: TextStyle {
        delimiter: b',',
        encoding: TextEncoding::Utf8,
        crlf: true,
        date: DateStyle::MonthDayYear(b'/'),
        amount: AmountStyle {
            decimal: b'.',
            thousands: Some(b','),
            negative_parens: true,
        },
    },
    wrong_delimiter: b';',
    currencies: &[("USD", 1)],
    policy_header: &[
        "PolicyNo",
        "LOB",
        "Status",
        "EffDate",
        "ExpDate",
        "GrossPremium",
        "InsuredName",
        "InsuredType",
        "Zip",
        "AgentCode",
        "CovLimit",
        "CovDeductible",
    ],
    claim_header: &[
        "ClaimNo",
        "PolicyNo",
        "LossDate",
        "ReportedDate",
        "ClaimStatus",
        "CauseOfLoss",
        "PaidToDate",
        "OutstandingReserve",
    ],
    lines: &[
        LineSpec {
            code: "PPA",
            canonical: LineOfBusiness::PersonalAuto,
            weight: 40,
            premium: (usd(650), usd(3_200)),
            limits: &[100_000, 250_000, 300_000, 500_000],
            deductibles: &[250, 500, 500, 1_000],
            organisations: 0,
            number_tag: "AUTO",
            peril: Peril::Motor,
            severity: (usd(400), usd(28_000)),
            coverages: &[],
        },
        LineSpec {
            code: "HO3",
            canonical: LineOfBusiness::Homeowners,
            weight: 28,
            premium: (usd(700), usd(4_200)),
            limits: &[
                200_000, 250_000, 300_000, 350_000, 400_000, 500_000, 650_000, 800_000,
            ],
            deductibles: &[500, 1_000, 1_000, 2_500, 5_000],
            organisations: 0,
            number_tag: "HOME",
            peril: Peril::Property,
            severity: (usd(1_000), usd(85_000)),
            coverages: &[],
        },
        LineSpec {
            code: "CA",
            canonical: LineOfBusiness::CommercialAuto,
            weight: 8,
            premium: (usd(2_500), usd(48_000)),
            limits: &[1_000_000, 1_000_000, 2_000_000],
            deductibles: &[500, 1_000, 2_500],
            organisations: 1000,
            number_tag: "CAUT",
            peril: Peril::Motor,
            severity: (usd(1_500), usd(120_000)),
            coverages: &[],
        },
        LineSpec {
            code: "GL",
            canonical: LineOfBusiness::GeneralLiability,
            weight: 12,
            premium: (usd(600), usd(24_000)),
            limits: &[1_000_000, 1_000_000, 2_000_000],
            deductibles: &[0, 1_000, 2_500, 5_000],
            organisations: 1000,
            number_tag: "GLIA",
            peril: Peril::Liability,
            severity: (usd(2_000), usd(250_000)),
            coverages: &[],
        },
        LineSpec {
            code: "BOP",
            canonical: LineOfBusiness::BusinessOwners,
            weight: 7,
            premium: (usd(900), usd(12_000)),
            limits: &[500_000, 1_000_000, 2_000_000],
            deductibles: &[500, 1_000, 2_500],
            organisations: 1000,
            number_tag: "BOP",
            peril: Peril::Property,
            severity: (usd(1_000), usd(150_000)),
            coverages: &[],
        },
        LineSpec {
            code: "UMB",
            canonical: LineOfBusiness::Umbrella,
            weight: 5,
            premium: (usd(180), usd(1_200)),
            limits: &[1_000_000, 2_000_000, 5_000_000],
            deductibles: &[0, 250, 500],
            organisations: 50,
            number_tag: "UMB",
            peril: Peril::Liability,
            severity: (usd(5_000), usd(400_000)),
            coverages: &[],
        },
    ],
    status_active: "INF",
    status_cancelled: "CXL",
    status_ended: "EXP",
    person: "IND",
    organisation: "BUS",
    producers: &[
        "AG-1042", "AG-1107", "AG-2210", "AG-3051", "AG-3388", "AG-4120", "AG-5002", "DIRECT",
    ],
    unknown_line_code: "WCP",
    invalid_dates: &["02/30/2025", "TBD"],
    term_less_a_day: false,
    claim_status: ["OPEN", "CLOSED", "REOPEN", "DENIED"],
    causes: [
        &[
            "COLLISION",
            "COMPREHENSIVE",
            "THEFT",
            "HAIL",
            "GLASS",
            "BODILY INJURY",
        ],
        &["FIRE", "WATER DAMAGE", "WIND", "HAIL", "THEFT", "FREEZE"],
        &[
            "SLIP AND FALL",
            "PRODUCT LIABILITY",
            "PROPERTY DAMAGE",
            "BODILY INJURY",
        ],
        &["DATA BREACH", "RANSOMWARE"],
    ],
    numbers: NumberStyle::Northwind,
    unknown_claim_status: "SUBRO",
    coverage_code: "PRIMARY",
    policy_defects: CSV_POLICY_DEFECTS,
    claim_defects: CSV_CLAIM_DEFECTS,
    policy_missing_field: "number",
    claim_missing_field: "number",
};

const fn eur(units: i64) -> i64 {
    units * 100
}

static RHEINLAND: CarrierSpec = CarrierSpec {
    market: Market::De,
    text: TextStyle {
        delimiter: b';',
        encoding: TextEncoding::Latin1,
        crlf: false,
        date: DateStyle::DayMonthYear(b'.'),
        amount: AmountStyle {
            decimal: b',',
            thousands: Some(b'.'),
            negative_parens: false,
        },
    },
    wrong_delimiter: b',',
    currencies: &[("EUR", 1)],
    policy_header: &[
        "Policennummer",
        "Sparte",
        "Status",
        "Beginn",
        "Ablauf",
        "Jahresbeitrag",
        "VN_Name",
        "VN_Art",
        "PLZ",
        "Vermittler",
        "Deckungssumme",
        "Selbstbehalt",
    ],
    claim_header: &[
        "Schadennummer",
        "Policennummer",
        "Schadentag",
        "Meldedatum",
        "Status",
        "Ursache",
        "Zahlungen",
        "Reserve",
    ],
    lines: &[
        LineSpec {
            code: "KFZ",
            canonical: LineOfBusiness::PersonalAuto,
            weight: 38,
            premium: (eur(280), eur(1_900)),
            // German motor liability is sold with a flat 100 million cover.
            limits: &[100_000_000],
            deductibles: &[0, 150, 300, 500, 1_000],
            organisations: 50,
            number_tag: "",
            peril: Peril::Motor,
            severity: (eur(300), eur(24_000)),
            coverages: &[],
        },
        LineSpec {
            code: "WG",
            canonical: LineOfBusiness::Homeowners,
            weight: 18,
            premium: (eur(250), eur(2_400)),
            limits: &[250_000, 400_000, 600_000, 800_000, 1_000_000, 1_500_000],
            deductibles: &[0, 250, 500, 1_000],
            organisations: 50,
            number_tag: "",
            peril: Peril::Property,
            severity: (eur(800), eur(90_000)),
            coverages: &[],
        },
        LineSpec {
            code: "HR",
            canonical: LineOfBusiness::Homeowners,
            weight: 14,
            premium: (eur(60), eur(480)),
            limits: &[40_000, 65_000, 80_000, 100_000, 150_000],
            deductibles: &[0, 150, 250],
            organisations: 0,
            number_tag: "",
            peril: Peril::Property,
            severity: (eur(200), eur(25_000)),
            coverages: &[],
        },
        LineSpec {
            code: "HAFT",
            canonical: LineOfBusiness::GeneralLiability,
            weight: 18,
            premium: (eur(45), eur(260)),
            limits: &[5_000_000, 10_000_000, 20_000_000, 50_000_000],
            deductibles: &[0, 150, 250],
            organisations: 0,
            number_tag: "",
            peril: Peril::Liability,
            severity: (eur(150), eur(60_000)),
            coverages: &[],
        },
        LineSpec {
            code: "GEW",
            canonical: LineOfBusiness::CommercialProperty,
            weight: 8,
            premium: (eur(1_200), eur(38_000)),
            limits: &[500_000, 1_000_000, 2_500_000, 5_000_000],
            deductibles: &[1_000, 2_500, 5_000],
            organisations: 1000,
            number_tag: "",
            peril: Peril::Property,
            severity: (eur(2_000), eur(300_000)),
            coverages: &[],
        },
        LineSpec {
            code: "FLOTTE",
            canonical: LineOfBusiness::CommercialAuto,
            weight: 4,
            premium: (eur(4_000), eur(60_000)),
            limits: &[100_000_000],
            deductibles: &[500, 1_000],
            organisations: 1000,
            number_tag: "",
            peril: Peril::Motor,
            severity: (eur(500), eur(80_000)),
            coverages: &[],
        },
    ],
    status_active: "AKTIV",
    status_cancelled: "STORNO",
    status_ended: "ABGELAUFEN",
    person: "NP",
    organisation: "JP",
    producers: &[
        "VM-100417",
        "VM-100522",
        "VM-203318",
        "VM-207761",
        "VM-310045",
        "DIREKT",
    ],
    unknown_line_code: "LEBEN",
    invalid_dates: &["31.02.2025", "00.00.0000"],
    term_less_a_day: false,
    claim_status: ["OFFEN", "GESCHLOSSEN", "WIEDERERÖFFNET", "ABGELEHNT"],
    causes: [
        &[
            "Kollision",
            "Wildunfall",
            "Diebstahl",
            "Glasbruch",
            "Hagel",
            "Parkschaden",
        ],
        &[
            "Leitungswasser",
            "Sturm",
            "Brand",
            "Einbruchdiebstahl",
            "Überschwemmung",
            "Hagel",
        ],
        &[
            "Personenschaden",
            "Sachschaden",
            "Vermögensschaden",
            "Schlüsselverlust",
        ],
        &["Datenverlust", "Betriebsunterbrechung"],
    ],
    numbers: NumberStyle::Rheinland,
    unknown_claim_status: "REGRESS",
    coverage_code: "GRUNDDECKUNG",
    policy_defects: CSV_POLICY_DEFECTS,
    claim_defects: CSV_CLAIM_DEFECTS,
    policy_missing_field: "number",
    claim_missing_field: "number",
};

const fn gbp(units: i64) -> i64 {
    units * 100
}

static THAMES: CarrierSpec = CarrierSpec {
    market: Market::Uk,
    text: TextStyle {
        delimiter: b'|',
        encoding: TextEncoding::Utf8,
        crlf: false,
        date: DateStyle::DayMonthYear(b'/'),
        amount: AmountStyle {
            decimal: b'.',
            thousands: None,
            negative_parens: false,
        },
    },
    wrong_delimiter: b',',
    currencies: &[("GBP", 85), ("EUR", 10), ("USD", 5)],
    policy_header: &[
        "Policy Ref",
        "Class",
        "Policy Status",
        "Inception",
        "Expiry",
        "Premium",
        "Ccy",
        "Insured",
        "Insured Type",
        "Postcode",
        "Broker",
        "Sum Insured",
        "Excess",
    ],
    claim_header: &[
        "Claim Ref",
        "Policy Ref",
        "Date of Loss",
        "Date Notified",
        "Claim Status",
        "Peril",
        "Paid",
        "Outstanding",
        "Ccy",
    ],
    lines: &[
        LineSpec {
            code: "MOTOR",
            canonical: LineOfBusiness::PersonalAuto,
            weight: 30,
            premium: (gbp(350), gbp(2_400)),
            limits: &[5_000, 8_000, 12_000, 18_000, 25_000, 40_000],
            deductibles: &[100, 250, 350, 500],
            organisations: 0,
            number_tag: "",
            peril: Peril::Motor,
            severity: (gbp(300), gbp(22_000)),
            coverages: &[],
        },
        LineSpec {
            code: "HH",
            canonical: LineOfBusiness::Homeowners,
            weight: 25,
            premium: (gbp(180), gbp(1_800)),
            limits: &[150_000, 250_000, 350_000, 500_000, 750_000, 1_000_000],
            deductibles: &[100, 250, 500, 1_000],
            organisations: 0,
            number_tag: "",
            peril: Peril::Property,
            severity: (gbp(500), gbp(70_000)),
            coverages: &[],
        },
        LineSpec {
            code: "PI",
            canonical: LineOfBusiness::ProfessionalLiability,
            weight: 15,
            premium: (gbp(1_200), gbp(28_000)),
            limits: &[250_000, 500_000, 1_000_000, 2_000_000, 5_000_000],
            deductibles: &[1_000, 2_500, 5_000, 10_000],
            organisations: 900,
            number_tag: "",
            peril: Peril::Liability,
            severity: (gbp(5_000), gbp(350_000)),
            coverages: &[],
        },
        LineSpec {
            code: "CYB",
            canonical: LineOfBusiness::Cyber,
            weight: 10,
            premium: (gbp(900), gbp(45_000)),
            limits: &[250_000, 500_000, 1_000_000, 2_000_000, 5_000_000],
            deductibles: &[1_000, 2_500, 5_000, 10_000, 25_000],
            organisations: 1000,
            number_tag: "",
            peril: Peril::Cyber,
            severity: (gbp(5_000), gbp(500_000)),
            coverages: &[],
        },
        LineSpec {
            code: "PL",
            canonical: LineOfBusiness::GeneralLiability,
            weight: 12,
            premium: (gbp(300), gbp(9_000)),
            limits: &[1_000_000, 2_000_000, 5_000_000, 10_000_000],
            deductibles: &[0, 250, 500, 1_000],
            organisations: 850,
            number_tag: "",
            peril: Peril::Liability,
            severity: (gbp(1_000), gbp(150_000)),
            coverages: &[],
        },
        LineSpec {
            code: "FLEET",
            canonical: LineOfBusiness::CommercialAuto,
            weight: 4,
            premium: (gbp(3_000), gbp(55_000)),
            limits: &[250_000, 500_000, 1_000_000],
            deductibles: &[250, 500, 1_000],
            organisations: 1000,
            number_tag: "",
            peril: Peril::Motor,
            severity: (gbp(500), gbp(90_000)),
            coverages: &[],
        },
        LineSpec {
            code: "COMM",
            canonical: LineOfBusiness::CommercialProperty,
            weight: 4,
            premium: (gbp(1_500), gbp(60_000)),
            limits: &[500_000, 1_000_000, 2_500_000, 5_000_000],
            deductibles: &[1_000, 2_500, 5_000],
            organisations: 1000,
            number_tag: "",
            peril: Peril::Property,
            severity: (gbp(2_000), gbp(400_000)),
            coverages: &[],
        },
    ],
    status_active: "L",
    status_cancelled: "C",
    status_ended: "LAPSED",
    person: "Individual",
    organisation: "Company",
    producers: &[
        "HOWDEN-LDN",
        "AON-UK",
        "MARSH-BRS",
        "WTW-MAN",
        "GALLAGHER",
        "TOWERGATE",
        "DIRECT",
    ],
    unknown_line_code: "MARINE",
    invalid_dates: &["31/02/2025", "N/A"],
    term_less_a_day: true,
    claim_status: ["Open", "Closed", "Re-opened", "Declined"],
    causes: [
        &[
            "Accident",
            "Theft",
            "Windscreen",
            "Fire",
            "Third party injury",
        ],
        &[
            "Escape of water",
            "Storm",
            "Fire",
            "Theft",
            "Subsidence",
            "Flood",
        ],
        &[
            "Negligence",
            "Breach of duty",
            "Third party injury",
            "Property damage",
        ],
        &[
            "Data breach",
            "Ransomware",
            "Business interruption",
            "Social engineering",
        ],
    ],
    numbers: NumberStyle::Thames,
    unknown_claim_status: "Pending",
    coverage_code: "MAIN",
    policy_defects: CSV_POLICY_DEFECTS,
    claim_defects: CSV_CLAIM_DEFECTS,
    policy_missing_field: "number",
    claim_missing_field: "number",
};

/// Harbour Specialty: a London-market MGA. Its monthly premium bordereau is a workbook
/// (see `xlsx.rs`); its claims come as Excel's "Unicode Text" export of the claims sheet:
/// UTF-16LE with a byte-order mark, tab-delimited, CRLF, amounts as displayed (`£1,234.50`).
static HARBOUR: CarrierSpec = CarrierSpec {
    market: Market::Uk,
    text: TextStyle {
        delimiter: b'\t',
        encoding: TextEncoding::Utf16Le,
        crlf: true,
        date: DateStyle::DayMonthYear(b'/'),
        amount: AmountStyle {
            decimal: b'.',
            thousands: Some(b','),
            negative_parens: false,
        },
    },
    wrong_delimiter: b',',
    currencies: &[("GBP", 70), ("USD", 22), ("EUR", 8)],
    policy_header: &[
        "Policy Ref",
        "Insured",
        "Insured Type",
        "Postcode",
        "Class",
        "Status",
        "Inception Date",
        "Expiry Date",
        "Currency",
        "Gross Premium",
        "Limit (000s)",
        "Excess",
        "Broker",
    ],
    claim_header: &[
        "Claim Ref",
        "Policy Ref",
        "Date of Loss",
        "Date Notified",
        "Claim Status",
        "Cause",
        "Paid",
        "Outstanding",
        "Currency",
    ],
    lines: &[
        LineSpec {
            code: "PI - Professional Indemnity",
            canonical: LineOfBusiness::ProfessionalLiability,
            weight: 30,
            premium: (gbp(1_500), gbp(45_000)),
            limits: &[1_000_000, 2_000_000, 5_000_000, 10_000_000],
            deductibles: &[2_500, 5_000, 10_000, 25_000],
            organisations: 950,
            number_tag: "PI",
            peril: Peril::Liability,
            severity: (gbp(5_000), gbp(400_000)),
            coverages: &[],
        },
        LineSpec {
            code: "D&O - Directors & Officers",
            canonical: LineOfBusiness::ProfessionalLiability,
            weight: 12,
            premium: (gbp(2_000), gbp(60_000)),
            limits: &[1_000_000, 2_500_000, 5_000_000, 10_000_000],
            deductibles: &[0, 10_000, 25_000],
            organisations: 1000,
            number_tag: "DO",
            peril: Peril::Liability,
            severity: (gbp(10_000), gbp(750_000)),
            coverages: &[],
        },
        LineSpec {
            code: "CYB - Cyber",
            canonical: LineOfBusiness::Cyber,
            weight: 20,
            premium: (gbp(1_000), gbp(50_000)),
            limits: &[500_000, 1_000_000, 2_000_000, 5_000_000],
            deductibles: &[2_500, 5_000, 10_000, 25_000],
            organisations: 1000,
            number_tag: "CY",
            peril: Peril::Cyber,
            severity: (gbp(5_000), gbp(600_000)),
            coverages: &[],
        },
        LineSpec {
            code: "PROP - Commercial Property",
            canonical: LineOfBusiness::CommercialProperty,
            weight: 18,
            premium: (gbp(2_500), gbp(80_000)),
            limits: &[1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000],
            deductibles: &[5_000, 10_000, 25_000],
            organisations: 1000,
            number_tag: "PR",
            peril: Peril::Property,
            severity: (gbp(2_500), gbp(500_000)),
            coverages: &[],
        },
        LineSpec {
            code: "CARGO - Marine Cargo",
            canonical: LineOfBusiness::InlandMarine,
            weight: 8,
            premium: (gbp(1_500), gbp(35_000)),
            limits: &[250_000, 500_000, 1_000_000, 2_000_000],
            deductibles: &[1_000, 2_500, 5_000],
            organisations: 1000,
            number_tag: "MC",
            peril: Peril::Property,
            severity: (gbp(1_000), gbp(200_000)),
            coverages: &[],
        },
        LineSpec {
            code: "CAS - Casualty",
            canonical: LineOfBusiness::GeneralLiability,
            weight: 12,
            premium: (gbp(800), gbp(30_000)),
            limits: &[1_000_000, 2_000_000, 5_000_000, 10_000_000],
            deductibles: &[0, 1_000, 2_500],
            organisations: 850,
            number_tag: "CA",
            peril: Peril::Liability,
            severity: (gbp(1_000), gbp(250_000)),
            coverages: &[],
        },
    ],
    status_active: "Live",
    status_cancelled: "Cancelled",
    status_ended: "Expired",
    person: "Individual",
    organisation: "Company",
    producers: &[
        "Howden",
        "Aon",
        "Marsh",
        "WTW",
        "Gallagher",
        "Lockton",
        "BMS",
        "Miller",
    ],
    unknown_line_code: "AVN - Aviation",
    invalid_dates: &["TBC", "TBA"],
    term_less_a_day: true,
    claim_status: ["Open", "Settled", "Reopened", "Repudiated"],
    unknown_claim_status: "Pending",
    causes: [
        &["Accident", "Theft"],
        &["Fire", "Escape of water", "Storm", "Theft", "Flood"],
        &[
            "Negligence",
            "Breach of duty",
            "Wrongful act",
            "Third party injury",
        ],
        &[
            "Ransomware",
            "Data breach",
            "Business interruption",
            "Social engineering",
        ],
    ],
    numbers: NumberStyle::Harbour,
    coverage_code: "PRIMARY",
    policy_defects: &[
        DefectKind::InvalidDate,
        DefectKind::NegativePremium,
        DefectKind::UnknownCode,
        DefectKind::MissingRequired,
    ],
    claim_defects: &[DefectKind::InvalidDate, DefectKind::UnknownCode],
    policy_missing_field: "number",
    claim_missing_field: "number",
};

/// Meridian Direct: a US insurtech whose policy admin system exports its book through its API
/// as NDJSON (see `ndjson.rs`), several coverages per policy, amounts as JSON numbers; its
/// claims system exports one pretty-printed JSON document with the claims under
/// `/data/claims` (see `json.rs`).
static MERIDIAN: CarrierSpec = CarrierSpec {
    market: Market::Us,
    text: TextStyle {
        delimiter: b',',
        encoding: TextEncoding::Utf8,
        crlf: false,
        date: DateStyle::Iso,
        amount: AmountStyle {
            decimal: b'.',
            thousands: None,
            negative_parens: false,
        },
    },
    wrong_delimiter: b';',
    currencies: &[("USD", 92), ("CAD", 8)],
    policy_header: &[],
    claim_header: &[],
    lines: &[
        LineSpec {
            code: "auto_v3",
            canonical: LineOfBusiness::PersonalAuto,
            weight: 45,
            premium: (usd(480), usd(2_900)),
            limits: &[50_000, 100_000, 250_000, 500_000],
            deductibles: &[0],
            organisations: 0,
            number_tag: "AUTO",
            peril: Peril::Motor,
            severity: (usd(400), usd(30_000)),
            coverages: &[
                CoverageSpec {
                    code: "bodily_injury",
                    canonical: "BI",
                    share: 40,
                    limits: &[50_000, 100_000, 250_000, 500_000],
                    deductibles: &[0],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "property_damage",
                    canonical: "PD",
                    share: 20,
                    limits: &[25_000, 50_000, 100_000],
                    deductibles: &[0],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "collision",
                    canonical: "COLL",
                    share: 25,
                    limits: &[25_000, 40_000, 60_000],
                    deductibles: &[500, 1_000],
                    take_up: 700,
                },
                CoverageSpec {
                    code: "comprehensive",
                    canonical: "COMP",
                    share: 12,
                    limits: &[25_000, 40_000, 60_000],
                    deductibles: &[250, 500],
                    take_up: 750,
                },
                // Not in the mapping's coverage table: kept as written (`fallback = "keep"`).
                CoverageSpec {
                    code: "roadside",
                    canonical: "roadside",
                    share: 3,
                    limits: &[100, 150],
                    deductibles: &[0],
                    take_up: 300,
                },
            ],
        },
        LineSpec {
            code: "renters_v2",
            canonical: LineOfBusiness::Homeowners,
            weight: 25,
            premium: (usd(110), usd(480)),
            limits: &[15_000, 25_000, 40_000, 60_000],
            deductibles: &[250, 500, 1_000],
            organisations: 0,
            number_tag: "RENT",
            peril: Peril::Property,
            severity: (usd(300), usd(20_000)),
            coverages: &[
                CoverageSpec {
                    code: "personal_property",
                    canonical: "CONTENTS",
                    share: 60,
                    limits: &[15_000, 25_000, 40_000, 60_000],
                    deductibles: &[250, 500, 1_000],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "liability",
                    canonical: "LIAB",
                    share: 30,
                    limits: &[100_000, 300_000],
                    deductibles: &[0],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "loss_of_use",
                    canonical: "ALE",
                    share: 10,
                    limits: &[3_000, 6_000, 9_000],
                    deductibles: &[0],
                    take_up: 1000,
                },
            ],
        },
        LineSpec {
            code: "home_v1",
            canonical: LineOfBusiness::Homeowners,
            weight: 15,
            premium: (usd(900), usd(4_800)),
            limits: &[250_000, 400_000, 600_000, 800_000],
            deductibles: &[1_000, 2_500],
            organisations: 0,
            number_tag: "HOME",
            peril: Peril::Property,
            severity: (usd(1_000), usd(120_000)),
            coverages: &[
                CoverageSpec {
                    code: "dwelling",
                    canonical: "DWELLING",
                    share: 60,
                    limits: &[250_000, 400_000, 600_000, 800_000],
                    deductibles: &[1_000, 2_500],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "other_structures",
                    canonical: "OTHER_STRUCT",
                    share: 8,
                    limits: &[25_000, 50_000, 80_000],
                    deductibles: &[1_000],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "personal_property",
                    canonical: "CONTENTS",
                    share: 20,
                    limits: &[100_000, 200_000, 300_000],
                    deductibles: &[1_000],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "liability",
                    canonical: "LIAB",
                    share: 12,
                    limits: &[300_000, 500_000],
                    deductibles: &[0],
                    take_up: 1000,
                },
            ],
        },
        LineSpec {
            code: "bop_v2",
            canonical: LineOfBusiness::BusinessOwners,
            weight: 10,
            premium: (usd(900), usd(9_000)),
            limits: &[250_000, 500_000, 1_000_000],
            deductibles: &[1_000, 2_500],
            organisations: 1000,
            number_tag: "BOP",
            peril: Peril::Property,
            severity: (usd(1_000), usd(150_000)),
            coverages: &[
                CoverageSpec {
                    code: "property",
                    canonical: "PROPERTY",
                    share: 65,
                    limits: &[250_000, 500_000, 1_000_000],
                    deductibles: &[1_000, 2_500],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "liability",
                    canonical: "LIAB",
                    share: 35,
                    limits: &[1_000_000, 2_000_000],
                    deductibles: &[0],
                    take_up: 1000,
                },
            ],
        },
        LineSpec {
            code: "cyber_v1",
            canonical: LineOfBusiness::Cyber,
            weight: 5,
            premium: (usd(600), usd(12_000)),
            limits: &[250_000, 500_000, 1_000_000],
            deductibles: &[2_500, 5_000],
            organisations: 1000,
            number_tag: "CYB",
            peril: Peril::Cyber,
            severity: (usd(2_000), usd(250_000)),
            coverages: &[
                CoverageSpec {
                    code: "first_party",
                    canonical: "CYBER_1P",
                    share: 55,
                    limits: &[250_000, 500_000, 1_000_000],
                    deductibles: &[2_500, 5_000],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "third_party",
                    canonical: "CYBER_3P",
                    share: 45,
                    limits: &[250_000, 500_000, 1_000_000],
                    deductibles: &[2_500, 5_000],
                    take_up: 1000,
                },
            ],
        },
    ],
    status_active: "active",
    status_cancelled: "canceled",
    status_ended: "expired",
    person: "individual",
    organisation: "business",
    // Every code distinct: a policy moved to another producer must change its record.
    producers: &[
        "direct",
        "app",
        "partner:autoquote",
        "partner:rentshield",
        "agent:1042",
        "agent:2210",
    ],
    unknown_line_code: "pet_v1",
    invalid_dates: &["2025-02-30"],
    term_less_a_day: false,
    claim_status: ["open", "closed", "reopened", "closed_without_payment"],
    unknown_claim_status: "in_review",
    causes: [
        &["collision", "comprehensive", "theft", "glass", "hail"],
        &["water", "fire", "theft", "wind", "hail"],
        &["bodily_injury", "property_damage", "slip_and_fall"],
        &["ransomware", "data_breach", "funds_transfer_fraud"],
    ],
    numbers: NumberStyle::Meridian,
    coverage_code: "",
    policy_defects: &[
        DefectKind::MalformedRecord,
        DefectKind::MissingRequired,
        DefectKind::NotANumber,
        DefectKind::UnknownCode,
    ],
    // A claim document is never cut short (the whole document would be unreadable, not one
    // record), and an element cut mid-object would swallow the elements after it; but one
    // element can carry a bare `NaN`, which the reader rejects on its own and reads past.
    claim_defects: &[
        DefectKind::MalformedRecord,
        DefectKind::MissingRequired,
        DefectKind::NotANumber,
        DefectKind::UnknownCode,
    ],
    policy_missing_field: "effective_date",
    claim_missing_field: "status",
};

const fn chf(units: i64) -> i64 {
    units * 100
}

/// Alpina Assekuranz: a Swiss insurer whose core system exports policies and claims as XML
/// (see `xml.rs`): attributes and elements, ISO dates, Swiss amounts (`1'234.50`).
static ALPINE: CarrierSpec = CarrierSpec {
    market: Market::Ch,
    text: TextStyle {
        delimiter: b';',
        encoding: TextEncoding::Utf8,
        crlf: false,
        date: DateStyle::Iso,
        amount: AmountStyle {
            decimal: b'.',
            thousands: Some(b'\''),
            negative_parens: false,
        },
    },
    wrong_delimiter: b',',
    currencies: &[("CHF", 88), ("EUR", 12)],
    policy_header: &[],
    claim_header: &[],
    lines: &[
        LineSpec {
            code: "MF",
            canonical: LineOfBusiness::PersonalAuto,
            weight: 35,
            premium: (chf(450), chf(2_800)),
            limits: &[100_000_000],
            deductibles: &[0],
            organisations: 50,
            number_tag: "",
            peril: Peril::Motor,
            severity: (chf(400), chf(30_000)),
            coverages: &[
                CoverageSpec {
                    code: "HAFTPFLICHT",
                    canonical: "HAFTPFLICHT",
                    share: 55,
                    limits: &[100_000_000],
                    deductibles: &[0],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "TEILKASKO",
                    canonical: "TEILKASKO",
                    share: 25,
                    limits: &[20_000, 35_000, 50_000, 80_000],
                    deductibles: &[200, 500],
                    take_up: 800,
                },
                CoverageSpec {
                    code: "VOLLKASKO",
                    canonical: "VOLLKASKO",
                    share: 20,
                    limits: &[20_000, 35_000, 50_000, 80_000],
                    deductibles: &[500, 1_000, 2_000],
                    take_up: 500,
                },
            ],
        },
        LineSpec {
            code: "HR",
            canonical: LineOfBusiness::Homeowners,
            weight: 25,
            premium: (chf(150), chf(900)),
            limits: &[50_000, 80_000, 120_000, 200_000],
            deductibles: &[200, 500],
            organisations: 0,
            number_tag: "",
            peril: Peril::Property,
            severity: (chf(200), chf(40_000)),
            coverages: &[
                CoverageSpec {
                    code: "FEUER_ELEMENTAR",
                    canonical: "FEUER_ELEMENTAR",
                    share: 40,
                    limits: &[50_000, 80_000, 120_000, 200_000],
                    deductibles: &[200, 500],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "DIEBSTAHL",
                    canonical: "DIEBSTAHL",
                    share: 35,
                    limits: &[50_000, 80_000, 120_000, 200_000],
                    deductibles: &[200, 500],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "WASSER",
                    canonical: "WASSER",
                    share: 25,
                    limits: &[50_000, 80_000, 120_000, 200_000],
                    deductibles: &[200, 500],
                    take_up: 900,
                },
            ],
        },
        LineSpec {
            code: "PH",
            canonical: LineOfBusiness::GeneralLiability,
            weight: 18,
            premium: (chf(90), chf(350)),
            limits: &[5_000_000, 10_000_000],
            deductibles: &[0, 200],
            organisations: 0,
            number_tag: "",
            peril: Peril::Liability,
            severity: (chf(200), chf(50_000)),
            coverages: &[CoverageSpec {
                code: "PRIVATHAFTPFLICHT",
                canonical: "PRIVATHAFTPFLICHT",
                share: 1,
                limits: &[5_000_000, 10_000_000],
                deductibles: &[0, 200],
                take_up: 1000,
            }],
        },
        LineSpec {
            code: "BH",
            canonical: LineOfBusiness::GeneralLiability,
            weight: 8,
            premium: (chf(800), chf(18_000)),
            limits: &[5_000_000, 10_000_000, 20_000_000],
            deductibles: &[1_000, 5_000],
            organisations: 1000,
            number_tag: "",
            peril: Peril::Liability,
            severity: (chf(1_000), chf(250_000)),
            coverages: &[
                CoverageSpec {
                    code: "BETRIEBSHAFTPFLICHT",
                    canonical: "BETRIEBSHAFTPFLICHT",
                    share: 85,
                    limits: &[5_000_000, 10_000_000, 20_000_000],
                    deductibles: &[1_000, 5_000],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "PRODUKTEHAFTPFLICHT",
                    canonical: "PRODUKTEHAFTPFLICHT",
                    share: 15,
                    limits: &[5_000_000, 10_000_000],
                    deductibles: &[5_000],
                    take_up: 600,
                },
            ],
        },
        LineSpec {
            code: "GS",
            canonical: LineOfBusiness::CommercialProperty,
            weight: 10,
            premium: (chf(1_500), chf(45_000)),
            limits: &[1_000_000, 2_500_000, 5_000_000, 10_000_000],
            deductibles: &[1_000, 5_000],
            organisations: 1000,
            number_tag: "",
            peril: Peril::Property,
            severity: (chf(2_000), chf(400_000)),
            coverages: &[
                CoverageSpec {
                    code: "FEUER",
                    canonical: "FEUER",
                    share: 50,
                    limits: &[1_000_000, 2_500_000, 5_000_000, 10_000_000],
                    deductibles: &[1_000, 5_000],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "ELEMENTAR",
                    canonical: "ELEMENTAR",
                    share: 30,
                    limits: &[1_000_000, 2_500_000, 5_000_000, 10_000_000],
                    deductibles: &[1_000, 5_000],
                    take_up: 1000,
                },
                CoverageSpec {
                    code: "BETRIEBSUNTERBRUCH",
                    canonical: "BETRIEBSUNTERBRUCH",
                    share: 20,
                    limits: &[500_000, 1_000_000, 2_000_000],
                    deductibles: &[0],
                    take_up: 700,
                },
            ],
        },
        LineSpec {
            code: "TR",
            canonical: LineOfBusiness::InlandMarine,
            weight: 4,
            premium: (chf(800), chf(12_000)),
            limits: &[250_000, 500_000, 1_000_000],
            deductibles: &[1_000, 2_500],
            organisations: 1000,
            number_tag: "",
            peril: Peril::Property,
            severity: (chf(500), chf(120_000)),
            coverages: &[CoverageSpec {
                code: "TRANSPORT",
                canonical: "TRANSPORT",
                share: 1,
                limits: &[250_000, 500_000, 1_000_000],
                deductibles: &[1_000, 2_500],
                take_up: 1000,
            }],
        },
    ],
    status_active: "10",
    status_cancelled: "30",
    status_ended: "40",
    person: "NP",
    organisation: "JP",
    producers: &[
        "AG-1101", "AG-1187", "AG-2211", "AG-3054", "AG-4410", "DIREKT",
    ],
    unknown_line_code: "LV",
    invalid_dates: &["2025-02-30", "2025-13-01"],
    term_less_a_day: true,
    claim_status: ["OFFEN", "ERLEDIGT", "WIEDEREROEFFNET", "ABGELEHNT"],
    unknown_claim_status: "SISTIERT",
    causes: [
        &[
            "Kollision",
            "Parkschaden",
            "Glasbruch",
            "Hagel",
            "Marderschaden",
        ],
        &["Feuer", "Wasser", "Einbruchdiebstahl", "Sturm", "Hagel"],
        &["Personenschaden", "Sachschaden", "Vermögensschaden"],
        &["Datenverlust"],
    ],
    numbers: NumberStyle::Alpine,
    coverage_code: "",
    policy_defects: &[
        DefectKind::InvalidDate,
        DefectKind::UnknownCode,
        DefectKind::MissingRequired,
    ],
    claim_defects: &[
        DefectKind::InvalidDate,
        DefectKind::UnknownCode,
        DefectKind::NegativeReserve,
        DefectKind::MissingRequired,
    ],
    policy_missing_field: "premium",
    claim_missing_field: "loss_date",
};

/// Keystone Farm & Casualty: a Pennsylvania mutual whose mainframe writes fixed-width
/// extracts (see `fixed.rs`): Windows-1252, CRLF, upper-case names, `YYYYMMDD` dates,
/// amounts in cents with an implied decimal point, a header and a trailer record.
static KEYSTONE: CarrierSpec = CarrierSpec {
    market: Market::Us,
    text: TextStyle {
        delimiter: b' ',
        encoding: TextEncoding::Windows1252,
        crlf: true,
        date: DateStyle::Compact,
        amount: AmountStyle {
            decimal: b'.',
            thousands: None,
            negative_parens: false,
        },
    },
    wrong_delimiter: b',',
    currencies: &[("USD", 1)],
    policy_header: &[],
    claim_header: &[],
    lines: &[
        LineSpec {
            code: "PPA",
            canonical: LineOfBusiness::PersonalAuto,
            weight: 35,
            premium: (usd(550), usd(2_600)),
            limits: &[100_000, 300_000, 500_000],
            deductibles: &[250, 500, 1_000],
            organisations: 0,
            number_tag: "",
            peril: Peril::Motor,
            severity: (usd(400), usd(25_000)),
            coverages: &[],
        },
        LineSpec {
            code: "HO",
            canonical: LineOfBusiness::Homeowners,
            weight: 25,
            premium: (usd(650), usd(3_800)),
            limits: &[150_000, 250_000, 400_000, 600_000],
            deductibles: &[500, 1_000, 2_500],
            organisations: 0,
            number_tag: "",
            peril: Peril::Property,
            severity: (usd(800), usd(90_000)),
            coverages: &[],
        },
        LineSpec {
            code: "DF",
            canonical: LineOfBusiness::DwellingFire,
            weight: 8,
            premium: (usd(400), usd(2_200)),
            limits: &[100_000, 150_000, 250_000],
            deductibles: &[500, 1_000],
            organisations: 100,
            number_tag: "",
            peril: Peril::Property,
            severity: (usd(800), usd(60_000)),
            coverages: &[],
        },
        LineSpec {
            code: "CMP",
            canonical: LineOfBusiness::CommercialProperty,
            weight: 12,
            premium: (usd(1_500), usd(30_000)),
            limits: &[500_000, 1_000_000, 2_000_000, 5_000_000],
            deductibles: &[1_000, 2_500, 5_000],
            organisations: 1000,
            number_tag: "",
            peril: Peril::Property,
            severity: (usd(2_000), usd(250_000)),
            coverages: &[],
        },
        LineSpec {
            code: "WC",
            canonical: LineOfBusiness::WorkersCompensation,
            weight: 14,
            premium: (usd(1_200), usd(40_000)),
            limits: &[500_000, 1_000_000],
            deductibles: &[0],
            organisations: 1000,
            number_tag: "",
            peril: Peril::Liability,
            severity: (usd(500), usd(150_000)),
            coverages: &[],
        },
        LineSpec {
            code: "IM",
            canonical: LineOfBusiness::InlandMarine,
            weight: 6,
            premium: (usd(300), usd(6_000)),
            limits: &[25_000, 50_000, 100_000, 250_000],
            deductibles: &[250, 500, 1_000],
            organisations: 700,
            number_tag: "",
            peril: Peril::Property,
            severity: (usd(300), usd(40_000)),
            coverages: &[],
        },
    ],
    status_active: "A",
    status_cancelled: "C",
    status_ended: "E",
    person: "I",
    organisation: "B",
    producers: &[
        "00012001", "00012017", "00020450", "00031188", "00047502", "00050009",
    ],
    unknown_line_code: "FRM",
    invalid_dates: &["00000000", "99999999"],
    term_less_a_day: false,
    claim_status: ["O", "C", "R", "D"],
    unknown_claim_status: "S",
    causes: [
        &["COLLISION", "COMPREHENSIVE", "THEFT", "GLASS"],
        &["FIRE", "WIND", "HAIL", "WATER", "THEFT", "LIGHTNING"],
        &["INJURY ON JOB", "OCCUPATIONAL DISEASE", "BACK INJURY"],
        &["DATA BREACH"],
    ],
    numbers: NumberStyle::Keystone,
    coverage_code: "BASIC",
    policy_defects: &[
        DefectKind::ShiftedLine,
        DefectKind::InvalidDate,
        DefectKind::UnknownCode,
    ],
    claim_defects: &[DefectKind::InvalidDate, DefectKind::UnknownCode],
    policy_missing_field: "number",
    claim_missing_field: "number",
};
