//! The configuration file as written: serde structures with spans, before
//! any check.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) hostname: Spanned<String>,
    pub(super) data_dir: Spanned<String>,
    pub(super) domains: Spanned<Vec<Spanned<String>>>,
    pub(super) recipient_delimiter: Option<Spanned<String>>,
    pub(super) postmaster: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) accounts: Vec<RawAccount>,
    #[serde(default)]
    pub(super) aliases: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) queue: RawQueue,
    pub(super) listeners: Option<Vec<RawListener>>,
    pub(super) tls: Option<RawTls>,
    pub(super) acme: Option<RawAcme>,
    pub(super) network: Option<RawNetwork>,
    pub(super) update: Option<RawUpdate>,
    #[serde(default)]
    pub(super) submission: RawSubmission,
    #[serde(default)]
    pub(super) inbound: RawInbound,
    #[serde(default)]
    pub(super) outbound: RawOutbound,
    #[serde(default)]
    pub(super) relays: Vec<RawRelay>,
    #[serde(default)]
    pub(super) sender_routes: Vec<RawSenderRoute>,
    #[serde(default)]
    pub(super) transports: Vec<RawTransport>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutbound {
    pub(super) port: Option<Spanned<i64>>,
    pub(super) nameservers: Option<Vec<Spanned<String>>>,
    pub(super) smarthost: Option<Spanned<String>>,
    pub(super) connect_timeout: Option<Spanned<String>>,
    pub(super) per_destination: Option<Spanned<i64>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) mta_sts_port: Option<Spanned<i64>>,
    pub(super) ca: Option<Spanned<String>>,
    pub(super) trust_anchor: Option<Spanned<String>>,
    pub(super) dane: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelay {
    pub(super) name: Spanned<String>,
    pub(super) host: Spanned<String>,
    pub(super) port: Option<Spanned<i64>>,
    pub(super) tls: Option<Spanned<String>>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) ca: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSenderRoute {
    pub(super) sender: Spanned<String>,
    pub(super) relay: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransport {
    pub(super) recipient: Spanned<String>,
    pub(super) via: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInbound {
    pub(super) authenticate: Option<bool>,
    pub(super) pregreet: Option<Spanned<String>>,
    pub(super) greylist: Option<Spanned<String>>,
    pub(super) trusted_networks: Option<Vec<Spanned<String>>>,
    pub(super) dnsbl: Option<Vec<Spanned<String>>>,
    pub(super) dnsbl_threshold: Option<Spanned<i64>>,
    pub(super) dnsbl_allow: Option<Vec<Spanned<String>>>,
    pub(super) sender_sanity: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubmission {
    pub(super) trace_user: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub(super) mode: Option<Spanned<String>>,
    pub(super) address: Option<Spanned<String>>,
    pub(super) gateway: Option<Spanned<String>>,
    pub(super) dns: Option<Vec<Spanned<String>>>,
    pub(super) ntp: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpdate {
    pub(super) public_key: Option<Spanned<String>>,
    pub(super) board: Option<String>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) check_every: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub(super) address: Spanned<String>,
    pub(super) password: Option<Spanned<String>>,
    pub(super) send_as: Option<Vec<Spanned<String>>>,
    pub(super) allow: Option<Vec<Spanned<String>>>,
    pub(super) admin: Option<bool>,
    pub(super) quota: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) message_size: Option<Spanned<toml::Value>>,
    pub(super) recipients: Option<Spanned<i64>>,
    pub(super) connections_per_ip: Option<Spanned<i64>>,
    pub(super) connections_per_network: Option<Spanned<i64>>,
    pub(super) connections: Option<Spanned<i64>>,
    pub(super) connection_rate: Option<Spanned<i64>>,
    pub(super) message_rate: Option<Spanned<i64>>,
    pub(super) command_timeout: Option<Spanned<String>>,
    pub(super) data_timeout: Option<Spanned<String>>,
    pub(super) session_time: Option<Spanned<String>>,
    pub(super) max_errors: Option<Spanned<i64>>,
    pub(super) soft_errors: Option<Spanned<i64>>,
    pub(super) error_delay: Option<Spanned<String>>,
    /// The old name of `[inbound] pregreet`, still read.
    pub(super) greeting_delay: Option<Spanned<String>>,
    pub(super) min_free_space: Option<Spanned<toml::Value>>,
    pub(super) quota: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    pub(super) retry_min: Option<Spanned<String>>,
    pub(super) retry_max: Option<Spanned<String>>,
    pub(super) max_age: Option<Spanned<String>>,
    pub(super) delay_warning: Option<Spanned<String>>,
    pub(super) delivery_workers: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) address: Spanned<String>,
    pub(super) role: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) certificate: Spanned<String>,
    pub(super) key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    pub(super) contact: Option<Spanned<String>>,
    pub(super) terms_accepted: Spanned<bool>,
    pub(super) directory: Option<Spanned<String>>,
    pub(super) ca: Option<Spanned<String>>,
}
