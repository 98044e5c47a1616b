//! The card side of the protocol: an NTAG 424 DNA as a state machine (C-APDU in, R-APDU out, no
//! I/O; the card's random numbers are passed in). The virtual card for pcscd's vpcd driver is
//! this plus a socket.
//!
//! It follows the NT4H2421Gx datasheet (Rev. 3.0) and the NFC Forum Type 4 Tag procedure for
//! every command a reader, a phone or Tessera sends; `docs/ntag424.md` §The card side lists
//! each command, what this card does and the datasheet section. In short:
//!
//! - `iso`: ISOSelectFile (PICC level, the NDEF application by DF name or file id, the CC,
//!   NDEF and proprietary files by file id), ISOReadBinary and ISOUpdateBinary with offsets,
//!   short file ids and Le.
//! - `native`: AuthenticateEV2First/NonFirst, GetVersion (three frames), ReadData/WriteData in
//!   every communication mode, GetFileSettings, ChangeFileSettings (all SDM options),
//!   GetFileCounters, ChangeKey, GetKeyVersion, GetCardUID and Read_Sig, with secure
//!   messaging and the datasheet's status word for every refusal; responses longer than one
//!   frame are chained with `91 AF`.
//! - `mirror`: Secure Dynamic Messaging; the read counter advances once per run of reads
//!   (§9.3.1), and the PICC data's random padding stays the same within it.

mod iso;
mod mirror;
mod native;
mod state;

use std::collections::VecDeque;

use zeroize::Zeroizing;

use crate::protocol::apdu::Status;
use crate::protocol::crypto::Key;

pub use mirror::dynamic_data;
pub use state::{CardState, FREE, File, FileSettings, NEVER, NO_MIRROR, SdmSettings, Version};

/// The largest response data a frame carries (a short APDU's Le = 00).
pub const FRAME: usize = 256;

/// What is selected (datasheet §10.9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// The PICC level (MF): after activation, `3F00`, or DF name `D2760000850100`.
    Picc,
    /// The NDEF application (DF name `D2760000850101`).
    App,
}

/// The authentication state.
enum Auth {
    None,
    /// EV2First/NonFirst part 1 answered; waiting for part 2.
    Challenged {
        key_no: u8,
        rnd_b: [u8; 16],
        /// NonFirst: the running session's TI and counter.
        kept: Option<([u8; 4], u16)>,
        /// EV2First: the PCD capabilities to echo.
        pcd_cap: [u8; 6],
    },
    Session(Sm),
}

/// An authenticated session's secure-messaging state.
#[derive(Clone)]
struct Sm {
    key_no: u8,
    ti: [u8; 4],
    ctr: u16,
    enc: Zeroizing<Key>,
    mac: Zeroizing<Key>,
}

/// Which read command a run of SDM reads uses (the counter advances when it changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadKind {
    Native,
    Iso,
}

/// A run of reads of one file in not-authenticated state: the data as mirrored at its first
/// read, which later reads in the run return again (§9.3.1, §9.3.4).
struct ReadRun {
    kind: ReadKind,
    file: u8,
    data: Vec<u8>,
}

/// A card: persistent state plus the volatile session.
pub struct Card {
    /// Persistent state (save it after every command that changed it).
    pub state: CardState,
    level: Level,
    /// The file ISO commands address (selected by file id or short file id).
    ef: Option<u8>,
    auth: Auth,
    /// Response frames still to be fetched with `90 AF`.
    frames: VecDeque<Vec<u8>>,
    run: Option<ReadRun>,
}

fn sw(status: Status) -> Vec<u8> {
    status.to_sw().to_vec()
}

/// A short ISO/IEC 7816-4 command: header, data and whether Le was given (and its value).
pub(crate) struct Apdu<'a> {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &'a [u8],
    le: Option<usize>,
}

impl<'a> Apdu<'a> {
    /// Parses the four cases of a short APDU; `None` if the length bytes do not add up.
    fn parse(b: &'a [u8]) -> Option<Self> {
        let (cla, ins, p1, p2) = (b[0], b[1], b[2], b[3]);
        let (data, le): (&[u8], Option<usize>) = match b.len() {
            4 => (&[], None),
            5 => (&[], Some(usize::from(b[4]))),
            n => {
                let lc = usize::from(b[4]);
                if lc == 0 {
                    return None;
                }
                if n == 5 + lc {
                    (&b[5..], None)
                } else if n == 6 + lc {
                    (&b[5..5 + lc], Some(usize::from(b[5 + lc])))
                } else {
                    return None;
                }
            }
        };
        Some(Self {
            cla,
            ins,
            p1,
            p2,
            data,
            le: le.map(|l| if l == 0 { 256 } else { l }),
        })
    }
}

impl Card {
    /// A powered card: PICC level selected, not authenticated.
    pub fn new(state: CardState) -> Self {
        Self {
            state,
            level: Level::Picc,
            ef: None,
            auth: Auth::None,
            frames: VecDeque::new(),
            run: None,
        }
    }

    /// Power off / removal / reset: selection, session and chained responses are gone.
    pub fn reset(&mut self) {
        self.level = Level::Picc;
        self.ef = None;
        self.auth = Auth::None;
        self.frames.clear();
        self.run = None;
    }

    fn authenticated(&self) -> bool {
        matches!(self.auth, Auth::Session(_))
    }

    /// Processes one C-APDU. `random` supplies the card's random numbers (RndB, TI, PICC data
    /// padding).
    pub fn process(&mut self, apdu: &[u8], random: &mut dyn FnMut() -> [u8; 16]) -> Vec<u8> {
        // A run of SDM reads continues only while reads of the same kind follow each other.
        let run = self.run.take();
        if apdu.len() < 4 {
            return vec![0x67, 0x00];
        }
        let Some(c) = Apdu::parse(apdu) else {
            return if apdu[0] == 0x90 {
                sw(Status::LengthError)
            } else {
                vec![0x67, 0x00]
            };
        };
        let continuation = c.cla == 0x90 && c.ins == 0xAF;
        if continuation && !self.frames.is_empty() {
            self.run = run;
            return self.next_frame();
        }
        if !self.frames.is_empty()
            || (matches!(self.auth, Auth::Challenged { .. }) && !continuation)
        {
            // A new command while a chained response or an authentication is under way: the
            // datasheet's COMMAND_ABORTED (ISO: 6985); the pending exchange is abandoned.
            self.frames.clear();
            if matches!(self.auth, Auth::Challenged { .. }) {
                self.auth = Auth::None;
            }
            return match c.cla {
                0x90 => sw(Status::CommandAborted),
                _ => vec![0x69, 0x85],
            };
        }
        match c.cla {
            0x00 => match c.ins {
                0xA4 => self.iso_select(&c),
                0xB0 => self.iso_read_binary(&c, run, random),
                0xD6 => self.iso_update_binary(&c),
                _ => vec![0x6D, 0x00],
            },
            0x90 => {
                if c.p1 != 0 || c.p2 != 0 {
                    return vec![0x6A, 0x86];
                }
                self.native(c.ins, c.data, run, random)
            }
            0xFF if c.ins == 0xCA && c.p1 == 0 && c.p2 == 0 => {
                // The reader's GET DATA (UID) pseudo-APDU: vpcd has no reader firmware, so the
                // virtual card answers it as a PC/SC reader would.
                let mut out = self.state.uid.to_vec();
                out.extend([0x90, 0x00]);
                out
            }
            // Other reader pseudo-APDUs: "function not supported", as readers answer.
            0xFF => vec![0x6A, 0x81],
            _ => vec![0x6E, 0x00],
        }
    }

    /// Queues `data` (the complete response data) in frames of `sizes` (the last takes the
    /// rest) and answers the first; `90 AF` fetches the others, the last ends with `91 00`.
    fn chained(&mut self, data: Vec<u8>, sizes: &[usize]) -> Vec<u8> {
        let mut rest = data.as_slice();
        let mut frames = VecDeque::new();
        for size in sizes {
            if rest.len() <= *size {
                break;
            }
            let (head, tail) = rest.split_at(*size);
            frames.push_back(head.to_vec());
            rest = tail;
        }
        while rest.len() > FRAME {
            let (head, tail) = rest.split_at(FRAME);
            frames.push_back(head.to_vec());
            rest = tail;
        }
        frames.push_back(rest.to_vec());
        self.frames = frames;
        self.next_frame()
    }

    fn next_frame(&mut self) -> Vec<u8> {
        let mut out = self.frames.pop_front().unwrap_or_default();
        out.extend(if self.frames.is_empty() {
            Status::Ok.to_sw()
        } else {
            Status::AdditionalFrame.to_sw()
        });
        out
    }
}
