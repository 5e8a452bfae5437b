//! The hand-off of an update from the `mta` to `init`, through the data
//! partition, and what it became (shared by both):
//!
//! - the mta receives a bundle (upload, API, poll), checks it whole
//!   (signature, board, version, every hash) as `update/incoming.bundle`,
//!   then renames it to `update/ready.bundle` (atomic; `update/force`
//!   beside it allows a downgrade);
//! - init finds it, checks it again, writes `update/status`
//!   (`installing VERSION SLOT ATTEMPT`), installs it into the inactive
//!   slot (`slot.rs`), writes `installed VERSION SLOT`, removes it and
//!   reboots into the trial slot. An installation cut off (power cut,
//!   crash) leaves the hand-off and `installing` behind: the next healthy
//!   boot installs it again, at most [`MAX_ATTEMPTS`] times in all;
//! - once healthy, init compares the status with what runs: the new
//!   version in the new slot is `updated`; the old one again means the
//!   trial failed (the boot counter ran out) and the status says so.

/// Field `name` of the running image's `/etc/os-release` (the image build
/// writes it): its `VERSION` and `VARIANT_ID` (the board) are what an
/// update is checked against.
pub fn os_release(name: &str) -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.trim_matches('"').to_string())
}

/// Paths under the data partition's root.
pub const DIR: &str = "update";
pub const INCOMING: &str = "update/incoming.bundle";
pub const READY: &str = "update/ready.bundle";
pub const FORCE: &str = "update/force";
pub const STATUS: &str = "update/status";

/// Installations of one bundle begun before it counts as failed (one
/// power cut is bad luck; an installation that dies every time would
/// otherwise restart forever).
pub const MAX_ATTEMPTS: u32 = 2;

/// What became of the last update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Being written into `slot` (the `attempt`th time).
    Installing {
        version: String,
        slot: String,
        attempt: u32,
    },
    /// Installed into `slot`; the reboot into it is a trial.
    Installed { version: String, slot: String },
    /// The trial boot was healthy and is blessed.
    Updated { version: String },
    /// Refused, or tried and given up: why.
    Failed { version: String, reason: String },
}

impl Status {
    /// One line, as kept in [`STATUS`].
    pub fn line(&self) -> String {
        match self {
            Status::Installing {
                version,
                slot,
                attempt,
            } => format!("installing {version} {slot} {attempt}\n"),
            Status::Installed { version, slot } => format!("installed {version} {slot}\n"),
            Status::Updated { version } => format!("updated {version}\n"),
            Status::Failed { version, reason } => {
                format!("failed {version} {}\n", reason.replace('\n', " "))
            }
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        let line = text.lines().next()?;
        let mut words = line.splitn(3, ' ');
        let (kind, version) = (words.next()?, words.next()?.to_string());
        let rest = words.next().unwrap_or("").to_string();
        Some(match kind {
            "installing" => {
                let (slot, attempt) = rest.split_once(' ')?;
                Status::Installing {
                    version,
                    slot: slot.to_string(),
                    attempt: attempt.parse().ok()?,
                }
            }
            "installed" if !rest.is_empty() => Status::Installed {
                version,
                slot: rest,
            },
            "updated" => Status::Updated { version },
            "failed" => Status::Failed {
                version,
                reason: rest,
            },
            _ => return None,
        })
    }

    /// What the status becomes once `running` (version, slot) is healthy:
    /// the trial succeeded, or the old slot runs again because it failed.
    /// An installation that was cut off before it was recorded as done
    /// but runs is a success too; one that does not run is resumed by
    /// init (None here).
    pub fn after_healthy_boot(&self, version: &str, slot: &str) -> Option<Status> {
        let (new, trial) = match self {
            Status::Installed { version, slot } => (version, slot),
            Status::Installing {
                version: new,
                slot: trial,
                ..
            } if trial == slot && new == version => (new, trial),
            _ => return None,
        };
        Some(if trial == slot && new == version {
            Status::Updated {
                version: new.clone(),
            }
        } else {
            Status::Failed {
                version: new.clone(),
                reason: format!(
                    "version {new} did not start in its trial boots; {version} runs again"
                ),
            }
        })
    }

    /// For people: the console, the log, the admin page.
    pub fn describe(&self) -> String {
        match self {
            Status::Installing { version, slot, .. } => {
                format!("version {version} is being installed into slot {slot}")
            }
            Status::Installed { version, slot } => {
                format!("version {version} is installed in slot {slot} and starts at the next boot")
            }
            Status::Updated { version } => format!("updated to version {version}"),
            Status::Failed { version, reason } => {
                format!("the update to version {version} failed: {reason}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_and_settle_after_the_trial() {
        let installed = Status::Installed {
            version: "0.2.0".into(),
            slot: "b".into(),
        };
        assert_eq!(Status::parse(&installed.line()), Some(installed.clone()));
        assert_eq!(
            installed.after_healthy_boot("0.2.0", "b"),
            Some(Status::Updated {
                version: "0.2.0".into()
            })
        );
        let fell_back = installed.after_healthy_boot("0.1.0", "a").unwrap();
        assert_eq!(
            fell_back.describe(),
            "the update to version 0.2.0 failed: version 0.2.0 did not start in its trial boots; 0.1.0 runs again"
        );
        assert_eq!(Status::parse(&fell_back.line()), Some(fell_back.clone()));
        assert_eq!(fell_back.after_healthy_boot("0.1.0", "a"), None);
        assert_eq!(Status::parse("garbage"), None);
        assert_eq!(Status::parse("installing 0.2.0 b x"), None);
    }

    #[test]
    fn an_installation_cut_off_settles_by_what_runs() {
        let installing = Status::Installing {
            version: "0.2.0".into(),
            slot: "b".into(),
            attempt: 2,
        };
        assert_eq!(Status::parse(&installing.line()), Some(installing.clone()));
        // Cut off after the entry was written: the trial runs.
        assert_eq!(
            installing.after_healthy_boot("0.2.0", "b"),
            Some(Status::Updated {
                version: "0.2.0".into()
            })
        );
        // Cut off before: the old version runs, and init installs again.
        assert_eq!(installing.after_healthy_boot("0.1.0", "a"), None);
        assert_eq!(Status::parse(""), None);
    }
}
