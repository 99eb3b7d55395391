//! The server's connection limits, resolved once at start from `[server]`
//! and the process's open-files limit.
//!
//! Invariants: the connection cap is at least 1 and, unless configured
//! otherwise, leaves a quarter of the open-files limit (at least
//! [`RESERVED_FILES`]) to everything that is not a connection, so a flood of
//! connections cannot starve the journal, model calls or tools of files;
//! every duration is above zero (the configuration refuses zeros).

use std::time::Duration;

use crate::config::ServerConfig;

/// The connection cap when none is configured and files are plentiful.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The largest cap honoured: shutdown counts every permit back in one call,
/// which takes a `u32`.
const MAX_CAP: usize = u32::MAX as usize;
/// Open files never given to connections by the default cap: the journal,
/// outgoing model and tool calls, MCP servers' pipes, the listener.
const RESERVED_FILES: u64 = 256;

/// The process's open-files limit (`RLIMIT_NOFILE`) after raising it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now: the hard limit, unless raising it failed.
    pub now: u64,
}

/// Raise the soft open-files limit to the hard one: a server holds one file
/// per connection, and the usual soft default (1024) is reached by a
/// thousand idle clients. Idempotent. Where the limit cannot be read, the
/// figure is [`DEFAULT_MAX_CONNECTIONS`] plus the reserve, so the default
/// cap stands; where it cannot be raised, it stays as it was.
pub fn raise_open_files_limit() -> OpenFiles {
    let unknown = (DEFAULT_MAX_CONNECTIONS as u64).saturating_mul(4) / 3 + RESERVED_FILES;
    let before = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!("cannot read the open-files limit: {e}");
            return OpenFiles {
                before: unknown,
                now: unknown,
            };
        }
    };
    let now = rlimit::increase_nofile_limit(u64::MAX).unwrap_or_else(|e| {
        tracing::warn!("cannot raise the open-files limit from {before}: {e}");
        before
    });
    OpenFiles { before, now }
}

/// The most connections served at once: `[server] max_connections`, or
/// [`DEFAULT_MAX_CONNECTIONS`] lowered to leave a quarter of `open_files`
/// (at least [`RESERVED_FILES`]) free.
pub fn connection_cap(config: &ServerConfig, open_files: u64) -> usize {
    if let Some(cap) = config.max_connections {
        return cap.clamp(1, MAX_CAP);
    }
    let reserved = (open_files / 4).max(RESERVED_FILES);
    let room = usize::try_from(open_files.saturating_sub(reserved)).unwrap_or(usize::MAX);
    room.clamp(1, DEFAULT_MAX_CONNECTIONS)
}

/// What bounds each connection.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// Connections open at once.
    pub(crate) max_connections: usize,
    /// Time to receive a whole request head.
    pub(crate) header_read_timeout: Duration,
    /// Silence after which a connection with no handler at work is closed.
    pub(crate) idle_timeout: Duration,
    /// Largest request head, in bytes.
    pub(crate) max_head_bytes: usize,
    /// Longest request target, in bytes.
    pub(crate) max_uri_bytes: usize,
}

impl Limits {
    /// The limits of `config`, with the cap sized from `open_files`.
    pub(crate) fn new(config: &ServerConfig, open_files: u64) -> Limits {
        Limits {
            max_connections: connection_cap(config, open_files),
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms.max(1)),
            max_head_bytes: config.max_head_bytes.max(1),
            max_uri_bytes: config.max_uri_bytes.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_files_to_the_rest() {
        let config = ServerConfig::default();
        assert_eq!(connection_cap(&config, 1024), 768);
        assert_eq!(connection_cap(&config, 256), 1);
        assert_eq!(connection_cap(&config, 300), 44);
        assert_eq!(
            connection_cap(&config, 1 << 20),
            DEFAULT_MAX_CONNECTIONS,
            "a generous limit still has a ceiling"
        );
        let configured = ServerConfig {
            max_connections: Some(5),
            ..ServerConfig::default()
        };
        assert_eq!(connection_cap(&configured, 1024), 5);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let files = raise_open_files_limit();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("a limit");
        assert_eq!(files.now, soft);
        assert!(files.before <= files.now);
        // macOS caps the soft limit below an unlimited hard one.
        if cfg!(target_os = "linux") {
            assert_eq!(soft, hard);
        }
        assert_eq!(raise_open_files_limit().before, files.now, "idempotent");
    }
}
