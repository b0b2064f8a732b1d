//! Digest authentication of callers (RFC 3261 §22.3, RFC 7616 with `qop=auth`, MD5 and
//! SHA-256; SPEC §4.1 item 3).
//!
//! Nonces are stateless: the time they were made and an HMAC of it, the realm and the
//! caller's address under the per-process secret, so nothing is stored until a nonce is
//! used. A nonce older than [`NONCE_LIFE`] is stale (`stale=true`: the caller retries with
//! the same password, no failure counted). Within its life, each use must carry a higher
//! `nc` than the last one seen: a replayed response is refused. The table of used nonces
//! is bounded (`MAX_NONCES`, oldest forgotten first) and each entry is dropped once its
//! nonce has expired. Responses are compared in constant time; no password, HA1 or
//! response is ever logged.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::secret::{hex, Secret};
use super::shrink::shrink;
use crate::policy::UserId;

/// How long a nonce may be used.
pub const NONCE_LIFE: Duration = Duration::from_secs(300);
/// Nonces whose `nc` is remembered at once.
const MAX_NONCES: usize = 100_000;

/// The digest algorithms offered, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Md5,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else {
            None
        }
    }

    /// The hex digest of `data`.
    pub fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
            Algorithm::Md5 => hex(&Md5::digest(data.as_bytes())),
        }
    }
}

/// What a user authenticates with.
#[derive(Clone)]
pub enum UserSecret {
    /// The password: any algorithm.
    Password(Box<str>),
    /// `auth_ha1`: MD5 of `username:realm:password`, for MD5 only.
    Ha1Md5(Box<str>),
}

impl std::fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserSecret(..)")
    }
}

/// A user who may authenticate.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user: UserId,
    pub secret: UserSecret,
}

/// A tenant's digest realm and its users, by `auth_username`.
#[derive(Clone, Debug, Default)]
pub struct Realm {
    pub realm: Box<str>,
    pub users: HashMap<Box<str>, AuthUser>,
}

/// Every tenant's realm, by tenant index.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    pub tenants: Vec<Realm>,
}

/// The `Proxy-Authorization` parameters that matter (RFC 7616 §3.4).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub uri: &'a str,
    pub response: &'a str,
    pub algorithm: Option<&'a str>,
    pub cnonce: &'a str,
    pub qop: &'a str,
    pub nc: &'a str,
}

impl<'a> Credentials<'a> {
    /// Reads `Digest k=v, k="v", ...`; `None` for another scheme or a broken header.
    pub fn parse(value: &'a str) -> Option<Self> {
        let value = value.trim_start();
        let (scheme, rest) = value.split_at(value.find(char::is_whitespace)?);
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let mut c = Credentials::default();
        let mut rest = rest.trim_start();
        while !rest.is_empty() {
            let eq = rest.find('=')?;
            let name = rest[..eq].trim();
            let after = rest[eq + 1..].trim_start();
            let (val, tail) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim_end(), &after[end..])
            };
            match name.to_ascii_lowercase().as_str() {
                "username" => c.username = val,
                "realm" => c.realm = val,
                "nonce" => c.nonce = val,
                "uri" => c.uri = val,
                "response" => c.response = val,
                "algorithm" => c.algorithm = Some(val),
                "cnonce" => c.cnonce = val,
                "qop" => c.qop = val,
                "nc" => c.nc = val,
                _ => {}
            }
            rest = tail.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        Some(c)
    }
}

/// What checking credentials found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Right: the user they belong to.
    Valid(UserId),
    /// Right, but the nonce is too old: challenge again with `stale=true`.
    Stale,
    /// Wrong: unknown user, wrong response, forged nonce, replayed `nc`, `qop` other than
    /// `auth`. Counts as a failure for the source.
    Invalid,
}

/// The response of RFC 7616 §3.4.1 with `qop=auth`, from HA1.
pub fn response(alg: Algorithm, ha1: &str, c: &Credentials<'_>, method: &str) -> String {
    let ha2 = alg.hash(&format!("{method}:{}", c.uri));
    alg.hash(&format!(
        "{ha1}:{}:{}:{}:{}:{ha2}",
        c.nonce, c.nc, c.cnonce, c.qop
    ))
}

/// Nonces, and the `nc` values already used with them.
#[derive(Default)]
pub struct Nonces {
    used: HashMap<Box<str>, u32>,
    order: VecDeque<(u64, Box<str>)>,
}

impl Nonces {
    /// A fresh nonce for `realm` and a caller at `ip`, made at `now_s` (seconds on the
    /// core's clock).
    pub fn make(secret: &Secret, now_s: u64, realm: &str, ip: IpAddr) -> String {
        format!("{now_s:x}.{}", Self::tag(secret, now_s, realm, ip))
    }

    fn tag(secret: &Secret, at: u64, realm: &str, ip: IpAddr) -> String {
        let ip = ip.to_string();
        hex(&secret.mac(&[b"nonce", &at.to_be_bytes(), realm.as_bytes(), ip.as_bytes()])[..16])
    }

    /// Checks credentials for a request of `method` from `ip` against `realm`.
    pub fn verify(
        &mut self,
        secret: &Secret,
        now_s: u64,
        ip: IpAddr,
        realm: &Realm,
        c: &Credentials<'_>,
        method: &str,
    ) -> Verdict {
        let Some(user) = realm.users.get(c.username) else {
            return Verdict::Invalid;
        };
        if c.realm != &*realm.realm || !c.qop.eq_ignore_ascii_case("auth") {
            return Verdict::Invalid;
        }
        let Some(alg) = Algorithm::parse(c.algorithm.unwrap_or("MD5")) else {
            return Verdict::Invalid;
        };
        let Some((at, tag)) = c.nonce.split_once('.') else {
            return Verdict::Invalid;
        };
        let Ok(at) = u64::from_str_radix(at, 16) else {
            return Verdict::Invalid;
        };
        let expected = Self::tag(secret, at, &realm.realm, ip);
        if !bool::from(expected.as_bytes().ct_eq(tag.as_bytes())) || at > now_s {
            return Verdict::Invalid;
        }
        let ha1 = match (&user.secret, alg) {
            (UserSecret::Password(p), alg) => {
                alg.hash(&format!("{}:{}:{p}", c.username, realm.realm))
            }
            (UserSecret::Ha1Md5(h), Algorithm::Md5) => h.to_ascii_lowercase(),
            (UserSecret::Ha1Md5(_), Algorithm::Sha256) => return Verdict::Invalid,
        };
        let expected = response(alg, &ha1, c, method);
        if !bool::from(
            expected
                .as_bytes()
                .ct_eq(c.response.to_ascii_lowercase().as_bytes()),
        ) {
            return Verdict::Invalid;
        }
        if now_s.saturating_sub(at) > NONCE_LIFE.as_secs() {
            return Verdict::Stale;
        }
        let Ok(nc) = u32::from_str_radix(c.nc, 16) else {
            return Verdict::Invalid;
        };
        self.expire(now_s);
        match self.used.get_mut(c.nonce) {
            Some(last) if nc <= *last => return Verdict::Invalid,
            Some(last) => *last = nc,
            None => {
                if self.used.len() >= MAX_NONCES {
                    if let Some((_, old)) = self.order.pop_front() {
                        self.used.remove(&old);
                    }
                }
                self.used.insert(c.nonce.into(), nc);
                self.order.push_back((at, c.nonce.into()));
            }
        }
        Verdict::Valid(user.user)
    }

    /// When [`Nonces::sweep`] has a nonce to forget, in seconds on the core's clock.
    pub fn next_expiry_s(&self) -> Option<u64> {
        self.order
            .front()
            .map(|(at, _)| at + NONCE_LIFE.as_secs() + 1)
    }

    /// Forgets the nonces that can no longer be used without waiting for the next
    /// credentials, and gives back the tables' room when mostly empty (the rule of
    /// [`super::shrink`]); returns whether it shrank them.
    pub fn sweep(&mut self, now_s: u64) -> bool {
        self.expire(now_s);
        let used = shrink(&mut self.used);
        shrink(&mut self.order) || used
    }

    /// Forgets the nonces that can no longer be used.
    fn expire(&mut self, now_s: u64) {
        while let Some((at, _)) = self.order.front() {
            if now_s.saturating_sub(*at) <= NONCE_LIFE.as_secs() {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.used.remove(&old);
            }
        }
    }

    /// Nonces remembered (for tests of the bound).
    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }
}

/// The `Proxy-Authenticate` values of a 407: SHA-256 first, then MD5 (RFC 7616 §3.7).
pub fn challenges(realm: &str, nonce: &str, stale: bool) -> [String; 2] {
    let stale = if stale { ", stale=true" } else { "" };
    [Algorithm::Sha256, Algorithm::Md5].map(|alg| {
        format!(
            "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
            alg.name()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1: the same request with MD5 and with SHA-256.
    #[test]
    fn rfc_7616_test_vectors() {
        let header = |alg: &str, resp: &str| {
            format!(
                "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
                 uri=\"/dir/index.html\", algorithm={alg}, \
                 nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
                 cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
                 response=\"{resp}\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            )
        };
        for (alg, expected) in [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let text = header(alg.name(), expected);
            let c = Credentials::parse(&text).unwrap();
            assert_eq!(c.username, "Mufasa");
            assert_eq!(c.nc, "00000001");
            let ha1 = alg.hash("Mufasa:http-auth@example.org:Circle of Life");
            assert_eq!(response(alg, &ha1, &c, "GET"), expected, "{alg:?}");
        }
    }

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

    /// Credentials as a phone would compute them for `nonce`.
    fn answer(user: &str, pw: &str, realm: &str, nonce: &str, nc: &str, alg: Algorithm) -> String {
        let mut c = Credentials {
            username: user,
            realm,
            nonce,
            uri: "sip:0034612345678@127.0.0.1",
            response: "",
            algorithm: Some(alg.name()),
            cnonce: "0a4f113b",
            qop: "auth",
            nc,
        };
        let ha1 = alg.hash(&format!("{user}:{realm}:{pw}"));
        let r = response(alg, &ha1, &c, "INVITE");
        c.response = &r;
        format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", \
             algorithm={}, cnonce=\"{}\", qop=auth, nc={}",
            c.username,
            c.realm,
            c.nonce,
            c.uri,
            r,
            alg.name(),
            c.cnonce,
            c.nc
        )
    }

    #[test]
    fn valid_stale_replayed_wrong_realm_and_forged() {
        let secret = Secret::new([7; 32]);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let realm = realm();
        let mut nonces = Nonces::default();
        let nonce = Nonces::make(&secret, 1000, "acme", ip);
        let check = |n: &mut Nonces, text: &str, now: u64, from: IpAddr| {
            let c = Credentials::parse(text).unwrap();
            n.verify(&secret, now, from, &realm, &c, "INVITE")
        };
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let nonce = Nonces::make(&secret, 900 + alg as u64, "acme", ip);
            let ok = answer("alice", "s3cret", "acme", &nonce, "00000001", alg);
            assert_eq!(
                check(&mut nonces, &ok, 1010, ip),
                Verdict::Valid(3),
                "{alg:?}"
            );
            assert_eq!(
                check(&mut nonces, &ok, 1011, ip),
                Verdict::Invalid,
                "the same nc again is a replay"
            );
            let next = answer("alice", "s3cret", "acme", &nonce, "00000002", alg);
            assert_eq!(check(&mut nonces, &next, 1012, ip), Verdict::Valid(3));
        }
        let wrong = answer("alice", "guess", "acme", &nonce, "00000001", Algorithm::Md5);
        assert_eq!(check(&mut nonces, &wrong, 1010, ip), Verdict::Invalid);
        let other_realm = answer(
            "alice",
            "s3cret",
            "other",
            &nonce,
            "00000001",
            Algorithm::Md5,
        );
        assert_eq!(check(&mut nonces, &other_realm, 1010, ip), Verdict::Invalid);
        let elsewhere: IpAddr = "127.0.0.3".parse().unwrap();
        let ok = answer(
            "alice",
            "s3cret",
            "acme",
            &nonce,
            "00000005",
            Algorithm::Md5,
        );
        assert_eq!(
            check(&mut nonces, &ok, 1010, elsewhere),
            Verdict::Invalid,
            "a nonce is bound to the address it was given to"
        );
        let forged = answer(
            "alice",
            "s3cret",
            "acme",
            "3e8.00",
            "00000001",
            Algorithm::Md5,
        );
        assert_eq!(check(&mut nonces, &forged, 1010, ip), Verdict::Invalid);
        assert_eq!(
            check(&mut nonces, &ok, 1000 + 301, ip),
            Verdict::Stale,
            "older than 5 minutes"
        );
        // auth_ha1 users answer MD5 challenges only.
        let bob = answer("bob", "pw", "acme", &nonce, "00000001", Algorithm::Md5);
        assert_eq!(check(&mut nonces, &bob, 1010, ip), Verdict::Valid(4));
        let bob256 = answer("bob", "pw", "acme", &nonce, "00000002", Algorithm::Sha256);
        assert_eq!(check(&mut nonces, &bob256, 1010, ip), Verdict::Invalid);
        // Used nonces are forgotten once they have expired.
        let later = Nonces::make(&secret, 5000, "acme", ip);
        let fresh = answer(
            "alice",
            "s3cret",
            "acme",
            &later,
            "00000001",
            Algorithm::Md5,
        );
        assert_eq!(check(&mut nonces, &fresh, 5000, ip), Verdict::Valid(3));
        assert_eq!(nonces.len(), 1);
        // ... and without waiting for the next credentials.
        assert_eq!(nonces.next_expiry_s(), Some(5301));
        nonces.sweep(5300);
        assert_eq!(nonces.len(), 1);
        nonces.sweep(5301);
        assert!(nonces.is_empty());
        assert_eq!(nonces.next_expiry_s(), None);
    }

    #[test]
    fn challenges_offer_sha256_then_md5() {
        let [a, b] = challenges("acme", "n", true);
        assert!(a.contains("algorithm=SHA-256") && a.ends_with("stale=true"));
        assert!(b.contains("algorithm=MD5") && b.contains("qop=\"auth\""));
    }
}
