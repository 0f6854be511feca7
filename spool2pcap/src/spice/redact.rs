//! Redaction: rewriting what a bug report must not disclose, before the
//! bytes become packets.
//!
//! Captures get attached to public issue trackers, and two kinds of SPICE
//! traffic carry what the user typed or copied:
//!
//! * **inputs**: on the inputs channel, the client's `KEY_DOWN` (101),
//!   `KEY_UP` (102) and `KEY_SCANCODE` (104) messages (spice-protocol's
//!   `SPICE_MSGC_INPUTS_*`) hold the scancodes of every key pressed —
//!   passwords included;
//! * **clipboard**: on the main channel, `AGENT_DATA` messages (client
//!   `SPICE_MSGC_MAIN_AGENT_DATA` = 107, server `SPICE_MSG_MAIN_AGENT_DATA`
//!   = 109) carry the guest agent's stream of `VDAgentMessage`s (header:
//!   protocol u32, type u32, opaque u64, size u32, then `size` bytes), and
//!   a `VD_AGENT_CLIPBOARD` (4) message holds the clipboard contents.
//!
//! Redaction overwrites the *bodies* of those messages with zeroes and
//! nothing else: message headers, lengths, timing and so TCP sequence
//! numbers stay as they were, and Wireshark still frames and names every
//! message. A clipboard message's whole body is zeroed (its selection and
//! type words included), since whether a selection word is present depends
//! on capabilities negotiated outside the capture.
//!
//! Records are socket reads and writes, not messages: a message can start in
//! one record and end several records later, and an agent message is cut
//! into `AGENT_DATA` chunks of at most 2048 bytes (a header may even be
//! split between two). So each direction is parsed as a stream, with the
//! mini-header framing of [`crate::spice::messages`] and a small state
//! machine for the agent stream (`redact/agent.rs`), carried from record to
//! record; the rewritten record is built in one buffer reused for the whole
//! channel. The tests are in `redact/tests.rs`.
//!
//! When the framing is lost — traffic dropped by the capture writer inside
//! a header, damage in the spool, the start of a channel trimmed by the
//! flight recorder — nobody can tell where the next key message is. The
//! redactor then fails closed: whole records of that direction are zeroed
//! until one parses as a run of plausible messages from its first byte, and
//! framing resumes there. Zeroing too much costs a few undecodable packets;
//! zeroing too little would publish keystrokes.

use serde::Serialize;
use spool::read::event::Gap;
use spool::store::format::Direction;

use crate::spice::messages::{chains_to_end, MessageFramer, Piece};

mod agent;
#[cfg(test)]
mod tests;

use agent::{process_agent, AgentFrame, AGENT_HEADER_LEN};
pub use agent::{VD_AGENT_CLIPBOARD, VD_AGENT_PROTOCOL};

/// `SPICE_MSGC_INPUTS_KEY_DOWN`: body is the scancode (u32).
pub const MSGC_INPUTS_KEY_DOWN: u16 = 101;
/// `SPICE_MSGC_INPUTS_KEY_UP`: body is the scancode (u32).
pub const MSGC_INPUTS_KEY_UP: u16 = 102;
/// `SPICE_MSGC_INPUTS_KEY_SCANCODE`: body is a run of scancode bytes.
pub const MSGC_INPUTS_KEY_SCANCODE: u16 = 104;
/// `SPICE_MSGC_MAIN_AGENT_DATA`: a chunk of the client's agent stream.
pub const MSGC_MAIN_AGENT_DATA: u16 = 107;
/// `SPICE_MSG_MAIN_AGENT_DATA`: a chunk of the guest agent's stream.
pub const MSG_MAIN_AGENT_DATA: u16 = 109;

/// What to redact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Redaction {
    /// Keystrokes: bodies of the inputs channel's key messages.
    pub inputs: bool,
    /// Clipboard contents in the main channel's agent messages.
    pub clipboard: bool,
}

/// A word of a redaction list that names nothing to redact (its first 32
/// characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown redaction {0:?} (expected inputs, clipboard, all or none)")]
pub struct UnknownRedaction(pub String);

impl Redaction {
    /// Nothing redacted.
    pub const NONE: Redaction = Redaction {
        inputs: false,
        clipboard: false,
    };
    /// Everything this module knows to redact.
    pub const ALL: Redaction = Redaction {
        inputs: true,
        clipboard: true,
    };

    /// Whether anything is redacted.
    pub fn any(&self) -> bool {
        self.inputs || self.clipboard
    }

    /// Both sets together.
    pub fn union(self, other: Redaction) -> Redaction {
        Redaction {
            inputs: self.inputs || other.inputs,
            clipboard: self.clipboard || other.clipboard,
        }
    }

    /// Parses `inputs`, `clipboard`, `all` or `none`, comma-separated.
    ///
    /// # Errors
    ///
    /// [`UnknownRedaction`] names the first word that is none of these.
    pub fn parse(list: &str) -> Result<Redaction, UnknownRedaction> {
        let mut r = Redaction::NONE;
        for word in list.split(',').map(str::trim) {
            match word {
                "inputs" | "keys" | "keystrokes" => r.inputs = true,
                "clipboard" => r.clipboard = true,
                "all" => r = Redaction::ALL,
                "none" => {}
                other => return Err(UnknownRedaction(other.chars().take(32).collect())),
            }
        }
        Ok(r)
    }

    /// The words of [`Redaction::describe`], for JSON.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.inputs {
            v.push("inputs keystrokes");
        }
        if self.clipboard {
            v.push("clipboard");
        }
        v
    }

    /// `inputs keystrokes, clipboard`, or `nothing`.
    pub fn describe(&self) -> String {
        if self.any() {
            self.names().join(", ")
        } else {
            "nothing".to_string()
        }
    }
}

/// What a [`Redactor`] rewrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RedactStats {
    /// Messages whose bodies were zeroed (key messages, clipboard messages).
    pub messages: u64,
    /// Bytes zeroed, whole records of lost framing included.
    pub bytes: u64,
    /// Records zeroed whole because the message framing was lost there.
    pub unframed_records: u64,
}

/// What a direction of a channel redacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Bodies of key messages (inputs, client→server).
    Keys,
    /// Clipboard messages in the agent stream carried by messages of this
    /// type (main channel).
    Agent(u16),
}

/// What happens to the body of the message being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Keep,
    Zero,
    Agent,
}

#[derive(Debug, Clone)]
struct DirState {
    rule: Rule,
    framer: MessageFramer,
    /// What happens to the body of the message being read.
    action: Action,
    agent: AgentFrame,
}

impl DirState {
    fn new(rule: Rule, lost: bool) -> DirState {
        DirState {
            rule,
            framer: if lost {
                MessageFramer::lost()
            } else {
                MessageFramer::new()
            },
            action: Action::Keep,
            agent: if lost {
                AgentFrame::Lost
            } else {
                AgentFrame::Header {
                    have: 0,
                    buf: [0; AGENT_HEADER_LEN],
                    zero: false,
                }
            },
        }
    }

    fn action(&self, ty: u16) -> Action {
        match self.rule {
            Rule::Keys => match ty {
                MSGC_INPUTS_KEY_DOWN | MSGC_INPUTS_KEY_UP | MSGC_INPUTS_KEY_SCANCODE => {
                    Action::Zero
                }
                _ => Action::Keep,
            },
            Rule::Agent(t) if t == ty => Action::Agent,
            Rule::Agent(_) => Action::Keep,
        }
    }

    /// Whether a message of type `ty` and `size` bytes is plausible here:
    /// the test a record must pass to resume framing after it was lost.
    fn plausible(&self, ty: u16, size: u32) -> bool {
        // Common messages of both sides (ack, ping/pong, notify…).
        let common = (1..=10).contains(&ty) && size <= 64 << 10;
        common
            || match self.rule {
                Rule::Keys => match ty {
                    MSGC_INPUTS_KEY_DOWN | MSGC_INPUTS_KEY_UP => size == 4,
                    103 => size == 2,
                    MSGC_INPUTS_KEY_SCANCODE => (1..=64).contains(&size),
                    111..=114 => size <= 32,
                    _ => false,
                },
                Rule::Agent(agent) if ty == agent => size <= 4096,
                Rule::Agent(_) => (101..=140).contains(&ty) && size <= 16 << 20,
            }
    }

    /// Whether `data` starts at a message boundary: plausible mini headers
    /// chained to its end (the last message may go on in later records).
    fn resyncs(&self, data: &[u8]) -> bool {
        chains_to_end(data, |ty, size| self.plausible(ty, size))
    }

    fn lose(&mut self) {
        self.framer.lose();
        self.agent = AgentFrame::Lost;
    }

    /// `bytes` of this direction were dropped by the capture writer.
    fn skip(&mut self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let in_agent_body = self.framer.in_body() && self.action == Action::Agent;
        if !self.framer.skip(bytes) {
            self.lose();
        } else if in_agent_body {
            self.skip_agent(bytes);
        }
    }

    fn skip_agent(&mut self, bytes: u64) {
        match &mut self.agent {
            AgentFrame::Body { left, .. } if u64::from(*left) > bytes => *left -= bytes as u32,
            AgentFrame::Body { left, .. } if u64::from(*left) == bytes => {
                self.agent = AgentFrame::Header {
                    have: 0,
                    buf: [0; AGENT_HEADER_LEN],
                    zero: false,
                }
            }
            _ => self.agent = AgentFrame::Lost,
        }
    }

    /// Rewrites one record of this direction in place.
    fn process(&mut self, direction: Direction, data: &mut [u8], stats: &mut RedactStats) {
        if self.framer.is_lost() {
            if self.resyncs(data) {
                self.framer.resume();
            } else {
                data.fill(0);
                stats.bytes += data.len() as u64;
                stats.unframed_records += 1;
                return;
            }
        }
        let mut i = 0usize;
        while i < data.len() {
            match self.framer.next_piece(direction, &data[i..]) {
                Piece::Link(n) | Piece::PartialHeader(n) => i += n,
                Piece::Header { len, ty, .. } => {
                    i += len;
                    let action = self.action(ty);
                    if action == Action::Zero {
                        stats.messages += 1;
                    }
                    if action == Action::Agent && self.agent == AgentFrame::Lost {
                        // spice-server starts each agent message at an
                        // AGENT_DATA boundary: try to pick the stream up.
                        self.agent = AgentFrame::Header {
                            have: 0,
                            buf: [0; AGENT_HEADER_LEN],
                            zero: true,
                        };
                    }
                    self.action = action;
                }
                Piece::Body(take) => {
                    let body = &mut data[i..i + take];
                    match self.action {
                        Action::Keep => {}
                        Action::Zero => {
                            body.fill(0);
                            stats.bytes += take as u64;
                        }
                        // The agent stream runs on across AGENT_DATA messages.
                        Action::Agent => process_agent(&mut self.agent, body, stats),
                    }
                    i += take;
                }
                // A link message cut short: what follows is unknown.
                Piece::Lost => return self.process(direction, &mut data[i..], stats),
            }
        }
    }
}

/// One channel's redaction: per-direction framing state, and the buffer
/// rewritten records are built in.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Client→server, server→client.
    dirs: [Option<DirState>; 2],
    buf: Vec<u8>,
    stats: RedactStats,
}

impl Redactor {
    /// The redactor for `channel`, or `None` if `redaction` touches nothing
    /// on it. `trimmed_start`: the channel's start was deleted by the flight
    /// recorder, so its first record may begin inside a message.
    pub fn for_channel(
        channel: &str,
        redaction: Redaction,
        trimmed_start: bool,
    ) -> Option<Redactor> {
        let ty = crate::spice::channels::spice_channel_type(channel);
        let dirs = match ty {
            Some(3) if redaction.inputs => [Some(DirState::new(Rule::Keys, trimmed_start)), None],
            Some(1) if redaction.clipboard => [
                Some(DirState::new(
                    Rule::Agent(MSGC_MAIN_AGENT_DATA),
                    trimmed_start,
                )),
                Some(DirState::new(
                    Rule::Agent(MSG_MAIN_AGENT_DATA),
                    trimmed_start,
                )),
            ],
            _ => return None,
        };
        Some(Redactor {
            dirs,
            buf: Vec::new(),
            stats: RedactStats::default(),
        })
    }

    /// What was rewritten so far.
    pub fn stats(&self) -> RedactStats {
        self.stats
    }

    /// The record's bytes as they may be shown: `payload` itself when this
    /// direction redacts nothing, else a rewritten copy in the reused
    /// buffer.
    pub fn apply<'a>(&'a mut self, direction: Direction, payload: &'a [u8]) -> &'a [u8] {
        let Some(state) = self.dirs[direction.to_byte() as usize & 1].as_mut() else {
            return payload;
        };
        self.buf.clear();
        self.buf.extend_from_slice(payload);
        state.process(direction, &mut self.buf, &mut self.stats);
        &self.buf
    }

    /// Traffic the capture writer dropped: framing survives only if the lost
    /// bytes lie inside a message body.
    pub fn gap(&mut self, g: &Gap) {
        if let Some(s) = self.dirs[0].as_mut() {
            s.skip(g.bytes_c2s);
        }
        if let Some(s) = self.dirs[1].as_mut() {
            s.skip(g.bytes_s2c);
        }
    }

    /// Damage in the spool: an unknown number of bytes is missing.
    pub fn lose_framing(&mut self) {
        for s in self.dirs.iter_mut().flatten() {
            s.lose();
        }
    }
}
