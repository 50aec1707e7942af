//! The one type of each identifier every crate shares: content identifiers (ChunkId,
//! VersionId: BLAKE3 hashes) and version numbers (MAJOR.MINOR). The wire messages carry them as
//! the prost types of [`crate::v1`]; `to_proto` and `from_proto` convert.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An identifier or number that does not parse: what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {0}")]
pub struct IdError(pub String);

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident, $proto:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw hash bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The id as the wire type.
            pub fn to_proto(self) -> crate::v1::$proto {
                crate::v1::$proto::from_bytes(self.0)
            }

            /// The id from the wire type; the decoder has already checked the length, but a
            /// message built elsewhere may not have been decoded, so it is checked again.
            pub fn from_proto(p: &crate::v1::$proto) -> Result<Self, IdError> {
                <[u8; 32]>::try_from(p.hash.as_slice())
                    .map($name)
                    .map_err(|_| IdError(format!("{}: hash of {} bytes", $field, p.hash.len())))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($name), &hex::encode(&self.0[..6]))
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out)
                    .map_err(|e| IdError(format!("{}: {e}", $field)))?;
                Ok($name(out))
            }
        }
    };
}

hash_id!(
    /// `BLAKE3(bytes)` of one chunk.
    ChunkId,
    ChunkId,
    "chunk id"
);
hash_id!(
    /// `BLAKE3` of a tree manifest's canonical encoding.
    VersionId,
    VersionId,
    "version id"
);

impl ChunkId {
    /// The id of these bytes.
    pub fn of(bytes: &[u8]) -> Self {
        ChunkId(*blake3::hash(bytes).as_bytes())
    }
}

/// `MAJOR.MINOR`: MAJOR counts accepted versions; MINOR is the origin node's rank. Ordered
/// MAJOR first, then MINOR: when two changes conflict, the higher number wins.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct VersionNumber {
    pub major: u64,
    pub minor: u32,
}

impl VersionNumber {
    pub const fn new(major: u64, minor: u32) -> Self {
        VersionNumber { major, minor }
    }

    pub fn to_proto(self) -> crate::v1::VersionNumber {
        crate::v1::VersionNumber {
            major: self.major,
            minor: self.minor,
        }
    }

    pub fn from_proto(p: &crate::v1::VersionNumber) -> Self {
        VersionNumber::new(p.major, p.minor)
    }
}

impl fmt::Display for VersionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl fmt::Debug for VersionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for VersionNumber {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            IdError(format!(
                "version number {s:?}: expected MAJOR.MINOR, like 7.2"
            ))
        };
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        Ok(VersionNumber::new(
            major.parse().map_err(|_| bad())?,
            minor.parse().map_err(|_| bad())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_order_major_then_minor_and_parse() {
        assert!(VersionNumber::new(7, 2) > VersionNumber::new(7, 1));
        assert!(VersionNumber::new(8, 0) > VersionNumber::new(7, 9));
        assert_eq!(
            "7.2".parse::<VersionNumber>().unwrap(),
            VersionNumber::new(7, 2)
        );
        assert!("7".parse::<VersionNumber>().is_err());
        assert!("a.b".parse::<VersionNumber>().is_err());
    }

    #[test]
    fn ids_round_trip_through_hex() {
        let id = ChunkId::of(b"hello");
        assert_eq!(id.to_string().parse::<ChunkId>().unwrap(), id);
        assert_eq!(ChunkId::from_proto(&id.to_proto()).unwrap(), id);
    }
}
