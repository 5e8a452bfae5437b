//! `[limits]` and `[queue]`: sizes, counts, time-outs and retries.

use super::check::Checker;
use super::*;

impl Checker<'_> {
    pub(super) fn limits(&mut self, l: &RawLimits) -> Limits {
        Limits {
            message_size: self.size(&l.message_size, 50 << 20, "message_size"),
            recipients: self.count(&l.recipients, 1000, 1, "recipients"),
            connections_per_ip: self.count(&l.connections_per_ip, 20, 1, "connections_per_ip"),
            connections_per_network: self.count(
                &l.connections_per_network,
                50,
                1,
                "connections_per_network",
            ),
            connections: self.count(&l.connections, 500, 1, "connections"),
            connection_rate: self.count(&l.connection_rate, 60, 0, "connection_rate"),
            message_rate: self.count(&l.message_rate, 120, 0, "message_rate"),
            command_timeout: self.duration(
                &l.command_timeout,
                Duration::from_secs(300),
                "command_timeout",
            ),
            data_timeout: self.duration(&l.data_timeout, Duration::from_secs(600), "data_timeout"),
            session_time: self.duration(&l.session_time, Duration::from_secs(3600), "session_time"),
            max_errors: self.count(&l.max_errors, 10, 1, "max_errors") as u32,
            soft_errors: self.count(&l.soft_errors, 3, 1, "soft_errors") as u32,
            error_delay: self.error_delay(l),
            min_free_space: self.size(&l.min_free_space, 64 << 20, "min_free_space"),
            quota: self.size(&l.quota, 0, "quota"),
        }
    }

    /// `[limits] error_delay`: at most 30 s (a client waits 5 minutes for
    /// a reply, RFC 5321 §4.5.3.2; ten delayed replies must fit).
    fn error_delay(&mut self, l: &RawLimits) -> Duration {
        const DEFAULT: Duration = Duration::from_secs(1);
        let delay = self.duration(&l.error_delay, DEFAULT, "error_delay");
        if delay > Duration::from_secs(30)
            && let Some(v) = &l.error_delay
        {
            self.report(
                v.span(),
                format!(
                    "`error_delay` = {:?} is longer than 30 seconds",
                    v.get_ref()
                ),
                Some("Postfix waits \"1s\"; \"0s\" turns tarpitting off"),
            );
            return DEFAULT;
        }
        delay
    }

    /// `[inbound] pregreet`, or `[limits] greeting_delay` as it was called
    /// before; at most a minute (clients wait five for a greeting, RFC 5321
    /// §4.5.3.2, but a long wait only delays mail).
    pub(super) fn pregreet(&mut self, i: &RawInbound, l: &RawLimits) -> Duration {
        let (value, name) = match &i.pregreet {
            Some(_) => (&i.pregreet, "pregreet"),
            None => (&l.greeting_delay, "greeting_delay"),
        };
        let wait = self.duration(value, PREGREET, name);
        if wait > Duration::from_secs(60)
            && let Some(v) = value
        {
            self.report(
                v.span(),
                format!("`{name}` = {:?} is longer than a minute", v.get_ref()),
                Some("a few seconds catch the clients that talk too early; \"0s\" turns the test off"),
            );
            return PREGREET;
        }
        wait
    }

    /// `[inbound] greylist`: the delay, at most a day (senders give up
    /// after a few days; a long delay only loses them).
    pub(super) fn greylist(&mut self, i: &RawInbound) -> Duration {
        let default = InboundPolicy::default().greylist;
        let delay = self.duration(&i.greylist, default, "greylist");
        if delay > Duration::from_secs(24 * 3600)
            && let Some(v) = &i.greylist
        {
            self.report(
                v.span(),
                format!("`greylist` = {:?} is longer than a day", v.get_ref()),
                Some("postgrey waits 5 minutes (\"5m\"); \"0s\" turns greylisting off"),
            );
            return default;
        }
        delay
    }

    /// A list of addresses and networks (CIDR), such as `[inbound]
    /// trusted_networks`; `None` when not given.
    pub(super) fn networks(
        &mut self,
        list: &Option<Vec<Spanned<String>>>,
        name: &str,
    ) -> Option<Vec<ipnet::IpNet>> {
        let list = list.as_ref()?;
        let mut out = Vec::new();
        for item in list {
            let text = item.get_ref().trim();
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => out.push(net.trunc()),
                Err(_) => self.report(
                    item.span(),
                    format!("{name}: {text:?} is not an address or a network"),
                    Some("write 192.168.1.0/24, 2001:db8::/64 or one address"),
                ),
            }
        }
        Some(out)
    }

    /// `[inbound] dnsbl`: `zone[=answer][*weight]` each.
    pub(super) fn dnsbl(&mut self, i: &RawInbound) -> Vec<DnsblZone> {
        let Some(list) = &i.dnsbl else {
            return InboundPolicy::default().dnsbl;
        };
        let mut out = Vec::new();
        for item in list {
            match item.get_ref().parse() {
                Ok(zone) => out.push(zone),
                Err(e) => self.report(
                    item.span(),
                    format!("dnsbl {:?}: {e}", item.get_ref()),
                    Some("write zone, zone*weight or zone=127.0.0.2*weight, as postscreen_dnsbl_sites"),
                ),
            }
        }
        out
    }

    pub(super) fn queue(&mut self, q: &RawQueue) -> QueuePolicy {
        QueuePolicy {
            retry_min: self.duration(&q.retry_min, Duration::from_secs(60), "retry_min"),
            retry_max: self.duration(&q.retry_max, Duration::from_secs(3600), "retry_max"),
            max_age: self.duration(&q.max_age, Duration::from_secs(5 * 86400), "max_age"),
            delay_warning: self.duration(
                &q.delay_warning,
                Duration::from_secs(4 * 3600),
                "delay_warning",
            ),
            delivery_workers: self.count(&q.delivery_workers, 8, 1, "delivery_workers"),
        }
    }
}
