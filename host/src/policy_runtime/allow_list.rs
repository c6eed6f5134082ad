//! Pinning policies by content: an operator lists the SHA-256 of each
//! component a node may run, and any other component is refused, whether
//! given at start or uploaded to the admin interface. A stolen admin token
//! then cannot install arbitrary code, only switch between vetted builds.
//! The policies built into the binary are always allowed: they are part of
//! the binary the operator chose to run.

use sha2::Digest;

use super::LoadError;

/// A SHA-256 digest of a component's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

/// A digest that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a SHA-256 digest (64 hex digits)")]
pub struct BadDigest(String);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256(sha2::Sha256::digest(bytes).into())
    }

    /// Parse 64 hex digits (either case).
    pub fn parse(text: &str) -> Result<Self, BadDigest> {
        let t = text.trim();
        let bad = || BadDigest(text.to_string());
        if t.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(t.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(Sha256(out))
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The components a node may load; empty allows any.
#[derive(Debug, Clone, Default)]
pub struct AllowList(Vec<Sha256>);

impl AllowList {
    /// Allow exactly these.
    pub fn new(digests: Vec<Sha256>) -> Self {
        AllowList(digests)
    }

    /// Refuse `bytes` unless listed (or the list is empty).
    pub fn check(&self, bytes: &[u8]) -> Result<(), LoadError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let sha256 = Sha256::of(bytes);
        if self.0.contains(&sha256) {
            Ok(())
        } else {
            Err(LoadError::NotAllowed {
                sha256: sha256.to_string(),
                allowed: self.0.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_and_only_listed_bytes_pass() {
        let d = Sha256::of(b"component");
        assert_eq!(Sha256::parse(&d.to_string()).unwrap(), d);
        assert_eq!(Sha256::parse(&d.to_string().to_uppercase()).unwrap(), d);
        assert!(Sha256::parse("abc").is_err());
        assert!(Sha256::parse(&"zz".repeat(32)).is_err());
        let list = AllowList::new(vec![d]);
        list.check(b"component").unwrap();
        let err = list.check(b"other").unwrap_err().to_string();
        assert!(err.contains(&Sha256::of(b"other").to_string()), "{err}");
        AllowList::default().check(b"anything").unwrap();
    }
}
