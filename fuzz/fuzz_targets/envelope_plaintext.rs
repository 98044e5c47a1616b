//! Arbitrary bytes as a decrypted envelope plaintext (the parser behind the AEAD, which the
//! fuzzer could never reach through real ciphertexts).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tessera_crypto::fuzzing::parse_plaintext(data);
});
