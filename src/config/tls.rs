//! `[tls]` (SPEC §5.2): the certificate and key of `tls:` listeners, the trust roots for
//! `tls:` next hops, a client certificate for next hops that want one, and whether clients
//! must show a certificate. Every file is read and handed to rustls here, so that a file
//! that does not load is a configuration error (with the file and the reason) at
//! `validate`, at start and at reload, where a reload keeps the certificates in force.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use toml::Spanned;

use super::checker::Checker;
use super::raw::{RawTls, Str};
use crate::proxy::{Peer, Transport};
use crate::transport::tls::{read_certificates, read_key, TlsError, TlsFiles, TlsSettings};

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The TLS settings, when anything uses TLS (a `tls:` listener or next hop, or `[tls]`).
/// `listen` (`server.listen` as written) is looked through for `tls:` entries, which need
/// `certificate` and `key`; `hops` are every next hop.
pub(super) fn check_tls(
    ck: &mut Checker<'_>,
    raw: Option<&Spanned<RawTls>>,
    listen: Option<&Spanned<Vec<Str>>>,
    hops: &[Peer],
    base: &Path,
) -> Option<Arc<TlsSettings>> {
    let c = "tls";
    let tls_hop = hops.iter().any(|h| h.transport == Transport::Tls);
    // Entries that do not parse were reported by the `[server]` check already.
    let tls_listeners: Vec<_> = listen
        .map_or(&[][..], |l| l.get_ref())
        .iter()
        .filter(|l| {
            l.get_ref()
                .parse::<Peer>()
                .is_ok_and(|p| p.transport == Transport::Tls)
        })
        .map(Str::span)
        .collect();
    let Some(raw_spanned) = raw else {
        for span in &tls_listeners {
            ck.error(
                Some(span),
                "server",
                "`listen`: a tls: listener needs `[tls]` with `certificate` and `key`",
            );
        }
        // A tls: next hop alone is verified against the system's trust roots.
        return tls_hop.then(|| {
            let files = TlsFiles {
                identity: None,
                ca: None,
                client_identity: None,
                client_ca: None,
            };
            TlsSettings::new(files).ok().map(Arc::new)
        })?;
    };
    let raw = raw_spanned.get_ref();
    let table = raw_spanned.span();
    let errors_before = ck.errors.len();
    let identity = pair(ck, &raw.certificate, &raw.key, ("certificate", "key"), base);
    if identity.is_none() && raw.certificate.is_none() {
        for span in &tls_listeners {
            ck.error(
                Some(span),
                "server",
                "`listen`: a tls: listener needs `[tls] certificate` and `key`",
            );
        }
    }
    let client_identity = pair(
        ck,
        &raw.client_certificate,
        &raw.client_key,
        ("client_certificate", "client_key"),
        base,
    );
    let ca = raw
        .ca
        .as_ref()
        .and_then(|p| certificates(ck, p, "ca", base));
    let verify_client = raw.verify_client.unwrap_or(false);
    let client_ca = match (&raw.client_ca, verify_client) {
        (Some(p), true) => certificates(ck, p, "client_ca", base),
        (None, true) => match &raw.ca {
            Some(_) => ca.clone(),
            None => {
                ck.error(
                    Some(&table),
                    c,
                    "`verify_client = true` needs `client_ca` (or `ca`): the roots clients' \
                     certificates must chain to",
                );
                None
            }
        },
        (Some(p), false) => {
            ck.warn(
                &p.span(),
                c,
                "`client_ca` is not used unless `verify_client = true`",
            );
            None
        }
        (None, false) => None,
    };
    if ck.errors.len() > errors_before {
        return None;
    }
    let files = TlsFiles {
        identity,
        ca,
        client_identity,
        client_ca,
    };
    match TlsSettings::new(files) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            let (key, message) = match e {
                TlsError::Identity(m) => (&raw.key, m),
                TlsError::ClientIdentity(m) => (&raw.client_key, m),
                TlsError::Ca(m) => (&raw.ca, m),
                TlsError::ClientCa(m) => (
                    if raw.client_ca.is_some() {
                        &raw.client_ca
                    } else {
                        &raw.ca
                    },
                    m,
                ),
            };
            let span = key.as_ref().map_or(table.clone(), Str::span);
            ck.error(Some(&span), c, message);
            None
        }
    }
}

/// A certificate file and its key, both given or neither.
fn pair(
    ck: &mut Checker<'_>,
    cert: &Option<Str>,
    key: &Option<Str>,
    (cert_name, key_name): (&str, &str),
    base: &Path,
) -> Option<Identity> {
    let c = "tls";
    match (cert, key) {
        (None, None) => None,
        (Some(cp), None) => {
            ck.error(
                Some(&cp.span()),
                c,
                format!("`{cert_name}` needs `{key_name}`"),
            );
            None
        }
        (None, Some(k)) => {
            ck.error(
                Some(&k.span()),
                c,
                format!("`{key_name}` needs `{cert_name}`"),
            );
            None
        }
        (Some(cp), Some(kp)) => {
            let chain = certificates(ck, cp, cert_name, base);
            let key = match read_key(&base.join(kp.get_ref())) {
                Ok(k) => Some(k),
                Err(e) => {
                    ck.error(Some(&kp.span()), c, format!("`{key_name}`: {e}"));
                    None
                }
            };
            Some((chain?, key?))
        }
    }
}

fn certificates(
    ck: &mut Checker<'_>,
    path: &Str,
    key: &str,
    base: &Path,
) -> Option<Vec<CertificateDer<'static>>> {
    read_certificates(&base.join(path.get_ref()))
        .map_err(|e| ck.error(Some(&path.span()), "tls", format!("`{key}`: {e}")))
        .ok()
}
