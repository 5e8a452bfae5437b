//! Message content in the session: DATA (dot-unstuffing, end marker, bare
//! CR/LF refusal, limits) and BDAT chunks, the end of a message and the
//! fields we add in front of it.

use super::*;

impl<T> Transaction<T> {
    /// Adds message content; past `max` bytes the content is dropped and the
    /// message marked oversize (the rest is still read, then refused).
    pub(super) fn append(&mut self, data: &[u8], max: u64) {
        if self.oversize {
            return;
        }
        if self.size + data.len() as u64 > max {
            self.oversize = true;
            self.body = Vec::new();
        } else {
            self.size += data.len() as u64;
            self.header.feed(data);
            self.body.extend_from_slice(data);
        }
    }

    /// BDAT content. RFC 3030 needs no dot-stuffing, but a bare CR or LF
    /// would still reach the next hop, which may take it for a line end (the
    /// SMTP smuggling class): each becomes CRLF. A CR that ends a chunk
    /// waits for the next one.
    pub(super) fn append_chunk(&mut self, data: &[u8], max: u64) {
        if !self.pending_cr && !data.iter().any(|&b| b == b'\r' || b == b'\n') {
            return self.append(data, max);
        }
        let mut out = Vec::with_capacity(data.len() + 64);
        for &b in data {
            if std::mem::take(&mut self.pending_cr) {
                out.extend_from_slice(b"\r\n");
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => out.extend_from_slice(b"\r\n"),
                _ => out.push(b),
            }
        }
        self.append(&out, max);
    }

    /// The end of the last BDAT chunk.
    pub(super) fn finish_chunks(&mut self, max: u64) {
        if std::mem::take(&mut self.pending_cr) {
            self.append(b"\r\n", max);
        }
    }
}

impl<D: Directory> Session<D> {
    pub(super) fn data_command(&mut self, arg: &str) {
        if !arg.is_empty() {
            return self.reply(501, "5.5.4", "Syntax: DATA".into());
        }
        match &self.tx {
            None => return self.reply(503, "5.5.1", "Error: need MAIL command".into()),
            Some(tx) if tx.recipients.is_empty() => {
                return self.reply(503, "5.5.1", "Error: need RCPT command".into());
            }
            Some(tx) if tx.chunked => {
                return self.reply(503, "5.5.1", "Error: DATA after BDAT".into());
            }
            Some(_) => {}
        }
        self.raw_reply(354, "", "End data with <CR><LF>.<CR><LF>".into());
        self.state = State::Data(DataScan {
            at_line_start: true,
            ..DataScan::default()
        });
    }

    pub(super) fn bdat_command(&mut self, arg: &str) -> Option<Step<D::Target>> {
        let mut words = arg.split_whitespace();
        let size = words.next().and_then(|w| w.parse::<u64>().ok());
        let last = match words.next() {
            None => false,
            Some(w) if w.eq_ignore_ascii_case("LAST") => true,
            Some(_) => {
                return Some(self.close_with(501, "5.5.4", "Syntax: BDAT count [LAST]"));
            }
        };
        let Some(size) = size.filter(|_| words.next().is_none()) else {
            // Without a valid count the rest of the stream cannot be framed.
            return Some(self.close_with(501, "5.5.4", "Syntax: BDAT count [LAST]"));
        };
        let refused = match &mut self.tx {
            None => Some((503, "5.5.1", "Error: need MAIL command".to_string())),
            Some(tx) if tx.recipients.is_empty() => {
                Some((503, "5.5.1", "Error: need RCPT command".to_string()))
            }
            Some(tx) => {
                tx.chunked = true;
                None
            }
        };
        self.state = State::Bdat(BdatChunk {
            remaining: size,
            last,
            refused,
        });
        None
    }

    /// Scans DATA input: dot-unstuffing, end marker, bare CR/LF, line and
    /// size limits.
    pub(super) fn data(&mut self) -> Option<Step<D::Target>> {
        let State::Data(scan) = &mut self.state else {
            unreachable!()
        };
        let tx = self.tx.as_mut().expect("DATA state has a transaction");
        loop {
            let input = self.input.bytes();
            if input.is_empty() {
                return Some(Step::NeedInput);
            }
            if scan.at_line_start && input[0] == b'.' {
                if input.len() < 3 {
                    // ".", ".\r": not enough to tell the end marker from a stuffed dot.
                    if b".\r\n".starts_with(input) {
                        return Some(Step::NeedInput);
                    }
                }
                if input.starts_with(b".\r\n") {
                    self.input.consume(3);
                    return Some(self.end_of_message());
                }
                if input.starts_with(b".\n")
                    || input.starts_with(b".\r") && input.get(2) != Some(&b'\n')
                {
                    return Some(self.close_with(
                        521,
                        "5.5.2",
                        "Error: bare <LF> or <CR> in the end-of-data marker",
                    ));
                }
                // Dot-stuffing (RFC 5321 §4.5.2): drop the first dot.
                self.input.consume(1);
                scan.at_line_start = false;
                scan.line_len += 1;
                continue;
            }
            let lf = input.iter().position(|&b| b == b'\n');
            let segment_end = lf.map_or(input.len(), |i| i + 1);
            let segment = &input[..segment_end];
            // A CR is only allowed right before LF.
            let bare_cr = segment
                .iter()
                .enumerate()
                .any(|(i, &b)| b == b'\r' && i + 1 < segment.len() && segment[i + 1] != b'\n')
                || (scan.prev_cr && segment[0] != b'\n');
            let bare_lf = match lf {
                Some(0) => !scan.prev_cr,
                Some(i) => segment[i - 1] != b'\r',
                None => false,
            };
            if bare_cr || bare_lf {
                let what = if bare_lf {
                    "Error: bare <LF> received"
                } else {
                    "Error: bare <CR> received"
                };
                return Some(self.close_with(521, "5.5.2", what));
            }
            scan.line_len += segment.len();
            if scan.line_len > MAX_TEXT_LINE {
                tx.long_line = true;
            }
            tx.append(segment, self.cfg.max_message_size);
            scan.prev_cr = lf.is_none() && segment.last() == Some(&b'\r');
            scan.at_line_start = lf.is_some();
            if lf.is_some() {
                scan.line_len = 0;
            }
            self.input.consume(segment_end);
        }
    }

    pub(super) fn bdat(&mut self) -> Option<Step<D::Target>> {
        let State::Bdat(chunk) = &mut self.state else {
            unreachable!()
        };
        let take = chunk.remaining.min(self.input.len() as u64) as usize;
        if chunk.refused.is_none() {
            let tx = self.tx.as_mut().expect("accepted BDAT has a transaction");
            tx.append_chunk(&self.input.bytes()[..take], self.cfg.max_message_size);
            if chunk.last && chunk.remaining == take as u64 {
                tx.finish_chunks(self.cfg.max_message_size);
            }
        }
        self.input.consume(take);
        chunk.remaining -= take as u64;
        if chunk.remaining > 0 {
            return Some(Step::NeedInput);
        }
        let last = chunk.last;
        let refused = chunk.refused.take();
        self.state = State::Command;
        if let Some((code, enhanced, text)) = refused {
            self.reply(code, enhanced, text);
            return self.closed();
        }
        let tx = self.tx.as_ref().expect("accepted BDAT has a transaction");
        if tx.oversize {
            self.tx = None;
            self.reply(552, "5.3.4", "Message size exceeds fixed limit".into());
            return self.closed();
        }
        if last {
            return Some(self.end_of_message());
        }
        let size = tx.size;
        self.reply(250, "2.0.0", format!("{size} octets received"));
        None
    }

    pub(super) fn end_of_message(&mut self) -> Step<D::Target> {
        self.state = State::Command;
        let mut tx = self.tx.take().expect("end of message needs a transaction");
        tx.header.finish();
        if tx.oversize {
            self.reply(552, "5.3.4", "Message size exceeds fixed limit".into());
            return self.after_reply();
        }
        if tx.long_line {
            self.reply(
                550,
                "5.6.0",
                format!(
                    "Message has a line longer than {} octets (RFC 5321 4.5.3.1.6)",
                    MAX_TEXT_LINE - 2
                ),
            );
            return self.after_reply();
        }
        let hops = tx.header.received;
        if hops >= MAX_HOPS {
            self.reply(
                554,
                "5.4.6",
                format!("Too many hops ({hops} Received: fields): a mail loop?"),
            );
            return self.after_reply();
        }
        let author_domain = match &self.authenticated {
            Some(account) => match self.check_authors(account, &tx.header) {
                Ok(domain) => domain,
                Err(text) => {
                    self.reply(553, "5.7.1", text);
                    return self.after_reply();
                }
            },
            None => None,
        };
        let id = self.clock.queue_id();
        let now = self.clock.now();
        let arrival = now.timestamp_micros().max(0) as u64;
        let (helo, esmtp) = self.helo.clone().unwrap_or_default();
        let mut prefix = self
            .received_header(id, &tx, &helo, esmtp, &now)
            .into_bytes();
        if self.authenticated.is_some() {
            // RFC 6409 §8: a submission server may add what the client's
            // software left out. A message without a header section is left
            // alone.
            let none = tx.header.empty;
            if !tx.header.date && !none {
                prefix.extend_from_slice(format!("Date: {}\r\n", now.to_rfc2822()).as_bytes());
            }
            if !tx.header.message_id && !none {
                prefix.extend_from_slice(
                    format!("Message-ID: <{id:016X}@{}>\r\n", self.cfg.hostname).as_bytes(),
                );
            }
        }
        let mut recipients = Vec::<(String, D::Target)>::new();
        for (original, targets) in &tx.recipients {
            for target in targets {
                // The same mailbox reached through several recipients gets one copy.
                if !recipients
                    .iter()
                    .any(|(_, t)| t == target || self.directory.same_mailbox(t, target))
                {
                    recipients.push((original.to_string(), target.clone()));
                }
            }
        }
        self.state = State::AwaitingCommit;
        Step::Submit(Submission {
            id,
            arrival,
            from: tx.from.map(|a| a.to_string()).unwrap_or_default(),
            client: format!("{helo} [{}]", self.peer),
            helo,
            auth: self.authenticated.clone(),
            recipients,
            size: prefix.len() as u64 + tx.size,
            prefix,
            rest: tx.body,
            transaction: tx.serial,
            author_domain,
        })
    }

    /// Submission: every address in the `From:` field must belong to the
    /// account, by the rules for the envelope sender (a DKIM signature
    /// vouches for it). Returns the domain to sign for.
    pub(super) fn check_authors(
        &self,
        account: &str,
        header: &HeaderScan,
    ) -> Result<Option<String>, String> {
        let authors = header.authors().map_err(|e| e.to_string())?;
        let mut domain = None;
        for text in authors {
            let owned = Address::parse(&text, true)
                .ok()
                .filter(|a| self.directory.may_send_as(account, a));
            let Some(address) = owned else {
                return Err(format!(
                    "<{}>: From: header address rejected: not owned by user {account}",
                    crate::logsafe::escape(&text)
                ));
            };
            domain.get_or_insert_with(|| address.domain().to_string());
        }
        Ok(domain)
    }

    pub(super) fn received_header(
        &self,
        id: u64,
        tx: &Transaction<D::Target>,
        helo: &str,
        esmtp: bool,
        now: &chrono::DateTime<chrono::FixedOffset>,
    ) -> String {
        // RFC 5321 §4.4 and the protocol names of RFC 3848 / RFC 6531.
        let mut proto = String::new();
        if tx.smtputf8 {
            proto.push_str("UTF8");
        }
        proto.push_str(if esmtp { "ESMTP" } else { "SMTP" });
        if self.tls.is_some() {
            proto.push('S');
        }
        if self.authenticated.is_some() {
            proto.push('A');
        }
        if tx.smtputf8 && !esmtp {
            proto = "UTF8SMTP".into();
        }
        let helo = sanitize_header_word(helo);
        let ip = match self.peer {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("IPv6:{v6}"),
        };
        let mut h = format!("Received: from {helo} ([{ip}])\r\n");
        if let Some(tls) = &self.tls {
            h.push_str(&format!("\t(using {tls})\r\n"));
        }
        if let (Some(user), true) = (&self.authenticated, self.cfg.trace_user) {
            h.push_str(&format!("\t(Authenticated sender: {user})\r\n"));
        }
        h.push_str(&format!(
            "\tby {} (Mailbox) with {proto} id {id:016X}",
            self.cfg.hostname
        ));
        // Like Postfix, name the recipient only when there is exactly one, so
        // a copy does not reveal the other (Bcc) recipients.
        if let [(rcpt, _)] = tx.recipients.as_slice() {
            h.push_str(&format!("\r\n\tfor <{rcpt}>"));
        }
        h.push_str(&format!("; {}\r\n", now.to_rfc2822()));
        h
    }
}
