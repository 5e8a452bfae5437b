//! Checking the raw configuration: spans turned into lines and columns,
//! one problem per mistake with help. The checks of each section are in a
//! file of their own beside this one.

use super::*;

pub(super) struct Checker<'a> {
    pub(super) source: &'a str,
    pub(super) problems: Vec<Problem>,
}

impl Checker<'_> {
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.source[..offset.min(self.source.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        (line, column)
    }

    pub(super) fn report(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: Option<&str>,
    ) {
        let (line, column) = self.position(span.start);
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
            help: help.map(str::to_string),
        });
    }

    pub(super) fn duration(
        &mut self,
        value: &Option<Spanned<String>>,
        default: Duration,
        name: &str,
    ) -> Duration {
        let Some(value) = value else { return default };
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                self.report(
                    value.span(),
                    format!("`{name}` = {:?} is not a duration: {e}", value.get_ref()),
                    Some("write a number with a unit, such as \"30s\", \"5m\" or \"1h\""),
                );
                default
            }
        }
    }

    pub(super) fn port(&mut self, value: &Option<Spanned<i64>>, default: u16) -> u16 {
        let Some(p) = value else { return default };
        match u16::try_from(*p.get_ref()) {
            Ok(v) if v > 0 => v,
            _ => {
                self.report(
                    p.span(),
                    format!("port {} is not a TCP port", p.get_ref()),
                    None,
                );
                default
            }
        }
    }

    pub(super) fn count(
        &mut self,
        value: &Option<Spanned<i64>>,
        default: usize,
        min: i64,
        name: &str,
    ) -> usize {
        let Some(value) = value else { return default };
        let v = *value.get_ref();
        if v < min {
            self.report(
                value.span(),
                format!("`{name}` must be at least {min}, not {v}"),
                None,
            );
            return default;
        }
        v as usize
    }

    pub(super) fn size(
        &mut self,
        value: &Option<Spanned<toml::Value>>,
        default: u64,
        name: &str,
    ) -> u64 {
        let Some(value) = value else { return default };
        let parsed = match value.get_ref() {
            toml::Value::Integer(n) if *n >= 0 => Some(*n as u64),
            toml::Value::String(s) => parse_size(s),
            _ => None,
        };
        match parsed {
            Some(n) => n,
            None => {
                self.report(
                    value.span(),
                    format!("`{name}` is not a size"),
                    Some(
                        "write a number of bytes, or a string such as \"50M\", \"512K\" or \"2G\"",
                    ),
                );
                default
            }
        }
    }
}

/// An address or a domain (routing keys), lower-cased; `None` if neither.
pub(super) fn address_or_domain(text: &str) -> Option<String> {
    let t = text.trim();
    if t.contains('@') {
        Address::parse(t, true).ok().map(|a| a.key())
    } else {
        normalise_domain(t).ok().filter(|d| !d.starts_with('['))
    }
}

/// `host:port`, with the port required.
pub(super) fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok().filter(|p| *p > 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}
