//! Arbitrary text as relay addresses and account ids: never panics; what parses re-encodes to a
//! canonical form that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_crypto::AccountId;
use tessera_proto::RelayAddress;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(addr) = text.parse::<RelayAddress>() {
        assert_eq!(addr.to_string().parse::<RelayAddress>().ok(), Some(addr));
    }
    if let Ok(id) = text.parse::<AccountId>() {
        assert_eq!(id.to_string().parse::<AccountId>().ok(), Some(id));
    }
});
