//! The three synthetic carriers: their file layouts, code lists, conventions and books.
//!
//! They differ on purpose in every way real carriers do (delimiter, encoding, date order,
//! decimal comma, column names, codes, one currency or many), so that onboarding them by
//! mapping file alone demonstrates the mapping format rather than assuming one shape.

use crate::names::Market;
use crate::row::{AmountStyle, DateStyle, TextStyle};
use carrierhub_model::LineOfBusiness;

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
    pub policy_file_name: &'static str,
    pub claim_file_name: &'static str,
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

    /// The currencies this carrier writes business in, most common first.
    pub fn currencies(&self) -> Vec<&'static str> {
        self.spec.currencies.iter().map(|(c, _)| *c).collect()
    }
}

/// All synthetic carriers, in a fixed order.
pub fn carriers() -> Vec<CarrierProfile> {
    vec![
        CarrierProfile {
            id: "northwind",
            name: "Northwind Mutual",
            policy_mapping: include_str!("../../../examples/mappings/northwind-policies.toml"),
            claim_mapping: include_str!("../../../examples/mappings/northwind-claims.toml"),
            policy_file_name: "northwind-policies.csv",
            claim_file_name: "northwind-claims.csv",
            spec: &NORTHWIND,
        },
        CarrierProfile {
            id: "rheinland",
            name: "Rheinland Versicherung AG",
            policy_mapping: include_str!("../../../examples/mappings/rheinland-policies.toml"),
            claim_mapping: include_str!("../../../examples/mappings/rheinland-claims.toml"),
            policy_file_name: "rheinland-policies.csv",
            claim_file_name: "rheinland-claims.csv",
            spec: &RHEINLAND,
        },
        CarrierProfile {
            id: "thames",
            name: "Thames & Severn Underwriting",
            policy_mapping: include_str!("../../../examples/mappings/thames-policies.toml"),
            claim_mapping: include_str!("../../../examples/mappings/thames-claims.toml"),
            policy_file_name: "thames-policies.csv",
            claim_file_name: "thames-claims.csv",
            spec: &THAMES,
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
}

/// Everything that makes one carrier's feed look like that carrier's.
#[derive(Debug)]
pub(crate) struct CarrierSpec {
    pub market: Market,
    pub text: TextStyle,
    /// The delimiter a misconfigured export falls back to (for the wrong-delimiter defect).
    pub wrong_delimiter: u8,
    /// Currencies with relative weights; more than one means a currency column.
    pub currencies: &'static [(&'static str, u32)],
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
    /// Values an effective-date column should never hold (for the invalid-date defect).
    pub invalid_dates: &'static [&'static str],
    /// UK terms run "twelve months less a day": 01/03/2025 to 28/02/2026.
    pub term_less_a_day: bool,
    /// Claim status codes for open, closed, reopened and denied.
    pub claim_status: [&'static str; 4],
    /// Causes of loss by [`Peril`].
    pub causes: [&'static [&'static str]; 4],
    pub numbers: NumberStyle,
}

impl CarrierSpec {
    pub(crate) fn multi_currency(&self) -> bool {
        self.currencies.len() > 1
    }
}

const fn usd(units: i64) -> i64 {
    units * 100
}

static NORTHWIND: CarrierSpec = CarrierSpec {
    market: Market::Us,
    text: TextStyle {
        delimiter: b',',
        latin1: false,
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
};

const fn eur(units: i64) -> i64 {
    units * 100
}

static RHEINLAND: CarrierSpec = CarrierSpec {
    market: Market::De,
    text: TextStyle {
        delimiter: b';',
        latin1: true,
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
};

const fn gbp(units: i64) -> i64 {
    units * 100
}

static THAMES: CarrierSpec = CarrierSpec {
    market: Market::Uk,
    text: TextStyle {
        delimiter: b'|',
        latin1: false,
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
};
