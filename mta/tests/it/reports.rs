//! DMARC aggregate reports (issue 16): mail from a domain whose DMARC
//! record asks for reports is counted, and `mta reports send` sends the
//! report — gzip-compressed XML, read back here with Python's gzip and
//! ElementTree — to the `rua` addresses that may receive it: the domain's
//! own, and a third party's only with its authorisation record (RFC 7489
//! §7.1). The other domains' MX is an aiosmtpd peer, their DNS a dnslib
//! one (peer.py).

use crate::common::peer::{Options, Peer};
use crate::common::{AS_STRANGER, Client, Server, python, python_on_file};

const ZONE: &str = "\
sender.example. 60 IN MX 10 mx.elsewhere.example.
sender.example. 60 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"
_dmarc.sender.example. 60 IN TXT \"v=DMARC1; p=none; rua=mailto:dmarc@sender.example,mailto:reports@thirdparty.example,mailto:reports@unauthorised.example\"
sender.example._report._dmarc.thirdparty.example. 60 IN TXT \"v=DMARC1\"
thirdparty.example. 60 IN MX 10 mx.elsewhere.example.
unauthorised.example. 60 IN MX 10 mx.elsewhere.example.
other.example. 60 IN MX 10 mx.elsewhere.example.
mx.elsewhere.example. 60 IN A 127.0.0.1
";

/// The report in the message argv[1]: its gzip attachment's XML read
/// with ElementTree, printed as JSON (namespaces left out).
const READ_REPORT: &str = r#"
import email, email.policy, gzip, json, sys
import xml.etree.ElementTree as ET
msg = email.message_from_string(open(sys.argv[1]).read(), policy=email.policy.default)
part = next(p for p in msg.walk() if p.get_content_type() == "application/gzip")
root = ET.fromstring(gzip.decompress(part.get_payload(decode=True)))
for e in root.iter():
    e.tag = e.tag.split("}")[-1]
rows = []
for r in root.findall("record"):
    rows.append({
        "ip": r.findtext("row/source_ip"),
        "count": int(r.findtext("row/count")),
        "disposition": r.findtext("row/policy_evaluated/disposition"),
        "dkim": r.findtext("row/policy_evaluated/dkim"),
        "spf": r.findtext("row/policy_evaluated/spf"),
        "header_from": r.findtext("identifiers/header_from"),
        "envelope_from": r.findtext("identifiers/envelope_from"),
    })
print(json.dumps({
    "subject": str(msg["Subject"]),
    "from": str(msg["From"]),
    "org": root.findtext("report_metadata/org_name"),
    "domain": root.findtext("policy_published/domain"),
    "p": root.findtext("policy_published/p"),
    "rows": sorted(rows, key=lambda r: -r["count"]),
    "filename": part.get_filename(),
    "signed": "DKIM-Signature" in msg,
}))
"#;

#[test]
fn a_domain_that_asks_for_dmarc_reports_gets_one_at_its_addresses() {
    let peer = Peer::with(Options {
        zone: Some(ZONE),
        ..Options::default()
    });
    let s = Server::start(&format!(
        "{AS_STRANGER}[outbound]\nport = {}\nnameservers = [\"127.0.0.1:{}\"]\n",
        peer.smtp,
        peer.dns.unwrap()
    ));
    s.send_reports();
    let mut c = Client::greeted(s.addr);
    assert_eq!(c.cmd("EHLO mx.sender.example").code, 250);
    let text = |n: u32| format!("From: dave@sender.example\r\nSubject: m{n}\r\n\r\nHi.\r\n");
    // Two that pass (SPF for sender.example), one whose envelope is
    // another domain's: DMARC fails, p=none delivers it.
    for n in 0..2 {
        let r = c.send_mail("dave@sender.example", &["alice@example.org"], &text(n));
        assert_eq!(r.code, 250, "{r:?}");
    }
    let r = c.send_mail("eve@other.example", &["alice@example.org"], &text(2));
    assert_eq!(r.code, 250, "{r:?}");
    s.wait_for_mail("alice@example.org", 3);

    let said = s.send_reports();
    assert!(
        said.contains("the DMARC report of sender.example for"),
        "{said}"
    );
    assert!(
        said.contains("(3 messages) sent to dmarc@sender.example, reports@thirdparty.example"),
        "{said}"
    );
    // Two domains, two deliveries; the unauthorised third party gets none.
    let got = peer.wait_for(2);
    let mut rcpts: Vec<&str> = got
        .iter()
        .flat_map(|m| m.envelope["rcpt_tos"].as_array().unwrap())
        .map(|v| v.as_str().unwrap())
        .collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["dmarc@sender.example", "reports@thirdparty.example"]
    );
    assert_eq!(got[0].envelope["mail_from"], "postmaster@example.org");

    let report: serde_json::Value =
        serde_json::from_str(&python_on_file(READ_REPORT, &got[0].message, &[])).unwrap();
    assert_eq!(report["domain"], "sender.example");
    assert_eq!(report["org"], "mx.example.org");
    assert_eq!(report["p"], "none");
    assert_eq!(report["signed"], true);
    assert!(
        report["subject"]
            .as_str()
            .unwrap()
            .starts_with("Report Domain: sender.example Submitter: mx.example.org"),
        "{report}"
    );
    assert!(
        report["filename"]
            .as_str()
            .unwrap()
            .starts_with("mx.example.org!sender.example!"),
        "{report}"
    );
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    assert_eq!(rows[0]["count"], 2);
    assert_eq!(rows[0]["ip"], "127.0.0.1");
    assert_eq!(rows[0]["spf"], "pass");
    assert_eq!(rows[0]["disposition"], "none");
    assert_eq!(rows[1]["count"], 1);
    assert_eq!(rows[1]["spf"], "fail");
    assert_eq!(rows[1]["dkim"], "fail");
    assert_eq!(rows[1]["envelope_from"], "other.example");
    assert_eq!(rows[1]["header_from"], "sender.example");

    // Sent once.
    let again = s.mta("reports", &["send"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "no report to send\n"
    );
}

/// Sends a DMARC aggregate report (XML, gzip) and a TLS report (JSON,
/// gzip, RFC 8460's `multipart/report`) about example.org, and a DMARC
/// report about someone else's domain, as google.example would, with
/// smtplib to port argv[1]; prints each reply code.
const SEND_REPORTS: &str = r#"
import gzip, json, smtplib, sys
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

def dmarc(domain):
    xml = f"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata><org_name>google.example</org_name><email>noreply@google.example</email>
    <report_id>r-{domain}</report_id><date_range><begin>1764460800</begin><end>1764547199</end></date_range></report_metadata>
  <policy_published><domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>quarantine</p><sp>quarantine</sp><pct>100</pct></policy_published>
  <record><row><source_ip>192.0.2.10</source_ip><count>7</count>
    <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results><dkim><domain>{domain}</domain><result>pass</result></dkim><spf><domain>{domain}</domain><result>pass</result></spf></auth_results></record>
  <record><row><source_ip>203.0.113.5</source_ip><count>3</count>
    <policy_evaluated><disposition>quarantine</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results><spf><domain>spoof.example</domain><result>fail</result></spf></auth_results></record>
</feedback>"""
    msg = EmailMessage()
    msg["From"] = "noreply@google.example"
    msg["To"] = "alice@example.org"
    msg["Subject"] = f"Report domain: {domain} Submitter: google.example Report-ID: <r-{domain}>"
    msg.set_content("DMARC aggregate report")
    msg.add_attachment(gzip.compress(xml.encode()), maintype="application", subtype="gzip",
                       filename=f"google.example!{domain}!1764460800!1764547199.xml.gz")
    return msg

def tls():
    report = {
        "organization-name": "google.example",
        "date-range": {"start-datetime": "2025-11-30T00:00:00Z", "end-datetime": "2025-11-30T23:59:59Z"},
        "contact-info": "smtp-tls-reporting@google.example",
        "report-id": "tls-1",
        "policies": [{
            "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: enforce"],
                       "policy-domain": "example.org", "mx-host": ["mx.example.org"]},
            "summary": {"total-successful-session-count": 40, "total-failure-session-count": 2},
            "failure-details": [{"result-type": "certificate-expired", "receiving-mx-hostname": "mx.example.org",
                                 "failed-session-count": 2}],
        }],
    }
    msg = MIMEMultipart("report", report_type="tlsrpt")
    msg["From"] = "noreply@google.example"
    msg["To"] = "alice@example.org"
    msg["Subject"] = "Report Domain: example.org Submitter: google.example Report-ID: <tls-1>"
    msg["TLS-Report-Domain"] = "example.org"
    msg["TLS-Report-Submitter"] = "google.example"
    msg.attach(MIMEText("TLS report"))
    part = MIMEApplication(gzip.compress(json.dumps(report).encode()), "tlsrpt+gzip")
    part.add_header("Content-Disposition", "attachment", filename="google.example!example.org!1764460800!1764547199!tls-1.json.gz")
    msg.attach(part)
    return msg

s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="mx.google.example", timeout=60)
for m in [dmarc("example.org"), tls(), dmarc("elsewhere.example")]:
    s.send_message(m, "noreply@google.example", ["alice@example.org"])
    print(250)
# Anyone can write a report: one whose sender nothing vouches for.
forged = dmarc("example.org")
forged.replace_header("From", "noreply@nospf.example")
s.send_message(forged, "noreply@nospf.example", ["alice@example.org"])
print(250)
s.quit()
"#;

#[test]
fn reports_about_our_domains_are_read_and_listed() {
    let zone = "google.example. 60 IN MX 10 mx.google.example.\n\
                google.example. 60 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\n\
                mx.google.example. 60 IN A 127.0.0.1\n\
                nospf.example. 60 IN MX 10 mx.google.example.\n";
    let peer = Peer::with(Options {
        zone: Some(zone),
        ..Options::default()
    });
    let s = Server::start(&format!(
        "{AS_STRANGER}[outbound]\nnameservers = [\"127.0.0.1:{}\"]\n",
        peer.dns.unwrap()
    ));
    let list = || String::from_utf8_lossy(&s.mta("reports", &["list"]).stdout).to_string();
    assert_eq!(list(), "no report received yet\n");
    let sent = python(SEND_REPORTS, &[s.addr.port().to_string()]);
    assert_eq!(sent.lines().count(), 4, "{sent}");
    // Delivered as any mail, and read in the background.
    s.wait_for_mail("alice@example.org", 4);
    s.wait_for_log("looks like a report, but its sender is not authenticated: not read");
    s.wait_for_log("a TLS report from google.example about example.org: 40 passed, 2 failed");
    s.wait_for_log("a DMARC report from google.example about example.org: 7 passed, 3 failed");
    s.wait_for_log("a report about a domain that is not ours: not kept");
    let text = list();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "2025-11-30 google.example DMARC example.org: 7 passed, 3 failed (203.0.113.5 (quarantined): 3)",
            "2025-11-30 google.example TLS example.org: 40 passed, 2 failed (certificate-expired at mx.example.org: 2)",
        ],
        "{text}"
    );
}
