//! Arbitrary bytes as a relay frame: never panics; whatever decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_proto::Frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        assert_eq!(frame.encode().ok().as_deref(), Some(data), "frame encoding is canonical");
    }
});
