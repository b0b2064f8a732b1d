//! The per-process secret behind everything a peer must not be able to guess (SPEC §5.1,
//! §6 item 7): Via branches, our To tags, digest nonces, and the order in which PIN prompt
//! ports are handed out. Values are HMAC-SHA256 of the secret over a purpose and a counter
//! (or the data to bind), so they are unpredictable without it; the secret itself comes
//! from the operating system's random source, drawn by the configuration layer (the core
//! stays deterministic: tests give it a fixed one).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// 32 random bytes, never logged.
#[derive(Clone)]
pub struct Secret {
    key: [u8; 32],
    counter: u64,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key, counter: 0 }
    }

    /// A secret from the operating system's random source.
    pub fn random() -> Result<Self, String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no random source: {e}"))?;
        Ok(Self::new(key))
    }

    /// HMAC-SHA256 of the parts, each prefixed by its length so that no two lists of parts
    /// give the same input.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// A fresh unpredictable number for `purpose`.
    pub fn next(&mut self, purpose: &str) -> u64 {
        self.counter += 1;
        let mac = self.mac(&[purpose.as_bytes(), &self.counter.to_be_bytes()]);
        u64::from_be_bytes(mac[..8].try_into().expect("8 bytes"))
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_depend_on_the_key_and_never_repeat() {
        let mut a = Secret::new([1; 32]);
        let mut b = Secret::new([2; 32]);
        let xs: Vec<u64> = (0..100).map(|_| a.next("branch")).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next("branch")).collect();
        let mut sorted = xs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 100);
        assert!(xs.iter().zip(&ys).all(|(x, y)| x != y));
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
