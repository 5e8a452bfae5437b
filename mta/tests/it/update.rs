//! Updates received over the HTTPS API (`PUT /api/update`, as `cargo
//! xtask deploy` sends them), with Python's urllib as the client: the
//! owner's bundle is checked and handed to init (`update/ready.bundle`);
//! tampered, foreign-key, other-board and older bundles are refused with
//! a clear answer and leave nothing behind; only the owner, only over
//! HTTPS, one update at a time.

use std::process::Command;

use crate::common::{PASSWORD, Server};

const CONFIG: &str = r#"
hostname = "mx.example.org"
domains = ["example.org"]
[[accounts]]
address = "owner@example.org"
# "Hello world!"
password = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
admin = true
[[accounts]]
address = "bob@example.org"
password = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
[[listeners]]
address = "127.0.0.1:0"
role = "mx"
[[listeners]]
address = "127.0.0.1:0"
role = "https"
[[listeners]]
address = "127.0.0.1:0"
role = "http"
"#;

const CLIENT: &str = r#"
import base64, ssl, sys, urllib.request, urllib.error
url, cafile, path, auth = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
req = urllib.request.Request(url, data=open(path, "rb").read(), method="PUT")
if auth:
    req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None
opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=ctx))
try:
    r = opener.open(req, timeout=60)
    print(r.status, r.read().decode().strip())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())
"#;

fn bundle(key: &[u8], board: &str, version: &str) -> Vec<u8> {
    let files = vec![
        ("vmlinuz".to_string(), vec![0x4du8; 300_000]),
        ("initrd.zst".to_string(), vec![0x28u8; 2_500_000]),
        (
            image::bundle::ENTRY.to_string(),
            b"linux /mailbox/@SLOT@/vmlinuz\n".to_vec(),
        ),
    ];
    let mut out = Vec::new();
    image::bundle::write(&mut out, key, board, version, &files).unwrap();
    out
}

/// PUTs `bytes`: the status and the answer's text.
fn put(s: &Server, https: bool, query: &str, bytes: &[u8], auth: &str) -> (u16, String) {
    let file = s.dir.path().join("upload.bundle");
    std::fs::write(&file, bytes).unwrap();
    let (scheme, port) = if https {
        ("https", s.listeners["https"].port())
    } else {
        ("http", s.listeners["http"].port())
    };
    let out = Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(format!("{scheme}://127.0.0.1:{port}/api/update{query}"))
        .arg(s.data().join("tls/self-signed.crt"))
        .arg(&file)
        .arg(auth)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, line) = text.split_once(' ').unwrap_or((&text, ""));
    (code.parse().unwrap(), line.to_string())
}

#[test]
fn only_the_owners_signed_bundle_for_this_board_is_handed_to_init() {
    let key = image::bundle::generate_key().unwrap();
    let public: String = image::bundle::public_key(&key)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let s = Server::start_with(
        CONFIG,
        &format!("[update]\npublic_key = \"{public}\"\nboard = \"pc-x86_64\"\n"),
    );
    let owner = format!("owner@example.org:{PASSWORD}");
    let ready = s.data().join("update/ready.bundle");
    let incoming = s.data().join("update/incoming.bundle");
    let good = bundle(&key, "pc-x86_64", "9.9.9");

    // Who may: the owner, over HTTPS.
    assert_eq!(put(&s, true, "", &good, "").0, 401);
    assert_eq!(put(&s, true, "", &good, "owner@example.org:wrong").0, 401);
    let (code, text) = put(&s, true, "", &good, &format!("bob@example.org:{PASSWORD}"));
    assert_eq!(
        (code, text.as_str()),
        (403, "only the owner may update the appliance")
    );
    // (A short body: the server answers without reading one.)
    let (code, _) = put(&s, false, "", &good[..100], &owner);
    assert_ne!(code, 200, "over plain HTTP");
    assert!(!ready.exists());

    // Refused before anything is handed over, with the reason.
    let mut tampered = good.clone();
    let last = tampered.len() - 1000;
    tampered[last] ^= 1;
    let other_key = image::bundle::generate_key().unwrap();
    for (bytes, expected) in [
        (
            tampered,
            "the bundle's file initrd.zst does not match its signed hash (tampered with or damaged)",
        ),
        (
            bundle(&other_key, "pc-x86_64", "9.9.9"),
            "the bundle is not signed by the key this appliance trusts (tampered with, or signed with another key)",
        ),
        (
            bundle(&key, "rpi4", "9.9.9"),
            "the bundle is for board rpi4, this appliance is pc-x86_64",
        ),
        (
            bundle(&key, "pc-x86_64", "0.0.1"),
            "the bundle holds version 0.0.1, older than the running 0.1.0 (force to install it anyway)",
        ),
        (
            b"<html>not a bundle</html>".to_vec(),
            "this is not an update bundle (it does not start with MBXUPD01)",
        ),
    ] {
        let (code, text) = put(&s, true, "", &bytes, &owner);
        assert_eq!((code, text.as_str()), (422, expected));
        assert!(!ready.exists() && !incoming.exists(), "{expected}");
    }

    // The owner's bundle: handed to init whole.
    let (code, text) = put(&s, true, "", &good, &owner);
    assert_eq!(
        (code, text.as_str()),
        (
            200,
            "version 9.9.9 accepted; the appliance installs it and restarts (about a minute)"
        )
    );
    assert_eq!(std::fs::read(&ready).unwrap(), good);
    assert!(!incoming.exists());
    // One at a time: the next waits until init has taken it.
    let (code, _) = put(&s, true, "", &good, &owner);
    assert_eq!(code, 409);
    std::fs::remove_file(&ready).unwrap();
    // An older version when asked for.
    let (code, text) = put(
        &s,
        true,
        "?force=1",
        &bundle(&key, "pc-x86_64", "0.0.1"),
        &owner,
    );
    assert_eq!(code, 200, "{text}");
    assert!(s.data().join("update/force").exists());
}
