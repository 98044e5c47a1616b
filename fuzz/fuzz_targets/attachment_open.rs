//! Arbitrary bytes as an attachment blob (`docs/attachments.md`), fed to the opener in pieces
//! of arbitrary sizes: it never panics, never returns more than the file's length, and whatever
//! it accepts is exactly what the sealer makes of the bytes it returned.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_crypto::attachment::{FileKey, Opener, Sealer};

fuzz_target!(|data: &[u8]| {
    let [a, b, step, rest @ ..] = data else { return };
    let len = u64::from(u16::from_le_bytes([*a, *b]));
    let key = FileKey::from_bytes([7; 32]);
    // The digest of the blob given, so that only the chunks decide.
    let digest = *blake3::hash(rest).as_bytes();
    let Ok(mut opener) = Opener::new(&key, len, digest) else { return };
    let mut out = Vec::new();
    for piece in rest.chunks(usize::from(*step).max(1) * 97) {
        match opener.push(piece) {
            Ok(bytes) => out.extend(bytes),
            Err(_) => return,
        }
    }
    assert!(out.len() as u64 <= len);
    if opener.finish().is_err() {
        return;
    }
    assert_eq!(out.len() as u64, len);
    let mut sealer = Sealer::new(&key, len).expect("a length the opener took");
    let mut blob = sealer.push(&out).expect("exactly len bytes");
    let (tail, again) = sealer.finish().expect("complete");
    blob.extend(tail);
    assert_eq!(blob, rest);
    assert_eq!(again, digest);
});
