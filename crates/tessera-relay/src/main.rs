//! `tessera-relay`: the relay server binary. See the crate README.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tessera_relay::{Config, FileConfig, Flags};

const CONFIG_HELP: &str = "\
CONFIG FILE (--config FILE), TOML; every key optional, a flag wins over the file:
  listen         = \"127.0.0.1:4443\"   # socket address to listen on
  data_dir       = \"/var/lib/tessera-relay\"  # key, certificate, database; created 0700
  public_host    = \"relay.example.org\"  # name or IP users reach the relay by
  public_port    = 443                # port users reach it by, if forwarded
  metrics_listen = \"127.0.0.1:9464\"   # plain-HTTP /metrics (off unless set; keep it private)
  durability     = \"full\"             # \"full\": fsync each commit; \"normal\": crash-safe only
  turn_listen    = \"0.0.0.0:3478\"      # UDP TURN service for calls (off unless set)
  turn_public_ip = \"203.0.113.5\"       # the IP users reach it by (default: turn_listen's IP)
  [mailbox]
  max_messages = 10000                # envelopes waiting per device
  max_bytes    = 268435456            # bytes waiting per device
  ttl_days     = 30                   # undelivered envelopes are dropped after this
  [blobs]                             # attachments (encrypted; data_dir/blobs)
  max_size      = 2147483648          # largest blob, bytes
  quota         = 8589934592          # bytes of blobs one account may store at once
  ttl_days      = 30                  # complete blobs not fetched by every device go after this
  partial_hours = 48                  # unfinished uploads can be resumed this long
  [limits]
  connections_per_ip  = 128           # 0: no limit (use 0 behind an onion service)
  requests_per_second = 300           # per account, sustained
  request_burst       = 3000          # per account, above the sustained rate
  idle_timeout_secs   = 120           # silent connections are closed
  write_timeout_secs  = 30            # clients that stop reading are dropped
  prekey_low_water    = 20            # owners are told to upload more prekeys below this

On start the relay prints one line on standard output:
  relay address: tessera://HOST:PORT/PIN
PIN is the SHA-256 of the TLS key (SubjectPublicKeyInfo), base64url. Share the whole address
with your users; it stays the same as long as data_dir/relay-key.pem is kept.";

/// Tessera relay: carries end-to-end encrypted envelopes between devices.
#[derive(Debug, Parser)]
#[command(version, about, after_help = CONFIG_HELP)]
struct Cli {
    /// Socket address to listen on [default: 127.0.0.1:4443]; port 0 picks a free port
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Directory for the relay's key and data; created on first start
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file (see below)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Host name or IP printed in the relay address [default: the listening IP]
    #[arg(long, value_name = "HOST")]
    public_host: Option<String>,
    /// Port printed in the relay address [default: the listening port]
    #[arg(long, value_name = "PORT")]
    public_port: Option<u16>,
    /// Serve Prometheus metrics over plain HTTP at ADDR/metrics (e.g. 127.0.0.1:9464)
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Run the TURN service for calls on this UDP address (e.g. 0.0.0.0:3478)
    #[arg(long, value_name = "ADDR")]
    turn_listen: Option<SocketAddr>,
    /// The IP users reach the TURN service by [default: the TURN listening IP]
    #[arg(long, value_name = "IP")]
    turn_public_ip: Option<std::net::IpAddr>,
    /// Log format on standard error: text, or json (one object per line)
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Log filter, e.g. "info" or "tessera_relay=debug" (RUST_LOG is used when this is absent)
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match &cli.log {
        Some(f) => tracing_subscriber::EnvFilter::try_new(f),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .or_else(|_| tracing_subscriber::EnvFilter::try_new("info")),
    };
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tessera-relay: error: invalid --log filter: {e}");
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    raise_file_limit();

    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera-relay: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every connection is a file descriptor: raise the soft limit to the hard one (a default soft
/// limit of 1024 would cap the relay near a thousand clients).
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(limit = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let flags = Flags {
        listen: cli.listen,
        data_dir: cli.data_dir,
        public_host: cli.public_host,
        public_port: cli.public_port,
        metrics_listen: cli.metrics_listen,
        turn_listen: cli.turn_listen,
        turn_public_ip: cli.turn_public_ip,
    };
    let config = Config::resolve(flags, file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Handlers are registered before the address is printed: whoever starts the relay may
        // stop it as soon as it has the address, and must get a clean shutdown, not the
        // default action of the signal.
        let shutdown = ShutdownSignals::install().context("cannot install signal handlers")?;
        let relay = tessera_relay::bind(&config).await?;
        if let Some(addr) = relay.local_addr() {
            tracing::info!(listen = %addr, "relay listening");
        }
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            if let Some(metrics) = relay.metrics_addr() {
                writeln!(out, "metrics address: http://{metrics}/metrics")
                    .context("cannot write to stdout")?;
            }
            if let Some(turn) = relay.turn_url() {
                writeln!(out, "turn address: {turn}").context("cannot write to stdout")?;
            }
            writeln!(out, "relay address: {}", relay.address())
                .context("cannot write to stdout")?;
            out.flush().context("cannot write to stdout")?;
        }
        relay.serve(shutdown.wait()).await;
        Ok(())
    })
}

/// SIGINT (Ctrl-C) and SIGTERM (Ctrl-C on Windows), registered with the OS as soon as this is
/// created.
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(windows)]
    ctrl_c: tokio::signal::windows::CtrlC,
}

impl ShutdownSignals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(windows)]
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            ctrl_c: tokio::signal::windows::ctrl_c()?,
        })
    }

    /// Completes on the first stop signal.
    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(windows)]
        self.ctrl_c.recv().await;
        tracing::info!("stop signal received");
    }
}
