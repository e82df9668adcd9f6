//! SCRAM credentials (Kafka's `UserScramCredentialRecord`): what the cluster stores per user
//! and mechanism, and the index of them held in the [`crate::Image`].
//!
//! Owns: the mechanisms with Kafka's wire types (SCRAM-SHA-256 = 1, SCRAM-SHA-512 = 2), the
//! stored credential (salt, StoredKey, ServerKey, iterations: never a password or a salted
//! password), Kafka's iteration bounds, and the checks a credential change must pass before it
//! is applied ([`ScramIndex::check`]).
//! Must never: hold a password or a salted password, or print a key (`Debug` shows lengths).
//! The key math lives with the SASL server (`josefine::security::scram`); this crate stays
//! free of crypto, clocks and randomness.

use std::collections::BTreeMap;
use std::fmt;

/// Kafka's smallest iteration count (`ScramMechanism.minIterations`, 4096 for both).
pub const SCRAM_ITERATIONS_MIN: i32 = 4096;
/// Kafka's largest iteration count AlterUserScramCredentials accepts.
pub const SCRAM_ITERATIONS_MAX: i32 = 16_384;
/// Most credential changes (upsertions + deletions) one command may carry; bounds one apply.
pub const SCRAM_CHANGES_PER_COMMAND_MAX: usize = 10_000;
/// Longest salt stored (Kafka's clients send 64 bytes at most in practice).
pub const SCRAM_SALT_BYTES_MAX: usize = 1024;
/// Longest user name stored.
pub const SCRAM_USER_BYTES_MAX: usize = 1024;

/// A SCRAM mechanism, with Kafka's wire type (`ScramMechanism.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScramMechanism {
    Sha256 = 1,
    Sha512 = 2,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's wire type.
    pub fn code(self) -> i8 {
        self as i8
    }

    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.code() == code)
    }

    /// Length of the hash, so of StoredKey, ServerKey and a salted password.
    pub fn key_bytes(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }
}

/// One stored credential.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("salt_bytes", &self.salt.len())
            .field("key_bytes", &self.stored_key.len())
            .field("iterations", &self.iterations)
            .finish()
    }
}

/// Why a credential may not be stored, or `None`: a non-empty name, iterations within
/// Kafka's bounds, keys of the mechanism's length, a salt of 1 to `SCRAM_SALT_BYTES_MAX` bytes.
pub fn credential_problem(
    user: &str,
    mechanism: ScramMechanism,
    c: &ScramCredential,
) -> Option<String> {
    if user.is_empty() {
        return Some("Username must not be empty".into());
    }
    if user.len() > SCRAM_USER_BYTES_MAX {
        return Some(format!("Username longer than {SCRAM_USER_BYTES_MAX} bytes"));
    }
    if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&c.iterations) {
        return Some(format!(
            "Iterations {} not in range [{SCRAM_ITERATIONS_MIN}, {SCRAM_ITERATIONS_MAX}]",
            c.iterations
        ));
    }
    if c.stored_key.len() != mechanism.key_bytes() || c.server_key.len() != mechanism.key_bytes() {
        return Some(format!("keys of the wrong length for {}", mechanism.name()));
    }
    if c.salt.is_empty() || c.salt.len() > SCRAM_SALT_BYTES_MAX {
        return Some(format!(
            "a salt has 1 to {SCRAM_SALT_BYTES_MAX} bytes, not {}",
            c.salt.len()
        ));
    }
    None
}

/// The stored credentials by (user, mechanism).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScramIndex {
    by_user: BTreeMap<(String, ScramMechanism), ScramCredential>,
}

impl ScramIndex {
    pub fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        self.by_user.get(&(user.to_string(), mechanism))
    }

    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }

    /// Every credential, by user then mechanism.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ScramMechanism, &ScramCredential)> {
        self.by_user.iter().map(|((u, m), c)| (u.as_str(), *m, c))
    }

    /// The mechanisms and iterations of one user's credentials.
    pub fn of_user(&self, user: &str) -> Vec<(ScramMechanism, i32)> {
        ScramMechanism::ALL
            .into_iter()
            .filter_map(|m| self.get(user, m).map(|c| (m, c.iterations)))
            .collect()
    }

    /// Whether a change may be applied as a whole: every upsertion valid, every deletion of a
    /// stored credential, no (user, mechanism) twice, at most `SCRAM_CHANGES_PER_COMMAND_MAX`.
    pub fn check(
        &self,
        upsertions: &[(String, ScramMechanism, ScramCredential)],
        deletions: &[(String, ScramMechanism)],
    ) -> Result<(), String> {
        if upsertions.len() + deletions.len() > SCRAM_CHANGES_PER_COMMAND_MAX {
            return Err(format!(
                "more than {SCRAM_CHANGES_PER_COMMAND_MAX} credential changes in one command"
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (user, m, c) in upsertions {
            if let Some(p) = credential_problem(user, *m, c) {
                return Err(format!("{user}/{}: {p}", m.name()));
            }
            if !seen.insert((user.as_str(), *m)) {
                return Err(format!("{user}/{} changed twice", m.name()));
            }
        }
        for (user, m) in deletions {
            if self.get(user, *m).is_none() {
                return Err(format!("{user}/{}: no such credential", m.name()));
            }
            if !seen.insert((user.as_str(), *m)) {
                return Err(format!("{user}/{} changed twice", m.name()));
            }
        }
        Ok(())
    }

    /// Applies a checked change ([`ScramIndex::check`]).
    pub fn apply(
        &mut self,
        upsertions: &[(String, ScramMechanism, ScramCredential)],
        deletions: &[(String, ScramMechanism)],
    ) {
        for (user, m) in deletions {
            self.by_user.remove(&(user.clone(), *m));
        }
        for (user, m, c) in upsertions {
            self.by_user.insert((user.clone(), *m), c.clone());
        }
    }

    /// Inserts one credential (snapshot decoding).
    pub fn insert(&mut self, user: String, mechanism: ScramMechanism, c: ScramCredential) {
        self.by_user.insert((user, mechanism), c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(m: ScramMechanism, iterations: i32) -> ScramCredential {
        ScramCredential {
            salt: vec![1; 16],
            stored_key: vec![2; m.key_bytes()],
            server_key: vec![3; m.key_bytes()],
            iterations,
        }
    }

    #[test]
    fn mechanisms_have_kafkas_names_and_codes() {
        assert_eq!(
            ScramMechanism::from_name("SCRAM-SHA-256"),
            Some(ScramMechanism::Sha256)
        );
        assert_eq!(ScramMechanism::from_code(2), Some(ScramMechanism::Sha512));
        assert_eq!(ScramMechanism::from_code(0), None);
        assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
    }

    #[test]
    fn checks_refuse_bad_changes_as_a_whole() {
        let mut index = ScramIndex::default();
        let m = ScramMechanism::Sha256;
        let ok = vec![("alice".to_string(), m, cred(m, 4096))];
        assert!(index.check(&ok, &[]).is_ok());
        index.apply(&ok, &[]);
        assert_eq!(index.of_user("alice"), vec![(m, 4096)]);
        for (ups, dels) in [
            (vec![("".to_string(), m, cred(m, 4096))], vec![]),
            (vec![("a".to_string(), m, cred(m, 4095))], vec![]),
            (vec![("a".to_string(), m, cred(m, 16_385))], vec![]),
            (
                vec![("a".to_string(), m, cred(ScramMechanism::Sha512, 4096))],
                vec![],
            ),
            (vec![], vec![("bob".to_string(), m)]),
            (ok.clone(), vec![("alice".to_string(), m)]),
            (vec![ok[0].clone(), ok[0].clone()], vec![]),
        ] {
            assert!(index.check(&ups, &dels).is_err(), "{ups:?} {dels:?}");
        }
        index.apply(&[], &[("alice".to_string(), m)]);
        assert!(index.is_empty());
        // Debug never shows key bytes.
        assert!(!format!("{:?}", cred(m, 4096)).contains("[2, 2"));
    }
}
