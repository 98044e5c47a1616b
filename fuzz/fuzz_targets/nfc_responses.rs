//! Arbitrary bytes as what a (hostile) card or tag returns: never panics, and nothing forged
//! passes a MAC or authentication check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_nfc::protocol::{apdu, crypto, sdm};
use tessera_nfc::{Authentication, CommMode, Session};
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let _ = apdu::split(data);
    let _ = crypto::unpad(data);
    let _ = sdm::decrypt_picc_data(&[0; 16], data);
    if data.len() >= 24 {
        let sun = sdm::verify_sun(&[1; 16], &[2; 16], &data[..16], &data[16..24], Some(&data[24..]), b"");
        if let Ok(s) = sun {
            // A random MAC matching would be a 2^-64 event: treat it as a bug.
            assert!(!s.valid, "forged SDMMAC accepted");
        }
    }
    // A session response: only a correct MAC is accepted, and the counter moves only then.
    let mut s = Session::new([1, 2, 3, 4], 7, Zeroizing::new([3; 16]), Zeroizing::new([4; 16]));
    for mode in [CommMode::Mac, CommMode::Full] {
        if let Ok((_, pending)) = s.command(0xAD, &[3, 0, 0, 0, 8, 0, 0], &[], mode) {
            let before = s.cmd_ctr();
            let r = s.response(pending, data);
            if data.len() >= 10 {
                assert!(r.is_err(), "forged response MAC accepted");
            }
            assert_eq!(s.cmd_ctr(), before);
        }
    }
    // Authentication with a card that answers arbitrarily must not succeed.
    let (a, _) = Authentication::first(&[5; 16], 0);
    let half = data.len() / 2;
    if let Ok((reply, _)) = a.challenge(&data[..half], [6; 16]) {
        assert!(reply.finish(&data[half..]).is_err(), "forged authentication accepted");
    }
});
