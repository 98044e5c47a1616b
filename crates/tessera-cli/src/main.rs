#![doc = include_str!("../README.md")]

mod account;
mod actions;
mod backup;
mod conversation;
mod duress;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tessera_core::card::{self, CardError, Reprovision};
use tessera_core::{
    Contact, ContactState, CoreError, CreateOptions, Engine, Event, Invite, KdfParams, Message,
    MessageStatus, OsKeyring, TransportConfig,
};
use tessera_net::{NetError, Transport};
use tessera_proto::RelayAddress;
use zeroize::Zeroizing;

/// Headless Tessera client.
///
/// The password comes from TESSERA_PASSWORD, or is asked for on the terminal.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Print results as JSON
    #[arg(long, global = true)]
    json: bool,
    /// The account's data directory [default: $TESSERA_DATA_DIR, or ~/.local/share/tessera]
    #[arg(long, global = true, value_name = "DIR", env = "TESSERA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The card reader to use [default: the first reader with a card on it]
    #[arg(long, global = true, value_name = "NAME", env = "TESSERA_READER")]
    reader: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// When `card sim --pull-at` leaves the reader.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum PullAtArg {
    /// Half way through the first write to the secret file.
    Torn,
    /// Right after the first write to the secret file, before it is answered.
    Written,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransportArg {
    /// Through the embedded Tor client (if Tor cannot connect, commands fail; nothing is ever
    /// sent directly instead)
    Tor,
    /// Straight to the relay (reveals your IP address to it; development and tests)
    Direct,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the account: vault, keys, registration with the relay
    Init {
        /// Relay address, tessera://HOST:PORT/PIN
        #[arg(long)]
        relay: RelayAddress,
        /// Your display name, shown to people you add
        #[arg(long)]
        name: String,
        /// How to reach the relay (kept in the vault; every later command uses it)
        #[arg(long, value_enum, default_value = "tor")]
        transport: TransportArg,
        /// An Arti configuration file (Arti's TOML: bridges, or a private Tor network's
        /// authorities): read once and its text kept in the vault (the file is not needed
        /// afterwards); Tor's state and cache stay in the data dir
        #[arg(long, value_name = "FILE", env = "TESSERA_TOR_CONFIG")]
        tor_config: Option<PathBuf>,
        /// Argon2id memory in MiB (default 256; at least 19)
        #[arg(long, value_name = "MIB")]
        kdf_memory_mib: Option<u32>,
        /// Create the vault without the card factor (headless use): password and keyring only,
        /// one factor fewer. `card enroll` adds a card later.
        #[arg(long)]
        no_card: bool,
    },
    /// Print your invite code (text; the QR code carries the same text)
    Invite,
    /// Contacts
    #[command(subcommand)]
    Contact(ContactCommand),
    /// Send a text message: queued in the vault at once, then handed to the relay if it can
    /// be reached; prints its status (pending, sent or failed with the reason) and exits 0
    Send {
        /// Contact name or account id; `self`: the note to self (kept here, never sent)
        contact: String,
        /// The text (with --file: its caption, optional)
        text: Option<String>,
        /// Send this file (encrypted, uploaded to the relay in pieces; docs/attachments.md)
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Reply to this message (its id, as `history --json` shows it)
        #[arg(long, value_name = "ID")]
        reply_to: Option<String>,
        /// Send no link preview even when link previews are on
        #[arg(long)]
        no_preview: bool,
    },
    /// Edit a message you sent (within 24 hours): the contact sees the new text, marked edited
    Edit(actions::EditArgs),
    /// Delete a message here, or with --everyone for both sides (your own, within 24 hours)
    Delete(actions::DeleteArgs),
    /// React to a message with an emoji (one per person; a new one replaces yours)
    React(actions::ReactArgs),
    /// Disappearing messages: show or set the conversation's timer (both sides see the change)
    Timer(actions::TimerArgs),
    /// Files received or sent: download one, or save it decrypted where you say
    #[command(subcommand)]
    Attachment(actions::AttachmentCommand),
    /// A conversation's settings: archive, pin, mute, mark unread, delete here
    #[command(subcommand)]
    Conversation(conversation::ConversationCommand),
    /// Read receipts: off means neither sending them nor seeing them (both ways); without a
    /// setting, show it
    ReadReceipts {
        /// on or off
        #[arg(value_parser = ["on", "off"])]
        setting: Option<String>,
    },
    /// Link previews: on means `send` fetches the page of a text's first https link through
    /// Tor (never directly) and sends its title and description with the text; off by
    /// default. Without a setting, show it
    LinkPreviews {
        /// on or off
        #[arg(value_parser = ["on", "off"])]
        setting: Option<String>,
    },
    /// Fetch and process what is waiting, send the outbox, print new messages
    Sync,
    /// Stay connected and print events as they happen
    Listen,
    /// A conversation's messages (marks them read and sends read receipts)
    History {
        /// Contact name or account id; `self`: the note to self
        contact: String,
        /// How many (newest)
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only messages older than this row (the `row` of the oldest message of the previous
        /// page), to page back through history
        #[arg(long, value_name = "ROW")]
        before: Option<i64>,
    },
    /// Full-text search over all messages
    Search {
        /// Words to find (prefixes match)
        query: String,
    },
    /// The safety number to compare with a contact
    SafetyNumber {
        /// Contact name or account id
        contact: String,
    },
    /// Mark a contact verified after comparing safety numbers
    Verify {
        /// Contact name or account id
        contact: String,
    },
    /// Change the vault password (the new one from TESSERA_NEW_PASSWORD or a prompt)
    ChangePassword,
    /// This device's certificate and how many private keys the vault holds (rotations due
    /// now are done first, as at every unlock; docs/keys.md)
    Keys,
    /// Envelopes that could not be opened or decrypted: acknowledged at the relay and kept
    /// here with their reasons (newest first; the sender when it was authenticated)
    Quarantine {
        /// How many (newest)
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Panic wipe: destroy this account's keys (keyring entry and key file, first) and then
    /// its files, without the password or the card. Irreversible; see docs/panic.md
    Panic {
        /// Do not ask (needed when there is no terminal to ask on)
        #[arg(long)]
        yes: bool,
    },
    /// Encrypted backups: create, restore, schedule (docs/backup.md)
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// The account itself: delete it for good (docs/leaving.md)
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// The duress password: set, clear, status (docs/duress.md)
    #[command(subcommand)]
    Duress(duress::DuressCommand),
    /// NTAG 424 DNA card tools
    #[command(subcommand)]
    Card(CardCommand),
    /// Relay diagnostics
    #[command(subcommand)]
    Relay(RelayCommand),
}

#[derive(Debug, Subcommand)]
enum CardCommand {
    /// Run a virtual NTAG 424 DNA in pcscd's vpcd reader until interrupted (state kept in FILE)
    Sim {
        /// The card's state file (created as a factory card if absent; holds its keys and
        /// secret, sealed with a key kept in the OS keyring)
        #[arg(long, value_name = "FILE", default_value = "tessera-virtual-card.json")]
        state: PathBuf,
        /// Where vpcd listens
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:35963")]
        vpcd: String,
        /// Leave the reader by itself in the middle of the first write to the card's secret
        /// file, to test a card taken away during a write: `torn` keeps half of the bytes the
        /// write changes, `written` all of them (in both, the write is not answered)
        #[arg(long, value_name = "WHEN")]
        pull_at: Option<PullAtArg>,
    },
    /// Show the card readers, whether a card is on them and its provisioning state
    Status,
    /// Provision the card on the reader for Tessera: a random card secret in its protected file,
    /// SUN on its NDEF file, all keys changed (the card's master key goes into the OS keyring).
    /// Refuses a card that is not factory-fresh unless --reprovision is given.
    Provision {
        /// Re-provision a card that is not factory-fresh, with its current master key from this
        /// machine's keyring (or --current-key). Its old card secret is gone afterwards: a vault
        /// enrolled with it no longer opens.
        #[arg(long)]
        reprovision: bool,
        /// The card's current master key (64 hex digits), for a card provisioned elsewhere
        #[arg(long, value_name = "HEX", requires = "reprovision")]
        current_key: Option<String>,
    },
    /// Add the card factor to this vault (created with --no-card); needs the password
    Enroll,
    /// Whether the engine locks when the card is taken off the reader (default on)
    LockOnRemoval {
        /// on or off
        #[arg(value_parser = ["on", "off"])]
        setting: String,
    },
    /// Read the card as a phone does (the NFC Forum Type 4 Tag NDEF procedure, no key) and print
    /// its NDEF records; a SUN record's `picc` and `cmac` are what verify-sun checks. Each read
    /// advances the card's SUN counter once.
    ReadNdef,
    /// Check a SUN (the encrypted PICC data and SDMMAC an NTAG 424 DNA mirrors into its URL);
    /// prints the UID, the read counter and whether the MAC is valid
    VerifySun {
        /// K_SDMMetaRead (32 hex digits)
        #[arg(long, value_name = "HEX")]
        meta_key: String,
        /// K_SDMFileRead (32 hex digits)
        #[arg(long, value_name = "HEX")]
        file_key: String,
        /// Encrypted PICC data (32 hex digits)
        #[arg(long, value_name = "HEX")]
        picc: String,
        /// SDMMAC (16 hex digits)
        #[arg(long, value_name = "HEX")]
        cmac: String,
        /// Encrypted file data, to decrypt
        #[arg(long, value_name = "HEX")]
        enc: Option<String>,
        /// The MAC input: the URL text from SDMMACInputOffset to the MAC (default: empty)
        #[arg(long, value_name = "TEXT", default_value = "")]
        mac_input: String,
    },
}

#[derive(Debug, Subcommand)]
enum ContactCommand {
    /// Add a contact from their invite code (accepts their request if they asked first)
    Add {
        /// The invite code
        code: String,
        /// The name to file them under
        #[arg(long)]
        name: Option<String>,
    },
    /// List contacts
    List,
    /// The request box: who asked to be a contact, with a short preview of their first message
    /// and the contact name theirs imitates, if any
    Requests,
    /// Accept a contact request
    Accept {
        /// Contact name or account id
        contact: String,
    },
    /// Reject a contact request
    Reject {
        /// Contact name or account id
        contact: String,
    },
    /// Block: their messages, requests and calls are dropped without receipts, and nothing is
    /// sent to them
    Block {
        /// Contact name or account id
        contact: String,
    },
    /// Unblock: new messages arrive again
    Unblock {
        /// Contact name or account id
        contact: String,
    },
    /// Remove the contact and the conversation here (nothing is sent)
    Remove {
        /// Contact name or account id
        contact: String,
    },
}

#[derive(Debug, Subcommand)]
enum RelayCommand {
    /// Connect to a relay, verify its pinned key and open a WebSocket (directly, or through Tor
    /// with --tor)
    Check {
        /// Relay address, tessera://HOST:PORT/PIN
        address: RelayAddress,
        /// Go through Tor (state and cache in a temporary directory)
        #[arg(long)]
        tor: bool,
        /// An Arti configuration file for --tor
        #[arg(long, value_name = "FILE", requires = "tor")]
        tor_config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Diagnostics on standard error when asked for, e.g. TESSERA_LOG=info (never secrets: the
    // core logs ids, counts and errors only).
    if let Ok(filter) = std::env::var("TESSERA_LOG") {
        match tracing_subscriber::EnvFilter::try_new(&filter) {
            Ok(f) => tracing_subscriber::fmt()
                .with_env_filter(f)
                .with_writer(std::io::stderr)
                .init(),
            Err(e) => {
                eprintln!("tessera-cli: error: invalid TESSERA_LOG filter: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tessera-cli: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    json!({"ok": false, "error": e.to_string(), "kind": kind(&e)})
                );
            } else {
                eprintln!("tessera-cli: error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A stable, machine-readable name for an error (the engine's codes).
fn kind(e: &CliError) -> &'static str {
    match e {
        CliError::Core(c) => c.code(),
        CliError::Usage(_) => "usage",
        CliError::Net(n) => tessera_core::net_code(n),
    }
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{0}")]
    Usage(String),
}

/// The virtual card's state-file keys, in the OS keyring beside the vault's device secrets.
struct CardStateKeys;

impl tessera_nfc::vpcd::StateKeys for CardStateKeys {
    fn get(&self, name: &str) -> Result<Option<Zeroizing<[u8; 32]>>, String> {
        use tessera_core::SecretStore as _;
        OsKeyring.get(name).map_err(|e| e.to_string())
    }
    fn put(&self, name: &str, key: &[u8; 32]) -> Result<(), String> {
        use tessera_core::SecretStore as _;
        OsKeyring.put(name, key).map_err(|e| e.to_string())
    }
}

fn data_dir(cli: &Cli) -> Result<PathBuf, CliError> {
    if let Some(d) = &cli.data_dir {
        return Ok(d.clone());
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| CliError::Usage("no --data-dir and no HOME".into()))?;
    Ok(PathBuf::from(home).join(".local/share/tessera"))
}

fn password(confirm: bool) -> Result<Zeroizing<Vec<u8>>, CliError> {
    if let Some(p) = std::env::var_os("TESSERA_PASSWORD") {
        return Ok(Zeroizing::new(p.into_encoded_bytes()));
    }
    let p = Zeroizing::new(
        rpassword::prompt_password("Password: ")
            .map_err(|e| CliError::Usage(format!("cannot read the password: {e}")))?,
    );
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Password again: ")
                .map_err(|e| CliError::Usage(format!("cannot read the password: {e}")))?,
        );
        if *p != *again {
            return Err(CliError::Usage("the passwords differ".into()));
        }
    }
    Ok(Zeroizing::new(p.as_bytes().to_vec()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(t: &str) -> Option<Vec<u8>> {
    let t = t.trim();
    if !t.len().is_multiple_of(2) || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16).ok())
        .collect()
}

fn account_text(id: &[u8; 32]) -> String {
    tessera_crypto::AccountId(*id).to_string()
}

fn state(s: ContactState) -> &'static str {
    s.as_str()
}

fn status(s: MessageStatus) -> &'static str {
    s.as_str()
}

fn contact_json(c: &Contact) -> Value {
    json!({"name": c.name, "account_id": account_text(&c.account_id), "state": state(c.state)})
}

fn message_json(m: &Message, contact_name: Option<&str>) -> Value {
    json!({
        "row": m.id,
        "message_id": hex(&m.message_id),
        "contact": account_text(&m.contact),
        "contact_name": contact_name,
        "outgoing": m.outgoing,
        "body": m.body,
        "sent": m.sent,
        "status": status(m.status),
        "failure": m.failure,
        "kind": m.kind,
        "conversation": hex(&m.conversation),
        "time_flag": m.time_flag,
        "reply_to": m.reply_to.as_ref().map(|r| hex(r)),
        "edited": m.edited,
        "expires_in": m.expires_in,
        "expire_at": m.expire_at,
        "preview": m.preview,
    })
}

/// An attachment as `send` and `history` print it (never its key).
fn attachment_json(a: &tessera_core::AttachmentInfo) -> Value {
    json!({"name": a.name, "size": a.size, "mime": a.mime, "state": a.state.as_str()})
}

/// Why no preview was made, when the page was reached through Tor (`docs/link-previews.md`).
fn preview_reason(e: &CoreError) -> Option<&'static str> {
    match e {
        CoreError::Preview(p) => Some(p.code()),
        _ => None,
    }
}

/// What `conversation …`, `send`, `history` and `timer` take for the note to self.
pub(crate) const NOTE_TO_SELF: &str = "self";

/// The conversation a command names: a contact by name or account id, or [`NOTE_TO_SELF`]
/// (shown under that name).
pub(crate) fn conversation_with(engine: &Engine, name: &str) -> Result<Contact, CoreError> {
    if name == NOTE_TO_SELF {
        let mut me = engine.open_note_to_self()?;
        me.name = NOTE_TO_SELF.into();
        return Ok(me);
    }
    engine.find_contact(name)
}

fn event_json(e: &Event, engine: &Engine) -> Option<Value> {
    let name_of = |id: &[u8; 32]| engine.find_contact(&account_text(id)).map(|c| c.name).ok();
    Some(match e {
        Event::Message {
            contact,
            message_id,
            body,
            message,
        } => json!({"event": "message", "contact": account_text(contact),
                    "contact_name": name_of(contact), "message_id": hex(message_id), "body": body,
                    "kind": message.kind, "sent": message.sent,
                    "conversation": hex(&message.conversation), "time_flag": message.time_flag}),
        Event::Status {
            message_id,
            status: s,
            message,
        } => {
            json!({"event": "status", "message_id": hex(message_id), "status": status(*s),
                   "failure": message.failure})
        }
        Event::ContactRequest { contact, name } => {
            json!({"event": "contact_request", "contact": account_text(contact), "name": name})
        }
        Event::MessageChanged {
            contact,
            message_id,
            message,
        } => json!({"event": "message_changed", "contact": account_text(contact),
                    "message_id": hex(message_id), "kind": message.kind, "body": message.body,
                    "edited": message.edited}),
        Event::Typing { contact, on } => json!({"event": "typing",
                    "contact": account_text(contact), "on": on}),
        Event::MessagesExpired { contact, ids } => json!({"event": "messages_expired",
                    "contact": account_text(contact),
                    "ids": ids.iter().map(|i| hex(i)).collect::<Vec<_>>()}),
        Event::ContactAccepted { contact } => {
            json!({"event": "contact_accepted", "contact": account_text(contact)})
        }
        Event::ContactRejected { contact } => {
            json!({"event": "contact_rejected", "contact": account_text(contact)})
        }
        Event::ContactDeleted { contact } => {
            json!({"event": "contact_deleted", "contact": account_text(contact)})
        }
        Event::IdentityChanged { contact } => {
            json!({"event": "identity_changed", "contact": contact})
        }
        Event::Connected => json!({"event": "connected"}),
        Event::Disconnected => json!({"event": "disconnected"}),
        Event::SessionReset { contact } => {
            json!({"event": "session_reset", "contact": account_text(contact)})
        }
        Event::Quarantined { sender, reason } => json!({
            "event": "quarantined",
            "from": sender.as_ref().map(account_text),
            "from_name": sender.as_ref().map(name_of),
            "reason": reason,
        }),
        Event::PrekeysRefilled => json!({"event": "prekeys_refilled"}),
        Event::Locked { reason } => json!({"event": "locked", "reason": reason}),
        Event::TorProgress {
            percent,
            phase,
            ready,
            blocked,
        } => json!({"event": "tor", "percent": percent, "phase": phase, "ready": ready,
                    "blocked": blocked}),
        _ => return None,
    })
}

fn print_event(json_out: bool, e: &Event, engine: &Engine) {
    let Some(v) = event_json(e, engine) else {
        return;
    };
    if json_out {
        println!("{v}");
    } else {
        match e {
            Event::Message { body, .. } => println!(
                "{}: {body}",
                v["contact_name"].as_str().unwrap_or("(unknown)")
            ),
            _ => println!("{}", v["event"].as_str().unwrap_or_default()),
        }
    }
}

/// Reads the card for a vault that has the card factor, with the key the key file gives to
/// `password` (off the async threads).
async fn tap(cli: &Cli, password: &Zeroizing<Vec<u8>>) -> Result<Option<card::Tap>, CliError> {
    let dir = data_dir(cli)?;
    let reader = cli.reader.clone();
    let pw = password.clone();
    tokio::task::spawn_blocking(move || {
        card::tap_for_vault(&dir, &pw, &OsKeyring, reader.as_deref())
    })
    .await
    .map_err(|e| CliError::Usage(e.to_string()))?
    .map_err(CliError::from)
}

/// Unlocks: the password, then the card read with the key it opens (when the vault has the
/// card factor). Returns the reader the card was read on.
async fn unlock_with_reader(cli: &Cli) -> Result<(Engine, Option<String>), CliError> {
    let dir = data_dir(cli)?;
    let pw = password(false)?;
    let (engine, reader) =
        Engine::unlock_card(&dir, pw, Arc::new(OsKeyring), cli.reader.clone()).await?;
    if let Some(check) = engine.card_check() {
        // On standard error, so the command's own output stays as it is.
        if check.reads_elsewhere > 0 {
            eprintln!(
                "tessera-cli: warning: the card was read {} time(s) since this vault last opened, \
                 not by Tessera on this device (a phone, another reader, or someone copying it); \
                 its secret has been replaced, so a copy made before no longer opens the vault",
                check.reads_elsewhere
            );
        }
        if let Some(e) = check.rotation_error {
            eprintln!(
                "tessera-cli: warning: the card's secret was not replaced this time ({e}); \
                 the card still opens the vault, and the next unlock tries again"
            );
        }
    }
    Ok((engine, reader))
}

async fn unlock(cli: &Cli) -> Result<Engine, CliError> {
    Ok(unlock_with_reader(cli).await?.0)
}

/// Hands what a command queued to the relay before the process exits (the engine returns once
/// it is committed). Best effort: without the relay it stays queued for the next `sync`.
async fn hand_over(engine: &Engine) {
    if let Err(e) = engine.flush_outbox().await {
        tracing::info!(error = %e, "relay not reachable; the outbox keeps what was queued");
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let out = |v: Value, text: String| {
        if cli.json {
            println!("{v}");
        } else {
            println!("{text}");
        }
    };
    match &cli.command {
        Command::Card(CardCommand::Sim {
            state,
            vpcd,
            pull_at,
        }) => {
            let pull = match pull_at {
                None => tessera_nfc::vpcd::PullAt::Never,
                Some(PullAtArg::Torn) => tessera_nfc::vpcd::PullAt::SecretWriteTorn,
                Some(PullAtArg::Written) => tessera_nfc::vpcd::PullAt::SecretWritten,
            };
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                });
            }
            let (state, vpcd) = (state.clone(), vpcd.clone());
            eprintln!(
                "virtual card: state {}, inserting into vpcd at {vpcd}",
                state.display()
            );
            tokio::task::spawn_blocking(move || -> Result<(), CliError> {
                let stopped = || stop.load(std::sync::atomic::Ordering::SeqCst);
                while !stopped() {
                    match tessera_nfc::vpcd::serve_with(
                        &vpcd,
                        &state,
                        &CardStateKeys,
                        &stopped,
                        pull,
                    ) {
                        Ok(tessera_nfc::vpcd::Served::Closed) => {}
                        Ok(tessera_nfc::vpcd::Served::Pulled) => {
                            eprintln!("virtual card: pulled from the reader during a write");
                            return Ok(());
                        }
                        Err(tessera_nfc::vpcd::VpcdError::Io(_)) => {
                            // vpcd not there (yet) or it restarted: try again shortly.
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        Err(e) => return Err(CliError::Usage(e.to_string())),
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| CliError::Usage(e.to_string()))??;
        }
        Command::Card(CardCommand::Status) => {
            let dir = data_dir(&cli).ok();
            let reader = cli.reader.clone();
            let list = tokio::task::spawn_blocking(move || {
                card::status(&OsKeyring, dir.as_deref(), true, reader.as_deref())
            })
            .await
            .map_err(|e| CliError::Usage(e.to_string()))?;
            let list = match list {
                Ok(l) => l,
                Err(CardError::Tag(tessera_nfc::tag::TagError::Reader(
                    tessera_nfc::reader::ReaderError::NoReader,
                ))) => Vec::new(),
                Err(e) => return Err(CoreError::Card(e).into()),
            };
            let text = if list.is_empty() {
                "no card reader".to_string()
            } else {
                list.iter()
                    .map(|r| {
                        let mut line = format!("{}: ", r.reader);
                        match (&r.uid, r.provisioning) {
                            (Some(uid), Some(p)) => {
                                line += &format!("card {uid}, {p}");
                                if r.enrolled_here == Some(true) {
                                    line += ", enrolled in this vault";
                                }
                                if r.originality == Some(true) {
                                    line += ", NXP-genuine";
                                }
                            }
                            _ if r.card => line += "card present (not answering)",
                            _ => line += "no card",
                        }
                        line
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            out(json!({"readers": list}), text);
        }
        Command::Card(CardCommand::Provision {
            reprovision,
            current_key,
        }) => {
            let how = match (reprovision, current_key) {
                (false, _) => Reprovision::No,
                (true, None) => Reprovision::FromKeyring,
                (true, Some(hex_key)) => {
                    let bytes: [u8; 32] = unhex(hex_key)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| {
                            CliError::Usage("--current-key must be 64 hex digits".into())
                        })?;
                    Reprovision::WithKey(tessera_nfc::tag::CardMasterKey::from_bytes(&bytes))
                }
            };
            let reader = cli.reader.clone();
            let done = tokio::task::spawn_blocking(move || {
                card::provision(&OsKeyring, reader.as_deref(), how)
            })
            .await
            .map_err(|e| CliError::Usage(e.to_string()))?
            .map_err(CoreError::Card)?;
            out(
                json!({"ok": true, "reader": done.reader, "uid": hex(&done.uid),
                       "reprovisioned": done.reprovisioned}),
                format!(
                    "card {} provisioned on {}{}",
                    hex(&done.uid),
                    done.reader,
                    if done.reprovisioned {
                        " (re-provisioned)"
                    } else {
                        ""
                    }
                ),
            );
        }
        Command::Card(CardCommand::Enroll) => {
            let dir = data_dir(&cli)?;
            let reader = cli.reader.clone();
            let d = dir.clone();
            let t = tokio::task::spawn_blocking(move || {
                card::tap_to_enroll(&d, &OsKeyring, reader.as_deref())
            })
            .await
            .map_err(|e| CliError::Usage(e.to_string()))??;
            let uid = hex(&t.factor.uid);
            Engine::enroll_card(&dir, password(false)?, Arc::new(OsKeyring), t.factor).await?;
            out(
                json!({"ok": true, "uid": uid}),
                format!("card {uid} enrolled: the vault now opens only with it"),
            );
        }
        Command::Card(CardCommand::LockOnRemoval { setting }) => {
            let engine = unlock(&cli).await?;
            engine.set_lock_on_card_removal(setting == "on")?;
            out(
                json!({"ok": true, "lock_on_card_removal": setting == "on"}),
                format!("lock on card removal: {setting}"),
            );
        }
        Command::Card(CardCommand::ReadNdef) => {
            let reader = cli.reader.clone();
            let (reader, read) =
                tokio::task::spawn_blocking(move || card::read_ndef(reader.as_deref()))
                    .await
                    .map_err(|e| CliError::Usage(e.to_string()))?
                    .map_err(CoreError::Card)?;
            // NLEN 0: the tag holds no NDEF message (a factory card).
            let records = if read.message.is_empty() {
                Vec::new()
            } else {
                tessera_nfc::ndef::parse_message(&read.message)
                    .map_err(|e| CliError::Usage(format!("the card's NDEF message: {e}")))?
            };
            let mut list = Vec::new();
            let mut sun = Value::Null;
            for r in &records {
                let text = String::from_utf8(r.payload.clone()).ok();
                if sun.is_null()
                    && let Some((picc, cmac)) =
                        text.as_deref().and_then(tessera_nfc::ndef::sun_parameters)
                {
                    sun = json!({"picc": picc, "cmac": cmac});
                }
                list.push(json!({
                    "tnf": r.tnf,
                    "type": String::from_utf8_lossy(&r.record_type),
                    "payload": hex(&r.payload),
                    "text": text,
                }));
            }
            // Always JSON, like verify-sun: this command exists for scripts that check tags.
            println!(
                "{}",
                json!({"reader": reader, "ndef": hex(&read.message), "records": list, "sun": sun})
            );
        }
        Command::Card(CardCommand::VerifySun {
            meta_key,
            file_key,
            picc,
            cmac,
            enc,
            mac_input,
        }) => {
            let bytes = |what: &str, text: &str| -> Result<Vec<u8>, CliError> {
                unhex(text).ok_or_else(|| CliError::Usage(format!("--{what} is not hex")))
            };
            let key = |what: &str, text: &str| -> Result<[u8; 16], CliError> {
                bytes(what, text)?.try_into().map_err(|_| {
                    CliError::Usage(format!("--{what} must be 16 bytes (32 hex digits)"))
                })
            };
            let enc = enc.as_deref().map(|e| bytes("enc", e)).transpose()?;
            let sun = tessera_nfc::protocol::sdm::verify_sun(
                &key("meta-key", meta_key)?,
                &key("file-key", file_key)?,
                &bytes("picc", picc)?,
                &bytes("cmac", cmac)?,
                enc.as_deref(),
                mac_input.as_bytes(),
            )
            .map_err(|e| CliError::Usage(format!("cannot check this SUN: {e}")))?;
            let mut v = json!({"uid": hex(&sun.uid), "counter": sun.counter, "valid": sun.valid});
            if let Some(fd) = &sun.file_data {
                v["file_data"] = json!(hex(fd));
            }
            // Always JSON: this command exists for scripts that check tags.
            println!("{v}");
            if !sun.valid {
                return Err(CliError::Usage("the SDMMAC does not verify".into()));
            }
        }
        Command::Backup(command) => backup::run(&cli, command, out).await?,
        Command::Duress(command) => duress::run(&cli, command, out).await?,
        Command::Edit(args) => actions::edit(&cli, args, out).await?,
        Command::Delete(args) => actions::delete(&cli, args, out).await?,
        Command::React(args) => actions::react(&cli, args, out).await?,
        Command::Timer(args) => actions::timer(&cli, args, out).await?,
        Command::Attachment(command) => actions::attachment(&cli, command, out).await?,
        Command::Conversation(command) => conversation::run(&cli, command, out).await?,
        Command::LinkPreviews { setting } => {
            let engine = unlock(&cli).await?;
            if let Some(s) = setting {
                engine.set_link_previews(s == "on")?;
            }
            let word = if engine.link_previews()? { "on" } else { "off" };
            out(
                json!({"ok": true, "link_previews": word}),
                format!("link previews: {word}"),
            );
        }
        Command::ReadReceipts { setting } => {
            let engine = unlock(&cli).await?;
            if let Some(s) = setting {
                engine.set_app_setting("read_receipts", s)?;
            }
            let on = engine.app_setting("read_receipts")?.as_deref() != Some("off");
            let word = if on { "on" } else { "off" };
            out(
                json!({"ok": true, "read_receipts": word}),
                format!("read receipts: {word}"),
            );
        }
        Command::Contact(ContactCommand::Block { contact }) => {
            let engine = unlock(&cli).await?;
            let c = engine.find_contact(contact)?;
            engine.block(&c.account_id)?;
            out(
                json!({"ok": true, "contact": c.name, "blocked": true}),
                format!("{} blocked", c.name),
            );
        }
        Command::Contact(ContactCommand::Unblock { contact }) => {
            let engine = unlock(&cli).await?;
            let c = engine.find_contact(contact)?;
            engine.unblock(&c.account_id)?;
            out(
                json!({"ok": true, "contact": c.name, "blocked": false}),
                format!("{} unblocked", c.name),
            );
        }
        Command::Contact(ContactCommand::Remove { contact }) => {
            let engine = unlock(&cli).await?;
            let c = engine.find_contact(contact)?;
            engine.remove_contact(&c.account_id)?;
            out(
                json!({"ok": true, "contact": c.name, "removed": true}),
                format!("{} removed", c.name),
            );
        }
        Command::Account(command) => account::run(&cli, command, out).await?,
        Command::Panic { yes } => {
            let dir = data_dir(&cli)?;
            if !yes {
                use std::io::IsTerminal as _;
                if !std::io::stdin().is_terminal() {
                    return Err(CliError::Usage(
                        "panic asks for confirmation on a terminal; pass --yes to wipe without asking"
                            .into(),
                    ));
                }
                eprint!(
                    "This destroys the account in {} for good. Type WIPE: ",
                    dir.display()
                );
                let mut answer = String::new();
                std::io::stdin()
                    .read_line(&mut answer)
                    .map_err(|e| CliError::Usage(format!("cannot read the answer: {e}")))?;
                if answer.trim() != "WIPE" {
                    return Err(CliError::Usage("not wiped".into()));
                }
            }
            // The keyring's API blocks: off the async threads.
            let wipe_dir = dir.clone();
            let report =
                tokio::task::spawn_blocking(move || tessera_core::wipe(&wipe_dir, &OsKeyring))
                    .await
                    .map_err(|e| CliError::Usage(e.to_string()))?;
            let ms = report.keys_destroyed_in.as_secs_f64() * 1000.0;
            let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
            out(
                json!({
                    "wiped": report.had_vault,
                    "keys_destroyed_ms": ms,
                    "removed": report.removed,
                    "problems": problems,
                }),
                if report.had_vault {
                    format!(
                        "wiped: keys destroyed in {ms:.1} ms, {} files and folders removed{}",
                        report.removed,
                        if problems.is_empty() {
                            String::new()
                        } else {
                            format!("; could not: {}", problems.join("; "))
                        }
                    )
                } else {
                    format!(
                        "no account in {}; removed {} leftover files",
                        dir.display(),
                        report.removed
                    )
                },
            );
            if !problems.is_empty() {
                return Err(CliError::Usage(format!(
                    "{} steps of the wipe failed (the rest ran)",
                    problems.len()
                )));
            }
        }
        Command::Relay(RelayCommand::Check {
            address,
            tor,
            tor_config,
        }) => {
            let scratch = tempfile::tempdir()
                .map_err(|e| CliError::Usage(format!("temporary directory: {e}")))?;
            let transport = if *tor {
                let mut opts = tessera_net::TorOptions::under(scratch.path());
                opts.config = tor_config
                    .as_deref()
                    .map(tessera_net::read_config_file)
                    .transpose()?;
                Transport::Tor(tessera_net::Tor::start(&opts)?)
            } else {
                Transport::Direct
            };
            let mut ws = tessera_net::connect_websocket(address, &transport).await?;
            let _ = ws.close(None).await;
            out(
                json!({"relay": address.to_string(), "ok": true}),
                format!(
                    "relay {} is reachable and its key matches the pin",
                    address.authority()
                ),
            );
        }
        Command::Init {
            relay,
            name,
            transport,
            tor_config,
            kdf_memory_mib,
            no_card,
        } => {
            let transport = match transport {
                TransportArg::Direct => TransportConfig::Direct,
                // Read once: the text goes into the vault, the file is not needed again.
                TransportArg::Tor => TransportConfig::Tor {
                    config: tor_config
                        .as_deref()
                        .map(tessera_net::read_config_file)
                        .transpose()?,
                },
            };
            let mut kdf = KdfParams::DEFAULT;
            if let Some(m) = kdf_memory_mib {
                kdf.memory_kib = m.saturating_mul(1024);
            }
            let card = if *no_card {
                eprintln!(
                    "tessera-cli: warning: no card: the vault is protected by the password and \
                     this machine's keyring only (one factor fewer); `card enroll` adds a card"
                );
                None
            } else {
                let reader = cli.reader.clone();
                let t =
                    tokio::task::spawn_blocking(move || card::tap(&OsKeyring, reader.as_deref()))
                        .await
                        .map_err(|e| CliError::Usage(e.to_string()))?
                        .map_err(CoreError::Card)?;
                Some(t.factor)
            };
            let card_uid = card.as_ref().map(|c| hex(&c.uid));
            let engine = Engine::create(
                CreateOptions {
                    dir: data_dir(&cli)?,
                    password: password(true)?,
                    relay: relay.clone(),
                    name: name.clone(),
                    transport,
                    kdf,
                    card,
                },
                Arc::new(OsKeyring),
            )
            .await?;
            let invite = engine.invite()?.to_text();
            let id = engine.account_id()?.to_string();
            out(
                json!({"ok": true, "account_id": id, "invite": invite, "card": card_uid}),
                format!("account {id} created\ninvite: {invite}"),
            );
        }
        Command::Invite => {
            let engine = unlock(&cli).await?;
            let invite = engine.invite()?;
            let text = invite.to_text();
            out(
                json!({"invite": text, "qr": text, "account_id": invite.account_id.to_string()}),
                text.clone(),
            );
        }
        Command::Contact(ContactCommand::Add { code, name }) => {
            let invite = Invite::parse(code)?;
            let engine = unlock(&cli).await?;
            let c = engine.add_contact(&invite, name.as_deref()).await?;
            hand_over(&engine).await;
            out(
                json!({"contact": contact_json(&c)}),
                format!("{} ({})", c.name, state(c.state)),
            );
        }
        Command::Contact(ContactCommand::List) => {
            let engine = unlock(&cli).await?;
            let contacts = engine.contacts()?;
            let mut list: Vec<Value> = Vec::new();
            for c in &contacts {
                let mut v = contact_json(c);
                v["blocked"] = engine.is_blocked(&c.account_id)?.into();
                list.push(v);
            }
            let text = contacts
                .iter()
                .map(|c| {
                    format!(
                        "{}\t{}\t{}",
                        c.name,
                        state(c.state),
                        account_text(&c.account_id)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            out(json!({"contacts": list}), text);
        }
        Command::Contact(ContactCommand::Requests) => {
            let engine = unlock(&cli).await?;
            let requests = engine.requests()?;
            let list: Vec<Value> = requests
                .iter()
                .map(|r| {
                    json!({"contact": contact_json(&r.contact), "messages": r.messages,
                           "preview": r.preview, "imitates": r.imitates})
                })
                .collect();
            let text = requests
                .iter()
                .map(|r| {
                    let warning = r
                        .imitates
                        .as_ref()
                        .map(|n| format!(" (looks like your contact {n})"))
                        .unwrap_or_default();
                    format!(
                        "{}{warning}: {} message(s) {}",
                        r.contact.name,
                        r.messages,
                        r.preview.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            out(json!({"requests": list}), text);
        }
        Command::Contact(
            ContactCommand::Accept { contact } | ContactCommand::Reject { contact },
        ) => {
            let accept = matches!(cli.command, Command::Contact(ContactCommand::Accept { .. }));
            let engine = unlock(&cli).await?;
            let c = engine.find_contact(contact)?;
            let c = engine.answer_request(&c.account_id, accept).await?;
            hand_over(&engine).await;
            out(
                json!({"contact": contact_json(&c)}),
                format!("{} ({})", c.name, state(c.state)),
            );
        }
        Command::Send {
            contact,
            text,
            file: Some(path),
            ..
        } => {
            let engine = unlock(&cli).await?;
            let c = conversation_with(&engine, contact)?;
            let caption = text.as_deref().unwrap_or_default();
            let id = engine.send_file(&c.account_id, path, caption).await?;
            // Upload now if the relay can be reached (resumed by `sync` otherwise), then the
            // message itself.
            if let Err(e) = engine.upload_attachments().await {
                tracing::info!(error = %e, "upload not finished; `sync` resumes it");
            }
            hand_over(&engine).await;
            let m = engine.message(&id)?;
            let st = m.as_ref().map_or(MessageStatus::Pending, |m| m.status);
            let info = engine.attachment(&id)?;
            out(
                json!({"ok": true, "message_id": hex(&id), "status": status(st),
                       "attachment": info.as_ref().map(attachment_json)}),
                format!("{} {}", status(st), hex(&id)),
            );
        }
        Command::Send {
            contact,
            text,
            reply_to,
            no_preview,
            ..
        } => {
            let Some(text) = text else {
                return Err(CliError::Usage("send needs a text, or --file".into()));
            };
            let reply_to = reply_to.as_deref().map(actions::message_id).transpose()?;
            let engine = unlock(&cli).await?;
            let c = conversation_with(&engine, contact)?;
            // A preview is made here, through Tor, before sending (docs/link-previews.md);
            // without one the text goes anyway, and the output says why.
            let (preview, preview_error) = if *no_preview {
                (None, None)
            } else {
                match engine.link_preview(text).await {
                    Ok(p) => (p, None),
                    Err(e) => (None, Some(e)),
                }
            };
            let draft = tessera_core::Draft {
                body: text.clone(),
                reply_to,
                preview,
            };
            let id = engine.send_draft(&c.account_id, draft).await?;
            // The message is committed to the outbox; try to hand it to the relay now. If the
            // relay cannot be reached it stays queued and `sync` delivers it later: that is not
            // a failure of `send`.
            hand_over(&engine).await;
            let m = engine.message(&id)?;
            let st = m.as_ref().map_or(MessageStatus::Pending, |m| m.status);
            let preview = m.as_ref().and_then(|m| m.preview.clone());
            let failure = m.and_then(|m| m.failure);
            let text = match (st, &failure) {
                (MessageStatus::Pending, _) => {
                    format!(
                        "queued {} (the relay is not reachable; `sync` sends it)",
                        hex(&id)
                    )
                }
                (MessageStatus::Failed, Some(why)) => format!("failed {} ({why})", hex(&id)),
                (s, _) => format!("{} {}", status(s), hex(&id)),
            };
            let text = match &preview_error {
                Some(e) => format!("{text} (no link preview: {e})"),
                None => text,
            };
            out(
                json!({"ok": true, "message_id": hex(&id), "status": status(st), "failure": failure,
                "preview": preview,
                "preview_error": preview_error.as_ref().map(|e| json!({
                    "kind": e.code(), "reason": preview_reason(e), "message": e.to_string(),
                }))}),
                text,
            );
        }
        Command::Sync => {
            let engine = unlock(&cli).await?;
            let mut events = engine.subscribe();
            let result = engine.sync(Duration::from_millis(1500)).await;
            let mut collected = Vec::new();
            while let Ok(e) = events.try_recv() {
                collected.push(e);
            }
            result?;
            if cli.json {
                let list: Vec<Value> = collected
                    .iter()
                    .filter_map(|e| event_json(e, &engine))
                    .collect();
                println!("{}", json!({"events": list}));
            } else {
                for e in &collected {
                    print_event(false, e, &engine);
                }
            }
        }
        Command::Listen => {
            let (engine, reader) = unlock_with_reader(&cli).await?;
            let mut events = engine.subscribe();
            if let Some(reader) = reader {
                engine.watch_card(reader);
            }
            let runner = {
                let engine = engine.clone();
                tokio::spawn(async move { engine.run().await })
            };
            loop {
                tokio::select! {
                    e = events.recv() => match e {
                        Ok(e @ Event::Locked { .. }) => {
                            print_event(cli.json, &e, &engine);
                            break;
                        }
                        Ok(e) => print_event(cli.json, &e, &engine),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    },
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
            engine.lock();
            runner.abort();
        }
        Command::History {
            contact,
            limit,
            before,
        } => {
            let engine = unlock(&cli).await?;
            let c = conversation_with(&engine, contact)?;
            let messages = engine.history(&c.account_id, *before, *limit)?;
            // Read receipts are best effort: without the relay they wait in the outbox.
            let _ = engine.mark_read(&c.account_id).await;
            hand_over(&engine).await;
            let mut list: Vec<Value> = Vec::new();
            let mut lines = Vec::new();
            for m in &messages {
                let reactions = actions::reactions_json(&engine, m)?;
                let who = if m.outgoing { "me" } else { c.name.as_str() };
                lines.push(format!(
                    "[{}] {}",
                    status(m.status),
                    actions::history_line(m, who, &reactions)
                ));
                let mut v = message_json(m, Some(&c.name));
                if let Some(a) = engine.attachment(&m.message_id)? {
                    v["attachment"] = attachment_json(&a);
                }
                v["reactions"] = reactions;
                list.push(v);
            }
            let text = lines.join("\n");
            out(json!({"messages": list}), text);
        }
        Command::Search { query } => {
            let engine = unlock(&cli).await?;
            let hits = engine.search(query, 100)?;
            let list: Vec<Value> = hits.iter().map(|m| message_json(m, None)).collect();
            let text = hits
                .iter()
                .map(|m| format!("{}: {}", account_text(&m.contact), m.body))
                .collect::<Vec<_>>()
                .join("\n");
            out(json!({"messages": list}), text);
        }
        Command::Quarantine { limit } => {
            let engine = unlock(&cli).await?;
            let rows: Vec<Value> = engine
                .quarantined(*limit)?
                .iter()
                .map(|q| {
                    json!({
                        "reason": q.reason,
                        "size": q.size,
                        "received": q.received,
                        "from": q.sender.as_ref().map(account_text),
                        "conversation": q.conversation.as_ref().map(|c| hex(c)),
                    })
                })
                .collect();
            let text = rows
                .iter()
                .map(|r| {
                    format!(
                        "{} bytes: {}",
                        r["size"],
                        r["reason"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            out(json!({ "quarantine": rows }), text);
        }
        Command::Keys => {
            let engine = unlock(&cli).await?;
            let (serial, not_before, not_after) = engine.device_certificate()?;
            let k = engine.key_inventory()?;
            let days_left = not_after.saturating_sub(engine.now_ms()) / 86_400_000;
            out(
                json!({
                    "certificate": {"serial": serial, "not_before": not_before,
                                    "not_after": not_after, "days_left": days_left},
                    "keys": {"signed_prekeys": k.signed_prekeys, "kyber_prekeys": k.kyber_prekeys,
                             "one_time_prekeys": k.one_time_prekeys,
                             "retired_envelope_keys": k.retired_envelope_keys,
                             "seen_envelopes": k.seen_envelopes},
                    "outbox": engine.outbox_len()?,
                }),
                format!(
                    "device certificate #{serial}, {days_left} days left; {} signed prekeys, \
                     {} one-time prekeys, {} retired envelope keys",
                    k.signed_prekeys, k.one_time_prekeys, k.retired_envelope_keys
                ),
            );
        }
        Command::SafetyNumber { contact } => {
            let engine = unlock(&cli).await?;
            let c = engine.find_contact(contact)?;
            let (digits, verified, changed) = engine.safety_number(&c.account_id)?;
            out(
                json!({"contact": c.name, "safety_number": digits, "verified": verified,
                       "identity_changed": changed}),
                format!("{digits}{}", if verified { " (verified)" } else { "" }),
            );
        }
        Command::ChangePassword => {
            let engine = unlock(&cli).await?;
            // The unlock recorded this read's counter: the rewrap needs a fresh one.
            let old = password(false)?;
            let card = tap(&cli, &old).await?.map(|t| t.factor);
            let new = match std::env::var_os("TESSERA_NEW_PASSWORD") {
                Some(p) => Zeroizing::new(p.into_encoded_bytes()),
                None => Zeroizing::new(
                    rpassword::prompt_password("New password: ")
                        .map_err(|e| CliError::Usage(format!("cannot read the password: {e}")))?
                        .into_bytes(),
                ),
            };
            engine.change_password(old, new, None, card).await?;
            out(json!({"ok": true}), "password changed".into());
        }
        Command::Verify { contact } => {
            let engine = unlock(&cli).await?;
            let c = engine.find_contact(contact)?;
            engine.verify(&c.account_id)?;
            out(
                json!({"contact": c.name, "verified": true}),
                format!("{} verified", c.name),
            );
        }
    }
    Ok(())
}
