//! DKIM signatures checked by an independent implementation: Python's
//! dkimpy, against the DNS records `mta dkim show` prints.

use std::process::Command;

use crate::common::Server;

/// `mta dkim show` output as (DNS name, TXT value).
pub fn records(s: &Server) -> Vec<(String, String)> {
    let out = s.mta("dkim", &["show", "example.org"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let name = line
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('.')
                .to_string();
            // Join the quoted character-strings.
            let value: String = line.split('"').skip(1).step_by(2).collect();
            (name, value)
        })
        .collect()
}

const VERIFY: &str = r#"
import dkim, json, sys
message = open(sys.argv[1], "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
records = json.loads(sys.argv[2])
def dnsfunc(name, timeout=5):
    return records.get(name.decode().rstrip(".")).encode()
d = dkim.DKIM(message)
count = message.count(b"\r\nDKIM-Signature:") + message.startswith(b"DKIM-Signature:")
results = [d.verify(idx=i, dnsfunc=dnsfunc) for i in range(count)]
print(count, results)
sys.exit(0 if count == 2 and all(results) else 1)
"#;

fn verify(path: &std::path::Path, records: &[(String, String)]) -> (bool, String) {
    let json = format!(
        "{{{}}}",
        records
            .iter()
            .map(|(n, v)| format!("\"{n}\": \"{v}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(VERIFY)
        .arg(path)
        .arg(json)
        .output()
        .expect("python3");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn submitted_mail_is_dual_signed_and_dkimpy_verifies_both() {
    let s = Server::start("");
    s.submit(
        &["bob@example.org"],
        &[
            "--header",
            "Subject: signed",
            "--body",
            "A body\nwith lines.\n",
        ],
    );
    let files = s.wait_for_mail("bob@example.org", 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(text.matches("DKIM-Signature:").count(), 2, "{text}");
    assert!(
        text.contains("a=ed25519-sha256") && text.contains("a=rsa-sha256"),
        "{text}"
    );
    let h = text
        .split("h=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_lowercase();
    assert_eq!(h.matches("from").count(), 2, "From is oversigned: h={h}");

    let recs = records(&s);
    assert_eq!(recs.len(), 2, "{recs:?}");
    let (ok, out) = verify(&files[0], &recs);
    assert!(ok, "dkimpy: {out}");

    // A changed body must fail.
    let tampered = s.dir.path().join("tampered.eml");
    std::fs::write(&tampered, text.replace("with lines.", "with other lines.")).unwrap();
    let (ok, out) = verify(&tampered, &recs);
    assert!(!ok, "dkimpy accepted a tampered message: {out}");
}

#[test]
fn a_large_spooled_submission_is_signed_and_dkimpy_verifies_it() {
    let s = Server::start("");
    // Larger than what is kept in memory: spooled to a file, signed
    // through a memory map.
    let body: String = (0..40_000)
        .map(|i| {
            format!(
                "{}line {i} of a large message\n",
                if i % 7 == 0 { "." } else { "" }
            )
        })
        .collect();
    let path = s.dir.path().join("large-body.txt");
    std::fs::write(&path, &body).unwrap();
    let at_path = format!("@{}", path.display());
    s.submit(
        &["bob@example.org"],
        &["--header", "Subject: large", "--body", &at_path],
    );
    let files = s.wait_for_mail("bob@example.org", 1);
    let stored = std::fs::read(&files[0]).unwrap();
    assert!(stored.len() > 1_000_000, "{}", stored.len());
    let (ok, out) = verify(&files[0], &records(&s));
    assert!(ok, "dkimpy: {out}");
}

#[test]
fn rotation_adds_selectors_and_new_mail_uses_them() {
    let s = Server::start("");
    let before = records(&s);
    let out = s.mta("dkim", &["rotate", "example.org"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = records(&s);
    assert_eq!(after.len(), 4);
    assert!(
        before.iter().all(|b| after.contains(b)),
        "old records stay published"
    );
    s.wait_for_log("configuration reloaded");
    s.submit(&["bob@example.org"], &[]);
    let files = s.wait_for_mail("bob@example.org", 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let newest: Vec<&str> = after[2..]
        .iter()
        .map(|(n, _)| n.split('.').next().unwrap())
        .collect();
    for sel in &newest {
        assert!(
            text.contains(&format!("s={sel};")),
            "not signed with {sel}: {text}"
        );
    }
    let (ok, out) = verify(&files[0], &after);
    assert!(ok, "dkimpy: {out}");
}
