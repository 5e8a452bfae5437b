//! CONDSTORE and QRESYNC (RFC 7162): what a client that keeps a copy of a
//! folder needs to bring it up to date cheaply. Every message has a MODSEQ
//! that grows with each change of its flags, and the store remembers the
//! UIDs expunged and when; so a client tells the MODSEQ it last saw and
//! hears only what changed since (`FETCH … (CHANGEDSINCE m)`, `SELECT …
//! (QRESYNC (v m))`) and what vanished (`VANISHED (EARLIER)`), and stores
//! flags only on messages nobody changed meanwhile (`UNCHANGEDSINCE`).
//!
//! CONDSTORE is on for the session once the client uses any of it (§3.1);
//! QRESYNC only after `ENABLE QRESYNC` (§3.2.3), and then expunges are
//! told as `VANISHED` and switching folders as `OK [CLOSED]`.

use std::num::{NonZeroU32, NonZeroU64};

use imap_codec::imap_types::core::{Tag, Vec1};
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::Session;
use super::messages::{contains, flag_list};
use crate::imap::store::{Folder, Message};

/// `numbers` as a sequence set of ranges (`3:5,9`); `None` when empty.
pub(super) fn compact(mut numbers: Vec<u32>) -> Option<SequenceSet> {
    numbers.sort_unstable();
    numbers.dedup();
    let mut ranges: Vec<Sequence> = Vec::new();
    let mut push = |a: NonZeroU32, b: NonZeroU32| {
        ranges.push(if a == b {
            Sequence::Single(SeqOrUid::Value(a))
        } else {
            Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Value(b))
        });
    };
    let mut numbers = numbers.into_iter().filter_map(NonZeroU32::new);
    let first = numbers.next()?;
    let (mut a, mut b) = (first, first);
    for n in numbers {
        if n.get() == b.get() + 1 {
            b = n;
        } else {
            push(a, b);
            (a, b) = (n, n);
        }
    }
    push(a, b);
    Vec1::try_from(ranges).ok().map(SequenceSet)
}

impl Session {
    /// ENABLE (RFC 5161): CONDSTORE, QRESYNC (which implies it) and
    /// IMAP4rev2; the answer names only what this command turned on.
    pub(super) fn enable(&mut self, tag: Tag<'static>, wanted: &[CapabilityEnable<'static>]) {
        let mut enabled = Vec::new();
        for capability in wanted {
            let name = capability.to_string();
            if name.eq_ignore_ascii_case("IMAP4rev2") && !self.rev2 {
                self.rev2 = true;
                enabled.push(capability.clone());
            } else if name.eq_ignore_ascii_case("QRESYNC") && !self.qresync {
                self.qresync = true;
                self.condstore = true;
                enabled.push(capability.clone());
            } else if matches!(capability, CapabilityEnable::CondStore) && !self.condstore {
                self.condstore = true;
                enabled.push(capability.clone());
            }
        }
        self.respond(&Response::Data(Data::Enabled {
            capabilities: enabled,
        }));
        self.ok(tag, None, "ENABLE completed");
    }

    /// An untagged FETCH telling the client what it should know of
    /// `message`: its UID (with `uid`), its flags (with `flags`) and, with
    /// CONDSTORE on, its MODSEQ.
    pub(super) fn tell(&mut self, seq: u32, message: &Message, uid: bool, flags: bool) {
        let mut items = Vec::new();
        if uid && let Some(u) = NonZeroU32::new(message.uid) {
            items.push(MessageDataItem::Uid(u));
        }
        if flags {
            let recent = self.is_recent(message.uid);
            items.push(MessageDataItem::Flags(flag_list(message.flags, recent)));
        }
        if self.condstore
            && let Some(m) = NonZeroU64::new(message.modseq)
        {
            items.push(MessageDataItem::ModSeq(m));
        }
        if let (Some(seq), Ok(items)) = (NonZeroU32::new(seq), Vec1::try_from(items)) {
            self.respond(&Response::Data(Data::Fetch { seq, items }));
        }
    }

    /// The UIDs of folder `name` expunged after `since` that `known`
    /// names (all when `None`), as one `VANISHED (EARLIER)`.
    pub(super) fn vanished_since(&mut self, name: &str, since: u64, known: Option<&SequenceSet>) {
        let Some(account) = self.account().map(str::to_string) else {
            return;
        };
        let Ok(mut uids) = self.mailboxes.expunged_since(&account, name, since) else {
            return;
        };
        uids.retain(|uid| known.is_none_or(|k| contains(k, *uid, u32::MAX)));
        if let Some(set) = compact(uids) {
            self.respond(&Response::Data(Data::Vanished {
                earlier: true,
                known_uids: set,
            }));
        }
    }

    /// SELECT's QRESYNC (RFC 7162 §3.2.5): for a client whose copy has
    /// the folder's UIDVALIDITY, what vanished and what changed since
    /// the MODSEQ it names.
    pub(super) fn resync(
        &mut self,
        name: &str,
        folder: &Folder,
        validity: u32,
        since: u64,
        known: Option<&SequenceSet>,
    ) {
        if validity != folder.uid_validity {
            // The client's copy is of another folder: it starts over.
            return;
        }
        self.vanished_since(name, since, known);
        for (i, message) in folder.messages.iter().enumerate() {
            if message.modseq > since {
                self.tell(i as u32 + 1, message, true, true);
            }
        }
    }

    /// Messages whose flags another session changed since the client was
    /// last told (`before`, by UID): told with their new flags, numbered
    /// as in `now`.
    pub(super) fn tell_flag_changes(&mut self, before: &[Message], now: &[Message]) {
        for (i, m) in now.iter().enumerate() {
            let changed = before
                .binary_search_by_key(&m.uid, |b| b.uid)
                .is_ok_and(|j| before[j].modseq != m.modseq || before[j].flags != m.flags);
            if changed {
                self.tell(i as u32 + 1, m, true, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::compact;

    #[test]
    fn numbers_become_ranges() {
        let set = |v: Vec<u32>| {
            compact(v).map(|known_uids| {
                let data = imap_codec::imap_types::response::Response::Data(
                    imap_codec::imap_types::response::Data::Vanished {
                        earlier: false,
                        known_uids,
                    },
                );
                let bytes = imap_codec::encode::Encoder::encode(
                    &imap_codec::ResponseCodec::default(),
                    &data,
                )
                .dump();
                String::from_utf8(bytes).unwrap()["* VANISHED ".len()..]
                    .trim_end()
                    .to_string()
            })
        };
        assert_eq!(
            set(vec![9, 3, 4, 5, 12, 11]).as_deref(),
            Some("3:5,9,11:12")
        );
        assert_eq!(set(vec![7]).as_deref(), Some("7"));
        assert_eq!(set(vec![]), None);
    }
}
