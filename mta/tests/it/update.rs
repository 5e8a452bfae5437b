//! Updates received over the HTTPS API (`PUT /api/update`, as `cargo
//! xtask deploy` sends them), with Python's urllib as the client: the
//! owner's bundle is checked and handed to init (`update/ready.bundle`);
//! tampered, foreign-key, other-board and older bundles are refused with
//! a clear answer and leave nothing behind; only the owner, only over
//! HTTPS, one update at a time. The admin's Update page does the same
//! from a browser (headless Chromium, with the page's progress bar) and
//! from a plain form post (urllib, multipart, no script).

use std::process::Command;

use crate::common::webdriver::Driver;
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

/// The `[update]` section trusting `key`'s public half.
fn trusting(key: &[u8]) -> String {
    let public: String = image::bundle::public_key(key)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("[update]\npublic_key = \"{public}\"\nboard = \"pc-x86_64\"\n")
}

#[test]
fn the_owner_uploads_a_bundle_on_the_update_page_and_sees_the_outcome() {
    let key = image::bundle::generate_key().unwrap();
    let s = Server::start_with(CONFIG, &trusting(&key));
    let ready = s.data().join("update/ready.bundle");
    // What init left after the last update: it was rolled back.
    std::fs::create_dir_all(s.data().join("update")).unwrap();
    std::fs::write(
        s.data().join("update/status"),
        "failed 0.0.9 version 0.0.9 did not start in its trial boots; 0.1.0 runs again\n",
    )
    .unwrap();
    let site = format!("https://127.0.0.1:{}", s.listeners["https"].port());
    let b = Driver::start();
    b.go(&format!("{site}/update"));
    b.log_in("owner@example.org", PASSWORD);
    b.wait_url(|u| u.ends_with("/update"));
    b.wait_text(
        "dl.summary",
        "The update to version 0.0.9 failed: version 0.0.9 did not start in its trial boots; 0.1.0 runs again",
    );
    b.wait_text(".notice.bad", "no mail was lost");
    b.screenshot("20-update-failed");

    // A damaged bundle: refused, said in place, nothing handed over.
    let good = bundle(&key, "pc-x86_64", "9.9.9");
    let mut damaged = good.clone();
    let inside = damaged.len() - 1000;
    damaged[inside] ^= 1;
    let file = s.dir.path().join("mailbox-pc-x86_64-9.9.9.bundle");
    std::fs::write(&file, &damaged).unwrap();
    b.choose_file("#f-bundle", &file);
    b.click("form[data-upload] button[type=submit]");
    b.wait_text(
        "[data-upload-result].notice.bad",
        "The bundle's file initrd.zst does not match its signed hash",
    );
    b.screenshot("21-update-refused");
    assert!(!ready.exists());

    // The right one: accepted, with the progress bar full.
    std::fs::write(&file, &good).unwrap();
    b.choose_file("#f-bundle", &file);
    b.click("form[data-upload] button[type=submit]");
    b.wait_text(
        "[data-upload-result].notice.ok",
        "Version 9.9.9 accepted; the appliance installs it and restarts",
    );
    b.screenshot("22-update-accepted");
    assert_eq!(std::fs::read(&ready).unwrap(), good);
    // The page now says a bundle is waiting for init.
    b.go(&format!("{site}/update"));
    b.wait_text(".card .notice.ok", "A bundle has been received");
}

/// Logs the owner in over HTTPS (`base cafile password` are the first
/// arguments) and reads the Update page: `web` (the session) and `page`.
/// The scripts below go on from there.
const AS_OWNER: &str = r#"
import re, ssl, sys, urllib.request, urllib.parse, http.cookiejar, uuid
base, cafile, password = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
web = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
web.open(base + "/login", data=urllib.parse.urlencode({"address": "owner@example.org", "password": password, "next": "/update"}).encode())
page = web.open(base + "/update").read().decode()
"#;

/// Runs `script` after [`AS_OWNER`] against `s`, with `args` after the
/// owner's: what it printed.
fn as_owner(s: &Server, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let base = format!("https://127.0.0.1:{}", s.listeners["https"].port());
    let cafile = s.data().join("tls/self-signed.crt");
    let mut all: Vec<&std::ffi::OsStr> = vec![base.as_ref(), cafile.as_ref(), PASSWORD.as_ref()];
    all.extend(args);
    crate::common::python(&format!("{AS_OWNER}{script}"), &all)
        .trim()
        .to_string()
}

/// Posts the Update page's form without a script, as a browser does:
/// multipart, the session's cookie and CSRF token (`path csrf_override`).
/// The page's flash.
const FORM_CLIENT: &str = r#"
path, csrf_override = sys.argv[4:6]
csrf = csrf_override or re.search(r'name="csrf" value="([^"]+)"', page).group(1)
boundary = uuid.uuid4().hex
body = b"".join([
    b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + csrf.encode() + b"\r\n",
    b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"u.bundle\"\r\nContent-Type: application/octet-stream\r\n\r\n" + open(path, "rb").read() + b"\r\n",
    b"--" + boundary.encode() + b"--\r\n",
])
req = urllib.request.Request(base + "/update", data=body, method="POST")
req.add_header("Content-Type", "multipart/form-data; boundary=" + boundary)
page = web.open(req).read().decode()
print(re.search(r'<div class="notice (ok|bad)" role="status">([^<]*)</div>', page).group(0))
"#;

#[test]
fn the_update_form_works_without_a_script_and_only_with_the_sessions_token() {
    let key = image::bundle::generate_key().unwrap();
    let s = Server::start_with(CONFIG, &trusting(&key));
    let ready = s.data().join("update/ready.bundle");
    let file = s.dir.path().join("u.bundle");
    std::fs::write(&file, bundle(&key, "pc-x86_64", "9.9.9")).unwrap();
    let post = |csrf: &str| as_owner(&s, FORM_CLIENT, &[file.as_os_str(), csrf.as_ref()]);
    let forged = post("not-the-token");
    assert!(
        forged.contains("bad") && forged.contains("That form had expired"),
        "{forged}"
    );
    assert!(!ready.exists());
    let posted = post("");
    assert!(
        posted.contains("ok") && posted.contains("Version 9.9.9 accepted"),
        "{posted}"
    );
    assert!(ready.exists());
}

/// The signed head of `bundle` (what `<board>.manifest` holds).
fn head(bundle: &[u8]) -> Vec<u8> {
    let len = u32::from_le_bytes(bundle[8..12].try_into().unwrap()) as usize;
    bundle[..12 + len + 64].to_vec()
}

/// Logs in and presses the Update page's "Check now" (a form post with
/// the session's token); the page's flash.
const CHECK_NOW: &str = r#"
csrf = re.search(r'action="/update/check"><input type="hidden" name="csrf" value="([^"]+)"', page).group(1)
page = web.open(base + "/update/check", data=urllib.parse.urlencode({"csrf": csrf}).encode()).read().decode()
print(re.search(r'<div class="notice (ok|bad)" role="status">([^<]*)</div>', page).group(2))
"#;

#[test]
fn a_newer_version_at_the_update_url_is_downloaded_and_a_foreign_one_is_not() {
    let key = image::bundle::generate_key().unwrap();
    // The update directory, served by Python's http.server.
    let feed = tempfile::tempdir().unwrap();
    let port = crate::common::pebble::free_port();
    let mut http = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(feed.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let publish = |bundle: &[u8], version: &str| {
        std::fs::write(
            feed.path()
                .join(format!("mailbox-pc-x86_64-{version}.bundle")),
            bundle,
        )
        .unwrap();
        std::fs::write(feed.path().join("pc-x86_64.manifest"), head(bundle)).unwrap();
    };
    // First it announces a bundle signed with another key.
    let stranger = image::bundle::generate_key().unwrap();
    publish(&bundle(&stranger, "pc-x86_64", "9.9.9"), "9.9.9");
    let mut s = Server::start_with(
        CONFIG,
        &format!(
            "{}url = \"http://127.0.0.1:{port}\"\ncheck_every = \"10s\"\n",
            trusting(&key)
        ),
    );
    let ready = s.data().join("update/ready.bundle");
    let wait_log = |s: &Server, needle: &str| {
        crate::common::wait_until(
            std::time::Duration::from_secs(40),
            || format!("no log line with {needle:?}"),
            || s.log_contains(needle).then_some(()),
        )
    };
    // Asked by itself after check_every.
    wait_log(
        &s,
        &format!(
            "update check at http://127.0.0.1:{port}/ failed: the bundle is not signed by the key this appliance trusts"
        ),
    );
    assert!(!ready.exists());
    // Then the right one: downloaded, checked, handed to init.
    let good = bundle(&key, "pc-x86_64", "9.9.9");
    publish(&good, "9.9.9");
    wait_log(
        &s,
        "version 9.9.9 downloaded; the appliance installs it and restarts",
    );
    assert_eq!(std::fs::read(&ready).unwrap(), good);

    // Init took it; a newer one is published and the owner asks at once
    // (the server now asks by itself only every hour, first after 2
    // minutes: only the button can bring it).
    std::fs::remove_file(&ready).unwrap();
    let config = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, config.replace("\"10s\"", "\"1h\"")).unwrap();
    s.restart();
    let newer = bundle(&key, "pc-x86_64", "9.9.10");
    publish(&newer, "9.9.10");
    let said = as_owner(&s, CHECK_NOW, &[]);
    assert!(said.contains("Asking the update URL now"), "{said}");
    wait_log(&s, "version 9.9.10 downloaded");
    assert_eq!(std::fs::read(&ready).unwrap(), newer);

    // A version that did not start here is not fetched again by itself.
    std::fs::remove_file(&ready).unwrap();
    std::fs::write(
        s.data().join("update/status"),
        "failed 9.9.11 version 9.9.11 did not start in its trial boots; 0.1.0 runs again\n",
    )
    .unwrap();
    publish(&bundle(&key, "pc-x86_64", "9.9.11"), "9.9.11");
    as_owner(&s, CHECK_NOW, &[]);
    wait_log(
        &s,
        "version 9.9.11 is offered, but it failed here before; upload it on this page to try it again",
    );
    assert!(!ready.exists());
    let _ = http.kill();
    let _ = http.wait();
}

/// Every file under `dir` with its content.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_none_or(|x| x != "sock") {
                files.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn data_in_a_newer_format_is_refused_and_left_untouched() {
    let mut s = Server::start_with(CONFIG, "");
    assert_eq!(
        std::fs::read_to_string(s.data().join("format")).unwrap(),
        "1\n"
    );
    s.kill();
    // As a newer version would leave it after migrating.
    std::fs::write(s.data().join("format"), "2\n").unwrap();
    let before = snapshot(&s.data());
    let out = Command::new(env!("CARGO_BIN_EXE_mta"))
        .arg("serve")
        .arg("--config")
        .arg(&s.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("is in format 2, written by a newer version of Mailbox; this version understands formats up to 1, so it changes nothing there"),
        "{said}"
    );
    assert_eq!(snapshot(&s.data()), before);
}
