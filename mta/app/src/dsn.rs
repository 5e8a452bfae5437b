//! Delivery status notifications (RFC 3464): the bounce a sender gets when
//! a recipient failed for good. A multipart/report with a human-readable
//! part, the machine-readable delivery-status part and the original
//! message's headers. Sent from the null sender, so a bounce never bounces.

use mta_store::envelope::{Envelope, Recipient};

/// The enhanced status code in a failure text (`550 5.1.1 …` → `5.1.1`).
pub fn status_code(reason: &str) -> String {
    reason
        .split_whitespace()
        .map(|w| w.trim_matches(['(', ')', ',', ';', ':']))
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(str::to_string)
        .unwrap_or_else(|| "5.0.0".to_string())
}

/// The notification (CRLF line ends) about `failed` recipients of
/// `envelope`, whose stored message is `original`: a bounce, or (with
/// `delayed`) a warning that delivery is still being retried.
pub fn report(
    hostname: &str,
    envelope: &Envelope,
    failed: &[&Recipient],
    original: &[u8],
    id: &str,
    delayed: bool,
) -> Vec<u8> {
    let boundary = format!("{}/{hostname}", envelope.id);
    let date = chrono::Local::now().to_rfc2822();
    let arrival = chrono::DateTime::from_timestamp_micros(envelope.arrival as i64)
        .map(|t| t.to_rfc2822())
        .unwrap_or_default();
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
    ));
    m.push_str(&format!("To: <{}>\r\n", envelope.from));
    m.push_str(if delayed {
        "Subject: Delayed Mail (still being retried)\r\n"
    } else {
        "Subject: Undelivered Mail Returned to Sender\r\n"
    });
    m.push_str(&format!("Date: {date}\r\n"));
    m.push_str(&format!("Message-ID: <{id}.bounce@{hostname}>\r\n"));
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str("This is a MIME-encapsulated message.\r\n\r\n");
    m.push_str(&format!("--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"));
    m.push_str(&format!(
        "This is the mail system at host {hostname}.\r\n\r\n"
    ));
    if delayed {
        m.push_str("Your message has not been delivered to one or more recipients yet.\r\n");
        m.push_str("It is still being retried; you will be told if it fails for good.\r\n\r\n");
    } else {
        m.push_str("Your message could not be delivered to one or more recipients.\r\n");
        m.push_str("It is attached below (headers only).\r\n\r\n");
    }
    for r in failed {
        m.push_str(&format!(
            "<{}>: {}\r\n",
            r.original,
            r.last_error.as_deref().unwrap_or("failed")
        ));
    }
    m.push_str(&format!("\r\n--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"));
    m.push_str(&format!("Reporting-MTA: dns; {hostname}\r\n"));
    m.push_str(&format!("X-Mailbox-Queue-ID: {}\r\n", envelope.id));
    m.push_str(&format!("Arrival-Date: {arrival}\r\n"));
    for r in failed {
        let reason = r.last_error.as_deref().unwrap_or("failed");
        let target = match &r.target {
            crate::directory::Target::Local { account, .. } => account.clone(),
            crate::directory::Target::Remote { address } => address.clone(),
        };
        m.push_str(&format!("\r\nFinal-Recipient: rfc822; {target}\r\n"));
        if !r.original.eq_ignore_ascii_case(&target) {
            m.push_str(&format!("Original-Recipient: rfc822; {}\r\n", r.original));
        }
        if delayed {
            let code = status_code(reason);
            let code = if code.starts_with('4') {
                code
            } else {
                "4.0.0".to_string()
            };
            m.push_str(&format!("Action: delayed\r\nStatus: {code}\r\n"));
        } else {
            m.push_str(&format!(
                "Action: failed\r\nStatus: {}\r\n",
                status_code(reason)
            ));
        }
        m.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", one_line(reason)));
    }
    m.push_str(&format!("\r\n--{boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n"));
    let mut out = m.into_bytes();
    out.extend_from_slice(mta_proto::message::header_section(original));
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Target;
    use mta_store::envelope::{QueueId, Status};

    #[test]
    fn status_codes_are_found_or_defaulted() {
        assert_eq!(status_code("RCPT TO: 550 5.1.1 <x>: User unknown"), "5.1.1");
        assert_eq!(
            status_code("example.net accepts no mail: null MX (RFC 7505, 5.1.10)"),
            "5.1.10"
        );
        assert_eq!(status_code("550 no"), "5.0.0");
        assert_eq!(
            status_code("gave up after 5days (4.4.7); last error: x"),
            "4.4.7"
        );
    }

    #[test]
    fn report_has_the_three_parts() {
        let env = Envelope {
            id: QueueId(1),
            from: "alice@example.org".into(),
            arrival: 0,
            client: String::new(),
            auth: None,
            recipients: vec![],
            held: false,
            warned: false,
            size: 0,
        };
        let r = Recipient {
            original: "bob@elsewhere.example".into(),
            target: Target::Remote {
                address: "bob@elsewhere.example".into(),
            },
            status: Status::Failed,
            attempts: 1,
            next_attempt: 0,
            last_error: Some("mx[192.0.2.1]:25: RCPT TO: 550 5.1.1 no such user".into()),
        };
        let original = b"Subject: hello\r\nFrom: alice@example.org\r\n\r\nsecret body\r\n";
        let dsn = String::from_utf8(report("mx.example.org", &env, &[&r], original, "B1", false))
            .unwrap();
        assert!(dsn.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(dsn.contains("Final-Recipient: rfc822; bob@elsewhere.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"), "{dsn}");
        assert!(
            dsn.contains("Subject: hello\r\n") && !dsn.contains("secret body"),
            "{dsn}"
        );
        assert!(dsn.contains("Auto-Submitted: auto-replied"));
        let warning =
            String::from_utf8(report("mx.example.org", &env, &[&r], original, "B2", true)).unwrap();
        assert!(
            warning.contains("Action: delayed\r\nStatus: 4.0.0\r\n"),
            "{warning}"
        );
    }
}
