#![doc = include_str!("../README.md")]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tessera_net::{NetError, Transport};
use tessera_proto::RelayAddress;

/// Headless Tessera client.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Print results as JSON
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Relay diagnostics
    #[command(subcommand)]
    Relay(RelayCommand),
}

#[derive(Debug, Subcommand)]
enum RelayCommand {
    /// Connect to a relay directly, verify its pinned key and open a WebSocket
    Check {
        /// Relay address, tessera://HOST:PORT/PIN
        address: RelayAddress,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tessera-cli: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Relay(RelayCommand::Check { address }) => {
            let result = runtime.block_on(check(&address));
            report(cli.json, &address, result)
        }
    }
}

async fn check(address: &RelayAddress) -> Result<(), NetError> {
    let mut ws = tessera_net::connect_websocket(address, &Transport::Direct).await?;
    // A polite close; the check already succeeded once the upgrade completed.
    let _ = ws.close(None).await;
    Ok(())
}

fn report(json: bool, address: &RelayAddress, result: Result<(), NetError>) -> ExitCode {
    let (ok, error, kind) = match &result {
        Ok(()) => (true, None, None),
        Err(e) => (false, Some(e.to_string()), Some(format!("{:?}", e.kind()))),
    };
    if json {
        let value = serde_json::json!({
            "relay": address.to_string(), "ok": ok, "error": error, "kind": kind,
        });
        println!("{value}");
    } else if ok {
        println!(
            "relay {} is reachable and its key matches the pin",
            address.authority()
        );
    } else if let Some(e) = error {
        eprintln!("tessera-cli: relay check failed: {e}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
