//! Name, organisation and postal-code pools per market, for believable insured parties.
//!
//! The German pools deliberately contain umlauts and ß: they are what breaks a feed read with
//! the wrong encoding, so the Latin-1 carrier must exercise them.

use crate::rng::Rng;

/// The market a carrier writes in: decides names, organisations and postal codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Market {
    Us,
    De,
    Uk,
    /// Switzerland: German-speaking names, four-digit postal codes.
    Ch,
}

const US_FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Christopher",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "José",
    "María",
    "Wei",
    "Priya",
    "Aaliyah",
    "DeShawn",
    "Connor",
    "Maya",
];
const US_LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Pérez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "O'Brien",
    "Nguyen",
    "Kim",
    "Patel",
    "Kowalski",
];
const US_ORG_NAME: &[&str] = &[
    "Acme",
    "Blue Ridge",
    "Cascade",
    "Evergreen",
    "Granite State",
    "Harbor",
    "Lakeside",
    "Midwest",
    "Pioneer",
    "Summit",
    "Tri-County",
    "Riverbend",
    "Prairie",
    "Bayou",
    "Keystone",
];
const US_ORG_TRADE: &[&str] = &[
    "Logistics",
    "Construction",
    "Dental Group",
    "Bakery",
    "Auto Repair",
    "Landscaping",
    "Properties",
    "Consulting",
    "Plumbing & Heating",
    "Trucking",
    "Roofing",
    "Veterinary Clinic",
];
/// Several suffixes carry a comma, so US organisation names exercise CSV quoting.
const US_ORG_FORM: &[&str] = &[", Inc.", " LLC", " Corp.", ", LLP", " Co.", " LLC"];

const DE_FIRST: &[&str] = &[
    "Jürgen",
    "Björn",
    "Sören",
    "Günther",
    "Jörg",
    "Käthe",
    "Bärbel",
    "Anna",
    "Lukas",
    "Sophie",
    "Maximilian",
    "Marie",
    "Felix",
    "Lena",
    "Paul",
    "Hannah",
    "Thomas",
    "Sabine",
    "Stefan",
    "Ursula",
    "Andreas",
    "Claudia",
    "Michael",
    "Petra",
    "Uwe",
    "Monika",
    "Özlem",
    "Zoë",
    "Jens",
];
const DE_LAST: &[&str] = &[
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Schmitt",
    "Werner",
    "Krause",
    "Meier",
    "Lehmann",
    "Weiß",
    "Groß",
    "Köhler",
    "Jäger",
    "Böhm",
    "Yilmaz",
];
const DE_ORG_NAME: &[&str] = &[
    "Müller",
    "Schäfer",
    "Köhler",
    "Weiß",
    "Groß",
    "Krüger",
    "Rheintal",
    "Nordstern",
    "Südhang",
    "Eifel",
    "Hansen & Söhne",
    "Jäger",
];
const DE_ORG_TRADE: &[&str] = &[
    " Bau GmbH",
    " Straßenbau GmbH",
    " Bäckerei KG",
    " Logistik GmbH & Co. KG",
    " Metallbau GmbH",
    " Elektro e.K.",
    " Gärtnerei OHG",
    " Immobilien AG",
    " Brauhaus GmbH",
    " Möbelwerkstätten GmbH",
];

/// UK feeds print a title; it has to agree with the first name.
const UK_FEMALE_TITLE: &[&str] = &["Mrs", "Ms", "Miss", "Dr", "Mrs", "Ms"];
const UK_MALE_TITLE: &[&str] = &["Mr", "Mr", "Mr", "Dr"];
const UK_FEMALE: &[&str] = &[
    "Amelia", "Isla", "Ava", "Mia", "Ivy", "Freya", "Florence", "Sophie", "Emily", "Grace",
    "Siobhan", "Niamh", "Eilidh", "Priya", "Aisha", "Zoë",
];
const UK_MALE: &[&str] = &[
    "Oliver", "George", "Harry", "Noah", "Jack", "Charlie", "Leo", "Arthur", "Thomas", "William",
    "Rhys", "Aled", "Callum", "Mohammed",
];
const UK_LAST: &[&str] = &[
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Patel",
    "Khan",
    "O'Connor",
    "MacDonald",
    "Llewellyn",
    "Ffrench",
    "Featherstonehaugh",
    "Nowak",
];
const UK_ORG_NAME: &[&str] = &[
    "Severn",
    "Thames Valley",
    "Cotswold",
    "Pennine",
    "Mersey",
    "Clyde",
    "Wessex",
    "Brunel",
    "Albion",
    "Kingfisher",
    "Fenland",
    "Tamar",
];
const UK_ORG_TRADE: &[&str] = &[
    " Logistics Ltd",
    " Dental Practice LLP",
    " Software Ltd",
    " Architects LLP",
    " Holdings plc",
    " Lettings Ltd",
    " Accountants LLP",
    " Data Services Ltd",
    " Bakery Ltd",
    " Haulage Ltd",
];
const UK_OUTWARD: &[&str] = &[
    "SW1A", "EC2V", "W1D", "N1", "E14", "SE1", "M1", "M20", "B15", "LS6", "BS8", "CF10", "G12",
    "EH3", "OX2", "CB2", "NE1", "L1", "S10", "BT9", "GL50", "RG1", "BA1", "NG7", "YO1", "WR1",
];
/// Letters used in the inward part of a UK postcode (C, I, K, M, O and V are never used).
const UK_INWARD_LETTERS: &[char] = &[
    'A', 'B', 'D', 'E', 'F', 'G', 'H', 'J', 'L', 'N', 'P', 'Q', 'R', 'S', 'T', 'U', 'W', 'X', 'Y',
    'Z',
];

/// A person's name as the carrier's system prints it.
pub(crate) fn person(rng: &mut Rng, market: Market) -> String {
    match market {
        Market::Us => format!("{} {}", rng.pick(US_FIRST), rng.pick(US_LAST)),
        // German and Swiss systems print "Nachname, Vorname".
        Market::De | Market::Ch => format!("{}, {}", rng.pick(DE_LAST), rng.pick(DE_FIRST)),
        Market::Uk => {
            let (titles, first) = if rng.chance(500) {
                (UK_FEMALE_TITLE, UK_FEMALE)
            } else {
                (UK_MALE_TITLE, UK_MALE)
            };
            format!(
                "{} {} {}",
                rng.pick(titles),
                rng.pick(first),
                rng.pick(UK_LAST)
            )
        }
    }
}

pub(crate) fn organisation(rng: &mut Rng, market: Market) -> String {
    match market {
        Market::Us => format!(
            "{} {}{}",
            rng.pick(US_ORG_NAME),
            rng.pick(US_ORG_TRADE),
            rng.pick(US_ORG_FORM)
        ),
        Market::De | Market::Ch => {
            format!("{}{}", rng.pick(DE_ORG_NAME), rng.pick(DE_ORG_TRADE))
        }
        Market::Uk => format!("{}{}", rng.pick(UK_ORG_NAME), rng.pick(UK_ORG_TRADE)),
    }
}

pub(crate) fn postal_code(rng: &mut Rng, market: Market) -> String {
    match market {
        // ZIP and PLZ are five digits and may start with 0 (Boston, Dresden): text, not numbers.
        Market::Us => format!("{:05}", rng.between(1001, 99_950)),
        Market::De => format!("{:05}", rng.between(1067, 99_998)),
        Market::Ch => format!("{:04}", rng.between(1000, 9658)),
        Market::Uk => format!(
            "{} {}{}{}",
            rng.pick(UK_OUTWARD),
            rng.below(10),
            rng.pick(UK_INWARD_LETTERS),
            rng.pick(UK_INWARD_LETTERS)
        ),
    }
}
