//! A real browser for the web tests: headless Chromium through chromedriver,
//! spoken to with the W3C WebDriver protocol (JSON over HTTP) directly.
//! Screenshots go to `target/screenshots/`, at a desktop and a phone width.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

pub struct Driver {
    child: Child,
    port: u16,
    session: String,
}

impl Driver {
    pub fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (`cargo xtask test` installs chromium-driver)");
        let mut driver = Driver {
            child,
            port,
            session: String::new(),
        };
        let start = Instant::now();
        while driver.raw("GET", "/status", None).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The appliance's certificate is self-signed until ACME.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         format!("--window-size={},{}", DESKTOP.0, DESKTOP.1)]
            }
        }}});
        let created = driver
            .raw("POST", "/session", Some(caps))
            .expect("a browser session");
        driver.session = created["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        driver
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        // chromedriver may keep the connection open: read the header, then
        // exactly the body it announces.
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 65536];
        let (head_len, body_len) = loop {
            let n = tcp.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("chromedriver closed the connection".into());
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (end + 4, length);
            }
        };
        while raw.len() < head_len + body_len {
            let n = tcp.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let json = String::from_utf8_lossy(&raw[head_len..]);
        let value: Value = serde_json::from_str(&json).map_err(|e| format!("{e}: {json}"))?;
        if value["value"]["error"].is_string() {
            return Err(format!("{method} {path}: {}", value["value"]));
        }
        Ok(value)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.raw(method, &path, body)
            .unwrap_or_else(|e| panic!("{e}"))["value"]
            .clone()
    }

    pub fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_string()
    }

    /// Waits (up to 10 s) until the page's address satisfies `ok`; a click
    /// returns before the page it leads to is there.
    pub fn wait_url(&self, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let url = self.url();
            if ok(&url) {
                return url;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "still at {url}: {}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 10 s) for an element `css` whose text contains `text`.
    pub fn wait_text(&self, css: &str, text: &str) {
        let start = Instant::now();
        loop {
            let found = self.call(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            );
            let texts: Vec<String> = found
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e[ELEMENT].as_str())
                .filter_map(|id| {
                    self.raw(
                        "GET",
                        &format!("/session/{}/element/{id}/text", self.session),
                        None,
                    )
                    .ok()
                })
                .filter_map(|v| v["value"].as_str().map(str::to_string))
                .collect();
            if texts.iter().any(|t| t.contains(text)) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no {css} saying {text:?} (found {texts:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn find(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    /// The element's text as the page shows it.
    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.call("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Replaces the field's content with `text`, as typing does.
    pub fn fill(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Logs in on the login page the browser is sent to (or is on).
    pub fn log_in(&self, address: &str, password: &str) {
        self.wait_url(|u| u.contains("/login"));
        self.fill("#f-address", address);
        self.fill("#f-password", password);
        self.click("button[type=submit]");
    }

    /// Chooses the file at `path` in the file input `css`.
    pub fn choose_file(&self, css: &str, path: &std::path::Path) {
        let id = self.find(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": path.to_str().unwrap() })),
        );
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Saves the page as `target/screenshots/<name>-desktop.png` and
    /// `-phone.png`.
    pub fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        for (label, (width, height)) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.call(
                "POST",
                "/window/rect",
                Some(json!({"width": width, "height": height})),
            );
            let png = self.call("GET", "/screenshot", None);
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(png.as_str().unwrap())
                .unwrap();
            std::fs::write(dir.join(format!("{name}-{label}.png")), bytes).unwrap();
        }
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": DESKTOP.0, "height": DESKTOP.1})),
        );
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
