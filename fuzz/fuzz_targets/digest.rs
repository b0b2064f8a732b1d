//! Digest credentials (RFC 7616, `Proxy-Authorization`): `Credentials::parse` on arbitrary
//! text and, when it parses, `Nonces::verify` against a realm of two users (a password and
//! an `auth_ha1`) from two addresses at several times. Must never panic.
//!
//! So that the checks past the nonce's HMAC are reached, `@NONCE@` in the input stands for a
//! nonce the realm really gave (its time from the input's length) and `@RESPONSE@` for the
//! right response to the credentials as parsed.
#![no_main]

use std::collections::HashMap;
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use sipscreen::proxy::auth::{
    self, Algorithm, AuthUser, Credentials, Nonces, Realm, UserSecret, Verdict,
};
use sipscreen::proxy::Secret;

fn realm() -> Realm {
    let mut users = HashMap::new();
    users.insert(
        "alice".into(),
        AuthUser {
            user: 3,
            secret: UserSecret::Password("s3cret".into()),
        },
    );
    users.insert(
        "bob".into(),
        AuthUser {
            user: 4,
            secret: UserSecret::Ha1Md5(Algorithm::Md5.hash("bob:acme:pw").into()),
        },
    );
    Realm {
        realm: "acme".into(),
        users,
    }
}

fuzz_target!(|data: &[u8]| {
    let secret = Secret::new([7; 32]);
    let realm = realm();
    let ip: IpAddr = [127, 0, 0, 2].into();
    let made_at = 1000 + (data.len() as u64 % 400);
    let nonce = Nonces::make(&secret, made_at, "acme", ip);
    let text = String::from_utf8_lossy(data).replace("@NONCE@", &nonce);

    let Some(c) = Credentials::parse(&text) else {
        return;
    };
    // The right response for these credentials, as a phone that knows the password would
    // compute it.
    let right = {
        let alg = match c.algorithm.unwrap_or("MD5") {
            a if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
            _ => Algorithm::Md5,
        };
        let pw = if c.username == "bob" { "pw" } else { "s3cret" };
        let ha1 = alg.hash(&format!("{}:{}:{pw}", c.username, c.realm));
        auth::response(alg, &ha1, &c, "INVITE")
    };
    let text = text.replace("@RESPONSE@", &right);
    let Some(c) = Credentials::parse(&text) else {
        return;
    };

    let mut nonces = Nonces::default();
    let other: IpAddr = "2001:db8::1".parse().expect("an address");
    for (now, from) in [
        (made_at, ip),
        (made_at + 1, ip),
        (made_at + 301, ip),
        (made_at, other),
        (0, ip),
        (u64::MAX, ip),
    ] {
        let verdict = nonces.verify(&secret, now, from, &realm, &c, "INVITE");
        if let Verdict::Valid(user) = verdict {
            assert!(user == 3 || user == 4);
            assert_eq!(c.realm, "acme");
            assert!(c.qop.eq_ignore_ascii_case("auth"));
        }
    }
    assert!(nonces.len() <= 1, "one nonce was used");
});
