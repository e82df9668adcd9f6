//! The `scram_messages` target: SCRAM client messages as a SASL listener receives them.

use josefine_meta::scram::ScramMechanism;

use crate::security::scram::{self, ScramServer, Step};

/// Feeds a SCRAM exchange. Byte 0 picks the mechanism (bit 0) and whether the user has a
/// credential (bit 1); the rest is split at its first NUL into a client-first and a
/// client-final message (without a NUL, the whole rest is the client-first message, then the
/// same bytes again as the final one). Invariants: no panic; the parsers accept exactly what the
/// server takes past the first step; a server-first message echoes the client nonce and is
/// printable; an exchange never authenticates with a proof the fuzzer made up unless the
/// credential is known, and the failure text is always Kafka's generic message or the
/// authorization-id one.
pub fn scram_messages(data: &[u8]) -> bool {
    let Some((&flags, rest)) = data.split_first() else {
        return false;
    };
    let mechanism = if flags & 1 == 0 {
        ScramMechanism::Sha256
    } else {
        ScramMechanism::Sha512
    };
    let known = flags & 2 != 0;
    let (first, last) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, rest),
    };
    // PBKDF2 at 4096 iterations is slow in a debug build: derive each credential once.
    static STORED: std::sync::OnceLock<[josefine_meta::scram::ScramCredential; 2]> =
        std::sync::OnceLock::new();
    let creds = STORED.get_or_init(|| {
        ScramMechanism::ALL.map(|m| scram::credential(m, "pw", b"fuzz-salt", 4096))
    });
    let stored = known.then(|| creds[flags as usize & 1].clone());
    let mut server = ScramServer::new(mechanism);
    let parsed = scram::parse_client_first(first);
    let step = server.step(first, |_| stored.clone(), "SERVERNONCE", b"fuzz-secret");
    let ok_message =
        |m: &str| m == scram::failed_message(mechanism) || m == scram::AUTHZID_MISMATCH;
    let challenge = match step {
        Ok(Step::Challenge(c)) => c,
        Ok(Step::Done { .. }) => panic!("authenticated on the first message"),
        Err(f) => {
            assert!(ok_message(&f.message), "unexpected failure text");
            return false;
        }
    };
    let parsed = parsed.expect("the server took a message its parser refuses");
    let text = std::str::from_utf8(&challenge).expect("server-first is UTF-8");
    assert!(
        text.starts_with(&format!("r={}SERVERNONCE,s=", parsed.nonce)),
        "server-first does not echo the client nonce"
    );
    assert!(text.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    let final_parsed = scram::parse_client_final(last).is_ok();
    match server.step(last, |_| unreachable!(), "", b"fuzz-secret") {
        Ok(Step::Done { server_final, .. }) => {
            assert!(known && final_parsed, "authenticated without a credential");
            assert!(server_final.starts_with(b"v="));
            true
        }
        Ok(Step::Challenge(_)) => panic!("a third step"),
        Err(f) => {
            assert!(ok_message(&f.message));
            true
        }
    }
}

pub(super) fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for flags in 0..4u8 {
        for (first, last) in [
            (&b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"[..], &b"c=biws,r=rOprNGfwEbeRWgbNEkqOSERVERNONCE,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="[..]),
            (b"n,a=u=2Cx,n=u=2Cx,r=abc,ext=1", b"c=bixhPXU9MkN4LA==,r=abcSERVERNONCE,e=x,p=AAAA"),
            (b"n,,n=u,r=x", b"c=biws,r=xSERVERNONCE,p=AAAA"),
        ] {
            let mut s = vec![flags];
            s.extend_from_slice(first);
            s.push(0);
            s.extend_from_slice(last);
            seeds.push(s);
        }
    }
    seeds
}
