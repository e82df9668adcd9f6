//! The server side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka runs it:
//! the message parser, the key derivations and a two-step state machine.
//!
//! Owns: parsing the client-first (`n,[a=authzid],n=user,r=nonce[,ext=value]...`) and
//! client-final (`c=biws,r=nonce[,ext=value]...,p=proof`) messages, building the server-first
//! (`r=nonce,s=salt,i=iterations`) and server-final (`v=signature`) messages, the key math
//! (SaltedPassword = PBKDF2-HMAC, StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey =
//! HMAC(SaltedPassword, "Server Key")) and the proof check, compared in constant time (subtle).
//! Pure: the caller hands in the server nonce, the stored credential (from the metadata image)
//! and the secret that fakes a credential for an unknown user, so every path is testable.
//! Unknown users go through the same exchange with a salt derived from the server secret and
//! fail at the proof, so the answer to the first message does not tell whether a user exists
//! (Kafka fails at the first message; a documented difference). Failures give Kafka's message.
//! Must never: log or put in an error a password, salted password, key, proof or signature;
//! compare secrets with `==`.

use base64ct::{Base64, Encoding};
use hmac::{Hmac, Mac};
use josefine_meta::scram::{ScramCredential, ScramMechanism, SCRAM_ITERATIONS_MIN};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Kafka's answer to a failed SCRAM exchange (a SaslException on the server: wrong password,
/// unknown user, malformed message). It never says which.
pub fn failed_message(mechanism: ScramMechanism) -> String {
    format!(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
        mechanism.name()
    )
}

/// Kafka's answer when the gs2 header's authorization id is not the user name.
pub const AUTHZID_MISMATCH: &str =
    "Authentication failed: Client requested an authorization id that is different from username";

/// Bytes of the server's part of the nonce (from the OS RNG, then base64).
pub const SERVER_NONCE_BYTES: usize = 24;

/// Bytes of the salt made for an unknown user, and of a salt `--add-scram` chooses.
pub const SALT_BYTES: usize = 16;

fn hmac(mechanism: ScramMechanism, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC takes a key of any length");
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match mechanism {
        ScramMechanism::Sha256 => run::<Hmac<Sha256>>(key, parts),
        ScramMechanism::Sha512 => run::<Hmac<Sha512>>(key, parts),
    }
}

fn hash(mechanism: ScramMechanism, bytes: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => Sha256::digest(bytes).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(bytes).to_vec(),
    }
}

/// RFC 5802's SaltedPassword: PBKDF2 with the mechanism's HMAC. `iterations` must be positive.
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut out = vec![0; mechanism.key_bytes()];
    match mechanism {
        ScramMechanism::Sha256 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
        }
        ScramMechanism::Sha512 => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
        }
    }
    out
}

/// The stored credential for a salted password (what AlterUserScramCredentials sends): only
/// salt, StoredKey, ServerKey and iterations are kept.
pub fn credential_from_salted(
    mechanism: ScramMechanism,
    salt: &[u8],
    salted: &[u8],
    iterations: i32,
) -> ScramCredential {
    let client_key = hmac(mechanism, salted, &[b"Client Key"]);
    ScramCredential {
        salt: salt.to_vec(),
        stored_key: hash(mechanism, &client_key),
        server_key: hmac(mechanism, salted, &[b"Server Key"]),
        iterations,
    }
}

/// The stored credential for a password, salt and iteration count (`--add-scram`).
pub fn credential(
    mechanism: ScramMechanism,
    password: &str,
    salt: &[u8],
    iterations: i32,
) -> ScramCredential {
    let salted = salted_password(
        mechanism,
        password.as_bytes(),
        salt,
        iterations.max(1) as u32,
    );
    credential_from_salted(mechanism, salt, &salted, iterations)
}

/// `len` bytes from the operating system's RNG.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    getrandom::getrandom(&mut out).expect("the operating system's RNG is available");
    out
}

/// A fresh server nonce part: printable, no `,` (base64 of OS random bytes).
pub fn server_nonce() -> String {
    Base64::encode_string(&random_bytes(SERVER_NONCE_BYTES))
}

/// Why a SCRAM message was refused. The text is for tests and debug logs only: it never holds
/// the message's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub &'static str);

/// A parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst<'a> {
    /// The gs2 header as sent (`n,,` or `n,a=<authzid>,`): the channel binding must echo it.
    pub gs2_header: &'a str,
    /// The authorization id, decoded (empty if none).
    pub authzid: String,
    /// The user name, decoded (`=2C` is `,`, `=3D` is `=`).
    pub user: String,
    pub nonce: &'a str,
    /// `client-first-message-bare` as sent: part of the AuthMessage.
    pub bare: &'a str,
    /// Whether the client asked for delegation-token authentication (`tokenauth=true`).
    pub token_auth: bool,
}

/// A parsed client-final message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal<'a> {
    pub channel_binding: Vec<u8>,
    pub nonce: &'a str,
    /// `client-final-message-without-proof` as sent: part of the AuthMessage.
    pub without_proof: &'a str,
    pub proof: Vec<u8>,
}

/// RFC 5802's saslname: at least one character, no `,`, `=` only as `=2C` or `=3D`, no NUL.
fn decode_saslname(s: &str) -> Result<String, ParseError> {
    if s.is_empty() {
        return Err(ParseError("empty name"));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        match c {
            '=' => {
                if let Some(r) = rest.strip_prefix("=2C") {
                    out.push(',');
                    rest = r;
                } else if let Some(r) = rest.strip_prefix("=3D") {
                    out.push('=');
                    rest = r;
                } else {
                    return Err(ParseError("bad escape in a name"));
                }
            }
            ',' | '\0' => return Err(ParseError("bad character in a name")),
            c => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    Ok(out)
}

/// RFC 5802's printable nonce: `%x21-2B / %x2D-7E`, at least one.
fn check_nonce(s: &str) -> Result<(), ParseError> {
    if s.is_empty() || !s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
        return Err(ParseError("bad nonce"));
    }
    Ok(())
}

/// An `attr=value` extension: a letters-only name (not a standard attribute), a non-empty value.
fn parse_extension(s: &str) -> Result<(&str, &str), ParseError> {
    let (name, value) = s.split_once('=').ok_or(ParseError("bad extension"))?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphabetic()) || value.is_empty() {
        return Err(ParseError("bad extension"));
    }
    Ok((name, value))
}

fn decode_base64(s: &str) -> Result<Vec<u8>, ParseError> {
    Base64::decode_vec(s).map_err(|_| ParseError("bad base64"))
}

/// Parses a client-first message (RFC 5802 section 7, as Kafka's client sends it: no channel
/// binding, `y`/`p` flags and the reserved `m=` attribute are refused).
pub fn parse_client_first(bytes: &[u8]) -> Result<ClientFirst<'_>, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ParseError("not UTF-8"))?;
    let rest = text
        .strip_prefix("n,")
        .ok_or(ParseError("expected gs2 header n,"))?;
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(ParseError("truncated gs2 header"))?;
    let authzid = match authzid {
        "" => String::new(),
        a => decode_saslname(
            a.strip_prefix("a=")
                .ok_or(ParseError("bad authorization id"))?,
        )?,
    };
    let gs2_header = &text[..text.len() - bare.len()];
    let mut fields = bare.split(',');
    let user = fields
        .next()
        .and_then(|f| f.strip_prefix("n="))
        .ok_or(ParseError("expected n=<user>"))?;
    let user = decode_saslname(user)?;
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .ok_or(ParseError("expected r=<nonce>"))?;
    check_nonce(nonce)?;
    let mut token_auth = false;
    for f in fields {
        let (name, value) = parse_extension(f)?;
        if name.len() == 1 {
            return Err(ParseError("unexpected attribute"));
        }
        if name == "tokenauth" && value.eq_ignore_ascii_case("true") {
            token_auth = true;
        }
    }
    Ok(ClientFirst {
        gs2_header,
        authzid,
        user,
        nonce,
        bare,
        token_auth,
    })
}

/// Parses a client-final message: `c=<base64>,r=<nonce>[,ext=value]...,p=<base64>`.
pub fn parse_client_final(bytes: &[u8]) -> Result<ClientFinal<'_>, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ParseError("not UTF-8"))?;
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or(ParseError("expected p=<proof>"))?;
    let proof = decode_base64(proof)?;
    let mut fields = without_proof.split(',');
    let channel = fields
        .next()
        .and_then(|f| f.strip_prefix("c="))
        .ok_or(ParseError("expected c=<channel binding>"))?;
    let channel_binding = decode_base64(channel)?;
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .ok_or(ParseError("expected r=<nonce>"))?;
    check_nonce(nonce)?;
    for f in fields {
        let (name, _) = parse_extension(f)?;
        if name.len() == 1 {
            return Err(ParseError("unexpected attribute"));
        }
    }
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

/// The credential an unknown user is given, so the exchange looks as for a real one: the salt
/// is an HMAC of the user name under the server secret (stable while the secret is), the keys
/// are of the right length and never match (`known` is false).
fn fake_credential(mechanism: ScramMechanism, secret: &[u8], user: &str) -> ScramCredential {
    let salt = hmac(
        mechanism,
        secret,
        &[mechanism.name().as_bytes(), b"\0", user.as_bytes()],
    );
    let key = hmac(mechanism, secret, &[b"keys\0", user.as_bytes()]);
    ScramCredential {
        salt: salt[..SALT_BYTES].to_vec(),
        stored_key: key.clone(),
        server_key: key,
        iterations: SCRAM_ITERATIONS_MIN,
    }
}

/// What the server answers to one client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this server-first message and wait for the client-final one.
    Challenge(Vec<u8>),
    /// Authenticated as this user: send the server-final message.
    Done { user: String, server_final: Vec<u8> },
}

/// A failed exchange: the message Kafka answers with (never a secret) and, for the log, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub reason: &'static str,
}

enum State {
    ClientFirst,
    ClientFinal {
        /// Whether the user has a credential; an unknown user always fails at the proof.
        known: bool,
        user: String,
        gs2_header: String,
        credential: ScramCredential,
        /// client-first-bare "," server-first: the AuthMessage's first two parts.
        auth_prefix: String,
        nonce: String,
    },
    Finished,
}

/// One connection's SCRAM exchange (server side).
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::ClientFirst,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    fn fail(&mut self, reason: &'static str) -> Failure {
        self.state = State::Finished;
        Failure {
            message: failed_message(self.mechanism),
            reason,
        }
    }

    /// Handles the next client message. `lookup` gives the stored credential of a user for
    /// this mechanism, `server_nonce` the server's nonce part (fresh per exchange), `secret`
    /// the server secret unknown users' salts derive from. After a failure or success every
    /// further message fails.
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
        secret: &[u8],
    ) -> Result<Step, Failure> {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::ClientFirst => {
                let first = parse_client_first(message).map_err(|e| self.fail(e.0))?;
                if first.token_auth {
                    return Err(self.fail("delegation tokens are not supported"));
                }
                if !first.authzid.is_empty() && first.authzid != first.user {
                    self.state = State::Finished;
                    return Err(Failure {
                        message: AUTHZID_MISMATCH.to_string(),
                        reason: "authorization id differs from the user name",
                    });
                }
                let stored = lookup(&first.user).filter(|c| {
                    c.iterations >= SCRAM_ITERATIONS_MIN
                        && c.stored_key.len() == self.mechanism.key_bytes()
                        && c.server_key.len() == self.mechanism.key_bytes()
                });
                let known = stored.is_some();
                let credential =
                    stored.unwrap_or_else(|| fake_credential(self.mechanism, secret, &first.user));
                let nonce = format!("{}{}", first.nonce, server_nonce);
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    Base64::encode_string(&credential.salt),
                    credential.iterations
                );
                self.state = State::ClientFinal {
                    known,
                    user: first.user.clone(),
                    gs2_header: first.gs2_header.to_string(),
                    credential,
                    auth_prefix: format!("{},{server_first}", first.bare),
                    nonce,
                };
                Ok(Step::Challenge(server_first.into_bytes()))
            }
            State::ClientFinal {
                known,
                user,
                gs2_header,
                credential,
                auth_prefix,
                nonce,
            } => {
                let last = parse_client_final(message).map_err(|e| self.fail(e.0))?;
                if last.channel_binding != gs2_header.as_bytes() {
                    return Err(self.fail("channel binding does not echo the gs2 header"));
                }
                if last.nonce != nonce {
                    return Err(self.fail("nonce differs from the server-first message's"));
                }
                let key_bytes = self.mechanism.key_bytes();
                if last.proof.len() != key_bytes {
                    return Err(self.fail("proof of the wrong length"));
                }
                let auth_message = format!("{auth_prefix},{}", last.without_proof);
                let signature = hmac(
                    self.mechanism,
                    &credential.stored_key,
                    &[auth_message.as_bytes()],
                );
                let client_key: Vec<u8> = last
                    .proof
                    .iter()
                    .zip(&signature)
                    .map(|(p, s)| p ^ s)
                    .collect();
                let computed = hash(self.mechanism, &client_key);
                let matches: bool = computed.ct_eq(&credential.stored_key).into();
                if !(matches & known) {
                    return Err(self.fail("invalid client proof"));
                }
                let server_signature = hmac(
                    self.mechanism,
                    &credential.server_key,
                    &[auth_message.as_bytes()],
                );
                let server_final = format!("v={}", Base64::encode_string(&server_signature));
                Ok(Step::Done {
                    user,
                    server_final: server_final.into_bytes(),
                })
            }
            State::Finished => Err(self.fail("message after the exchange ended")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side, for round trips: client-final for a server-first message.
    fn client_final(
        mechanism: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        gs2_header: &str,
    ) -> (String, Vec<u8>) {
        let mut salt = None;
        let mut iterations = None;
        let mut nonce = None;
        for f in server_first.split(',') {
            match f.split_at(2) {
                ("r=", v) => nonce = Some(v.to_string()),
                ("s=", v) => salt = Some(Base64::decode_vec(v).unwrap()),
                ("i=", v) => iterations = Some(v.parse::<u32>().unwrap()),
                _ => {}
            }
        }
        let salted = salted_password(
            mechanism,
            password.as_bytes(),
            &salt.unwrap(),
            iterations.unwrap(),
        );
        let client_key = hmac(mechanism, &salted, &[b"Client Key"]);
        let stored = hash(mechanism, &client_key);
        let without_proof = format!(
            "c={},r={}",
            Base64::encode_string(gs2_header.as_bytes()),
            nonce.unwrap()
        );
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = hmac(mechanism, &stored, &[auth.as_bytes()]);
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_key = hmac(mechanism, &salted, &[b"Server Key"]);
        let expected_v = format!(
            "v={}",
            Base64::encode_string(&hmac(mechanism, &server_key, &[auth.as_bytes()]))
        );
        (
            format!("{without_proof},p={}", Base64::encode_string(&proof)),
            expected_v.into_bytes(),
        )
    }

    #[test]
    fn rfc_7677_test_vector() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = Base64::decode_vec("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let stored = credential(ScramMechanism::Sha256, "pencil", &salt, 4096);
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let step = server
            .step(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                |u| (u == "user").then(|| stored.clone()),
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                b"secret",
            )
            .unwrap();
        assert_eq!(
            step,
            Step::Challenge(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                    .to_vec()
            )
        );
        let step = server
            .step(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                |_| unreachable!(),
                "",
                b"secret",
            )
            .unwrap();
        assert_eq!(
            step,
            Step::Done {
                user: "user".into(),
                server_final: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
            }
        );
        // Anything after the end fails.
        assert!(server.step(b"n,,n=user,r=x", |_| None, "y", b"s").is_err());
    }

    fn exchange(
        mechanism: ScramMechanism,
        stored: Option<ScramCredential>,
        password: &str,
        first: &str,
    ) -> Result<Step, Failure> {
        let mut server = ScramServer::new(mechanism);
        let Step::Challenge(server_first) =
            server.step(first.as_bytes(), |_| stored, &server_nonce(), b"secret")?
        else {
            panic!("expected a challenge");
        };
        let parsed = parse_client_first(first.as_bytes()).unwrap();
        let (last, expected_v) = client_final(
            mechanism,
            password,
            parsed.bare,
            std::str::from_utf8(&server_first).unwrap(),
            parsed.gs2_header,
        );
        let step = server.step(last.as_bytes(), |_| unreachable!(), "", b"secret")?;
        if let Step::Done { server_final, .. } = &step {
            assert_eq!(*server_final, expected_v);
        }
        Ok(step)
    }

    #[test]
    fn both_mechanisms_round_trip_and_refuse_wrong_passwords() {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let stored = credential(m, "s3cret", &random_bytes(SALT_BYTES), 4096);
            assert_eq!(stored.stored_key.len(), m.key_bytes());
            let ok = exchange(m, Some(stored.clone()), "s3cret", "n,,n=alice,r=abc").unwrap();
            assert!(matches!(ok, Step::Done { ref user, .. } if user == "alice"));
            let ok = exchange(m, Some(stored.clone()), "s3cret", "n,a=alice,n=alice,r=abc");
            assert!(ok.is_ok());
            let bad = exchange(m, Some(stored.clone()), "wrong", "n,,n=alice,r=abc").unwrap_err();
            assert_eq!(bad.message, failed_message(m));
            // Another mechanism's key lengths never authenticate.
            let other = match m {
                ScramMechanism::Sha256 => ScramMechanism::Sha512,
                ScramMechanism::Sha512 => ScramMechanism::Sha256,
            };
            let foreign = credential(other, "s3cret", b"salt", 4096);
            assert!(exchange(m, Some(foreign), "s3cret", "n,,n=alice,r=abc").is_err());
            let mismatch =
                exchange(m, Some(stored), "s3cret", "n,a=bob,n=alice,r=abc").unwrap_err();
            assert_eq!(mismatch.message, AUTHZID_MISMATCH);
        }
    }

    #[test]
    fn unknown_users_get_a_stable_challenge_and_fail_at_the_proof() {
        let m = ScramMechanism::Sha512;
        let challenge = |user: &str| {
            let mut s = ScramServer::new(m);
            let first = format!("n,,n={user},r=abc");
            match s
                .step(first.as_bytes(), |_| None, "NONCE", b"secret")
                .unwrap()
            {
                Step::Challenge(c) => String::from_utf8(c).unwrap(),
                other => panic!("{other:?}"),
            }
        };
        let a = challenge("ghost");
        assert_eq!(a, challenge("ghost"));
        assert_ne!(a, challenge("ghost2"));
        assert!(a.starts_with("r=abcNONCE,s=") && a.ends_with(",i=4096"));
        // Whatever the password, an unknown user fails with the generic message.
        let err = exchange(m, None, "", "n,,n=ghost,r=abc").unwrap_err();
        assert_eq!(err.message, failed_message(m));
        // A malformed final message fails the same way.
        let mut s = ScramServer::new(m);
        s.step(b"n,,n=ghost,r=abc", |_| None, "N", b"secret")
            .unwrap();
        let err = s
            .step(b"c=biws,r=abcN,p=AAAA", |_| None, "", b"secret")
            .unwrap_err();
        assert_eq!(err.message, failed_message(m));
    }

    #[test]
    fn tampered_final_messages_fail() {
        let m = ScramMechanism::Sha256;
        let stored = credential(m, "pw", b"0123456789abcdef", 4096);
        let mut s = ScramServer::new(m);
        let Step::Challenge(sf) = s
            .step(b"n,,n=alice,r=abc", |_| Some(stored.clone()), "XYZ", b"k")
            .unwrap()
        else {
            panic!()
        };
        let sf = String::from_utf8(sf).unwrap();
        let (good, _) = client_final(m, "pw", "n=alice,r=abc", &sf, "n,,");
        for bad in [
            good.replace("r=abcXYZ", "r=abcXY"),
            good.replace("c=biws", "c=eSws"),
            good.replace(",p=", ",x=1,p=").replace("x=1", "p=1"),
            format!("{good}A"),
        ] {
            let mut s2 = ScramServer::new(m);
            s2.step(b"n,,n=alice,r=abc", |_| Some(stored.clone()), "XYZ", b"k")
                .unwrap();
            assert!(
                s2.step(bad.as_bytes(), |_| None, "", b"k").is_err(),
                "{bad}"
            );
        }
        assert!(s.step(good.as_bytes(), |_| None, "", b"k").is_ok());
    }

    #[test]
    fn client_first_parsing_follows_rfc_5802() {
        let f = parse_client_first(b"n,a=a=3Db,n=x=2Cy=3Dz,r=N0NCE,ext=1").unwrap();
        assert_eq!(f.gs2_header, "n,a=a=3Db,");
        assert_eq!(f.authzid, "a=b");
        assert_eq!(f.user, "x,y=z");
        assert_eq!(f.nonce, "N0NCE");
        assert_eq!(f.bare, "n=x=2Cy=3Dz,r=N0NCE,ext=1");
        assert!(!f.token_auth);
        assert!(
            parse_client_first(b"n,,n=u,r=x,tokenauth=true")
                .unwrap()
                .token_auth
        );
        for bad in [
            &b""[..],
            b"n,,",
            b"y,,n=u,r=x",
            b"p=tls-unique,,n=u,r=x",
            b"n,,m=ext,n=u,r=x",
            b"n,,n=,r=x",
            b"n,,n=u=,r=x",
            b"n,,n=u=2c,r=x",
            b"n,,n=u,r=",
            b"n,,n=u,r=a b",
            b"n,,n=u",
            b"n,,r=x,n=u",
            b"n,x,n=u,r=x",
            b"n,,n=u,r=x,=1",
            b"n,,n=u,r=x,e1=v",
            b"n,,n=u,r=x,e=v",
            b"n,,n=u\0,r=x",
            b"n,,n=\xff,r=x",
        ] {
            assert!(
                parse_client_first(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn client_final_parsing() {
        let f = parse_client_final(b"c=biws,r=abc,ext=v,p=AAAA").unwrap();
        assert_eq!(f.channel_binding, b"n,,");
        assert_eq!(f.without_proof, "c=biws,r=abc,ext=v");
        assert_eq!(f.proof, vec![0, 0, 0]);
        for bad in [
            &b""[..],
            b"c=biws,r=abc",
            b"c=biws,p=AAAA",
            b"r=abc,c=biws,p=AAAA",
            b"c=b!ws,r=abc,p=AAAA",
            b"c=biws,r=abc,p=AAA",
            b"c=biws,r=,p=AAAA",
            b"c=biws,r=abc,x=1,p=AAAA",
        ] {
            assert!(
                parse_client_final(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
