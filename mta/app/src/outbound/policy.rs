//! The TLS policy for one MX host, decided from what DANE and MTA-STS say:
//! a pure function of the evidence, so every rule is unit-tested without a
//! network.

use super::dane::Tlsa;
use super::sts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// STARTTLS when offered (RFC 7435).
    Opportunistic,
    /// DANE-secured TLSA records (RFC 7672): the certificate matches one.
    Dane,
    /// TLSA records exist but none is usable: TLS without authentication.
    DaneUnusable,
    /// MTA-STS enforce (RFC 8461): WebPKI-valid for the MX name.
    Sts,
    /// A relay: verified TLS.
    Relay,
    /// An LMTP/SMTP transport to a configured host.
    Transport,
}

impl Policy {
    pub fn label(self) -> &'static str {
        match self {
            Policy::Dane => " (TLS verified by DANE)",
            Policy::Sts => " (TLS verified, MTA-STS)",
            Policy::Relay => " (TLS verified)",
            _ => "",
        }
    }
}

/// What DANE says about one MX host, without the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaneState {
    None,
    Usable,
    Unusable,
}

/// What to do with one MX host.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not this host: why.
    Skip(String),
    /// Deliver under this policy (with something worth logging).
    Use(Policy, Option<String>),
}

/// The TLS policy for one MX host of `domain`, from what DANE and MTA-STS
/// say (RFC 7672, RFC 8461): usable secure TLSA records decide (MTA-STS
/// does not override DANE, RFC 8461 §2); otherwise an MTA-STS policy in
/// enforce mode admits only the hosts it lists, over verified TLS, never
/// downgraded (§4.2); otherwise TLS records that exist but none usable
/// mean TLS without authentication; otherwise opportunistic STARTTLS. A
/// policy in testing mode only reports an unlisted host.
pub fn decide(dane: DaneState, sts: Option<&sts::Policy>, host: &str, domain: &str) -> Decision {
    if dane == DaneState::Usable {
        return Decision::Use(Policy::Dane, None);
    }
    let enforce = sts.is_some_and(|p| p.mode == sts::Mode::Enforce);
    let listed = sts.is_none_or(|p| p.mode == sts::Mode::None || p.allows(host));
    let mut note = None;
    if !listed {
        let text = format!("{host} is not an MX host in the MTA-STS policy of {domain}");
        if enforce {
            return Decision::Skip(text);
        }
        note = Some(format!("{text} (policy in testing mode)"));
    }
    let policy = if enforce {
        Policy::Sts
    } else if dane == DaneState::Unusable {
        Policy::DaneUnusable
    } else {
        Policy::Opportunistic
    };
    Decision::Use(policy, note)
}

/// What DANE says about one MX host.
pub enum Dane {
    /// No TLSA records (or an insecure answer): DANE does not apply.
    None,
    /// Secure, usable TLSA records.
    Required(Vec<Tlsa>),
    /// Secure TLSA records, none usable for SMTP.
    Unusable,
}

impl Dane {
    pub fn state(&self) -> DaneState {
        match self {
            Dane::None => DaneState::None,
            Dane::Required(_) => DaneState::Usable,
            Dane::Unusable => DaneState::Unusable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(mode: sts::Mode) -> sts::Policy {
        sts::Policy {
            id: "1".into(),
            mode,
            mx: vec!["mx.example.net".into(), "*.backup.example.net".into()],
            max_age: 86400,
            fetched: 0,
        }
    }

    fn decided(dane: DaneState, policy: Option<sts::Mode>, host: &str) -> Decision {
        decide(dane, policy.map(sts).as_ref(), host, "example.net")
    }

    #[test]
    fn usable_dane_records_decide_even_against_mta_sts() {
        let d = decided(
            DaneState::Usable,
            Some(sts::Mode::Enforce),
            "rogue.example.net",
        );
        assert_eq!(d, Decision::Use(Policy::Dane, None));
    }

    #[test]
    fn mta_sts_enforce_admits_listed_hosts_over_verified_tls_only() {
        assert_eq!(
            decided(DaneState::None, Some(sts::Mode::Enforce), "mx.example.net"),
            Decision::Use(Policy::Sts, None)
        );
        assert_eq!(
            decided(
                DaneState::None,
                Some(sts::Mode::Enforce),
                "a.backup.example.net"
            ),
            Decision::Use(Policy::Sts, None)
        );
        assert!(matches!(
            decided(DaneState::None, Some(sts::Mode::Enforce), "rogue.example.net"),
            Decision::Skip(why) if why.contains("not an MX host in the MTA-STS policy")
        ));
        // Unusable TLSA records do not weaken an enforced policy.
        assert_eq!(
            decided(
                DaneState::Unusable,
                Some(sts::Mode::Enforce),
                "mx.example.net"
            ),
            Decision::Use(Policy::Sts, None)
        );
    }

    #[test]
    fn testing_mode_reports_and_delivers_as_without_a_policy() {
        let Decision::Use(policy, note) = decided(
            DaneState::None,
            Some(sts::Mode::Testing),
            "rogue.example.net",
        ) else {
            panic!("skipped in testing mode")
        };
        assert_eq!(policy, Policy::Opportunistic);
        assert!(note.unwrap().contains("testing mode"));
        assert_eq!(
            decided(DaneState::None, Some(sts::Mode::None), "rogue.example.net"),
            Decision::Use(Policy::Opportunistic, None)
        );
    }

    #[test]
    fn without_policies_tls_is_opportunistic_or_required_for_unusable_tlsa() {
        assert_eq!(
            decided(DaneState::None, None, "mx.example.net"),
            Decision::Use(Policy::Opportunistic, None)
        );
        assert_eq!(
            decided(DaneState::Unusable, None, "mx.example.net"),
            Decision::Use(Policy::DaneUnusable, None)
        );
    }
}
