//! Secure Dynamic Messaging on the card side (datasheet §9.3): the file as an unauthenticated
//! reader sees it, with the UID, read counter, encrypted PICC data, encrypted file data and
//! SDMMAC written over their placeholders as upper-case ASCII hex.

use super::state::{FREE, File, NO_MIRROR};
use crate::protocol::crypto::{Key, cbc_encrypt, encrypt_block, mact};
use crate::protocol::sdm;

/// Upper-case ASCII hex, as the chip mirrors (EncodeASCII, §9.3.3).
pub(crate) fn hex_upper(bytes: &[u8]) -> Vec<u8> {
    const D: &[u8; 16] = b"0123456789ABCDEF";
    bytes
        .iter()
        .flat_map(|b| [D[usize::from(b >> 4)], D[usize::from(b & 15)]])
        .collect()
}

fn put(data: &mut [u8], at: usize, text: &[u8]) {
    if let Some(slot) = data.get_mut(at..at + text.len()) {
        slot.copy_from_slice(text);
    }
}

/// The dynamic file data of `file` (SDM enabled) for read counter `counter`, with `padding`
/// as the random padding of the PICC data. `keys` are the card's application keys.
pub fn dynamic_data(
    file: &File,
    uid: &[u8; 7],
    keys: &[Key; 5],
    counter: u32,
    padding: [u8; 16],
) -> Vec<u8> {
    let mut data = file.data.clone();
    let Some(sdm) = &file.settings.sdm else {
        return data;
    };
    let key = |no: u8| keys.get(usize::from(no));
    // Plain PICC data mirrors (SDMMetaRead = E): UID and counter (MSB first) as ASCII.
    if sdm.meta_read == FREE {
        if let Some(at) = sdm.uid_offset {
            put(&mut data, at, &hex_upper(uid));
        }
        if let Some(at) = sdm.ctr_offset.filter(|o| *o != NO_MIRROR) {
            let be = counter.to_be_bytes();
            put(&mut data, at, &hex_upper(&be[1..]));
        }
    }
    // Encrypted PICC data: PICCDataTag ‖ [UID] ‖ [counter LSB first] ‖ random padding.
    if let (Some(at), Some(k)) = (sdm.picc_offset, key(sdm.meta_read)) {
        let mut plain = padding;
        let mut i = 1;
        plain[0] = 0;
        if sdm.uid_mirrored() {
            plain[0] |= 0x80 | 7;
            plain[i..i + 7].copy_from_slice(uid);
            i += 7;
        }
        if sdm.ctr_enabled() {
            plain[0] |= 0x40;
            plain[i..i + 3].copy_from_slice(&counter.to_le_bytes()[..3]);
        }
        if let Ok(enc) = cbc_encrypt(k, &[0; 16], &plain) {
            put(&mut data, at, &hex_upper(&enc));
        }
    }
    let Some(file_key) = key(sdm.file_read) else {
        return data;
    };
    // Encrypted file data: the first half of the placeholder, encrypted, fills all of it.
    if let (Some(at), Some(len)) = (sdm.enc_offset, sdm.enc_length) {
        let (k_enc, _) = sdm::session_keys(file_key, uid, counter);
        let mut iv_in = [0u8; 16];
        iv_in[..3].copy_from_slice(&counter.to_le_bytes()[..3]);
        let iv = encrypt_block(&k_enc, &iv_in);
        if let Some(plain) = file.data.get(at..at + len / 2)
            && let Ok(enc) = cbc_encrypt(&k_enc, &iv, plain)
        {
            put(&mut data, at, &hex_upper(&enc));
        }
    }
    // SDMMAC over the dynamic data from SDMMACInputOffset up to the MAC.
    if let (Some(input), Some(at)) = (sdm.mac_input_offset, sdm.mac_offset) {
        let k_mac = sdm::mac_session_key(
            file_key,
            sdm.uid_mirrored().then_some(uid),
            sdm.ctr_enabled().then_some(counter),
        );
        let mac = mact(&k_mac, data.get(input..at).unwrap_or_default());
        put(&mut data, at, &hex_upper(&mac));
    }
    data
}
