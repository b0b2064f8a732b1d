//! The dialogs sipscreen admitted (SPEC §5.1): a To tag is not a pass. A dialog is made
//! from the first 1xx (with a To tag) or 2xx of an INVITE that was screened and forwarded,
//! and found again by Call-ID and the two tags, in either direction. It remembers both ends
//! as the INVITE saw them, so an in-dialog request (a re-INVITE included) always goes to
//! the other end of its dialog and never anywhere else. It ends when a BYE completes, when
//! its INVITE fails (early dialogs), or after `dialog_timeout_s` without a request.
//!
//! Bounded: at most `max_dialogs` (new calls get 503 beyond it, see the request path), and
//! every entry is removed when its dialog ends. Expiry has an index of its own, one entry
//! per live dialog (removed with it), checked lazily: a dialog whose entry comes due but
//! that saw a request since is put back at its new expiry. The maps give their room back
//! when mostly empty (the rule of [`super::shrink`]); the expiry index, a B-tree, frees its
//! nodes as it empties.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use super::shrink::shrink;
use super::Peer;
use crate::sip::Message;

/// A dialog, by index (timers name it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DialogId(pub(super) u64);

/// Which way a request goes in its dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the caller (the From tag is the INVITE's): towards the callee's side.
    Downstream,
    /// From the callee: towards the caller.
    Upstream,
}

#[derive(Debug)]
pub(super) struct Dialog {
    call_id: Box<str>,
    caller_tag: Box<str>,
    callee_tag: Box<str>,
    /// Where the INVITE came from.
    caller: Peer,
    /// Where the INVITE went (the branch that answered).
    callee: Peer,
    /// A 2xx came: no longer early.
    pub(super) confirmed: bool,
    /// When a request last came in this dialog.
    pub(super) last_request: Instant,
    key: u64,
    /// Its entry in the expiry index.
    expiry: Instant,
}

impl Dialog {
    /// Where a request of this dialog goes.
    pub(super) fn destination(&self, d: Direction) -> Peer {
        match d {
            Direction::Downstream => self.callee,
            Direction::Upstream => self.caller,
        }
    }
}

#[derive(Default)]
pub(super) struct Dialogs {
    by_key: HashMap<u64, DialogId>,
    dialogs: HashMap<DialogId, Dialog>,
    expiries: BTreeSet<(Instant, DialogId)>,
    /// Keys are a keyed hash of the Call-ID and the two tags (in either order), checked
    /// against the stored strings, so a lookup allocates nothing and nobody can aim
    /// collisions at the table.
    hasher: RandomState,
}

impl Dialogs {
    fn key(&self, call_id: &str, a: &str, b: &str) -> u64 {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        self.hasher.hash_one((call_id, lo, hi))
    }

    /// The dialog of an in-dialog request, and which way it goes.
    pub(super) fn find(&self, msg: &Message) -> Option<(DialogId, Direction)> {
        let from_tag = msg.from().and_then(|f| f.tag())?;
        let to_tag = msg.to().and_then(|t| t.tag())?;
        let call_id = msg.call_id();
        let id = *self.by_key.get(&self.key(call_id, from_tag, to_tag))?;
        let d = self.dialogs.get(&id)?;
        if &*d.call_id != call_id {
            return None;
        }
        if &*d.caller_tag == from_tag && &*d.callee_tag == to_tag {
            Some((id, Direction::Downstream))
        } else if &*d.callee_tag == from_tag && &*d.caller_tag == to_tag {
            Some((id, Direction::Upstream))
        } else {
            None
        }
    }

    pub(super) fn get(&self, id: DialogId) -> Option<&Dialog> {
        self.dialogs.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: DialogId) -> Option<&mut Dialog> {
        self.dialogs.get_mut(&id)
    }

    /// A 1xx/2xx with a To tag for a screened INVITE: the dialog it makes (or had made),
    /// and whether it is new. It expires `timeout` after its last request.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_response(
        &mut self,
        id: DialogId,
        response: &Message,
        caller: Peer,
        callee: Peer,
        confirmed: bool,
        now: Instant,
        timeout: Duration,
    ) -> Option<(DialogId, bool)> {
        let caller_tag = response.from().and_then(|f| f.tag())?;
        let callee_tag = response.to().and_then(|t| t.tag())?;
        let call_id = response.call_id();
        let key = self.key(call_id, caller_tag, callee_tag);
        if let Some(&existing) = self.by_key.get(&key) {
            let d = self.dialogs.get_mut(&existing)?;
            d.confirmed |= confirmed;
            return Some((existing, false));
        }
        self.by_key.insert(key, id);
        self.dialogs.insert(
            id,
            Dialog {
                call_id: call_id.into(),
                caller_tag: caller_tag.into(),
                callee_tag: callee_tag.into(),
                caller,
                callee,
                confirmed,
                last_request: now,
                key,
                expiry: now + timeout,
            },
        );
        self.expiries.insert((now + timeout, id));
        Some((id, true))
    }

    pub(super) fn remove(&mut self, id: DialogId) {
        if let Some(d) = self.dialogs.remove(&id) {
            if self.by_key.get(&d.key) == Some(&id) {
                self.by_key.remove(&d.key);
            }
            self.expiries.remove(&(d.expiry, id));
        }
    }

    /// When [`Dialogs::expire`] next has something to look at.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Ends the dialogs with no request for `timeout`; returns how many ended.
    pub(super) fn expire(&mut self, now: Instant, timeout: Duration) -> usize {
        let mut ended = 0;
        while let Some(&(at, id)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            let Some(d) = self.dialogs.get_mut(&id) else {
                continue;
            };
            let end = d.last_request + timeout;
            if end <= now {
                self.remove(id);
                ended += 1;
            } else {
                d.expiry = end;
                self.expiries.insert((end, id));
            }
        }
        ended
    }

    pub(super) fn len(&self) -> usize {
        self.dialogs.len()
    }

    /// Gives back the room of the maps when mostly empty; returns whether it did.
    pub(super) fn shrink(&mut self) -> bool {
        let by_key = shrink(&mut self.by_key);
        shrink(&mut self.dialogs) || by_key
    }
}
