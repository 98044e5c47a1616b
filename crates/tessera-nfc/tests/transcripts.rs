//! Transcript conformance: APDU exchanges published in NXP's AN12196 and captured from real
//! NTAG 424 DNA chips (the public set in `tests/data/ntag424_vectors.json`) replayed against
//! the virtual card byte for byte, and the NFC Forum Type 4 Tag NDEF read a phone performs.
//!
//! The card's random numbers (RndB, TI) are scripted to the transcript's; everything else the
//! card answers is computed by it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;
use tessera_nfc::card::{Card, CardState, Version};
use tessera_nfc::protocol::{apdu, crypto, sdm};
use tessera_nfc::reader::ReaderError;
use tessera_nfc::tag::{self, CardMasterKey, Transport};
use tessera_nfc::{Authentication, CommMode, Status, ndef};

fn vectors() -> BTreeMap<String, Value> {
    let text =
        std::fs::read_to_string(manifest_dir().join("tests/data/ntag424_vectors.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect()
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).unwrap()
}

fn h16(v: &Value) -> [u8; 16] {
    h(v).try_into().unwrap()
}

/// A card whose random numbers come from a script, and a log of what was exchanged.
struct Script {
    card: Card,
    randoms: VecDeque<[u8; 16]>,
    log: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Script {
    fn new(state: CardState) -> Self {
        Self {
            card: Card::new(state),
            randoms: VecDeque::new(),
            log: Vec::new(),
        }
    }

    /// The card's next random number.
    fn random(&mut self, r: [u8; 16]) -> &mut Self {
        self.randoms.push_back(r);
        self
    }

    /// A TI as the card's next random number (its first four bytes are used).
    fn ti(&mut self, ti: &[u8]) -> &mut Self {
        let mut r = [0u8; 16];
        r[..4].copy_from_slice(ti);
        self.random(r)
    }

    fn tx(&mut self, c: &[u8]) -> Vec<u8> {
        let randoms = &mut self.randoms;
        let r = self.card.process(c, &mut || {
            randoms
                .pop_front()
                .unwrap_or_else(|| panic!("the card asked for a random number the script lacks"))
        });
        self.log.push((c.to_vec(), r.clone()));
        r
    }

    /// Sends `c` and requires exactly `expected` back.
    fn exchange(&mut self, what: &str, c: &[u8], expected: &[u8]) {
        let r = self.tx(c);
        assert_eq!(
            hex::encode_upper(&r),
            hex::encode_upper(expected),
            "{what}: the card's answer differs from the transcript"
        );
    }
}

impl Transport for Script {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        Ok(self.tx(apdu))
    }
}

fn select_app(s: &mut Script) {
    let v = &vectors()["an12196_iso_select_ndef_app"];
    s.exchange(
        "select",
        &h(&v["inputs"]["c_apdu"]),
        &h(&v["expected"]["r_apdu"]),
    );
}

/// Both published GetVersion transcripts (AN12196 Table 12 and a real chip): three frames,
/// `91 AF` between them, the card's identity in the third.
#[test]
fn get_version_transcripts_match() {
    let all = vectors();
    for name in [
        "an12196_getversion_plain",
        "hw_getversion_plain_amperstrand",
    ] {
        let (i, e) = (&all[name]["inputs"], &all[name]["expected"]);
        let (r1, r2, r3) = (h(&e["r_apdu_1"]), h(&e["r_apdu_2"]), h(&e["r_apdu_3"]));
        let mut state = CardState::factory(r3[..7].try_into().unwrap());
        state.version = Version {
            hardware: r1[..7].try_into().unwrap(),
            software: r2[..7].try_into().unwrap(),
            production: r3[7..14].try_into().unwrap(),
        };
        let mut s = Script::new(state);
        // At the PICC level, as a reader finds the card, and again inside the application.
        for _ in 0..2 {
            s.exchange(name, &h(&i["c_apdu_1"]), &r1);
            s.exchange(name, &h(&i["c_apdu_2"]), &r2);
            s.exchange(name, &h(&i["c_apdu_3"]), &r3);
            select_app(&mut s);
        }
        // A fourth frame asked for: nothing is under way.
        s.exchange(name, &h(&i["c_apdu_3"]), &[0x91, 0x1C]);
    }
    // A virtual card reports the datasheet's NTAG 424 DNA version data.
    let v = Version::default();
    assert_eq!(v.hardware, [0x04, 0x04, 0x02, 0x30, 0x00, 0x11, 0x05]);
    assert_eq!(v.software, [0x04, 0x04, 0x02, 0x01, 0x02, 0x11, 0x05]);
    let mut s = Script::new(CardState::factory([4, 1, 2, 3, 4, 5, 6]));
    let got = tag::get_version(&mut s).unwrap();
    assert!(got.is_ntag424());
    assert_eq!(got.uid, [4, 1, 2, 3, 4, 5, 6]);
}

/// AN12196's personalisation sequence (§5.6–5.16): EV2First with key 0, WriteData of the NDEF
/// file in Full mode, ChangeFileSettings enabling SDM, EV2First with key 3, WriteData of the
/// proprietary file, EV2NonFirst with key 0, a plain WriteData of the CC file inside the
/// session, and ChangeKey of key 2 — every response byte for byte.
#[test]
fn an12196_personalisation_transcript_matches() {
    let all = vectors();
    let v = |n: &str| (&all[n]["inputs"], &all[n]["expected"]);
    let mut state = CardState::factory([0x04, 0x96, 0x8C, 0xAA, 0x5C, 0x5E, 0x80]);
    // AN12196's card had its NDEF file in CommMode.Full with write key 0 (the note writes it
    // in Full mode with key 0's session, and its ChangeFileSettings keeps access rights
    // 00 E0); a factory card's NDEF file (plain, free write) takes that write in plain.
    let ndef = state.files.iter_mut().find(|f| f.no == 2).unwrap();
    ndef.settings.comm = CommMode::Full;
    ndef.settings.read_write = 0;
    ndef.settings.write = 0;
    let mut s = Script::new(state);
    select_app(&mut s);

    let (i, e) = v("an12196_auth_ev2first_key00");
    s.random(h16(&e["rnd_b"])).ti(&h(&e["ti"]));
    s.exchange(
        "EV2First key 0, part 1",
        &h(&i["c_apdu1"]),
        &h(&e["r_apdu1"]),
    );
    s.exchange(
        "EV2First key 0, part 2",
        &h(&e["c_apdu2"]),
        &h(&i["r_apdu2"]),
    );

    let (i, e) = v("an12196_writedata_full_ndef_file02");
    s.exchange("WriteData NDEF (Full)", &h(&e["c_apdu"]), &h(&i["r_apdu"]));
    let (i, e) = v("an12196_changefilesettings_full_sdm_ndef");
    s.exchange("ChangeFileSettings", &h(&e["c_apdu"]), &h(&i["r_apdu"]));

    let (i, e) = v("an12196_auth_ev2first_key03");
    s.random(h16(&e["rnd_b"])).ti(&h(&e["ti"]));
    s.exchange(
        "EV2First key 3, part 1",
        &h(&i["c_apdu1"]),
        &h(&e["r_apdu1"]),
    );
    s.exchange(
        "EV2First key 3, part 2",
        &h(&e["c_apdu2"]),
        &h(&i["r_apdu2"]),
    );
    let (i, e) = v("an12196_writedata_full_file03_key3session");
    s.exchange(
        "WriteData file 3 (Full)",
        &h(&e["c_apdu"]),
        &h(&i["r_apdu"]),
    );

    let (i, e) = v("an12196_auth_ev2nonfirst_key00");
    s.random(h16(&e["rnd_b"]));
    s.exchange(
        "EV2NonFirst key 0, part 1",
        &h(&i["c_apdu1"]),
        &h(&e["r_apdu1"]),
    );
    s.exchange(
        "EV2NonFirst key 0, part 2",
        &h(&e["c_apdu2"]),
        &h(&i["r_apdu2"]),
    );
    let (i, e) = v("an12196_writedata_plain_cc_file");
    s.exchange("WriteData CC (plain)", &h(&i["c_apdu"]), &h(&e["r_apdu"]));
    let (i, e) = v("an12196_changekey_case1_key02");
    s.exchange("ChangeKey key 2", &h(&e["c_apdu"]), &h(&i["r_apdu"]));
    assert!(s.randoms.is_empty());

    // What the sequence left on the card.
    let new_key2 = h16(&i["new_key"]);
    assert_eq!(s.card.state.keys[2], new_key2);
    assert_eq!(s.card.state.key_versions[2], 1);
    assert_eq!(
        s.card.state.file(3).unwrap().data[..10],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    );

    // A phone now reads the SUN URL through the Type 4 Tag procedure; it verifies with the
    // SDMMetaRead key (key 2, just changed) and the SDMFileRead key (key 1, still zero), and
    // each read advances the counter by exactly one.
    s.card.reset();
    for expected in 1..=3u32 {
        s.random([0x5A; 16]);
        let read = ndef::read(&mut s).unwrap();
        assert_eq!(read.cc.write_access, 0xFF, "the CC write above took effect");
        let records = ndef::parse_message(&read.message).unwrap();
        assert_eq!(
            (records[0].tnf, records[0].record_type.as_slice()),
            (1, &b"U"[..])
        );
        let url = String::from_utf8(records[0].payload[1..].to_vec()).unwrap();
        assert!(url.starts_with("choose.url.com/ntag424?e="), "{url}");
        let (picc, mac) = ndef::sun_parameters(&url).unwrap();
        let sun = sdm::verify_sun(
            &new_key2,
            &[0; 16],
            &hex::decode(picc).unwrap(),
            &hex::decode(mac).unwrap(),
            None,
            b"",
        )
        .unwrap();
        assert!(sun.valid, "read {expected}");
        assert_eq!(sun.uid, s.card.state.uid);
        assert_eq!(sun.counter, expected);
    }
}

/// The phone's NDEF read, command by command (NFC Forum Type 4 Tag 2.0): select the
/// application by name with Le, select the CC, read 15 bytes, select the NDEF file, read NLEN,
/// read the message. On a Tessera card the message is the SUN record; it verifies with the
/// card's keys 1 and 2, and the counter advances once per tap, not once per ReadBinary.
#[test]
fn a_phone_reads_tesseras_sun_through_the_type_4_procedure() {
    let mut s = Script::new(CardState::factory([
        0x04, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76,
    ]));
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
    for n in 1..=64u8 {
        s.random([n; 16]);
    }
    let master = CardMasterKey::generate(&mut rng);
    let provisioned = tag::provision(&mut s, &[], &master, &[9; 32], &mut rng).unwrap();
    s.card.reset();
    s.log.clear();

    let mut last = provisioned.counter;
    for tap in 0..3 {
        s.random([0xA0 + tap; 16]);
        let read = ndef::read(&mut s).unwrap();
        let commands: Vec<String> = s.log.iter().map(|(c, _)| hex::encode_upper(c)).collect();
        let nlen = read.message.len();
        assert_eq!(
            commands,
            [
                "00A4040007D276000085010100".to_string(),
                "00A4000C02E103".into(),
                "00B000000F".into(),
                "00A4000C02E104".into(),
                "00B0000002".into(),
                format!("00B00002{nlen:02X}"),
            ]
        );
        assert!(s.log.iter().all(|(_, r)| r.ends_with(&[0x90, 0x00])));
        let records = ndef::parse_message(&read.message).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].tnf, 4);
        assert_eq!(records[0].record_type, b"tessera.app:sun");
        let payload = String::from_utf8(records[0].payload.clone()).unwrap();
        let (picc, mac) = ndef::sun_parameters(&payload).unwrap();
        let sun = sdm::verify_sun(
            &master.key(tag::KEY_SDM_META),
            &master.key(tag::KEY_READ),
            &hex::decode(picc).unwrap(),
            &hex::decode(mac).unwrap(),
            None,
            b"",
        )
        .unwrap();
        assert!(sun.valid);
        assert_eq!(sun.counter, last + 1, "one tap, one count");
        last = sun.counter;
        s.log.clear();
    }
    // Tessera's own unlock read is one more count.
    let unlock = tag::read(&mut s, &master, &mut rng).unwrap();
    assert_eq!(unlock.counter, last + 1);
    assert_eq!(unlock.slots[0], [9; 32]);
}

/// A real chip's originality signature, read as the capture shows (`91 90`), verifies; a
/// virtual card's does not (it has no NXP key).
#[test]
fn read_sig_transcript_matches() {
    let all = vectors();
    let (i, e) = (
        &all["hw_read_sig_originality"]["inputs"],
        &all["hw_read_sig_originality"]["expected"],
    );
    let uid: [u8; 7] = h(&i["uid"]).try_into().unwrap();
    let mut state = CardState::factory(uid);
    state.signature = h(&e["signature"]);
    let mut s = Script::new(state);
    let mut expected = h(&e["signature"]);
    expected.extend(h(&e["r_apdu_sw"]));
    s.exchange("Read_Sig", &h(&i["c_apdu"]), &expected);
    assert!(tag::originality(&mut s, &uid).unwrap());
    // Another address is a parameter error; a virtual card's signature is not NXP's.
    s.exchange(
        "Read_Sig address 1",
        &[0x90, 0x3C, 0, 0, 1, 1, 0],
        &[0x91, 0x9E],
    );
    let mut v = Script::new(CardState::factory(uid));
    assert!(!tag::originality(&mut v, &uid).unwrap());
}

/// A real chip's Full-mode ReadData of 8 bytes of file 3 at command counter 16 (key 0): the
/// reader side builds the captured command, and the card answers the captured bytes.
#[test]
fn hardware_readdata_full_transcript_matches() {
    let all = vectors();
    let (i, e) = (
        &all["hw_readdata_full_file03_8B"]["inputs"],
        &all["hw_readdata_full_file03_8B"]["expected"],
    );
    let key = h16(&i["key"]);
    let mut s = Script::new(CardState::factory([
        0x04, 0x98, 0x4C, 0x7A, 0x0B, 0x10, 0x90,
    ]));
    // The captured card let key 0 read file 3 in Full mode and held DEADBEEF01020304.
    select_app(&mut s);
    s.random([1; 16]).random([2; 16]);
    let mut setup = auth(&mut s, &key, 0, [3; 16]);
    run(
        &mut s,
        &mut setup,
        0x5F,
        &[3],
        &[0x03, 0x00, 0x00],
        CommMode::Full,
    )
    .unwrap();
    let plain = h(&e["read_plain"]);
    let mut header = vec![3, 0, 0, 0];
    header.extend(&(plain.len() as u32).to_le_bytes()[..3]);
    run(&mut s, &mut setup, 0x8D, &header, &plain, CommMode::Full).unwrap();

    // The capture's authentication: the card's RndB is what E(K, RndB) decrypts to.
    let rnd_b: [u8; 16] = crypto::cbc_decrypt(&key, &[0; 16], &h(&i["e_rnd_b"]))
        .unwrap()
        .try_into()
        .unwrap();
    s.random(rnd_b).ti(&h(&i["ti"]));
    let mut session = auth(&mut s, &key, 0, h16(&i["rnd_a"]));
    assert_eq!(s.log[s.log.len() - 2].1[..16], h(&i["e_rnd_b"])[..]);
    assert_eq!(session.ti().to_vec(), h(&i["ti"]));
    // Sixteen commands in the session bring the counter to the capture's.
    let target: u16 = i["cmd_ctr"].as_str().unwrap().parse().unwrap();
    while session.cmd_ctr() < target {
        run(&mut s, &mut session, 0x64, &[0], &[], CommMode::Mac).unwrap();
    }
    let (c, p) = session
        .command(0xAD, &h(&i["cmd_header"]), &[], CommMode::Full)
        .unwrap();
    assert_eq!(
        hex::encode_upper(&c),
        i["c_apdu"].as_str().unwrap().to_uppercase()
    );
    let mut expected = h(&i["r_apdu_data"]);
    expected.extend(h(&i["r_apdu_sw"]));
    let r = s.tx(&c);
    assert_eq!(hex::encode_upper(&r), hex::encode_upper(&expected));
    assert_eq!(session.response(p, &r).unwrap(), plain);
}

fn auth(s: &mut Script, key: &[u8; 16], no: u8, rnd_a: [u8; 16]) -> tessera_nfc::Session {
    let (a, c1) = Authentication::first(key, no);
    let r1 = s.tx(&c1);
    let (reply, c2) = a.challenge(&r1, rnd_a).unwrap();
    let r2 = s.tx(&c2);
    reply.finish(&r2).unwrap()
}

fn run(
    s: &mut Script,
    session: &mut tessera_nfc::Session,
    ins: u8,
    header: &[u8],
    data: &[u8],
    mode: CommMode,
) -> Result<Vec<u8>, tessera_nfc::NfcError> {
    let (c, p) = session.command(ins, header, data, mode)?;
    let r = tag::transceive(s, &c).unwrap();
    session.response(p, &r)
}

#[test]
fn status_words_for_each_refusal_follow_the_datasheet() {
    let mut s = Script::new(CardState::factory([4, 9, 8, 7, 6, 5, 4]));
    let sw = |s: &mut Script, c: &[u8]| {
        let r = s.tx(c);
        let (_, st) = apdu::split(&r).unwrap();
        st
    };
    // PICC level: file commands are not allowed, the application keys are not there.
    assert_eq!(
        sw(&mut s, &[0x90, 0xF5, 0, 0, 1, 2, 0]),
        Status::PermissionDenied
    );
    assert_eq!(
        sw(&mut s, &[0x90, 0x71, 0, 0, 2, 0, 0, 0]),
        Status::NoSuchKey
    );
    select_app(&mut s);
    assert_eq!(
        sw(&mut s, &[0x90, 0x71, 0, 0, 2, 5, 0, 0]),
        Status::NoSuchKey
    );
    // Wrong length, parameters, unknown command, class and instruction.
    assert_eq!(
        sw(&mut s, &[0x90, 0xAD, 0, 0, 6, 2, 0, 0, 0, 0, 0, 0]),
        Status::LengthError
    );
    assert_eq!(
        sw(&mut s, &[0x90, 0xAD, 0, 0, 7, 2, 0, 0, 0, 0, 0]),
        Status::LengthError
    );
    assert_eq!(sw(&mut s, &[0x90, 0x5C, 0, 0, 0]), Status::IllegalCommand);
    assert_eq!(s.tx(&[0x90, 0x60, 1, 0, 0]), [0x6A, 0x86]);
    assert_eq!(s.tx(&[0x80, 0x60, 0, 0, 0]), [0x6E, 0x00]);
    assert_eq!(s.tx(&[0x00, 0x20, 0, 0, 0]), [0x6D, 0x00]);
    // Beyond the file; a key-protected file without its key; a file that does not exist.
    assert_eq!(
        sw(&mut s, &[0x90, 0xAD, 0, 0, 7, 2, 250, 0, 0, 10, 0, 0, 0]),
        Status::BoundaryError
    );
    assert_eq!(
        sw(&mut s, &[0x90, 0xAD, 0, 0, 7, 3, 0, 0, 0, 1, 0, 0, 0]),
        Status::AuthenticationError
    );
    assert_eq!(
        sw(&mut s, &[0x90, 0xF5, 0, 0, 1, 9, 0]),
        Status::FileNotFound
    );
    assert_eq!(
        sw(&mut s, &[0x90, 0x51, 0, 0, 0]),
        Status::AuthenticationError
    );
    // ChangeKey needs the AppMasterKey's session.
    assert_eq!(
        sw(&mut s, &[0x90, 0xC4, 0, 0, 1, 1, 0]),
        Status::AuthenticationError
    );
    // A new command while GetVersion's frames are pending: COMMAND_ABORTED, then normal again.
    assert_eq!(sw(&mut s, &[0x90, 0x60, 0, 0, 0]), Status::AdditionalFrame);
    assert_eq!(
        sw(&mut s, &[0x90, 0xF5, 0, 0, 1, 2, 0]),
        Status::CommandAborted
    );
    assert_eq!(sw(&mut s, &[0x90, 0xF5, 0, 0, 1, 2, 0]), Status::Ok);
    // ... and ISO commands get 6985.
    assert_eq!(sw(&mut s, &[0x90, 0x60, 0, 0, 0]), Status::AdditionalFrame);
    assert_eq!(s.tx(&[0x00, 0xB0, 0, 0, 2]), [0x69, 0x85]);
    // Factory GetFileSettings as the datasheet lists them.
    assert_eq!(
        s.tx(&[0x90, 0xF5, 0, 0, 1, 2, 0]),
        [0, 0, 0xE0, 0xEE, 0, 1, 0, 0x91, 0]
    );
    // GetKeyVersion of every key; key 5 does not exist.
    assert_eq!(s.tx(&[0x90, 0x64, 0, 0, 1, 4, 0]), [0, 0x91, 0]);
    assert_eq!(sw(&mut s, &[0x90, 0x64, 0, 0, 1, 5, 0]), Status::NoSuchKey);
}

#[test]
fn iso_selection_and_binary_reads_follow_the_datasheet() {
    let mut s = Script::new(CardState::factory([4, 9, 8, 7, 6, 5, 4]));
    // A file id at the PICC level is not found, and nothing is selected for ReadBinary.
    assert_eq!(
        s.tx(&[0x00, 0xA4, 0x00, 0x0C, 0x02, 0xE1, 0x04]),
        [0x6A, 0x82]
    );
    assert_eq!(s.tx(&[0x00, 0xB0, 0x00, 0x00, 0x02]), [0x69, 0x85]);
    // The application by its file id, then an unknown name: the application stays selected.
    assert_eq!(
        s.tx(&[0x00, 0xA4, 0x00, 0x0C, 0x02, 0xE1, 0x10]),
        [0x90, 0x00]
    );
    assert_eq!(
        s.tx(&[
            0x00, 0xA4, 0x04, 0x0C, 0x07, 0xD2, 0x76, 0, 0, 0x85, 0x01, 0x02
        ]),
        [0x6A, 0x82]
    );
    assert_eq!(
        s.tx(&[0x00, 0xA4, 0x00, 0x0C, 0x02, 0xE1, 0x03]),
        [0x90, 0x00]
    );
    assert_eq!(
        s.tx(&[0x00, 0xA4, 0x00, 0x0C, 0x02, 0xE1, 0x06]),
        [0x6A, 0x82]
    );
    // Reads honour offset and Le; the CC file is still the one selected.
    let cc = s.card.state.file(1).unwrap().data.clone();
    let r = s.tx(&[0x00, 0xB0, 0x00, 0x03, 0x04]);
    assert_eq!(r[..4], cc[3..7]);
    assert_eq!(r[4..], [0x90, 0x00]);
    // Le larger than what is left: the rest of the file.
    let r = s.tx(&[0x00, 0xB0, 0x00, 0x1E, 0x10]);
    assert_eq!(r.len(), 2 + 2);
    // Offset beyond the file; P2 other than 00/0C; Lc inconsistent with P1.
    assert_eq!(s.tx(&[0x00, 0xB0, 0x00, 0x20, 0x01]), [0x6A, 0x86]);
    assert_eq!(
        s.tx(&[0x00, 0xA4, 0x00, 0x04, 0x02, 0xE1, 0x04]),
        [0x6A, 0x86]
    );
    assert_eq!(s.tx(&[0x00, 0xA4, 0x02, 0x0C, 0x01, 0xE1]), [0x6A, 0x87]);
    // A short file id selects and reads: SFI 2 is the NDEF file.
    let r = s.tx(&[0x00, 0xB0, 0x82, 0x00, 0x02]);
    assert_eq!(r, [0, 0, 0x90, 0x00]);
    // UpdateBinary writes the free NDEF file at an offset; the CC needs key 0.
    assert_eq!(
        s.tx(&[0x00, 0xD6, 0x00, 0x04, 0x02, 0xAB, 0xCD]),
        [0x90, 0x00]
    );
    assert_eq!(
        s.tx(&[0x00, 0xB0, 0x00, 0x03, 0x04]),
        [0, 0xAB, 0xCD, 0, 0x90, 0x00]
    );
    assert_eq!(s.tx(&[0x00, 0xD6, 0x81, 0x00, 0x01, 0x00]), [0x69, 0x82]);
    assert_eq!(
        s.tx(&[0x00, 0xD6, 0x82, 0xFF, 0x02, 0x01, 0x02]),
        [0x67, 0x00]
    );
    // In an authenticated state ISO reads are refused.
    s.random([1; 16]).random([2; 16]);
    s.tx(&[
        0x00, 0xA4, 0x04, 0x0C, 0x07, 0xD2, 0x76, 0, 0, 0x85, 0x01, 0x01,
    ]);
    auth(&mut s, &[0; 16], 0, [3; 16]);
    assert_eq!(s.tx(&[0x00, 0xB0, 0x82, 0x00, 0x02]), [0x69, 0x82]);
    // The PICC level by its DF name ends the session.
    assert_eq!(
        s.tx(&[
            0x00, 0xA4, 0x04, 0x0C, 0x07, 0xD2, 0x76, 0, 0, 0x85, 0x01, 0x00
        ]),
        [0x90, 0x00]
    );
    assert_eq!(s.tx(&[0x00, 0xB0, 0x82, 0x00, 0x02]), [0x69, 0x85]);
}

/// SDM reads: the counter advances on the first read of a run (§9.3.1), the run's reads
/// return the same mirror (same random padding, so chunked reads fit together), a change of
/// read command or any other command starts a new run, and an authenticated read is not
/// mirrored and not counted.
#[test]
fn the_read_counter_advances_once_per_run_of_reads() {
    let mut s = Script::new(CardState::factory([4, 9, 8, 7, 6, 5, 4]));
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    for n in 1..=64u8 {
        s.random([n; 16]);
    }
    let master = CardMasterKey::generate(&mut rng);
    tag::provision(&mut s, &[], &master, &[1; 32], &mut rng).unwrap();
    s.card.reset();
    let start = s.card.state.sdm_counter;
    select_app(&mut s);
    s.tx(&[0x00, 0xA4, 0x00, 0x0C, 0x02, 0xE1, 0x04]);
    s.random([0x11; 16]).random([0x22; 16]).random([0x33; 16]);
    // Three ISO reads in a row, in chunks: one count, one mirror.
    let mut whole = Vec::new();
    for (off, len) in [(0u8, 30u8), (30, 30), (60, 13)] {
        let r = s.tx(&[0x00, 0xB0, 0x00, off, len]);
        whole.extend_from_slice(&r[..r.len() - 2]);
    }
    assert_eq!(s.card.state.sdm_counter, start + 1);
    let one = s.tx(&[0x00, 0xB0, 0x00, 0x00, 73]);
    assert_eq!(one[..73], whole[..], "the same mirror across the run");
    // ReadData after ISOReadBinary: a new run.
    let native = s.tx(&[0x90, 0xAD, 0, 0, 7, 2, 0, 0, 0, 73, 0, 0, 0]);
    assert_eq!(s.card.state.sdm_counter, start + 2);
    assert_ne!(native[..73], whole[..]);
    // Another command in between: a new run again.
    s.tx(&[0x90, 0x64, 0, 0, 1, 0, 0]);
    s.tx(&[0x90, 0xAD, 0, 0, 7, 2, 0, 0, 0, 73, 0, 0, 0]);
    assert_eq!(s.card.state.sdm_counter, start + 3);
    // Authenticated: the static template, not counted.
    s.random([0x44; 16]).random([0x55; 16]);
    let mut session = auth(&mut s, &master.key(0), 0, [6; 16]);
    let file = run(
        &mut s,
        &mut session,
        0xAD,
        &[2, 0, 0, 0, 0, 0, 0],
        &[],
        CommMode::Plain,
    )
    .unwrap();
    assert_eq!(file, s.card.state.file(2).unwrap().data);
    assert_eq!(s.card.state.sdm_counter, start + 3);
    // GetFileCounters with the SDMCtrRet key (key 1) says the same.
    select_app(&mut s);
    s.random([0x66; 16]).random([0x77; 16]);
    let mut k1 = auth(&mut s, &master.key(1), 1, [7; 16]);
    let counters = run(&mut s, &mut k1, 0xF6, &[2], &[], CommMode::Full).unwrap();
    assert_eq!(counters, [(start + 3) as u8, 0, 0, 0, 0]);
}

/// A response longer than one frame is chained with `91 AF`; Tessera's reader collects it.
#[test]
fn long_responses_are_chained_and_collected() {
    let mut s = Script::new(CardState::factory([4, 9, 8, 7, 6, 5, 4]));
    select_app(&mut s);
    s.random([1; 16]).random([2; 16]);
    let mut session = auth(&mut s, &[0; 16], 0, [3; 16]);
    // The NDEF file in Full mode, read with key 0: 256 bytes → 272 encrypted + 8 MAC.
    run(
        &mut s,
        &mut session,
        0x5F,
        &[2],
        &[0x03, 0x00, 0x00],
        CommMode::Full,
    )
    .unwrap();
    let data: Vec<u8> = (0..=255u8).collect();
    for (i, chunk) in data.chunks(128).enumerate() {
        let mut header = vec![2, (i * 128) as u8, 0, 0, 128, 0, 0];
        header[1] = (i * 128) as u8;
        run(&mut s, &mut session, 0x8D, &header, chunk, CommMode::Full).unwrap();
    }
    s.log.clear();
    let read = run(
        &mut s,
        &mut session,
        0xAD,
        &[2, 0, 0, 0, 0, 0, 0],
        &[],
        CommMode::Full,
    )
    .unwrap();
    assert_eq!(read, data);
    assert_eq!(s.log.len(), 2, "two frames");
    assert_eq!(s.log[0].1.len(), 256 + 2);
    assert!(s.log[0].1.ends_with(&[0x91, 0xAF]));
    assert_eq!(s.log[1].0, [0x90, 0xAF, 0, 0, 0]);
    assert!(s.log[1].1.ends_with(&[0x91, 0x00]));
}

/// This crate's directory: from Cargo at run time (a test binary reused from a build in another
/// checkout must not read that checkout's files), else as compiled.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
