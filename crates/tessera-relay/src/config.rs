//! Relay configuration: flags over an optional TOML file over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tessera_proto::RelayHost;

use crate::RelayError;
use crate::store::Durability;

/// The longest mailbox retention a relay may be configured with: clients refuse envelopes older
/// than this (`tessera_crypto::MAX_ENVELOPE_AGE_MS`).
pub const MAX_TTL_DAYS: u64 = 90;

/// Settings as they appear in the TOML file given with `--config`. Every key is optional; unknown
/// keys are an error, so a typo does not silently fall back to a default.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Socket address to listen on, e.g. `"0.0.0.0:4443"`.
    pub listen: Option<SocketAddr>,
    /// Directory for the relay's key, certificate and (later) its database.
    pub data_dir: Option<PathBuf>,
    /// Host name or IP that users reach the relay by; printed in the relay address.
    pub public_host: Option<String>,
    /// Port users reach the relay by, if it differs from the listening port (port forwarding).
    pub public_port: Option<u16>,
    /// Plain-HTTP address for `/metrics` (off when absent; keep it on loopback).
    pub metrics_listen: Option<SocketAddr>,
    /// `"full"` (fsync every commit, default) or `"normal"` (survives a relay crash only).
    pub durability: Option<Durability>,
    /// UDP address of the TURN service for calls (off unless set).
    pub turn_listen: Option<SocketAddr>,
    /// The IP clients reach the TURN service by (default: the TURN listening IP).
    pub turn_public_ip: Option<std::net::IpAddr>,
    /// Mailbox settings.
    #[serde(default)]
    pub mailbox: MailboxSettings,
    /// Attachment blobs.
    #[serde(default)]
    pub blobs: crate::BlobSettings,
    /// Abuse limits.
    #[serde(default)]
    pub limits: Limits,
}

/// Mailbox caps and lifetime (the `[mailbox]` table).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MailboxSettings {
    /// Most envelopes waiting for one device.
    pub max_messages: u64,
    /// Most bytes waiting for one device.
    pub max_bytes: u64,
    /// Days an envelope waits before it is dropped.
    pub ttl_days: u64,
}

impl Default for MailboxSettings {
    fn default() -> Self {
        Self {
            max_messages: 10_000,
            max_bytes: 256 * 1024 * 1024,
            ttl_days: 30,
        }
    }
}

/// Limits against abuse (the `[limits]` table). Each violation is answered with an error frame
/// on the offending connection only.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open connections from one IP address (0: no limit; behind an onion service every
    /// client comes from the local Tor daemon, so set 0 there).
    pub connections_per_ip: u32,
    /// Requests per second per account, sustained.
    pub requests_per_second: u32,
    /// Requests an account may send in a burst above the sustained rate.
    pub request_burst: u32,
    /// Seconds a connection may stay silent (no frame, no pong) before it is closed.
    pub idle_timeout_secs: u64,
    /// Seconds a write to a client may take before the client is dropped as not reading.
    pub write_timeout_secs: u64,
    /// One-time prekeys below which the owner is told to upload more.
    pub prekey_low_water: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections_per_ip: 128,
            requests_per_second: 300,
            request_burst: 3000,
            idle_timeout_secs: 120,
            write_timeout_secs: 30,
            prekey_low_water: 20,
        }
    }
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, RelayError> {
        let text = std::fs::read_to_string(path).map_err(|source| RelayError::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| RelayError::ConfigParse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// The relay's effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where the key and certificate live.
    pub data_dir: PathBuf,
    /// Host printed in the relay address.
    pub public_host: RelayHost,
    /// Port printed in the relay address (`None`: the port actually bound).
    pub public_port: Option<u16>,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Commit durability.
    pub durability: Durability,
    /// Mailbox settings.
    pub mailbox: MailboxSettings,
    /// Attachment blobs.
    pub blobs: crate::BlobSettings,
    /// Abuse limits.
    pub limits: Limits,
    /// The TURN service for calls: where it listens (UDP) and the IP clients reach it by.
    pub turn: Option<(SocketAddr, std::net::IpAddr)>,
}

/// The listening address when neither a flag nor the file sets one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4443";

/// What the command line set (`None`: not given; the file or the default decides).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--public-host`.
    pub public_host: Option<String>,
    /// `--public-port`.
    pub public_port: Option<u16>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--turn-listen`.
    pub turn_listen: Option<SocketAddr>,
    /// `--turn-public-ip`.
    pub turn_public_ip: Option<std::net::IpAddr>,
}

impl Config {
    /// Combines flag values (`Some` wins) with the file's values and the defaults.
    pub fn resolve(flags: Flags, file: FileConfig) -> Result<Self, RelayError> {
        let listen = match flags.listen.or(file.listen) {
            Some(a) => a,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| RelayError::ConfigInvalid("bad default listen address".into()))?,
        };
        let data_dir = flags.data_dir.or(file.data_dir).ok_or_else(|| {
            RelayError::ConfigInvalid(
                "no data directory: pass --data-dir DIR or set data_dir in the config file".into(),
            )
        })?;
        let public_host = match flags.public_host.or(file.public_host) {
            Some(text) => parse_host(&text)?,
            None if listen.ip().is_unspecified() => {
                return Err(RelayError::ConfigInvalid(format!(
                    "listening on {listen} (all interfaces): pass --public-host with the name or \
                     IP users reach this relay by"
                )));
            }
            None => match listen.ip() {
                std::net::IpAddr::V4(ip) => RelayHost::Ipv4(ip),
                std::net::IpAddr::V6(ip) => RelayHost::Ipv6(ip),
            },
        };
        let public_port = flags.public_port.or(file.public_port);
        if public_port == Some(0) {
            return Err(RelayError::ConfigInvalid(
                "public port must not be 0".into(),
            ));
        }
        let blobs = file.blobs;
        if blobs.max_size == 0 || blobs.quota < blobs.max_size || blobs.ttl_days == 0 {
            return Err(RelayError::ConfigInvalid(
                "blobs max_size and ttl_days must be at least 1, and quota at least max_size"
                    .into(),
            ));
        }
        let mailbox = file.mailbox;
        if mailbox.max_messages == 0 || mailbox.max_bytes == 0 || mailbox.ttl_days == 0 {
            return Err(RelayError::ConfigInvalid(
                "mailbox max_messages, max_bytes and ttl_days must be at least 1".into(),
            ));
        }
        if mailbox.ttl_days > MAX_TTL_DAYS {
            return Err(RelayError::ConfigInvalid(format!(
                "mailbox ttl_days must be at most {MAX_TTL_DAYS}: clients do not open envelopes \
                 older than that (docs/envelope.md §5)"
            )));
        }
        let limits = file.limits;
        if limits.requests_per_second == 0 || limits.idle_timeout_secs == 0 {
            return Err(RelayError::ConfigInvalid(
                "limits requests_per_second and idle_timeout_secs must be at least 1".into(),
            ));
        }
        let turn = match flags.turn_listen.or(file.turn_listen) {
            None => None,
            Some(turn_listen) => {
                let public_ip = match flags.turn_public_ip.or(file.turn_public_ip) {
                    Some(ip) => ip,
                    None if turn_listen.ip().is_unspecified() => {
                        return Err(RelayError::ConfigInvalid(format!(
                            "TURN listening on {turn_listen} (all interfaces): pass \
                             --turn-public-ip with the IP users reach this host by"
                        )));
                    }
                    None => turn_listen.ip(),
                };
                if public_ip.is_unspecified() {
                    return Err(RelayError::ConfigInvalid(
                        "the TURN public IP must be a real address".into(),
                    ));
                }
                Some((turn_listen, public_ip))
            }
        };
        Ok(Self {
            turn,
            listen,
            data_dir,
            public_host,
            public_port,
            metrics_listen: flags.metrics_listen.or(file.metrics_listen),
            durability: file.durability.unwrap_or(Durability::Full),
            mailbox,
            blobs,
            limits,
        })
    }
}

fn parse_host(text: &str) -> Result<RelayHost, RelayError> {
    // Reuse the address parser so the printed address is always one clients accept.
    let probe = format!("tessera://{text}:1/{}", "A".repeat(43));
    probe
        .parse::<tessera_proto::RelayAddress>()
        .map(|a| a.host)
        .map_err(|_| {
            RelayError::ConfigInvalid(format!(
                "public host {text:?} is not a valid host name or IP literal"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    /// The file the relay package installs as /etc/tessera-relay/relay.toml parses, and the
    /// values it writes out are the built-in defaults (so its comments do not lie).
    #[test]
    fn the_packaged_config_parses_and_writes_out_the_defaults() {
        let f = file(include_str!("../../../packaging/relay/relay.toml"));
        assert_eq!(f.mailbox, MailboxSettings::default());
        assert_eq!(f.blobs, crate::BlobSettings::default());
        assert_eq!(f.limits, Limits::default());
        assert_eq!(f.durability, Some(Durability::Full));
        let c = Config::resolve(Flags::default(), f).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/tessera-relay"));
        assert_eq!(c.listen, "127.0.0.1:4443".parse().unwrap());
    }

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let f = file(
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\npublic_host = \"relay.example\"\n",
        );
        let c = Config::resolve(
            Flags {
                listen: Some("127.0.0.2:1".parse().unwrap()),
                ..Flags::default()
            },
            f,
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.2:1".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.public_host, RelayHost::Name("relay.example".into()));

        let c = Config::resolve(
            Flags {
                data_dir: Some("/d".into()),
                ..Flags::default()
            },
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            c.public_host,
            RelayHost::Ipv4(std::net::Ipv4Addr::LOCALHOST)
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("listne = \"1.2.3.4:5\"").is_err());
        assert!(toml::from_str::<FileConfig>("[limits]\nrequests_per_secnd = 5").is_err());
    }

    #[test]
    fn tables_override_only_the_keys_they_name() {
        let f = file(
            "durability = \"normal\"\n[mailbox]\nttl_days = 7\n[limits]\nconnections_per_ip = 0\n",
        );
        let c = Config::resolve(
            Flags {
                data_dir: Some("/d".into()),
                ..Flags::default()
            },
            f,
        )
        .unwrap();
        assert_eq!(c.durability, Durability::Normal);
        assert_eq!(c.mailbox.ttl_days, 7);
        assert_eq!(
            c.mailbox.max_messages,
            MailboxSettings::default().max_messages
        );
        assert_eq!(c.limits.connections_per_ip, 0);
        assert_eq!(c.limits.request_burst, Limits::default().request_burst);
        let zero = file("[mailbox]\nmax_messages = 0\n");
        assert!(
            Config::resolve(
                Flags {
                    data_dir: Some("/d".into()),
                    ..Flags::default()
                },
                zero
            )
            .is_err()
        );
        assert!(toml::from_str::<FileConfig>("durability = \"sometimes\"").is_err());
    }

    #[test]
    fn missing_data_dir_is_a_clear_error() {
        let e = Config::resolve(Flags::default(), FileConfig::default()).unwrap_err();
        assert!(e.to_string().contains("--data-dir"), "{e}");
    }

    #[test]
    fn wildcard_listen_needs_a_public_host() {
        let any = Some("0.0.0.0:4443".parse().unwrap());
        let e = Config::resolve(
            Flags {
                listen: any,
                data_dir: Some("/d".into()),
                ..Flags::default()
            },
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--public-host"), "{e}");
        let c = Config::resolve(
            Flags {
                listen: any,
                data_dir: Some("/d".into()),
                public_host: Some("[::1]".into()),
                public_port: Some(443),
                ..Flags::default()
            },
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(
            c.public_host,
            RelayHost::Ipv6(std::net::Ipv6Addr::LOCALHOST)
        );
        assert_eq!(c.public_port, Some(443));
    }

    #[test]
    fn turn_needs_a_public_ip_when_listening_everywhere() {
        let d = || Some(std::path::PathBuf::from("/d"));
        let c = Config::resolve(
            Flags {
                data_dir: d(),
                ..Flags::default()
            },
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.turn, None);
        let any = Some("0.0.0.0:3478".parse().unwrap());
        let e = Config::resolve(
            Flags {
                data_dir: d(),
                turn_listen: any,
                ..Flags::default()
            },
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--turn-public-ip"), "{e}");
        let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let c = Config::resolve(
            Flags {
                data_dir: d(),
                turn_listen: any,
                turn_public_ip: Some(ip),
                ..Flags::default()
            },
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.turn, Some(("0.0.0.0:3478".parse().unwrap(), ip)));
        let f = file("turn_listen = \"127.0.0.1:3478\"\n");
        let c = Config::resolve(
            Flags {
                data_dir: d(),
                ..Flags::default()
            },
            f,
        )
        .unwrap();
        assert_eq!(
            c.turn,
            Some((
                "127.0.0.1:3478".parse().unwrap(),
                "127.0.0.1".parse().unwrap()
            ))
        );
    }

    #[test]
    fn bad_public_host_is_rejected() {
        let e = Config::resolve(
            Flags {
                data_dir: Some("/d".into()),
                public_host: Some("not a host".into()),
                ..Flags::default()
            },
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(matches!(e, RelayError::ConfigInvalid(_)));
    }

    #[test]
    fn unreadable_and_invalid_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.toml");
        assert!(matches!(
            FileConfig::load(&missing),
            Err(RelayError::ConfigRead { .. })
        ));
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "listen = 12").unwrap();
        assert!(matches!(
            FileConfig::load(&bad),
            Err(RelayError::ConfigParse { .. })
        ));
    }
}
