//! `[[listeners]]` and `[tls]`: the ports served and the certificate.

use super::check::Checker;
use super::*;

impl Checker<'_> {
    /// The listeners (by default, port 25 on every address).
    pub(super) fn listeners(&mut self, list: Option<&[RawListener]>) -> Vec<Listener> {
        match list {
            None => vec![Listener {
                address: "0.0.0.0:25".parse().expect("static address"),
                role: Role::Mx,
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
                    let role = match l.role.get_ref().as_str() {
                        "mx" => Role::Mx,
                        "submission" => Role::Submission,
                        "submissions" => Role::Submissions,
                        other => {
                            self.report(
                                l.role.span(),
                                format!("listener role {other:?} is not known"),
                                Some("use \"mx\" (port 25), \"submission\" (587) or \"submissions\" (465)"),
                            );
                            continue;
                        }
                    };
                    out.push(Listener { address, role });
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
