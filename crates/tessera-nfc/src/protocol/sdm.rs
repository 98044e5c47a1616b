//! Secure Dynamic Messaging: verifying a SUN (the mirrored PICC data and SDMMAC the card writes
//! into its NDEF file on every read), and decrypting SDM-encrypted file data.

use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::crypto::{Key, cbc_decrypt, cmac, encrypt_block, mact};
use crate::NfcError;

/// What encrypted PICC data says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiccData {
    /// The card's 7-byte UID.
    pub uid: [u8; 7],
    /// SDMReadCtr (24 bits).
    pub counter: u32,
}

/// Decrypts 16 bytes of encrypted PICC data (AES mode) with K_SDMMetaRead.
pub fn decrypt_picc_data(meta_key: &Key, enc: &[u8]) -> Result<PiccData, NfcError> {
    if enc.len() != 16 {
        return Err(NfcError::Malformed(
            "PICC data length (LRP mode is not supported)",
        ));
    }
    let plain = Zeroizing::new(cbc_decrypt(meta_key, &[0; 16], enc)?);
    // Tag C7: UID and counter mirrored, UID length 7.
    if plain[0] != 0xC7 {
        return Err(NfcError::Malformed(
            "PICC data tag (wrong key, or not UID + counter)",
        ));
    }
    let mut uid = [0u8; 7];
    uid.copy_from_slice(&plain[1..8]);
    let counter = u32::from_le_bytes([plain[8], plain[9], plain[10], 0]);
    Ok(PiccData { uid, counter })
}

/// `(KSesSDMFileReadENC, KSesSDMFileReadMAC)` for a UID and counter (both mirrored).
pub fn session_keys(
    file_key: &Key,
    uid: &[u8; 7],
    counter: u32,
) -> (Zeroizing<Key>, Zeroizing<Key>) {
    (
        Zeroizing::new(cmac(
            file_key,
            &session_vector([0xC3, 0x3C], Some(uid), Some(counter)),
        )),
        Zeroizing::new(cmac(
            file_key,
            &session_vector([0x3C, 0xC3], Some(uid), Some(counter)),
        )),
    )
}

/// KSesSDMFileReadMAC when only some of UID and counter are mirrored (datasheet §9.3.9: SV2
/// holds what is mirrored, zero-padded to 16 bytes).
pub fn mac_session_key(
    file_key: &Key,
    uid: Option<&[u8; 7]>,
    counter: Option<u32>,
) -> Zeroizing<Key> {
    Zeroizing::new(cmac(file_key, &session_vector([0x3C, 0xC3], uid, counter)))
}

fn session_vector(label: [u8; 2], uid: Option<&[u8; 7]>, counter: Option<u32>) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..2].copy_from_slice(&label);
    v[2..6].copy_from_slice(&[0x00, 0x01, 0x00, 0x80]);
    let mut at = 6;
    if let Some(uid) = uid {
        v[at..at + 7].copy_from_slice(uid);
        at += 7;
    }
    if let Some(counter) = counter {
        v[at..at + 3].copy_from_slice(&counter.to_le_bytes()[..3]);
    }
    v
}

/// SDMMAC over `mac_input` (the ASCII file bytes from SDMMACInputOffset to SDMMACOffset).
pub fn sdm_mac(file_key: &Key, uid: &[u8; 7], counter: u32, mac_input: &[u8]) -> [u8; 8] {
    let (_, k_mac) = session_keys(file_key, uid, counter);
    mact(&k_mac, mac_input)
}

/// Decrypts SDMENCFileData.
pub fn decrypt_file_data(
    file_key: &Key,
    uid: &[u8; 7],
    counter: u32,
    enc: &[u8],
) -> Result<Zeroizing<Vec<u8>>, NfcError> {
    let (k_enc, _) = session_keys(file_key, uid, counter);
    let mut iv_in = [0u8; 16];
    iv_in[..3].copy_from_slice(&counter.to_le_bytes()[..3]);
    let iv = encrypt_block(&k_enc, &iv_in);
    Ok(Zeroizing::new(cbc_decrypt(&k_enc, &iv, enc)?))
}

/// A checked SUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sun {
    /// UID.
    pub uid: [u8; 7],
    /// SDMReadCtr.
    pub counter: u32,
    /// Whether the SDMMAC verified.
    pub valid: bool,
    /// Decrypted file data, when encrypted file data was given.
    pub file_data: Option<Vec<u8>>,
}

/// Verifies a SUN with encrypted PICC data: decrypts it, recomputes the SDMMAC (constant time)
/// and decrypts the file data if given. The caller must still require the counter to increase.
pub fn verify_sun(
    meta_key: &Key,
    file_key: &Key,
    picc_enc: &[u8],
    mac: &[u8],
    enc_file_data: Option<&[u8]>,
    mac_input: &[u8],
) -> Result<Sun, NfcError> {
    let picc = decrypt_picc_data(meta_key, picc_enc)?;
    if mac.len() != 8 {
        return Err(NfcError::Malformed("SDMMAC length"));
    }
    let expected = sdm_mac(file_key, &picc.uid, picc.counter, mac_input);
    let valid = bool::from(expected.ct_eq(mac));
    let file_data = match enc_file_data {
        Some(enc) => Some(decrypt_file_data(file_key, &picc.uid, picc.counter, enc)?.to_vec()),
        None => None,
    };
    Ok(Sun {
        uid: picc.uid,
        counter: picc.counter,
        valid,
        file_data,
    })
}
