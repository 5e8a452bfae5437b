//! QUOTA (RFC 9208): one quota root, "", over all of an account's folders
//! (Maildir++ quotas count them together), with the STORAGE resource in
//! units of 1024 bytes. The limit is the owner's to set in the
//! configuration, so SETQUOTA is refused.

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::{AString, Tag, Vec1};
use imap_codec::imap_types::extensions::quota::{QuotaGet, Resource};
use imap_codec::imap_types::response::{Data, Response};

use super::{Session, rfc5530};

impl Session {
    /// Handles `body` if it is a QUOTA command; whether it was.
    pub(super) fn quota_command(&mut self, tag: Tag<'static>, body: &CommandBody<'static>) -> bool {
        let Some(account) = self.account().map(str::to_string) else {
            return false;
        };
        let root = || AString::try_from("").expect("an empty string");
        match body {
            CommandBody::GetQuotaRoot { mailbox } => match self.mailboxes.quota(&account) {
                Ok(quota) => {
                    let roots = quota.map(|_| root()).into_iter().collect();
                    self.respond(&Response::Data(Data::QuotaRoot {
                        mailbox: mailbox.clone(),
                        roots,
                    }));
                    if let Some((used, limit)) = quota {
                        self.tell_quota(used, limit);
                    }
                    self.ok(tag, None, "GETQUOTAROOT completed");
                }
                Err(e) => self.refuse(tag, e),
            },
            CommandBody::GetQuota { root: asked } => match self.mailboxes.quota(&account) {
                Ok(Some((used, limit))) if asked.as_ref().is_empty() => {
                    self.tell_quota(used, limit);
                    self.ok(tag, None, "GETQUOTA completed");
                }
                Ok(_) => self.no(
                    tag,
                    Some(rfc5530(b"NONEXISTENT")),
                    "there is no such quota root",
                ),
                Err(e) => self.refuse(tag, e),
            },
            CommandBody::SetQuota { .. } => self.no(
                tag,
                Some(rfc5530(b"NOPERM")),
                "the owner sets quotas in the configuration",
            ),
            _ => return false,
        }
        true
    }

    fn tell_quota(&mut self, used: u64, limit: u64) {
        let kib = |bytes: u64| bytes.div_ceil(1024);
        let quotas = Vec1::from(QuotaGet::new(Resource::Storage, kib(used), kib(limit)));
        self.respond(&Response::Data(Data::Quota {
            root: AString::try_from("").expect("an empty string"),
            quotas,
        }));
    }
}
