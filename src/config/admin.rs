//! `[admin]`: where the HTTP admin interface listens and who may use it.
//!
//! A listener on a loopback address may go without tokens (only local processes reach it,
//! and the interface refuses requests whose `Host` or `Origin` names another site); any other
//! address must have tokens, since anyone who reaches it could otherwise rewrite the rules.

use std::net::SocketAddr;

use toml::Spanned;

use super::checker::Checker;
use super::names::index_names;
use super::raw::RawAdmin;

/// Tokens shorter than this are accepted with a warning: they can be guessed.
const SHORT_TOKEN: usize = 16;

/// The admin interface's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Who may use it: (name, token). Empty only on a loopback listener.
    pub tokens: Vec<(String, String)>,
}

pub(super) fn check_admin(
    ck: &mut Checker<'_>,
    raw: Option<&Spanned<RawAdmin>>,
) -> Option<AdminSettings> {
    let raw_spanned = raw?;
    let raw = raw_spanned.get_ref();
    let c = "admin";
    let listen = ck
        .required(&raw.listen, "listen", &raw_spanned.span(), c)
        .and_then(|l| match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                ck.error(
                    Some(&l.span()),
                    c,
                    format!(
                        "`listen`: `{}` is not IP:PORT (127.0.0.1:8080, [::1]:8080)",
                        l.get_ref()
                    ),
                );
                None
            }
        });
    index_names(ck, &raw.tokens, |t| &t.name, c, "token");
    let mut tokens = Vec::new();
    for t in &raw.tokens {
        let tc = super::names::ctx(c, "token", &t.get_ref().name, tokens.len());
        let r = t.get_ref();
        let name = super::names::name_of(ck, &r.name, &t.span(), &tc);
        let token = ck.required(&r.token, "token", &t.span(), &tc);
        if let Some(v) = token {
            let text = v.get_ref();
            if text.is_empty() || text.chars().any(|ch| ch.is_control() || ch == ' ') {
                ck.error(
                    Some(&v.span()),
                    &tc,
                    "`token` must be non-empty, without spaces or control characters",
                );
            } else if text.len() < SHORT_TOKEN {
                ck.warn(
                    &v.span(),
                    &tc,
                    &format!("`token` is shorter than {SHORT_TOKEN} characters: it can be guessed"),
                );
            }
        }
        if let (Some(n), Some(v)) = (name, token) {
            tokens.push((n.get_ref().clone(), v.get_ref().clone()));
        }
    }
    let listen = listen?;
    if raw.tokens.is_empty() && !listen.ip().is_loopback() {
        ck.error(
            raw.listen.as_ref().map(|l| l.span()).as_ref(),
            c,
            format!(
                "`tokens` are required: `listen` {listen} is not a loopback address, and anyone \
                 who reaches it could change the rules"
            ),
        );
    }
    Some(AdminSettings { listen, tokens })
}
