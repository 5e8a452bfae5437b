//! `[[listeners]]` and `[tls]`: the ports served and the certificate.

use super::check::Checker;
use super::*;

impl Checker<'_> {
    /// The listeners (by default, port 25 on every address).
    pub(super) fn listeners(&mut self, list: Option<&[RawListener]>) -> Vec<Listener> {
        match list {
            None => vec![Listener {
                address: "0.0.0.0:25".parse().expect("static address"),
                service: Service::Smtp(Role::Mx),
            }],
            Some(list) => {
                let mut out = Vec::new();
                for l in list {
                    let address = match l.address.get_ref().parse::<SocketAddr>() {
                        Ok(a) => a,
                        Err(_) => {
                            self.report(
                                l.address.span(),
                                format!(
                                    "listener address {:?} is not IP:PORT",
                                    l.address.get_ref()
                                ),
                                Some("for example \"0.0.0.0:25\" or \"[::]:25\""),
                            );
                            continue;
                        }
                    };
                    let service = match l.role.get_ref().as_str() {
                        "mx" => Service::Smtp(Role::Mx),
                        "submission" => Service::Smtp(Role::Submission),
                        "submissions" => Service::Smtp(Role::Submissions),
                        "http" => Service::Http,
                        "https" => Service::Https,
                        "imap" => Service::Imap {
                            implicit_tls: false,
                        },
                        "imaps" => Service::Imap { implicit_tls: true },
                        other => {
                            self.report(
                                l.role.span(),
                                format!("listener role {other:?} is not known"),
                                Some(
                                    "use \"mx\" (port 25), \"submission\" (587), \"submissions\" (465), \"http\" (80), \"https\" (443), \"imap\" (143) or \"imaps\" (993)",
                                ),
                            );
                            continue;
                        }
                    };
                    if address.port() != 0 && out.iter().any(|o: &Listener| o.address == address) {
                        self.report(l.address.span(), format!("{address} is listed twice"), None);
                        continue;
                    }
                    out.push(Listener { address, service });
                }
                out
            }
        }
    }

    pub(super) fn tls(&mut self, t: &RawTls) -> TlsFiles {
        for f in [&t.certificate, &t.key] {
            if !Path::new(f.get_ref()).is_absolute() {
                self.report(
                    f.span(),
                    format!("{:?} is not an absolute path", f.get_ref()),
                    None,
                );
            }
        }
        TlsFiles {
            certificate: t.certificate.get_ref().into(),
            key: t.key.get_ref().into(),
        }
    }
}
