//! What mail programs ask the web: autoconfig and autodiscover, parsed by
//! an independent XML parser.

use super::*;

/// `xml` parsed by Python's ElementTree (an independent parser); returns
/// what `script` prints about the root element `r`.
fn parsed_xml(xml: &str, script: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sys, xml.etree.ElementTree as E\nr = E.fromstring(sys.stdin.read())\n{script}"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(xml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{xml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn mail_clients_find_the_submission_ports() {
    let mut w = Web::claimed("");
    // Thunderbird asks over plain HTTP, at autoconfig.<domain>.
    let r = w.http("/mail/config-v1.1.xml?emailaddress=owner%40example.org");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().contains("xml"));
    let servers = parsed_xml(
        &r.body,
        "p = r.find('emailProvider')\nprint(p.get('id'))\nfor s in p.findall('outgoingServer'):\n    print(s.find('hostname').text, s.find('port').text, s.find('socketType').text, s.find('username').text)",
    );
    assert_eq!(
        servers,
        "example.org\nmail.example.org 465 SSL %EMAILADDRESS%\nmail.example.org 587 STARTTLS %EMAILADDRESS%\n"
    );
    let https = w.s.listeners["https"];
    let r = w.b.post_raw(
        https,
        true,
        "/autodiscover/autodiscover.xml",
        "<Autodiscover><Request><EMailAddress>owner@example.org</EMailAddress></Request></Autodiscover>",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let ns = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}";
    let smtp = parsed_xml(
        &r.body,
        &format!(
            "p = r.find('{ns}Response/{ns}Account/{ns}Protocol')\nprint(p.find('{ns}Type').text, p.find('{ns}Server').text, p.find('{ns}Port').text, p.find('{ns}LoginName').text)"
        ),
    );
    assert_eq!(smtp, "SMTP mail.example.org 465 owner@example.org\n");
}
