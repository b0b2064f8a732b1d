//! Dialog memory: the next hop of each dialog's INVITE, by Call-ID, for in-dialog requests
//! that reach us with our own address as Request-URI and no Route (peers that ignore
//! Record-Route, as SIPp's built-in scenarios do).
//!
//! Bounded: an entry is dropped after [`DIALOG_TTL`], when its dialog's BYE is answered, and
//! the oldest go first once there are more than the cap given.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::Peer;

/// How long the next hop of a dialog is remembered.
const DIALOG_TTL: Duration = Duration::from_secs(12 * 3600);

#[derive(Default)]
pub(super) struct Dialogs {
    hops: HashMap<Box<str>, (Peer, Instant)>,
    order: VecDeque<(Instant, Box<str>)>,
}

impl Dialogs {
    /// The next hop of the dialog `call_id`, if known.
    pub(super) fn hop(&self, call_id: &str) -> Option<Peer> {
        self.hops.get(call_id).map(|(hop, _)| *hop)
    }

    /// Remembers where the INVITE of `call_id` went; the expired, and the oldest beyond
    /// `cap`, are forgotten first.
    pub(super) fn remember(&mut self, now: Instant, call_id: &str, hop: Peer, cap: usize) {
        while let Some(&(at, _)) = self.order.front() {
            if now.duration_since(at) < DIALOG_TTL && self.hops.len() < cap {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                if self.hops.get(&id).is_some_and(|(_, t)| *t == at) {
                    self.hops.remove(&id);
                }
            }
        }
        self.hops.insert(call_id.into(), (hop, now));
        self.order.push_back((now, call_id.into()));
    }

    /// The dialog ended (its BYE was answered).
    pub(super) fn forget(&mut self, call_id: &str) {
        self.hops.remove(call_id);
    }
}
