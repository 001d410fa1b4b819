//! Replicas: how many nodes should run an app, as a user writes it (a
//! number of nodes or `all`) in a flag, a manifest or a wire record. A leaf:
//! it knows nothing of the mesh that places the replicas.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How many nodes should run an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Replicas {
    /// This many distinct nodes (every member if there are fewer).
    Count(u32),
    /// Every live member.
    All,
}

impl Replicas {
    /// Holders wanted among `members` live nodes.
    pub(crate) fn wanted(self, members: usize) -> usize {
        match self {
            Replicas::All => members,
            Replicas::Count(n) => usize::try_from(n).unwrap_or(usize::MAX).min(members),
        }
    }

    /// Orders requests for the same app: `All` above every count.
    pub(crate) fn size(self) -> u64 {
        match self {
            Replicas::All => u64::MAX,
            Replicas::Count(n) => u64::from(n),
        }
    }
}

impl Default for Replicas {
    fn default() -> Self {
        Replicas::Count(1)
    }
}

/// Why a replica count was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicasError {
    #[error("replicas must be at least 1: give a number of nodes such as `1` or `3`, or `all`")]
    Zero,
    #[error("invalid replicas `{0}`: give a number of nodes such as `1` or `3`, or `all`")]
    Invalid(String),
}

impl FromStr for Replicas {
    type Err = ReplicasError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(Replicas::All);
        }
        match s.parse::<u32>() {
            Ok(0) => Err(ReplicasError::Zero),
            Ok(n) => Ok(Replicas::Count(n)),
            Err(_) => Err(ReplicasError::Invalid(s.to_string())),
        }
    }
}

impl fmt::Display for Replicas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Replicas::Count(n) => write!(f, "{n}"),
            Replicas::All => f.write_str("all"),
        }
    }
}

/// A number (`3`) or the string `"all"`.
impl Serialize for Replicas {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Replicas::Count(n) => serializer.serialize_u32(*n),
            Replicas::All => serializer.serialize_str("all"),
        }
    }
}

/// Accepts a positive number, `"all"`, or a number in a string (`"3"`).
impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ReplicasVisitor;

        impl Visitor<'_> for ReplicasVisitor {
            type Value = Replicas;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of nodes (1 or more) or \"all\"")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Replicas, E> {
                match u32::try_from(v) {
                    Ok(0) => Err(E::custom(ReplicasError::Zero)),
                    Ok(n) => Ok(Replicas::Count(n)),
                    Err(_) => Err(E::custom(ReplicasError::Invalid(v.to_string()))),
                }
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Replicas, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(ReplicasError::Invalid(v.to_string()))),
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Replicas, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(ReplicasVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_parse_and_print() {
        assert_eq!("1".parse(), Ok(Replicas::Count(1)));
        assert_eq!(" 3 ".parse(), Ok(Replicas::Count(3)));
        assert_eq!("all".parse(), Ok(Replicas::All));
        assert_eq!("ALL".parse(), Ok(Replicas::All));
        let zero = "0".parse::<Replicas>().unwrap_err();
        assert_eq!(zero, ReplicasError::Zero);
        assert!(zero.to_string().contains("at least 1"), "{zero}");
        let bad = "x".parse::<Replicas>().unwrap_err();
        assert!(bad.to_string().contains("`x`"), "{bad}");
        assert!(bad.to_string().contains("`all`"), "{bad}");
        assert!("-1".parse::<Replicas>().is_err());
        assert_eq!(Replicas::Count(3).to_string(), "3");
        assert_eq!(Replicas::All.to_string(), "all");
        assert_eq!(Replicas::default(), Replicas::Count(1));
    }

    #[test]
    fn replicas_serialise_as_a_number_or_all() {
        let parse = serde_json::from_str::<Replicas>;
        assert_eq!(parse("1").unwrap(), Replicas::Count(1));
        assert_eq!(parse("\"all\"").unwrap(), Replicas::All);
        assert_eq!(parse("\"2\"").unwrap(), Replicas::Count(2));
        let zero = parse("0").unwrap_err().to_string();
        assert!(zero.contains("at least 1"), "{zero}");
        let bad = parse("\"x\"").unwrap_err().to_string();
        assert!(bad.contains("`all`"), "{bad}");
        assert!(parse("-1").is_err());
        assert!(parse("1.5").is_err());
        assert!(parse("4294967296").is_err());
        assert_eq!(serde_json::to_string(&Replicas::Count(2)).unwrap(), "2");
        assert_eq!(serde_json::to_string(&Replicas::All).unwrap(), "\"all\"");
    }
}
