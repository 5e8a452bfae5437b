//! The mta's integration tests, in one binary (one link for all of them):
//! the real `mta` binary over real TCP and TLS, with independent peers
//! (swaks, Python's smtplib, aiosmtpd, dnslib, dnspython, dkimpy, Pebble) where one
//! exists. `common` is the harness; one module per area.

mod acme;
mod browser;
mod common;
mod crash;
mod dkim;
mod forwarding;
mod imap;
mod imap_clients;
mod imap_crash;
mod imap_dovecot;
mod inbound;
mod limits;
mod outbound;
mod reports;
mod smtp;
mod spf_suite;
mod submission;
mod update;
mod web;
