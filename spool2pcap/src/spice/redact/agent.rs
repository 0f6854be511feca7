//! The guest agent's stream inside the main channel's `AGENT_DATA`
//! messages: a run of `VDAgentMessage`s (header: protocol u32, type u32,
//! opaque u64, size u32, then `size` bytes), cut into chunks of at most
//! 2048 bytes that need not respect message or even header boundaries.
//! [`process_agent`] follows it across chunks and zeroes the bodies of
//! clipboard messages; the [`Redactor`](super::Redactor) tells it where
//! each chunk's body lies.

use super::RedactStats;

/// `VD_AGENT_PROTOCOL`, the first word of every agent message header.
pub const VD_AGENT_PROTOCOL: u32 = 1;
/// `VD_AGENT_CLIPBOARD`: the message that carries clipboard contents.
pub const VD_AGENT_CLIPBOARD: u32 = 4;

/// Length of an agent message header.
pub(super) const AGENT_HEADER_LEN: usize = 20;
/// Largest agent message type spice-protocol defines (with some room).
const MAX_AGENT_TYPE: u32 = 32;

/// Framing of the agent stream inside `AGENT_DATA` bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AgentFrame {
    /// Collecting an agent header; `zero`: it may be clipboard bytes seen
    /// while resynchronizing, so it is zeroed as it is read.
    Header {
        have: usize,
        buf: [u8; AGENT_HEADER_LEN],
        zero: bool,
    },
    /// Inside an agent message body.
    Body { left: u32, zero: bool },
    /// Lost: zero until the next `AGENT_DATA` message, where spice-server
    /// starts every agent message.
    Lost,
}

/// Rewrites a piece of the agent stream (part of one AGENT_DATA body).
pub(super) fn process_agent(state: &mut AgentFrame, data: &mut [u8], stats: &mut RedactStats) {
    let mut i = 0usize;
    while i < data.len() {
        match state {
            AgentFrame::Header { have, buf, zero } => {
                let take = (AGENT_HEADER_LEN - *have).min(data.len() - i);
                buf[*have..*have + take].copy_from_slice(&data[i..i + take]);
                if *zero {
                    data[i..i + take].fill(0);
                    stats.bytes += take as u64;
                }
                *have += take;
                i += take;
                if *have == AGENT_HEADER_LEN {
                    let word =
                        |o: usize| u32::from_le_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
                    let (protocol, ty, size) = (word(0), word(4), word(16));
                    if protocol != VD_AGENT_PROTOCOL || ty == 0 || ty > MAX_AGENT_TYPE {
                        *state = AgentFrame::Lost;
                        continue;
                    }
                    let clip = ty == VD_AGENT_CLIPBOARD;
                    if clip {
                        stats.messages += 1;
                    }
                    *state = if size == 0 {
                        AgentFrame::Header {
                            have: 0,
                            buf: [0; AGENT_HEADER_LEN],
                            zero: false,
                        }
                    } else {
                        AgentFrame::Body {
                            left: size,
                            zero: clip,
                        }
                    };
                }
            }
            AgentFrame::Body { left, zero } => {
                let take = (*left as usize).min(data.len() - i);
                if *zero {
                    data[i..i + take].fill(0);
                    stats.bytes += take as u64;
                }
                *left -= take as u32;
                i += take;
                if *left == 0 {
                    *state = AgentFrame::Header {
                        have: 0,
                        buf: [0; AGENT_HEADER_LEN],
                        zero: false,
                    };
                }
            }
            AgentFrame::Lost => {
                data[i..].fill(0);
                stats.bytes += (data.len() - i) as u64;
                return;
            }
        }
    }
}
