//! The settings snapshot: everything a configuration reload may change,
//! built from a checked [`Config`] and swapped whole. Sessions keep the
//! snapshot they started with (its directory is refreshed between
//! commands), so a reload never disturbs a connection.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use mta_proto::smtp::session::SessionConfig;

use crate::config::{Config, Role};
use crate::directory::Directory;

pub struct Settings {
    /// The configuration these settings were made from.
    pub config: Arc<Config>,
    pub dkim: Arc<crate::dkim::Keys>,
    pub mx: Arc<SessionConfig>,
    pub submission: Arc<SessionConfig>,
    pub directory: Arc<Directory>,
    /// TLS for SMTP (STARTTLS, 465).
    pub tls: tokio_rustls::TlsAcceptor,
    /// TLS for the web (HTTP/1.1 and TLS-ALPN-01 challenges).
    pub https: tokio_rustls::TlsAcceptor,
    /// The certificate all of them present, shared by every snapshot: a
    /// swap reaches every listener at once.
    pub certs: Arc<crate::tls::CertStore>,
    /// The accounts' Maildirs, shared by every snapshot, the delivery
    /// workers and the IMAP server (what they know of usage with them).
    pub maildirs: mta_store::maildir::Maildirs,
    /// Rewrites the senders of forwarded mail and reads bounces to them
    /// (its secret kept in the data directory; shared by every snapshot).
    pub srs: Arc<crate::srs::Srs>,
    pub session_time: Duration,
    pub per_ip_limit: usize,
    pub limit: usize,
}

impl Settings {
    /// The settings `config` describes; its certificate goes into the
    /// certificate store of the `previous` snapshot, which shares its
    /// Maildirs too (new ones when `None`: the first snapshot).
    pub fn from_config(config: &Config, previous: Option<&Settings>) -> anyhow::Result<Settings> {
        let certs = previous.map(|p| &p.certs);
        let maildirs = match previous {
            Some(p) => p.maildirs.clone(),
            None => mta_store::maildir::Maildirs::new(config.mail_dir(), &config.hostname)
                .with_min_free_space(config.limits.min_free_space),
        };
        let srs = match previous {
            Some(p) => p.srs.clone(),
            None => Arc::new(crate::srs::Srs::open(&config.data_dir)?),
        };
        let session = |role| SessionConfig {
            hostname: config.hostname.clone(),
            max_message_size: config.limits.message_size,
            max_recipients: config.limits.recipients,
            max_errors: config.limits.max_errors,
            command_timeout: config.limits.command_timeout,
            data_timeout: config.limits.data_timeout,
            tls_available: true,
            role,
            trace_user: config.submission.trace_user,
        };
        let certs = match certs {
            Some(store) => {
                store.reload(config)?;
                store.clone()
            }
            None => {
                let (key, issued) = crate::tls::CertStore::load(config)?;
                Arc::new(crate::tls::CertStore::new(key, issued))
            }
        };
        Ok(Settings {
            config: Arc::new(config.clone()),
            dkim: Arc::new(crate::dkim::Keys::new(&config.data_dir)),
            mx: Arc::new(session(Role::Mx)),
            submission: Arc::new(session(Role::Submission)),
            directory: Arc::new(
                config
                    .directory()
                    .with_usage(maildirs.clone())
                    .with_srs(srs.clone()),
            ),
            maildirs,
            srs,
            tls: tokio_rustls::TlsAcceptor::from(certs.smtp_config()?),
            https: tokio_rustls::TlsAcceptor::from(certs.https_config()?),
            certs,
            session_time: config.limits.session_time,
            per_ip_limit: config.limits.connections_per_ip,
            limit: config.limits.connections,
        })
    }

    /// What a session on a listener of this role is told.
    pub fn session(&self, role: Role) -> &Arc<SessionConfig> {
        match role {
            Role::Mx => &self.mx,
            Role::Submission | Role::Submissions => &self.submission,
        }
    }
}

/// The snapshot in force, shared by the listeners, the web and the
/// bouncer.
#[derive(Clone)]
pub struct Live {
    current: Arc<RwLock<Arc<Settings>>>,
    /// The configuration the server started with: what a reload cannot
    /// change is compared with it.
    started: Arc<Config>,
}

impl Live {
    pub fn new(settings: Settings) -> Live {
        Live {
            started: settings.config.clone(),
            current: Arc::new(RwLock::new(Arc::new(settings))),
        }
    }

    pub fn get(&self) -> Arc<Settings> {
        self.current.read().expect("settings lock").clone()
    }

    /// Applies a changed configuration to new connections. A configuration
    /// with errors is refused as a whole and the running one stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let running = &self.started;
        let refused = |e: anyhow::Error| {
            tracing::error!("configuration not reloaded, the running one stays: {e:#}");
            e
        };
        let config = Config::load(&running.path).map_err(refused)?;
        let settings = Settings::from_config(&config, Some(&self.get())).map_err(refused)?;
        let needs_restart: Vec<&str> = [
            ("data_dir", config.data_dir != running.data_dir),
            ("listeners", config.listeners != running.listeners),
            ("queue", config.queue != running.queue),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect();
        *self.current.write().expect("settings lock") = Arc::new(settings);
        if needs_restart.is_empty() {
            tracing::info!("configuration reloaded");
        } else {
            tracing::warn!(
                "configuration reloaded; changes to {} take effect after a restart",
                needs_restart.join(", ")
            );
        }
        Ok(())
    }
}
