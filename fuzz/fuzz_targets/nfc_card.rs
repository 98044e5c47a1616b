//! Arbitrary commands to the virtual NTAG 424 DNA, and arbitrary bytes as what a tag returns to
//! a phone's NDEF read: nothing panics, and no command sequence without the keys gets the
//! protected file's contents out of a provisioned card.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_nfc::card::{Card, CardState};
use tessera_nfc::{ndef, vpcd};

const SECRET: [u8; 16] = *b"fuzz-card-secret";

fuzz_target!(|data: &[u8]| {
    let _ = ndef::parse_message(data);
    let _ = ndef::CapabilityContainer::parse(data);
    let _ = ndef::sun_parameters(&String::from_utf8_lossy(data));
    let mut framer = vpcd::Framer::default();
    framer.push(data);
    while framer.next_message().is_some() {}

    // A card whose keys are not the factory ones, with a marker in its protected file.
    let mut state = CardState::factory([4, 1, 2, 3, 4, 5, 6]);
    for (i, k) in state.keys.iter_mut().enumerate() {
        *k = [0xA0 + i as u8; 16];
    }
    if let Some(f) = state.files.iter_mut().find(|f| f.no == 3) {
        f.data[..16].copy_from_slice(&SECRET);
    }
    let mut card = Card::new(state);
    let mut n = 0u8;
    // The input as a series of commands: a length byte, then that many bytes.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (apdu, tail) = tail.split_at(len);
        rest = tail;
        let r = card.process(apdu, &mut || {
            n = n.wrapping_add(1);
            [n; 16]
        });
        assert!(r.len() >= 2, "every answer ends in a status word");
        let holds = |d: &[u8]| d.windows(SECRET.len()).any(|w| w == SECRET);
        // (Unless the input wrote the same bytes into a free file itself.)
        let copied = card.state.files.iter().any(|f| f.no != 3 && holds(&f.data));
        assert!(copied || !holds(&r), "the protected file leaked");
        if card.state.files.iter().all(|f| f.no != 3) {
            panic!("a file disappeared");
        }
    }
});
