//! The vault schema and its numbered migrations (`docs/vault.md`).

use rusqlite::Connection;

use crate::VaultError;

/// The schema version this build writes (one per migration below).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

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
    // 6: the conversation model (docs/messaging.md, "Conversations"): messages belong to a
    // conversation with its own id and kind; a conversation is ordered by the (bounded) sender
    // time, and a replaced sender time is flagged; envelopes that could not be opened or
    // decrypted are kept in a quarantine with their reason. `fill_conversations` gives every
    // existing contact its direct conversation and every message its conversation.
    "CREATE TABLE conversations (
        id       BLOB PRIMARY KEY,
        kind     TEXT NOT NULL,
        contact  BLOB UNIQUE REFERENCES contacts(account_id) ON DELETE CASCADE,
        created  INTEGER NOT NULL
     ) WITHOUT ROWID;
     ALTER TABLE messages ADD COLUMN conversation BLOB;
     ALTER TABLE messages ADD COLUMN time_flag TEXT;
     CREATE INDEX messages_by_conversation ON messages(conversation, sent, id);
     CREATE TABLE quarantine (
        id           INTEGER PRIMARY KEY,
        conversation BLOB,
        sender       BLOB,
        reason       TEXT NOT NULL,
        size         INTEGER NOT NULL,
        received     INTEGER NOT NULL
     );",
    // 7: the full-text index is filled in batches (docs/vault.md, "Search"): a message is
    // indexed when `FTS_BATCH` more have arrived or a search runs, not in the transaction that
    // stores it, so a message commit does not write an index segment of its own. `fts_state`
    // holds the highest row id in the index; a row at or below it (a reused row id) is indexed
    // at once, and only indexed rows are removed from the index when they are deleted.
    "DROP TRIGGER messages_fts_insert;
     DROP TRIGGER messages_fts_delete;
     CREATE TABLE fts_state (indexed INTEGER NOT NULL);
     INSERT INTO fts_state SELECT COALESCE(MAX(id), 0) FROM messages;
     CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
     WHEN new.id <= (SELECT indexed FROM fts_state) BEGIN
        INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
     END;
     CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
     WHEN old.id <= (SELECT indexed FROM fts_state) BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
     END;",
    // 8: message actions (docs/message-actions.md): a reply names the message it quotes; an
    // edited message keeps the sender time of the edit shown and its earlier texts (local
    // only); one reaction per person per message (an empty one: removed at that time). The
    // full-text index follows a changed text.
    "ALTER TABLE messages ADD COLUMN reply_to BLOB;
     ALTER TABLE messages ADD COLUMN edited INTEGER;
     CREATE TABLE message_edits (
        message_id BLOB NOT NULL,
        body       TEXT NOT NULL,
        at         INTEGER NOT NULL
     );
     CREATE INDEX message_edits_by_message ON message_edits(message_id);
     CREATE TABLE reactions (
        message_id BLOB NOT NULL,
        reactor    BLOB NOT NULL,
        emoji      TEXT NOT NULL,
        at         INTEGER NOT NULL,
        PRIMARY KEY (message_id, reactor)
     ) WITHOUT ROWID;
     CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages
     WHEN old.id <= (SELECT indexed FROM fts_state) BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
        INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
     END;",
    // 9: disappearing messages (docs/disappearing.md): a conversation's timer and when it was
    // set; a message's lifetime in seconds and, once its countdown started, when it goes.
    "ALTER TABLE conversations ADD COLUMN timer INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE conversations ADD COLUMN timer_at INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE messages ADD COLUMN expires_in INTEGER;
     ALTER TABLE messages ADD COLUMN expire_at INTEGER;
     CREATE INDEX messages_by_expiry ON messages(expire_at) WHERE expire_at IS NOT NULL;",
    // 10: managing contacts and conversations (docs/conversations.md): blocked accounts (kept
    // apart from contacts, so blocking a stranger needs no contact); a conversation's own
    // settings.
    "CREATE TABLE blocked (
        account_id BLOB PRIMARY KEY,
        since      INTEGER NOT NULL
     ) WITHOUT ROWID;
     ALTER TABLE conversations ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE conversations ADD COLUMN muted_until INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE conversations ADD COLUMN marked_unread INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE conversations ADD COLUMN draft TEXT;",
    // 11: messages belong to their conversation, not to a contact (docs/conversations.md,
    // "Note to self"): `contact` names the other account (our own in a note to self) without
    // requiring a contact row, and a message goes with its conversation. SQLite cannot change
    // a column's constraints, so the table is rebuilt with the same row ids (the full-text
    // index stays valid) and its indexes and triggers are made again. `fill_conversations`
    // runs first, so every message has its conversation.
    "DROP TRIGGER messages_fts_insert;
     DROP TRIGGER messages_fts_delete;
     DROP TRIGGER messages_fts_update;
     CREATE TABLE messages_v11 (
        id         INTEGER PRIMARY KEY,
        contact    BLOB NOT NULL,
        message_id BLOB NOT NULL UNIQUE,
        outgoing   INTEGER NOT NULL,
        body       TEXT NOT NULL,
        sent       INTEGER NOT NULL,
        received   INTEGER,
        status     TEXT NOT NULL,
        read       INTEGER NOT NULL DEFAULT 0,
        failure    TEXT,
        kind       TEXT NOT NULL DEFAULT 'text',
        conversation BLOB NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        time_flag  TEXT,
        reply_to   BLOB,
        edited     INTEGER,
        expires_in INTEGER,
        expire_at  INTEGER
     );
     INSERT INTO messages_v11 (id, contact, message_id, outgoing, body, sent, received, status,
        read, failure, kind, conversation, time_flag, reply_to, edited, expires_in, expire_at)
     SELECT id, contact, message_id, outgoing, body, sent, received, status, read, failure,
        kind, conversation, time_flag, reply_to, edited, expires_in, expire_at FROM messages;
     DROP TABLE messages;
     ALTER TABLE messages_v11 RENAME TO messages;
     CREATE INDEX messages_by_contact ON messages(contact, id);
     CREATE INDEX messages_by_conversation ON messages(conversation, sent, id);
     CREATE INDEX messages_by_expiry ON messages(expire_at) WHERE expire_at IS NOT NULL;
     CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
     WHEN new.id <= (SELECT indexed FROM fts_state) BEGIN
        INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
     END;
     CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
     WHEN old.id <= (SELECT indexed FROM fts_state) BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
     END;
     CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages
     WHEN old.id <= (SELECT indexed FROM fts_state) BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
        INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
     END;",
    // 12: link previews (docs/link-previews.md): the sender's preview of a text's first link,
    // as JSON.
    "ALTER TABLE messages ADD COLUMN preview TEXT;",
    // 13: attachments (docs/attachments.md): what opens each file's blob, and where it is on
    // its way; gone with its message.
    "CREATE TABLE attachments (
        message_id BLOB PRIMARY KEY REFERENCES messages(message_id) ON DELETE CASCADE,
        blob       BLOB NOT NULL,
        file_key   BLOB NOT NULL,
        digest     BLOB NOT NULL,
        size       INTEGER NOT NULL,
        name       TEXT NOT NULL,
        mime       TEXT NOT NULL,
        state      TEXT NOT NULL,
        fetches    INTEGER NOT NULL DEFAULT 1
     ) WITHOUT ROWID;",
];

/// Version 6's data step: a direct conversation for each contact (its id derived as
/// tessera-messaging derives it), and each message moved into its contact's conversation.
fn fill_conversations(conn: &Connection) -> Result<(), VaultError> {
    let contacts: Vec<(Vec<u8>, i64)> = {
        let mut s = conn.prepare("SELECT account_id, created FROM contacts")?;
        let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (account, created) in contacts {
        let Ok(id) = <[u8; 32]>::try_from(account.as_slice()) else {
            continue;
        };
        let conversation = crate::messages::direct_conversation(&id);
        conn.execute(
            "INSERT OR IGNORE INTO conversations (id, kind, contact, created)
             VALUES (?1, 'direct', ?2, ?3)",
            rusqlite::params![&conversation[..], &account, created],
        )?;
        conn.execute(
            "UPDATE messages SET conversation = ?1 WHERE contact = ?2 AND conversation IS NULL",
            rusqlite::params![&conversation[..], &account],
        )?;
    }
    Ok(())
}

/// Applies the missing migrations, each in its own transaction.
pub(crate) fn migrate(conn: &Connection) -> Result<(), VaultError> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version as usize > MIGRATIONS.len() {
        return Err(VaultError::NewerVersion);
    }
    if version == 0 {
        // A new database: every migration in one transaction (one sync to disk instead of one
        // per migration; a duress unlock makes a database while the person waits).
        let all = || -> Result<(), VaultError> {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {}; PRAGMA user_version = {}; COMMIT;",
                MIGRATIONS.join(";\n"),
                MIGRATIONS.len()
            ))?;
            Ok(())
        };
        return all().inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = i + 1;
        let step = || -> Result<(), VaultError> {
            conn.execute_batch("BEGIN IMMEDIATE;")?;
            if next == 11 {
                fill_conversations(conn)?;
            }
            conn.execute_batch(sql)?;
            if next == 6 {
                fill_conversations(conn)?;
            }
            conn.execute_batch(&format!("PRAGMA user_version = {next}; COMMIT;"))?;
            Ok(())
        };
        step().inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain database at version 5 with a contact and two messages, then the remaining
    /// migrations: the contact has its direct conversation and the messages are in it.
    #[test]
    fn version_6_moves_every_message_into_its_contacts_conversation() {
        let conn = Connection::open_in_memory().unwrap();
        for (i, sql) in MIGRATIONS.iter().take(5).enumerate() {
            conn.execute_batch(&format!("{sql}; PRAGMA user_version = {};", i + 1))
                .unwrap();
        }
        let bob = [9u8; 32];
        conn.execute(
            "INSERT INTO contacts VALUES (?1, 'bob', x'01', 'r', 'accepted', 42)",
            [&bob[..]],
        )
        .unwrap();
        for (n, id) in [[1u8; 16], [2u8; 16]].iter().enumerate() {
            conn.execute(
                "INSERT INTO messages (contact, message_id, outgoing, body, sent, status)
                 VALUES (?1, ?2, 0, 'hi', ?3, 'received')",
                rusqlite::params![&bob[..], &id[..], n as i64],
            )
            .unwrap();
        }
        migrate(&conn).unwrap();
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let conversation = crate::messages::direct_conversation(&bob);
        let (kind, created): (String, i64) = conn
            .query_row(
                "SELECT kind, created FROM conversations WHERE id = ?1 AND contact = ?2",
                [&conversation[..], &bob[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((kind.as_str(), created), ("direct", 42));
        let moved: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE conversation = ?1",
                [&conversation[..]],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(moved, 2);
        // Running it again changes nothing.
        migrate(&conn).unwrap();
    }

    fn matches(conn: &Connection, word: &str) -> Vec<i64> {
        let mut s = conn
            .prepare("SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1 ORDER BY rowid")
            .unwrap();
        s.query_map([word], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Version 11 rebuilds the message table: rows, ids and search words survive; a message
    /// then needs its conversation but no contact, and goes with its conversation.
    #[test]
    fn version_11_ties_messages_to_conversations_and_keeps_the_search_index() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        for (i, sql) in MIGRATIONS.iter().take(10).enumerate() {
            conn.execute_batch(&format!("{sql}; PRAGMA user_version = {};", i + 1))
                .unwrap();
        }
        let bob = [9u8; 32];
        let direct = crate::messages::direct_conversation(&bob);
        conn.execute(
            "INSERT INTO contacts VALUES (?1, 'bob', x'01', 'r', 'accepted', 42)",
            [&bob[..]],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO conversations (id, kind, contact, created) VALUES (?1, 'direct', ?2, 42)",
            rusqlite::params![&direct[..], &bob[..]],
        )
        .unwrap();
        conn.execute_batch("UPDATE fts_state SET indexed = 100;")
            .unwrap();
        for (n, body) in ["hello there", "general kenobi"].iter().enumerate() {
            conn.execute(
                "INSERT INTO messages (contact, message_id, outgoing, body, sent, status,
                    conversation, reply_to)
                 VALUES (?1, ?2, 0, ?3, ?4, 'received', ?5, x'07')",
                rusqlite::params![&bob[..], &[n as u8; 16][..], body, n as i64, &direct[..]],
            )
            .unwrap();
        }
        migrate(&conn).unwrap();
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let rows: Vec<(i64, String, Vec<u8>)> = conn
            .prepare("SELECT id, body, reply_to FROM messages ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[1].1.as_str(), rows[1].2.as_slice()),
            ("general kenobi", &[7u8][..])
        );
        assert_eq!(matches(&conn, "kenobi"), [rows[1].0]);
        // The rebuilt triggers keep the index in step.
        conn.execute(
            "UPDATE messages SET body = 'general grievous' WHERE id = ?1",
            [rows[1].0],
        )
        .unwrap();
        assert!(matches(&conn, "kenobi").is_empty());
        assert_eq!(matches(&conn, "grievous"), [rows[1].0]);
        // A note to self: our own account in `contact`, no contact row needed; a message
        // without a conversation is refused.
        let me = [1u8; 32];
        let notes = crate::messages::note_to_self_conversation(&me);
        conn.execute(
            "INSERT INTO conversations (id, kind, contact, created)
             VALUES (?1, 'note_to_self', NULL, 1)",
            [&notes[..]],
        )
        .unwrap();
        let note = "INSERT INTO messages (contact, message_id, outgoing, body, sent, status,
                        conversation) VALUES (?1, ?2, 1, 'milk', 5, 'sent', ?3)";
        conn.execute(note, rusqlite::params![&me[..], &[5u8; 16][..], &notes[..]])
            .unwrap();
        assert!(
            conn.execute(
                note,
                rusqlite::params![&me[..], &[6u8; 16][..], &[0u8; 16][..]]
            )
            .is_err()
        );
        // Removing the contact takes its conversation and messages (and their search words).
        conn.execute("DELETE FROM contacts WHERE account_id = ?1", [&bob[..]])
            .unwrap();
        let left: Vec<String> = conn
            .prepare("SELECT body FROM messages")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, ["milk"]);
        assert!(matches(&conn, "hello").is_empty());
    }
}
