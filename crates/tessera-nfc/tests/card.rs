//! The reader side (`protocol`) against the card side (`card`): provisioning as Tessera does it,
//! then unlock-style reads, SUNs, wrong keys and tampering.
#![allow(clippy::unwrap_used, missing_docs)]

use tessera_nfc::card::{Card, CardState};
use tessera_nfc::protocol::{apdu, sdm};
use tessera_nfc::{Authentication, CommMode, NfcError, Session, Status};

struct Rig {
    card: Card,
    n: u8,
}

impl Rig {
    fn new() -> Self {
        Self {
            card: Card::new(CardState::factory([
                0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
            ])),
            n: 0,
        }
    }

    fn tx(&mut self, c: &[u8]) -> Vec<u8> {
        let n = &mut self.n;
        self.card.process(c, &mut || {
            *n = n.wrapping_add(1);
            [*n; 16]
        })
    }

    fn select(&mut self) {
        let r = self.tx(&apdu::select_ndef_application());
        assert_eq!(r, vec![0x90, 0x00]);
    }

    fn auth(&mut self, key: &[u8; 16], key_no: u8) -> Result<Session, NfcError> {
        let (a, c1) = Authentication::first(key, key_no);
        let r1 = self.tx(&c1);
        let (reply, c2) = a.challenge(&r1, [0x42; 16])?;
        let r2 = self.tx(&c2);
        reply.finish(&r2)
    }

    fn run(
        &mut self,
        s: &mut Session,
        ins: u8,
        header: &[u8],
        data: &[u8],
        mode: CommMode,
    ) -> Result<Vec<u8>, NfcError> {
        let (c, p) = s.command(ins, header, data, mode)?;
        let r = self.tx(&c);
        s.response(p, &r)
    }
}

const SECRET: [u8; 32] = [0xA7; 32];
const NEW: [[u8; 16]; 5] = [[0x10; 16], [0x11; 16], [0x12; 16], [0x13; 16], [0x14; 16]];

/// Provisioning: secret into file 3 (Full), SDM on the NDEF file, every key changed.
fn provision(rig: &mut Rig) {
    rig.select();
    let mut s3 = rig.auth(&[0; 16], 3).unwrap();
    let mut header = vec![3, 0, 0, 0];
    header.extend(&(SECRET.len() as u32).to_le_bytes()[..3]);
    rig.run(&mut s3, 0x8D, &header, &SECRET, CommMode::Full)
        .unwrap();

    let mut s0 = rig.auth(&[0; 16], 0).unwrap();
    // NDEF: a URL with room for the PICC data at 0x20 and the MAC at 0x43; SDM with meta key 1,
    // file key 2, MAC over an empty input.
    let mut ndef = vec![0u8; 0x60];
    ndef[..0x20].copy_from_slice(b"https://tessera.invalid/c?e=....");
    ndef[0x40..0x43].copy_from_slice(b"&c=");
    let mut h = vec![2, 0, 0, 0];
    h.extend(&(ndef.len() as u32).to_le_bytes()[..3]);
    rig.run(&mut s0, 0x8D, &h, &ndef, CommMode::Plain).unwrap();
    let settings = [
        0x40, 0x00, 0xE0, 0xC1, 0xF1, 0x12, 0x20, 0, 0, 0x43, 0, 0, 0x43, 0, 0,
    ];
    rig.run(&mut s0, 0x5F, &[2], &settings, CommMode::Full)
        .unwrap();
    for k in 1..5u8 {
        let data = Session::change_key_other(&[0; 16], &NEW[usize::from(k)], 1);
        rig.run(&mut s0, 0xC4, &[k], &data, CommMode::Full).unwrap();
    }
    // Key 0 last: the card answers with a bare OK and the session ends.
    let data = Session::change_key_same(&NEW[0], 1);
    let (c, _) = s0.command(0xC4, &[0], &data, CommMode::Full).unwrap();
    assert_eq!(rig.tx(&c), vec![0x91, 0x00]);
}

#[test]
fn provision_then_read_the_secret_and_check_suns() {
    let mut rig = Rig::new();
    provision(&mut rig);
    rig.card.reset();
    rig.select();

    // Factory keys no longer work: the card's typed error.
    assert_eq!(
        rig.auth(&[0; 16], 2).err(),
        Some(NfcError::Card(Status::AuthenticationError))
    );
    rig.select();
    // The secret needs key 2 (read) and travels encrypted.
    let mut s2 = rig.auth(&NEW[2], 2).unwrap();
    let read = rig
        .run(&mut s2, 0xAD, &[3, 0, 0, 0, 32, 0, 0], &[], CommMode::Full)
        .unwrap();
    assert_eq!(read, SECRET);
    let uid = rig.run(&mut s2, 0x51, &[], &[], CommMode::Full).unwrap();
    assert_eq!(uid, vec![0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66]);

    // Unauthenticated reads of the NDEF file carry a fresh SUN with an increasing counter: one
    // per tap (the NDEF file selected again, then read).
    rig.card.reset();
    rig.select();
    let mut last = 0;
    for expected in 1..=3u32 {
        assert_eq!(
            rig.tx(&[0x00, 0xA4, 0x00, 0x0C, 0x02, 0xE1, 0x04]),
            [0x90, 0x00]
        );
        let r = rig.tx(&[0x00, 0xB0, 0x00, 0x00, 0x00]);
        let (file, status) = apdu::split(&r).unwrap();
        assert_eq!(status, Status::Ok);
        let picc = hex::decode(&file[0x20..0x40]).unwrap();
        let mac = hex::decode(&file[0x43..0x53]).unwrap();
        let sun = sdm::verify_sun(&NEW[1], &NEW[2], &picc, &mac, None, b"").unwrap();
        assert!(sun.valid);
        assert_eq!(sun.counter, expected);
        assert!(sun.counter > last);
        last = sun.counter;
        // The old keys do not verify it.
        assert!(sdm::decrypt_picc_data(&[0; 16], &picc).is_err());
    }
}

#[test]
fn the_secret_file_refuses_unauthenticated_and_wrong_key_reads() {
    let mut rig = Rig::new();
    provision(&mut rig);
    rig.card.reset();
    rig.select();
    // Without authentication: the datasheet's AUTHENTICATION_ERROR (the file has read keys).
    let plain = apdu::native(0xAD, &[3, 0, 0, 0, 32, 0, 0]).unwrap();
    assert_eq!(
        apdu::split(&rig.tx(&plain)).unwrap().1,
        Status::AuthenticationError
    );
    // Authenticated with key 4: not a read key for file 3.
    let mut s4 = rig.auth(&NEW[4], 4).unwrap();
    assert_eq!(
        rig.run(&mut s4, 0xAD, &[3, 0, 0, 0, 32, 0, 0], &[], CommMode::Full),
        Err(NfcError::Card(Status::AuthenticationError))
    );
}

#[test]
fn a_tampered_command_is_refused_and_ends_the_session() {
    let mut rig = Rig::new();
    rig.select();
    let mut s = rig.auth(&[0; 16], 2).unwrap();
    let (mut c, p) = s
        .command(0xAD, &[3, 0, 0, 0, 16, 0, 0], &[], CommMode::Full)
        .unwrap();
    let at = c.len() - 3;
    c[at] ^= 1;
    let r = rig.tx(&c);
    assert_eq!(
        s.response(p, &r),
        Err(NfcError::Card(Status::IntegrityError))
    );
    // The card dropped the session: the next command in it is refused.
    let (c, p) = s
        .command(0xAD, &[3, 0, 0, 0, 16, 0, 0], &[], CommMode::Full)
        .unwrap();
    let r = rig.tx(&c);
    assert!(s.response(p, &r).is_err());
    // Non-first authentication continues a session with another key.
    let mut s = rig.auth(&[0; 16], 0).unwrap();
    let (a, c1) = Authentication::non_first(&[0; 16], 2, &s);
    let r1 = rig.tx(&c1);
    let (reply, c2) = a.challenge(&r1, [9; 16]).unwrap();
    s = reply.finish(&rig.tx(&c2)).unwrap();
    let data = rig
        .run(&mut s, 0xAD, &[3, 0, 0, 0, 4, 0, 0], &[], CommMode::Full)
        .unwrap();
    assert_eq!(data, vec![0; 4]);
}
