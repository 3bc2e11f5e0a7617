//! Normalised code lists. Each carrier's own code is kept beside the normalised value
//! (`Coded<T>`), so nothing the carrier said is lost by normalising it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{value}' is not a {list} code; expected one of: {expected}")]
pub struct UnknownCode {
    pub list: &'static str,
    pub value: String,
    pub expected: String,
}

/// A normalised value together with the code the carrier actually sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Coded<T> {
    pub value: T,
    pub original: String,
}

impl<T> Coded<T> {
    pub fn new(value: T, original: impl Into<String>) -> Self {
        Self {
            value,
            original: original.into(),
        }
    }
}

macro_rules! code_list {
    (
        $(#[$meta:meta])*
        $name:ident, $list:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $code:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical code, as used in the API and the database.
            pub fn code(&self) -> &'static str {
                match self {
                    $( $name::$variant => $code ),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownCode;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $code => Ok($name::$variant), )+
                    _ => Err(UnknownCode {
                        list: $list,
                        value: s.to_owned(),
                        expected: [$($code),+].join(", "),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

code_list! {
    /// Line of business. Where ACORD publishes a line-of-business code, `acord_code` gives it.
    LineOfBusiness, "line of business" {
        PersonalAuto => "personal_auto",
        CommercialAuto => "commercial_auto",
        Homeowners => "homeowners",
        DwellingFire => "dwelling_fire",
        CommercialProperty => "commercial_property",
        BusinessOwners => "business_owners",
        GeneralLiability => "general_liability",
        ProfessionalLiability => "professional_liability",
        WorkersCompensation => "workers_compensation",
        Umbrella => "umbrella",
        InlandMarine => "inland_marine",
        Cyber => "cyber",
        Travel => "travel",
        Health => "health",
        Life => "life",
    }
}

impl LineOfBusiness {
    /// The ACORD line-of-business code, for the lines that have a well-known one.
    pub fn acord_code(&self) -> Option<&'static str> {
        Some(match self {
            Self::PersonalAuto => "AUTOP",
            Self::CommercialAuto => "AUTOB",
            Self::Homeowners => "HOME",
            Self::DwellingFire => "DFIRE",
            Self::CommercialProperty => "PROPC",
            Self::BusinessOwners => "BOP",
            Self::GeneralLiability => "CGL",
            Self::WorkersCompensation => "WORK",
            Self::Umbrella => "UMBRL",
            Self::InlandMarine => "INMRC",
            _ => return None,
        })
    }
}

code_list! {
    /// Where a policy is in its life.
    PolicyStatus, "policy status" {
        Quoted => "quoted",
        Active => "active",
        Cancelled => "cancelled",
        Lapsed => "lapsed",
        Expired => "expired",
    }
}

code_list! {
    /// Where a claim is in its life.
    ClaimStatus, "claim status" {
        Open => "open",
        Closed => "closed",
        Reopened => "reopened",
        Denied => "denied",
    }
}

code_list! {
    /// What a transaction row does to its policy: an endorsement changes the premium (an
    /// additional or a return premium), a cancellation or reinstatement also the status.
    TransactionType, "transaction type" {
        Endorsement => "endorsement",
        Cancellation => "cancellation",
        Reinstatement => "reinstatement",
    }
}

code_list! {
    /// Whether an insured party is a natural person or an organisation.
    PartyKind, "party kind" {
        Person => "person",
        Organisation => "organisation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for lob in LineOfBusiness::ALL {
            assert_eq!(lob.code().parse::<LineOfBusiness>().unwrap(), *lob);
        }
        assert_eq!(LineOfBusiness::PersonalAuto.acord_code(), Some("AUTOP"));
    }

    #[test]
    fn unknown_codes_say_what_was_expected() {
        let err = "motor".parse::<LineOfBusiness>().unwrap_err();
        assert!(err.to_string().contains("personal_auto"), "{err}");
    }
}
