//! The Tor transport: an embedded Arti client (`docs/network.md`). It bootstraps in the
//! background and reports progress; streams to the relay (an onion service, or host:port
//! through an exit) carry the same pinned TLS as a direct connection. Nothing here ever opens a
//! direct connection to the relay: if Tor cannot bootstrap or connect, the caller gets a typed
//! error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arti_client::config::{BoolOrAuto, CfgPath, TorClientConfigBuilder};
use arti_client::{StreamPrefs, TorClient};
use futures_util::StreamExt as _;
use tokio::sync::watch;
use tor_rtcompat::PreferredRuntime;

use crate::NetError;

/// How long a connection waits for Tor to finish bootstrapping before failing.
pub const DEFAULT_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the Tor client keeps its files and how it is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorOptions {
    /// Arti's state (guards, keys): under the account's data directory, mode 0700.
    pub state_dir: PathBuf,
    /// Arti's directory cache: under the account's data directory, mode 0700.
    pub cache_dir: PathBuf,
    /// An Arti configuration (Arti's own TOML format: bridges, pluggable-transport programs, a
    /// private network's authorities, …), as text: the client keeps it in the vault and never
    /// reads it from a file ([`read_config_file`] is for taking one in). Its storage paths are
    /// replaced by the two above.
    pub config: Option<String>,
    /// How long a connection waits for bootstrap.
    pub bootstrap_timeout: Duration,
}

impl TorOptions {
    /// State and cache under `dir/tor`, no configuration file, and the bootstrap timeout from
    /// `TESSERA_TOR_BOOTSTRAP_TIMEOUT` (seconds) or [`DEFAULT_BOOTSTRAP_TIMEOUT`].
    pub fn under(dir: &Path) -> Self {
        let bootstrap_timeout = std::env::var("TESSERA_TOR_BOOTSTRAP_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_BOOTSTRAP_TIMEOUT);
        Self {
            state_dir: dir.join("tor").join("state"),
            cache_dir: dir.join("tor").join("cache"),
            config: None,
            bootstrap_timeout,
        }
    }
}

/// Bootstrap progress, for the UI and the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct TorProgress {
    /// 0–100.
    pub percent: u8,
    /// Arti's description of the current phase.
    pub phase: String,
    /// Ready to carry traffic.
    pub ready: bool,
    /// Why progress is stuck, when Arti knows (e.g. "cannot reach any guard").
    pub blocked: Option<String>,
}

/// An embedded Tor client. Cheap to share (`Arc`).
pub struct Tor {
    client: Arc<TorClient<PreferredRuntime>>,
    progress: watch::Receiver<TorProgress>,
    timeout: Duration,
}

impl std::fmt::Debug for Tor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tor")
            .field("progress", &*self.progress.borrow())
            .finish_non_exhaustive()
    }
}

fn private_dir(p: &Path) -> Result<(), NetError> {
    std::fs::create_dir_all(p).map_err(|e| NetError::TorConfig(format!("{}: {e}", p.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for d in [p, p.parent().unwrap_or(p)] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| NetError::TorConfig(format!("{}: {e}", d.display())))?;
        }
    }
    Ok(())
}

/// Reads an Arti configuration file once, checking that it parses, so that its text can be kept
/// (in the vault) instead of the file being read again at every start.
pub fn read_config_file(path: &Path) -> Result<String, NetError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| NetError::TorConfig(format!("{}: {e}", path.display())))?;
    toml::from_str::<TorClientConfigBuilder>(&text)
        .map_err(|e| NetError::TorConfig(format!("{}: {e}", path.display())))?;
    Ok(text)
}

/// Reads `opts` into an Arti configuration (the configuration text, if any, then our storage
/// paths).
pub fn arti_config(opts: &TorOptions) -> Result<arti_client::TorClientConfig, NetError> {
    let mut builder = match &opts.config {
        Some(text) => toml::from_str::<TorClientConfigBuilder>(text)
            .map_err(|e| NetError::TorConfig(format!("the Arti configuration: {e}")))?,
        None => TorClientConfigBuilder::default(),
    };
    builder
        .storage()
        .state_dir(CfgPath::new_literal(opts.state_dir.clone()))
        .cache_dir(CfgPath::new_literal(opts.cache_dir.clone()));
    builder
        .build()
        .map_err(|e| NetError::TorConfig(e.to_string()))
}

impl Tor {
    /// Creates the client and starts bootstrapping in the background. Must be called within a
    /// Tokio runtime. Fails only on configuration or storage problems; network trouble shows
    /// in [`Tor::progress`] and as errors from connections.
    pub fn start(opts: &TorOptions) -> Result<Arc<Self>, NetError> {
        private_dir(&opts.state_dir)?;
        private_dir(&opts.cache_dir)?;
        let config = arti_config(opts)?;
        let runtime = PreferredRuntime::current()
            .map_err(|e| NetError::TorConfig(format!("no async runtime: {e}")))?;
        let client = TorClient::with_runtime(runtime)
            .config(config)
            .create_unbootstrapped()
            .map_err(|e| NetError::TorConfig(e.to_string()))?;
        let (tx, rx) = watch::channel(TorProgress {
            percent: 0,
            phase: "starting".into(),
            ready: false,
            blocked: None,
        });
        {
            let mut events = client.bootstrap_events();
            tokio::spawn(async move {
                while let Some(status) = events.next().await {
                    let p = TorProgress {
                        percent: (status.as_frac().clamp(0.0, 1.0) * 100.0) as u8,
                        phase: status.to_string(),
                        ready: status.ready_for_traffic(),
                        blocked: status.blocked().map(|b| b.to_string()),
                    };
                    if tx.send(p).is_err() {
                        break;
                    }
                }
            });
        }
        {
            let client = client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.bootstrap().await {
                    tracing::warn!(error = %e, "tor bootstrap failed");
                }
            });
        }
        Ok(Arc::new(Self {
            client,
            progress: rx,
            timeout: opts.bootstrap_timeout,
        }))
    }

    /// Bootstrap progress; changes as Arti reports it.
    pub fn progress(&self) -> watch::Receiver<TorProgress> {
        self.progress.clone()
    }

    /// Waits until Tor can carry traffic, at most the bootstrap timeout.
    pub async fn ready(&self) -> Result<(), NetError> {
        match tokio::time::timeout(self.timeout, self.client.bootstrap()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(NetError::TorBootstrap(chain(&e))),
            Err(_) => {
                let p = self.progress.borrow().clone();
                Err(NetError::TorBootstrap(format!(
                    "not bootstrapped after {} s (at {}%: {}{})",
                    self.timeout.as_secs(),
                    p.percent,
                    p.phase,
                    p.blocked.map(|b| format!("; {b}")).unwrap_or_default()
                )))
            }
        }
    }

    /// A Tor stream to `host:port` (an onion service, or through an exit).
    pub(crate) async fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> Result<arti_client::DataStream, NetError> {
        self.ready().await?;
        let prefs = stream_prefs(false);
        let stream = self.client.connect_with_prefs((host, port), &prefs).await;
        stream.map_err(|e| NetError::TorConnect(chain(&e)))
    }

    /// A Tor stream to `host:port` on a circuit of its own (a link preview: the site and its
    /// exit learn nothing that links it to the relay connection). A name is resolved by the
    /// exit, never here.
    pub(crate) async fn connect_isolated(
        &self,
        host: &str,
        port: u16,
    ) -> Result<arti_client::DataStream, NetError> {
        self.ready().await?;
        let prefs = stream_prefs(true);
        let stream = self.client.connect_with_prefs((host, port), &prefs).await;
        stream.map_err(|e| NetError::TorConnect(chain(&e)))
    }
}

/// How a stream is opened: onion services allowed; `isolated` on a circuit of its own.
fn stream_prefs(isolated: bool) -> StreamPrefs {
    let mut prefs = StreamPrefs::new();
    prefs.connect_to_onion_services(BoolOrAuto::Explicit(true));
    if isolated {
        prefs.new_isolation_group();
    }
    prefs
}

/// An error with its causes, `outer: inner: innermost` (Arti's top-level errors say little by
/// themselves: "Onion Service not found" hides whether no HSDir answered or none had it).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("same: inner")]
    struct Repeats(#[source] Inner);

    #[test]
    fn error_chain_lists_each_cause_once() {
        assert_eq!(chain(&Outer(Inner)), "outer: inner");
        assert_eq!(chain(&Inner), "inner");
        // A message that already ends with its cause does not repeat it.
        assert_eq!(chain(&Repeats(Inner)), "same: inner");
    }
}
