//! Identifiers that parse: carrier ids, policy and claim numbers.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} '{value}' is longer than {max} characters")]
    TooLong {
        kind: &'static str,
        value: String,
        max: usize,
    },
    #[error("{kind} '{value}' may only contain {allowed}")]
    InvalidCharacter {
        kind: &'static str,
        value: String,
        allowed: &'static str,
    },
}

/// A carrier's id in CarrierHub: a lowercase slug (`acme-mutual`), used in URLs and scopes.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "acme-mutual")]
pub struct CarrierId(String);

impl CarrierId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        const KIND: &str = "carrier id";
        if value.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if value.len() > 64 {
            return Err(IdError::TooLong {
                kind: KIND,
                value: value.to_owned(),
                max: 64,
            });
        }
        let ok_first = value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok_first
            || !value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(IdError::InvalidCharacter {
                kind: KIND,
                value: value.to_owned(),
                allowed: "lowercase letters, digits, '-' and '_', starting with a letter or digit",
            });
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CarrierId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<CarrierId> for String {
    fn from(value: CarrierId) -> Self {
        value.0
    }
}

impl fmt::Display for CarrierId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! reference_number {
    ($name:ident, $kind:literal) => {
        #[doc = concat!("A carrier's ", $kind, ", trimmed; unique per carrier.")]
        #[derive(
            Debug,
            Clone,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            Serialize,
            Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let value = value.trim();
                if value.is_empty() {
                    return Err(IdError::Empty { kind: $kind });
                }
                if value.chars().count() > 64 {
                    return Err(IdError::TooLong {
                        kind: $kind,
                        value: value.to_owned(),
                        max: 64,
                    });
                }
                if value.chars().any(char::is_control) {
                    return Err(IdError::InvalidCharacter {
                        kind: $kind,
                        value: value.to_owned(),
                        allowed: "printable characters",
                    });
                }
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

reference_number!(PolicyNumber, "policy number");
reference_number!(ClaimNumber, "claim number");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carrier_ids_are_slugs() {
        assert!(CarrierId::parse("acme-mutual_2").is_ok());
        assert!(matches!(
            CarrierId::parse("Acme"),
            Err(IdError::InvalidCharacter { .. })
        ));
        assert!(matches!(CarrierId::parse(""), Err(IdError::Empty { .. })));
        assert!(CarrierId::parse("-acme").is_err());
    }

    #[test]
    fn policy_numbers_are_trimmed_and_non_empty() {
        assert_eq!(PolicyNumber::parse("  P-1 ").unwrap().as_str(), "P-1");
        assert!(PolicyNumber::parse("   ").is_err());
        assert!(PolicyNumber::parse("A\u{0}B").is_err());
    }
}
