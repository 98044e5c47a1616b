//! The vault schema and its numbered migrations (`docs/vault.md`).

use rusqlite::Connection;

use crate::VaultError;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 2;

/// Entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE local (
        name  TEXT PRIMARY KEY,
        value BLOB NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE settings (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE identities (
        account    TEXT PRIMARY KEY,
        identity   BLOB NOT NULL,
        verified   INTEGER NOT NULL DEFAULT 0,
        changed    INTEGER NOT NULL DEFAULT 0,
        first_seen INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE sessions (
        account TEXT NOT NULL,
        device  INTEGER NOT NULL,
        record  BLOB NOT NULL,
        PRIMARY KEY (account, device)
     ) WITHOUT ROWID;
     CREATE TABLE prekeys (
        id     INTEGER PRIMARY KEY,
        record BLOB NOT NULL
     );
     CREATE TABLE signed_prekeys (
        id      INTEGER PRIMARY KEY,
        record  BLOB NOT NULL,
        created INTEGER NOT NULL
     );
     CREATE TABLE kyber_prekeys (
        id      INTEGER PRIMARY KEY,
        record  BLOB NOT NULL,
        created INTEGER NOT NULL
     );
     CREATE TABLE kyber_prekey_uses (
        kyber_id  INTEGER NOT NULL,
        signed_id INTEGER NOT NULL,
        base_key  BLOB NOT NULL,
        PRIMARY KEY (kyber_id, signed_id, base_key)
     ) WITHOUT ROWID;
     CREATE TABLE sender_keys (
        account      TEXT NOT NULL,
        device       INTEGER NOT NULL,
        distribution BLOB NOT NULL,
        record       BLOB NOT NULL,
        PRIMARY KEY (account, device, distribution)
     ) WITHOUT ROWID;
     CREATE TABLE contacts (
        account_id     BLOB PRIMARY KEY,
        name           TEXT NOT NULL,
        account_public BLOB NOT NULL,
        relay          TEXT NOT NULL,
        state          TEXT NOT NULL,
        created        INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE UNIQUE INDEX contacts_by_name ON contacts(name);
     CREATE TABLE contact_devices (
        account_id  BLOB NOT NULL REFERENCES contacts(account_id) ON DELETE CASCADE,
        device_id   INTEGER NOT NULL,
        certificate BLOB NOT NULL,
        PRIMARY KEY (account_id, device_id)
     ) WITHOUT ROWID;
     CREATE TABLE messages (
        id         INTEGER PRIMARY KEY,
        contact    BLOB NOT NULL REFERENCES contacts(account_id) ON DELETE CASCADE,
        message_id BLOB NOT NULL UNIQUE,
        outgoing   INTEGER NOT NULL,
        body       TEXT NOT NULL,
        sent       INTEGER NOT NULL,
        received   INTEGER,
        status     TEXT NOT NULL,
        read       INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX messages_by_contact ON messages(contact, id);
     CREATE VIRTUAL TABLE messages_fts USING fts5(
        body, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
     );
     CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
     END;
     CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
     END;
     CREATE TABLE outbox (
        id          INTEGER PRIMARY KEY,
        account_id  BLOB NOT NULL,
        device_id   INTEGER NOT NULL,
        envelope    BLOB NOT NULL,
        message_id  BLOB,
        created     INTEGER NOT NULL
     );
     CREATE TABLE seen_envelopes (
        envelope_id BLOB PRIMARY KEY,
        seen        INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 2: key rotation (docs/keys.md): retired keys and when their grace ends; seen envelope ids
    // by time, so they can be forgotten once no envelope that old is accepted.
    "CREATE TABLE retired_keys (
        kind         TEXT NOT NULL,
        id           INTEGER NOT NULL,
        delete_after INTEGER NOT NULL,
        PRIMARY KEY (kind, id)
     ) WITHOUT ROWID;
     CREATE INDEX seen_envelopes_by_time ON seen_envelopes(seen);",
    // 3: the outbox holds the Signal message until it is first sent and seals it then, to the
    // recipient's envelope key as known at that moment (docs/engine.md, "Outbox"); rows from
    // before were sealed when queued.
    "ALTER TABLE outbox ADD COLUMN sealed INTEGER NOT NULL DEFAULT 1;",
    // 4: envelope v2 links (docs/envelope.md): ours to each contact device, and theirs to us
    // with when a full envelope on it last arrived (the newest is acknowledged).
    "CREATE TABLE outbound_links (
        account_id  BLOB NOT NULL,
        device_id   INTEGER NOT NULL,
        link        BLOB NOT NULL,
        PRIMARY KEY (account_id, device_id)
     ) WITHOUT ROWID;
     CREATE TABLE inbound_links (
        link_id      BLOB PRIMARY KEY,
        account_id   BLOB NOT NULL,
        device_id    INTEGER NOT NULL,
        link         BLOB NOT NULL,
        received     INTEGER NOT NULL,
        delete_after INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX inbound_links_by_sender ON inbound_links(account_id, device_id, received);",
    // 5: delivery that never stalls (docs/messaging.md, "Delivery"): a message the relay will
    // never take ends as `failed`, with the reason the sender sees; a message's content kind
    // (a kind from a newer version is kept and shown as unsupported, docs/messaging.md).
    "ALTER TABLE messages ADD COLUMN failure TEXT;
     ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'text';",
];

/// Applies the missing migrations, each in its own transaction.
pub(crate) fn migrate(conn: &Connection) -> Result<(), VaultError> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version as usize > MIGRATIONS.len() {
        return Err(VaultError::NewerVersion);
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = i + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {next}; COMMIT;"
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
    }
    Ok(())
}
