//! A small blocking HTTP/1.1 client for the web tests: one connection per
//! request (`Connection: close`), plain or over TLS trusting the server's
//! self-signed certificate, with a cookie jar like a browser's.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::Server;

pub struct Browser {
    jar: HashMap<String, String>,
    tls: Arc<rustls::ClientConfig>,
    /// The name the server's certificate is for.
    name: String,
}

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn location(&self) -> &str {
        self.header("location").unwrap_or("")
    }

    /// The value of the (hidden) input named `name`.
    pub fn input(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("no input {name} in {}", self.body))
            + needle.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_string()
    }

    /// The texts of the elements with class `class` (errors, notices).
    pub fn texts(&self, class: &str) -> Vec<String> {
        self.body
            .split(&format!("class=\"{class}\""))
            .skip(1)
            .map(|rest| {
                let start = rest.find('>').unwrap() + 1;
                let end = rest[start..].find('<').unwrap() + start;
                rest[start..end].to_string()
            })
            .collect()
    }
}

impl Browser {
    /// A browser that trusts `server`'s self-signed certificate, made for
    /// the host name `name`.
    pub fn new(server: &Server, name: &str) -> Browser {
        // (A server with a configured certificate has none: HTTPS is then
        // not trusted by this browser.)
        Browser::trusting(&server.data().join("tls/self-signed.crt"), name)
    }

    /// A browser that trusts the certificates in the PEM file `roots`.
    pub fn trusting(roots: &std::path::Path, name: &str) -> Browser {
        let pem = std::fs::read(roots).unwrap_or_default();
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Browser {
            jar: HashMap::new(),
            tls: Arc::new(config),
            name: name.to_string(),
        }
    }

    pub fn get(&mut self, addr: SocketAddr, secure: bool, path: &str) -> Page {
        self.request(addr, secure, "GET", path, None)
    }

    pub fn post(
        &mut self,
        addr: SocketAddr,
        secure: bool,
        path: &str,
        form: &[(&str, &str)],
    ) -> Page {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.request(addr, secure, "POST", path, Some(body))
    }

    /// A POST of `body` as it is (`Content-Type` as a form's; servers that
    /// read XML ignore it).
    pub fn post_raw(&mut self, addr: SocketAddr, secure: bool, path: &str, body: &str) -> Page {
        self.request(addr, secure, "POST", path, Some(body.to_string()))
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.jar.get(name).map(String::as_str)
    }

    fn request(
        &mut self,
        addr: SocketAddr,
        secure: bool,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Page {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n",
            self.name,
            addr.port()
        );
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            head.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        if let Some(b) = &body {
            head.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let request = [head.into_bytes(), body.unwrap_or_default().into_bytes()].concat();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut raw = Vec::new();
        if secure {
            let conn = rustls::ClientConnection::new(
                self.tls.clone(),
                self.name.clone().try_into().unwrap(),
            )
            .unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            tls.write_all(&request).unwrap();
            // A server that closes without close_notify ends the read too.
            let _ = tls.read_to_end(&mut raw);
        } else {
            let mut tcp = tcp;
            tcp.write_all(&request).unwrap();
            tcp.read_to_end(&mut raw).unwrap();
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&raw)));
        let text = String::from_utf8_lossy(&raw[..split]).into_owned();
        let body = &raw[split + 4..];
        let head = text.as_str();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie")
                && let Some((name, value)) = v.split(';').next().and_then(|c| c.split_once('='))
            {
                if value.is_empty() || v.contains("Max-Age=0") {
                    self.jar.remove(name);
                } else {
                    self.jar.insert(name.to_string(), value.to_string());
                }
            }
        }
        let body = if headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
        {
            dechunk(body)
        } else {
            body.to_vec()
        };
        let body = String::from_utf8(body).expect("pages are UTF-8");
        Page {
            status,
            headers,
            body,
        }
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..eol]);
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let rest = &body[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
