//! Two accounts on one relay for the CLI tests: Alice on a virtual card (provisioned, her vault
//! bound to it), Bob without one, each the other's accepted contact.

use std::path::Path;

use crate::card::Sim;
use crate::cli::Cli;
use crate::relay::Relay;

/// Alice (card in vpcd slot 0) and Bob on `relay`. The caller holds the card slots
/// ([`crate::card::slots`]) and pcscd ([`crate::card::pcscd`]) for as long as this lives.
pub struct CardPair {
    /// The relay, a real process.
    pub relay: Relay,
    /// Alice's card.
    pub card: Sim,
    /// The reader Alice's card is on.
    pub reader: String,
    /// Alice, whose vault needs the card.
    pub alice: Cli,
    /// Bob, without a card.
    pub bob: Cli,
    /// Alice's invite.
    pub invite: String,
}

impl CardPair {
    /// Everything in `dir`: a relay, Alice's card provisioned and her account made with it, Bob's
    /// account, and each added by the other (Bob knows her as "Alice", she knows him as "Bob").
    pub fn start(dir: &Path) -> Self {
        let relay = Relay::start(&dir.join("relay"));
        let relay_addr = relay.address.to_string();
        let card = Sim::insert(&dir.join("card.json"), 0);
        let reader = card.reader.clone();
        let alice = Cli::new(&dir.join("alice"));
        let bob = Cli::new(&dir.join("bob"));
        alice.ok(&["card", "provision", "--reader", &reader]);
        alice.ok(&Cli::init_args(
            &relay_addr,
            "Alice",
            &["--reader", &reader, "--transport", "direct"],
        ));
        bob.init(&relay_addr, "Bob");
        let invite = alice.ok(&["invite", "--reader", &reader])["invite"]
            .as_str()
            .unwrap()
            .to_string();
        bob.ok(&["contact", "add", &invite, "--name", "Alice"]);
        alice.ok(&["contact", "add", &bob.invite(), "--reader", &reader]);
        bob.sync();
        Self {
            relay,
            card,
            reader,
            alice,
            bob,
            invite,
        }
    }
}
