//! The call state machine (`docs/calls.md` §State machine). Sans-I/O: the caller of
//! [`Call::handle`] passes the time and carries out the [`Output`]s (send a signal through the
//! Signal session, ring, start or stop media).

use std::time::Duration;

/// How long the caller waits for the callee's device to say it is ringing.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a call rings unanswered.
pub const RING_TIMEOUT: Duration = Duration::from_secs(45);
/// How long an accepted call may take to get media flowing.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A call's random id; every signal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId(pub [u8; 16]);

/// A call message between the two devices, sent as encrypted content through the Signal
/// session (never readable by the relay). Exhaustive on purpose: a new signal must be handled
/// wherever it is mapped to the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// The caller's SDP offer and frame secret.
    Offer {
        /// SDP.
        sdp: String,
        /// Video wanted.
        video: bool,
        /// The caller's frame secret (what its frames are sealed under).
        secret: [u8; 32],
    },
    /// The callee's device is alerting.
    Ringing,
    /// The callee's SDP answer and frame secret.
    Answer {
        /// SDP.
        sdp: String,
        /// The callee's frame secret.
        secret: [u8; 32],
    },
    /// One trickled ICE candidate.
    Ice {
        /// The candidate line.
        candidate: String,
    },
    /// The callee declined.
    Reject,
    /// The callee is in another call.
    Busy,
    /// Either side ended the call (or the caller cancelled it).
    Hangup,
}

/// Which side of the call this device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Dialled.
    Caller,
    /// Was called.
    Callee,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// This side hung up (or cancelled).
    HungUp,
    /// The other side hung up.
    RemoteHungUp,
    /// The caller gave up before this side answered.
    Cancelled,
    /// The callee declined.
    Rejected,
    /// The callee was in another call.
    Busy,
    /// The callee's device never said it was ringing (offline).
    Unavailable,
    /// Nobody answered.
    NoAnswer,
    /// Accepted, but media never flowed.
    Failed,
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Caller: the offer is sent, the callee's device has not confirmed.
    Dialing,
    /// Caller: the callee's device is ringing.
    Ringing,
    /// Callee: ringing here.
    Incoming,
    /// Both: answered, media not flowing yet.
    Connecting,
    /// Both: media flowing.
    Active,
    /// Over.
    Ended(EndReason),
}

/// What the owner of the call must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this signal to the other device.
    Send(Signal),
    /// Start the ringtone / incoming-call screen (callee).
    Ring,
    /// Stop ringing.
    StopRinging,
    /// Apply the callee's answer to the peer connection (caller) and open their frames.
    Connect {
        /// The answer SDP.
        sdp: String,
        /// The callee's frame secret.
        secret: [u8; 32],
    },
    /// Add a remote ICE candidate.
    AddCandidate(String),
    /// Media is flowing: show the in-call screen and start the timer.
    Active,
    /// Tear the media down; the call is over.
    Ended(EndReason),
}

/// What happens to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The user accepts (callee), with the answer SDP and this side's frame secret.
    Accept {
        /// SDP answer.
        sdp: String,
        /// This side's frame secret.
        secret: [u8; 32],
    },
    /// The user declines (callee).
    Reject,
    /// The user hangs up or cancels.
    HangUp,
    /// A signal from the other device for this call.
    Remote(Signal),
    /// The media layer saw the first authentic frame from the other side.
    MediaFlowing,
    /// Time passed (drives the timeouts).
    Tick,
}

/// One call.
#[derive(Debug)]
pub struct Call {
    id: CallId,
    role: Role,
    video: bool,
    state: State,
    since: Duration,
    ignored: u64,
}

impl Call {
    /// Dials: returns the call and what to do (send the offer).
    pub fn dial(
        id: CallId,
        sdp: String,
        video: bool,
        secret: [u8; 32],
        now: Duration,
    ) -> (Self, Vec<Output>) {
        let call = Self {
            id,
            role: Role::Caller,
            video,
            state: State::Dialing,
            since: now,
            ignored: 0,
        };
        (
            call,
            vec![Output::Send(Signal::Offer { sdp, video, secret })],
        )
    }

    /// An offer arrived: the call rings here and the caller is told so.
    pub fn incoming(id: CallId, video: bool, now: Duration) -> (Self, Vec<Output>) {
        let call = Self {
            id,
            role: Role::Callee,
            video,
            state: State::Incoming,
            since: now,
            ignored: 0,
        };
        (call, vec![Output::Send(Signal::Ringing), Output::Ring])
    }

    /// What to answer to an offer that arrives while this device is in another call.
    pub fn busy_reply() -> Signal {
        Signal::Busy
    }

    /// The call's id.
    pub fn id(&self) -> CallId {
        self.id
    }

    /// Caller or callee.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether video was offered.
    pub fn video(&self) -> bool {
        self.video
    }

    /// Where the call is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Inputs that made no sense in their state (or named another call), ignored.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// A signal for call `id`: ignored (and counted) if it names another call.
    pub fn handle_remote(&mut self, id: CallId, signal: Signal, now: Duration) -> Vec<Output> {
        if id != self.id {
            self.ignored += 1;
            return Vec::new();
        }
        self.handle(Input::Remote(signal), now)
    }

    fn enter(&mut self, state: State, now: Duration) {
        self.state = state;
        self.since = now;
    }

    fn end(&mut self, reason: EndReason, now: Duration, mut out: Vec<Output>) -> Vec<Output> {
        self.enter(State::Ended(reason), now);
        out.push(Output::Ended(reason));
        out
    }

    /// Moves the call on.
    pub fn handle(&mut self, input: Input, now: Duration) -> Vec<Output> {
        use Input as I;
        use State as S;
        let elapsed = now.saturating_sub(self.since);
        match (self.state, input) {
            (S::Ended(_), _) => {
                self.ignored += 1;
                Vec::new()
            }
            // Timeouts.
            (S::Dialing, I::Tick) if elapsed >= DIAL_TIMEOUT => self.end(
                EndReason::Unavailable,
                now,
                vec![Output::Send(Signal::Hangup)],
            ),
            (S::Ringing, I::Tick) if elapsed >= RING_TIMEOUT => {
                self.end(EndReason::NoAnswer, now, vec![Output::Send(Signal::Hangup)])
            }
            (S::Incoming, I::Tick) if elapsed >= RING_TIMEOUT => {
                self.end(EndReason::NoAnswer, now, vec![Output::StopRinging])
            }
            (S::Connecting, I::Tick) if elapsed >= CONNECT_TIMEOUT => {
                self.end(EndReason::Failed, now, vec![Output::Send(Signal::Hangup)])
            }
            (_, I::Tick) => Vec::new(),
            // Hanging up, from either side, in any live state.
            (S::Incoming, I::HangUp | I::Reject) => self.end(
                EndReason::Rejected,
                now,
                vec![Output::StopRinging, Output::Send(Signal::Reject)],
            ),
            (_, I::HangUp) => self.end(EndReason::HungUp, now, vec![Output::Send(Signal::Hangup)]),
            (S::Incoming, I::Remote(Signal::Hangup)) => {
                self.end(EndReason::Cancelled, now, vec![Output::StopRinging])
            }
            (_, I::Remote(Signal::Hangup)) => self.end(EndReason::RemoteHungUp, now, Vec::new()),
            // Caller.
            (S::Dialing, I::Remote(Signal::Ringing)) => {
                self.enter(S::Ringing, now);
                Vec::new()
            }
            (S::Dialing | S::Ringing, I::Remote(Signal::Answer { sdp, secret })) => {
                self.enter(S::Connecting, now);
                vec![Output::Connect { sdp, secret }]
            }
            (S::Dialing | S::Ringing, I::Remote(Signal::Reject)) => {
                self.end(EndReason::Rejected, now, Vec::new())
            }
            (S::Dialing | S::Ringing, I::Remote(Signal::Busy)) => {
                self.end(EndReason::Busy, now, Vec::new())
            }
            // Callee.
            (S::Incoming, I::Accept { sdp, secret }) => {
                self.enter(S::Connecting, now);
                vec![
                    Output::StopRinging,
                    Output::Send(Signal::Answer { sdp, secret }),
                ]
            }
            // Both.
            (S::Connecting, I::MediaFlowing) => {
                self.enter(S::Active, now);
                vec![Output::Active]
            }
            (
                S::Dialing | S::Ringing | S::Incoming | S::Connecting | S::Active,
                I::Remote(Signal::Ice { candidate }),
            ) => {
                vec![Output::AddCandidate(candidate)]
            }
            // Anything else is out of place: ignored, counted.
            _ => {
                self.ignored += 1;
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: CallId = CallId([7; 16]);
    const T0: Duration = Duration::ZERO;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    /// Delivers every `Send` in `out` to `to`, returning what `to` did.
    fn deliver(out: &[Output], to: &mut Call, now: Duration) -> Vec<Output> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(sig) => Some(sig.clone()),
                _ => None,
            })
            .flat_map(|sig| to.handle_remote(ID, sig, now))
            .collect()
    }

    fn offer_of(out: &[Output]) -> bool {
        matches!(
            out.first(),
            Some(Output::Send(Signal::Offer { video: true, .. }))
        )
    }

    #[test]
    fn a_call_rings_is_answered_connects_and_either_side_hangs_up() {
        let (mut alice, out) = Call::dial(ID, "offer".into(), true, [1; 32], T0);
        assert!(offer_of(&out));
        let (mut bob, ring) = Call::incoming(ID, true, s(1));
        assert!(ring.contains(&Output::Ring));
        assert!(deliver(&ring, &mut alice, s(1)).is_empty());
        assert_eq!(alice.state(), State::Ringing);
        // Candidates flow both ways at any live stage.
        assert_eq!(
            bob.handle_remote(
                ID,
                Signal::Ice {
                    candidate: "c1".into()
                },
                s(2)
            ),
            vec![Output::AddCandidate("c1".into())]
        );
        let answer = bob.handle(
            Input::Accept {
                sdp: "answer".into(),
                secret: [2; 32],
            },
            s(10),
        );
        assert_eq!(answer[0], Output::StopRinging);
        let connect = deliver(&answer, &mut alice, s(10));
        assert_eq!(
            connect,
            vec![Output::Connect {
                sdp: "answer".into(),
                secret: [2; 32]
            }]
        );
        assert_eq!(
            alice.handle(Input::MediaFlowing, s(11)),
            vec![Output::Active]
        );
        assert_eq!(bob.handle(Input::MediaFlowing, s(11)), vec![Output::Active]);
        // A long call does not time out.
        assert!(alice.handle(Input::Tick, s(3600)).is_empty());
        assert_eq!(alice.state(), State::Active);
        // Bob hangs up: both sides end.
        let bye = bob.handle(Input::HangUp, s(3601));
        assert_eq!(bob.state(), State::Ended(EndReason::HungUp));
        assert_eq!(
            deliver(&bye, &mut alice, s(3601)),
            vec![Output::Ended(EndReason::RemoteHungUp)]
        );
        assert_eq!(alice.state(), State::Ended(EndReason::RemoteHungUp));
        // Nothing moves an ended call.
        assert!(alice.handle(Input::MediaFlowing, s(3602)).is_empty());
        assert_eq!(alice.ignored(), 1);
    }

    #[test]
    fn reject_busy_and_cancel_end_both_sides_with_their_reasons() {
        let (mut alice, _) = Call::dial(ID, "o".into(), false, [1; 32], T0);
        let (mut bob, _) = Call::incoming(ID, false, T0);
        let no = bob.handle(Input::Reject, s(3));
        assert_eq!(bob.state(), State::Ended(EndReason::Rejected));
        deliver(&no, &mut alice, s(3));
        assert_eq!(alice.state(), State::Ended(EndReason::Rejected));

        let (mut alice, _) = Call::dial(ID, "o".into(), false, [1; 32], T0);
        alice.handle_remote(ID, Call::busy_reply(), s(1));
        assert_eq!(alice.state(), State::Ended(EndReason::Busy));

        let (mut alice, _) = Call::dial(ID, "o".into(), false, [1; 32], T0);
        let (mut bob, _) = Call::incoming(ID, false, T0);
        let cancel = alice.handle(Input::HangUp, s(5));
        assert_eq!(
            deliver(&cancel, &mut bob, s(5)),
            vec![Output::StopRinging, Output::Ended(EndReason::Cancelled)]
        );
    }

    #[test]
    fn each_timeout_ends_the_call_as_the_docs_say() {
        // The callee's device never confirms: unavailable after 20 s, and the offer is withdrawn.
        let (mut a, _) = Call::dial(ID, "o".into(), false, [1; 32], T0);
        assert!(a.handle(Input::Tick, s(19)).is_empty());
        assert_eq!(
            a.handle(Input::Tick, s(20)),
            vec![
                Output::Send(Signal::Hangup),
                Output::Ended(EndReason::Unavailable)
            ]
        );
        // Ringing, nobody answers: 45 s after the ringing started, on both sides.
        let (mut a, _) = Call::dial(ID, "o".into(), false, [1; 32], T0);
        a.handle_remote(ID, Signal::Ringing, s(2));
        assert!(a.handle(Input::Tick, s(46)).is_empty());
        a.handle(Input::Tick, s(47));
        assert_eq!(a.state(), State::Ended(EndReason::NoAnswer));
        let (mut b, _) = Call::incoming(ID, false, s(2));
        assert_eq!(
            b.handle(Input::Tick, s(47)),
            vec![Output::StopRinging, Output::Ended(EndReason::NoAnswer)]
        );
        // Accepted but no media: failed after 20 s.
        let (mut b, _) = Call::incoming(ID, false, T0);
        b.handle(
            Input::Accept {
                sdp: "a".into(),
                secret: [2; 32],
            },
            s(5),
        );
        assert!(b.handle(Input::Tick, s(24)).is_empty());
        b.handle(Input::Tick, s(25));
        assert_eq!(b.state(), State::Ended(EndReason::Failed));
    }

    #[test]
    fn signals_for_another_call_or_out_of_place_are_ignored_and_counted() {
        let (mut a, _) = Call::dial(ID, "o".into(), false, [1; 32], T0);
        assert!(
            a.handle_remote(CallId([9; 16]), Signal::Hangup, s(1))
                .is_empty()
        );
        assert_eq!(a.state(), State::Dialing);
        // An answer from a callee to its own... accept is the callee's input, not the caller's.
        assert!(
            a.handle(
                Input::Accept {
                    sdp: "x".into(),
                    secret: [0; 32]
                },
                s(1)
            )
            .is_empty()
        );
        assert!(a.handle(Input::MediaFlowing, s(1)).is_empty());
        let (mut b, _) = Call::incoming(ID, false, T0);
        assert!(
            b.handle_remote(
                ID,
                Signal::Answer {
                    sdp: "x".into(),
                    secret: [0; 32]
                },
                s(1)
            )
            .is_empty()
        );
        assert!(
            b.handle_remote(
                ID,
                Signal::Offer {
                    sdp: "x".into(),
                    video: false,
                    secret: [0; 32]
                },
                s(1)
            )
            .is_empty()
        );
        assert_eq!((a.ignored(), b.ignored()), (3, 2));
        assert_eq!(b.state(), State::Incoming);
    }
}
