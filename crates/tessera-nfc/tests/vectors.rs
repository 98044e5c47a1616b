//! Every applicable vector of `tests/data/ntag424_vectors.json` (a copy of the public vectors in
//! `shared/ntag424/`), run through the protocol code.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;

use serde_json::Value;
use tessera_nfc::card::{Card, CardState};
use tessera_nfc::protocol::{apdu, auth, crypto, originality, sdm};
use tessera_nfc::vpcd;
use tessera_nfc::{Authentication, CommMode, NfcError, Session};
use zeroize::Zeroizing;

fn vectors() -> Vec<Value> {
    let text =
        std::fs::read_to_string(manifest_dir().join("tests/data/ntag424_vectors.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["vectors"].as_array().unwrap().clone()
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn h16(v: &Value) -> [u8; 16] {
    h(v).try_into().unwrap()
}

fn h7(v: &Value) -> [u8; 7] {
    h(v).try_into().unwrap()
}

fn ctr(v: &Value) -> u16 {
    v.as_str().unwrap().parse().unwrap()
}

/// Categories handled by parts of the crate that do not exist yet.
const NOT_YET: &[&str] = &[];

#[test]
fn every_vector_category_is_covered_or_listed() {
    let cats: BTreeSet<String> = vectors()
        .iter()
        .map(|v| v["category"].as_str().unwrap().to_string())
        .collect();
    let covered = [
        "aes_cmac",
        "primitive",
        "auth",
        "secure_messaging",
        "sdm",
        "framing",
        "originality",
        "pcsc",
        "vpcd",
    ];
    for c in &cats {
        assert!(
            covered.contains(&c.as_str()) || NOT_YET.contains(&c.as_str()),
            "category {c} has no test"
        );
    }
}

#[test]
fn aes_cmac_and_primitives() {
    let mut n = 0;
    for v in vectors() {
        let (i, e) = (&v["inputs"], &v["expected"]);
        match v["name"].as_str().unwrap() {
            "rfc4493_subkeys" => continue, // subkeys are internal to the CMAC crate
            "mact_truncation_odd_bytes" => {
                assert_eq!(crypto::truncate(&h16(&i["cmac"])).to_vec(), h(&e["mact"]));
            }
            name if name.starts_with("padding_") => {
                assert_eq!(crypto::pad(&h(&i["data"])), h(&e["padded"]), "{name}");
                assert_eq!(crypto::unpad(&h(&e["padded"])).unwrap(), &h(&i["data"])[..]);
            }
            name if name.starts_with("crc32nk") => {
                assert_eq!(
                    crypto::crc32nk(&h(&i["data"])).to_le_bytes().to_vec(),
                    h(&e["crc32nk_le"]),
                    "{name}"
                );
            }
            name if v["category"] == "aes_cmac" => {
                assert_eq!(
                    crypto::cmac(&h16(&i["key"]), &h(&i["message"])).to_vec(),
                    h(&e["cmac"]),
                    "{name}"
                );
            }
            _ => continue,
        }
        n += 1;
    }
    assert_eq!(n, 10);
    // Padding that is not method 2 is refused.
    assert!(crypto::unpad(&[0x01; 16]).is_err());
    assert!(crypto::unpad(&[0x80; 15]).is_err());
}

#[test]
fn authentication_first_and_non_first() {
    let mut n = 0;
    for v in vectors().into_iter().filter(|v| v["category"] == "auth") {
        let (i, e) = (&v["inputs"], &v["expected"]);
        let key = h16(&i["key"]);
        let key_no = h(&i["key_no"])[0];
        let rnd_a = h16(&i["rnd_a"]);
        let (a, c1) = if let Some(ti) = i.get("ti_kept_from_previous_auth") {
            let running = Session::new(
                h(ti).try_into().unwrap(),
                3,
                Zeroizing::new([0; 16]),
                Zeroizing::new([0; 16]),
            );
            Authentication::non_first(&key, key_no, &running)
        } else {
            Authentication::first(&key, key_no)
        };
        assert_eq!(c1, h(&i["c_apdu1"]), "{}", v["name"]);
        let (reply, c2) = a.challenge(&h(&e["r_apdu1"]), rnd_a).unwrap();
        assert_eq!(c2, h(&e["c_apdu2"]), "{}", v["name"]);
        let session = reply.finish(&h(&i["r_apdu2"])).unwrap();
        let (enc, mac) = auth::session_keys(&key, &rnd_a, &h16(&e["rnd_b"]));
        assert_eq!(enc.to_vec(), h(&e["k_ses_auth_enc"]));
        assert_eq!(mac.to_vec(), h(&e["k_ses_auth_mac"]));
        if let Some(ti) = e.get("ti") {
            assert_eq!(session.ti().to_vec(), h(ti));
            assert_eq!(session.cmd_ctr(), 0);
        } else {
            assert_eq!(session.cmd_ctr(), 3, "NonFirst keeps the counter");
        }
        // A card that answers with the wrong proof is not authentic.
        let (a, _) = Authentication::first(&key, key_no);
        let (reply, _) = a.challenge(&h(&e["r_apdu1"]), [0x55; 16]).unwrap();
        let err = reply.finish(&h(&i["r_apdu2"])).unwrap_err();
        assert!(
            matches!(err, NfcError::CardNotAuthentic | NfcError::Malformed(_)),
            "{err:?}"
        );
        n += 1;
    }
    assert_eq!(n, 3);
    // A wrong key is the card's typed error.
    let (a, _) = Authentication::first(&[0; 16], 0);
    assert_eq!(
        a.challenge(&[0x91, 0xAE], [0; 16]).err(),
        Some(NfcError::Card(tessera_nfc::Status::AuthenticationError))
    );
}

#[test]
fn secure_messaging_commands_and_responses() {
    let mut n = 0;
    for v in vectors()
        .into_iter()
        .filter(|v| v["category"] == "secure_messaging")
    {
        let (i, e) = (&v["inputs"], &v["expected"]);
        let name = v["name"].as_str().unwrap();
        if name == "hw_readdata_full_file03_8B" {
            let key = h16(&i["key"]);
            let rnd_b: [u8; 16] = crypto::cbc_decrypt(&key, &[0; 16], &h(&i["e_rnd_b"]))
                .unwrap()
                .try_into()
                .unwrap();
            let (enc, mac) = auth::session_keys(&key, &h16(&i["rnd_a"]), &rnd_b);
            let mut s = Session::new(
                h(&i["ti"]).try_into().unwrap(),
                ctr(&i["cmd_ctr"]),
                enc,
                mac,
            );
            let (c, p) = s
                .command(0xAD, &h(&i["cmd_header"]), &[], CommMode::Full)
                .unwrap();
            assert_eq!(c, h(&i["c_apdu"]));
            let mut r = h(&i["r_apdu_data"]);
            r.extend(h(&i["r_apdu_sw"]));
            assert_eq!(s.response(p, &r).unwrap(), h(&e["read_plain"]));
            n += 1;
            continue;
        }
        let k_enc = i.get("k_ses_auth_enc").map(h16).unwrap_or([0; 16]);
        let mut s = Session::new(
            h(&i["ti"]).try_into().unwrap(),
            ctr(&i["cmd_ctr"]),
            Zeroizing::new(k_enc),
            Zeroizing::new(h16(&i["k_ses_auth_mac"])),
        );
        let header = h(&i["cmd_header"]);
        let (ins, mode, data) = match name {
            "an12196_getfilesettings_commmode_mac" => (0xF5, CommMode::Mac, vec![]),
            "an12196_getcarduid_full" => (0x51, CommMode::Full, vec![]),
            "an12196_changekey_case1_key02" => {
                let d = Session::change_key_other(
                    &h16(&i["old_key"]),
                    &h16(&i["new_key"]),
                    h(&i["key_version"])[0],
                );
                assert_eq!(d.to_vec(), h(&i["cmd_data_plain"]));
                (0xC4, CommMode::Full, d.to_vec())
            }
            _ => (h(&i["ins"])[0], CommMode::Full, h(&i["cmd_data_plain"])),
        };
        let (c, p) = s.command(ins, &header, &data, mode).unwrap();
        assert_eq!(c, h(&e["c_apdu"]), "{name}");
        let r = e.get("r_apdu").or(i.get("r_apdu")).map(h).unwrap();
        let before = s.cmd_ctr();
        let out = s.response(p, &r).unwrap();
        assert_eq!(s.cmd_ctr(), before + 1, "{name}");
        if let Some(d) = e.get("resp_data") {
            assert_eq!(out, h(d), "{name}");
        } else {
            assert!(out.is_empty(), "{name}");
        }
        // A response with one flipped bit fails its MAC.
        let mut bad = r.clone();
        bad[0] ^= 1;
        let mut s2 = Session::new(
            h(&i["ti"]).try_into().unwrap(),
            before,
            Zeroizing::new(k_enc),
            Zeroizing::new(h16(&i["k_ses_auth_mac"])),
        );
        let (_, p2) = s2.command(ins, &header, &data, mode).unwrap();
        assert_eq!(s2.response(p2, &bad), Err(NfcError::Integrity), "{name}");
        assert_eq!(s2.cmd_ctr(), before, "no advance on error");
        n += 1;
    }
    assert_eq!(n, 7);
}

#[test]
fn framing() {
    let mut n = 0;
    for v in vectors().into_iter().filter(|v| v["category"] == "framing") {
        let (i, e) = (&v["inputs"], &v["expected"]);
        match v["name"].as_str().unwrap() {
            "an12196_iso_select_ndef_app" => {
                assert_eq!(apdu::select_ndef_application(), h(&i["c_apdu"]));
                assert_eq!(
                    apdu::split(&h(&e["r_apdu"])).unwrap().1,
                    tessera_nfc::Status::Ok
                );
            }
            name if name.contains("getversion") => {
                assert_eq!(
                    apdu::native(0x60, &[]).unwrap(),
                    h(&i["c_apdu_1"]),
                    "{name}"
                );
                assert_eq!(
                    apdu::native(0xAF, &[]).unwrap(),
                    h(&i["c_apdu_2"]),
                    "{name}"
                );
                assert_eq!(
                    apdu::native(0xAF, &[]).unwrap(),
                    h(&i["c_apdu_3"]),
                    "{name}"
                );
                assert_eq!(
                    apdu::split(&h(&e["r_apdu_1"])).unwrap().1,
                    tessera_nfc::Status::AdditionalFrame
                );
                assert_eq!(
                    apdu::split(&h(&e["r_apdu_3"])).unwrap().1,
                    tessera_nfc::Status::Ok
                );
            }
            "an12196_writedata_plain_cc_file" => {
                let c = h(&i["c_apdu"]);
                // 90 8D 00 00 Lc <header+data> 00: rebuild it from its own body.
                assert_eq!(apdu::native(0x8D, &c[5..c.len() - 1]).unwrap(), c);
            }
            other => panic!("framing vector {other} has no test"),
        }
        n += 1;
    }
    assert_eq!(n, 4);
}

#[test]
fn sdm_and_sun() {
    let mut n = 0;
    for v in vectors().into_iter().filter(|v| v["category"] == "sdm") {
        let (i, e) = (&v["inputs"], &v["expected"]);
        let name = v["name"].as_str().unwrap();
        match name {
            "an12196_sdm_session_keys" => {
                let (enc, mac) = sdm::session_keys(
                    &h16(&i["k_sdm_file_read"]),
                    &h7(&i["uid"]),
                    i["sdm_read_ctr_value"].as_u64().unwrap() as u32,
                );
                assert_eq!(enc.to_vec(), h(&e["k_ses_sdm_file_read_enc"]));
                assert_eq!(mac.to_vec(), h(&e["k_ses_sdm_file_read_mac"]));
            }
            "sdmbackend_plain_sun_uid_ctr_mirror" => {
                let counter =
                    u32::from_str_radix(i["ctr_ascii_msb_first"].as_str().unwrap(), 16).unwrap();
                let mac = sdm::sdm_mac(&h16(&i["k_sdm_file_read"]), &h7(&i["uid"]), counter, b"");
                assert_eq!(
                    mac.to_vec() == h(&i["sdmmac"]),
                    e["valid"].as_bool().unwrap()
                );
            }
            _ => {
                let enc_file = i.get("enc_file_data").map(h);
                let mac_input = i["mac_input_ascii"].as_str().unwrap().as_bytes();
                let sun = sdm::verify_sun(
                    &h16(&i["k_sdm_meta_read"]),
                    &h16(&i["k_sdm_file_read"]),
                    &h(&i["picc_enc_data"]),
                    &h(&i["sdmmac"]),
                    enc_file.as_deref(),
                    mac_input,
                )
                .unwrap();
                assert!(sun.valid, "{name}");
                assert_eq!(sun.uid.to_vec(), h(&e["uid"]), "{name}");
                assert_eq!(
                    u64::from(sun.counter),
                    e["sdm_read_ctr_value"].as_u64().unwrap()
                );
                if let Some(fd) = e.get("file_data") {
                    assert_eq!(sun.file_data.unwrap(), h(fd), "{name}");
                }
                // Another MAC input, a flipped MAC byte, another file key: invalid.
                let other = sdm::verify_sun(
                    &h16(&i["k_sdm_meta_read"]),
                    &h16(&i["k_sdm_file_read"]),
                    &h(&i["picc_enc_data"]),
                    &h(&i["sdmmac"]),
                    None,
                    b"x",
                )
                .unwrap();
                assert!(!other.valid);
                let mut k = h16(&i["k_sdm_file_read"]);
                k[0] ^= 1;
                let wrong = sdm::verify_sun(
                    &h16(&i["k_sdm_meta_read"]),
                    &k,
                    &h(&i["picc_enc_data"]),
                    &h(&i["sdmmac"]),
                    None,
                    mac_input,
                )
                .unwrap();
                assert!(!wrong.valid);
                // A wrong meta-read key does not even decrypt to a PICC data tag.
                let mut m = h16(&i["k_sdm_meta_read"]);
                m[3] ^= 0x10;
                assert!(sdm::decrypt_picc_data(&m, &h(&i["picc_enc_data"])).is_err());
            }
        }
        n += 1;
    }
    assert_eq!(n, 6);
}

#[test]
fn originality_signatures() {
    let mut n = 0;
    for v in vectors() {
        if v["category"] != "originality" {
            continue;
        }
        let (i, e) = (&v["inputs"], &v["expected"]);
        assert_eq!(
            h(&i["nxp_public_key"]),
            originality::NXP_PUBLIC_KEY.to_vec()
        );
        if let Some(c) = i.get("c_apdu") {
            assert_eq!(h(c), originality::READ_SIG.to_vec());
        }
        if let Some(sw) = e.get("r_apdu_sw") {
            let sw = h(sw);
            assert_eq!(
                apdu::Status::from_sw(sw[0], sw[1]),
                apdu::Status::SignatureOk
            );
        }
        let uid = h7(&i["uid"]);
        let sig = h(&e["signature"]);
        assert_eq!(
            originality::verify(&uid, &sig),
            e["valid"].as_bool().unwrap()
        );
        // Another UID, a flipped bit in r or in s, a truncated signature: not valid.
        let mut other = uid;
        other[6] ^= 1;
        assert!(!originality::verify(&other, &sig));
        for at in [0, 27, 28, 55] {
            let mut bad = sig.clone();
            bad[at] ^= 0x80;
            assert!(!originality::verify(&uid, &bad), "{}", v["name"]);
        }
        assert!(!originality::verify(&uid, &sig[..55]));
        assert!(!originality::verify(&uid, &[0; 56]));
        n += 1;
    }
    assert_eq!(n, 2);
}

#[test]
fn pcsc_atr_and_vpcd_wire() {
    let mut n = 0;
    for v in vectors() {
        let (i, e) = (&v["inputs"], &v["expected"]);
        match v["category"].as_str().unwrap() {
            "pcsc" => {
                let atr = vpcd::atr_from_ats(&h(&i["ats"])).unwrap();
                assert_eq!(atr, h(&e["atr"]));
                assert_eq!(h(&i["ats"]), vpcd::ATS.to_vec());
                assert_eq!(atr, vpcd::ATR.to_vec());
            }
            "vpcd" => {
                let mut card = Card::new(CardState::factory([4, 1, 2, 3, 4, 5, 6]));
                let mut random = || [7u8; 16];
                let mut send = |framed: Vec<u8>| {
                    let len = usize::from(u16::from_be_bytes([framed[0], framed[1]]));
                    assert_eq!(len, framed.len() - 2);
                    vpcd::answer(&mut card, &framed[2..], &mut random)
                        .map(|r| vpcd::frame(&r).unwrap())
                };
                for control in ["power_off", "power_on", "reset"] {
                    assert_eq!(send(h(&i[control])), None, "{control}");
                }
                assert_eq!(send(h(&i["get_atr"])), Some(h(&e["atr_reply_from_vicc"])));
                assert_eq!(
                    send(h(&i["apdu_select_from_vpcd"])),
                    Some(h(&e["rapdu_reply_from_vicc"]))
                );
            }
            _ => continue,
        }
        n += 1;
    }
    assert_eq!(n, 2);
}

/// This crate's directory: from Cargo at run time (a test binary reused from a build in another
/// checkout must not read that checkout's files), else as compiled.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
