//! Where SPICE messages start in one direction of a channel.
//!
//! Records are socket reads and writes, not messages: a message can start
//! in one record and end several records later. After the link phase every
//! SPICE message opens with a 6-byte mini header (type u16, body size u32,
//! little-endian), so a direction's stream can be cut into messages by
//! walking those headers from its start. [`MessageFramer`] does that walk,
//! a record at a time, for the two users of message framing: redaction
//! (which rewrites bodies, [`crate::spice::redact`]) and excerpts (which must start
//! every stream at a message, or Wireshark's SPICE dissector decodes
//! nothing, [`crate::pipeline::excerpt`]).
//!
//! A stream may open with the SPICE link phase (a capture made before the
//! link); its bytes are passed over. Framing is *lost* where bytes of
//! unknown meaning are missing: traffic dropped by the capture writer
//! inside a header, damage in the spool, a start trimmed by the flight
//! recorder. A lost framer stays lost until its owner says where messages
//! resume ([`MessageFramer::resume`]).

use spool::store::format::Direction;

/// Bytes of a SPICE mini header: type (u16), body size (u32).
pub const MINI_HEADER_LEN: usize = 6;

/// One step of [`MessageFramer::next_piece`]: what the first bytes of the
/// data handed to it are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// This many bytes of the link phase.
    Link(usize),
    /// This many bytes of a mini header that goes on in the next record.
    PartialHeader(usize),
    /// The last `len` bytes of a mini header (all 6 when it lies in one
    /// record): a message of type `ty` with a body of `size` bytes starts.
    Header {
        /// Bytes of the data that were header bytes.
        len: usize,
        /// Message type.
        ty: u16,
        /// Body size.
        size: u32,
    },
    /// This many bytes of the current message's body.
    Body(usize),
    /// Framing is lost: nothing of the data can be placed.
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing seen yet: the stream may open with the SPICE link phase.
    Start,
    /// Passing over this many link-phase bytes.
    Link(u64),
    /// Collecting a mini header.
    Header {
        have: usize,
        buf: [u8; MINI_HEADER_LEN],
    },
    /// Inside a message body.
    Body { left: u32 },
    /// Framing lost.
    Lost,
}

const FRESH_HEADER: State = State::Header {
    have: 0,
    buf: [0; MINI_HEADER_LEN],
};

/// Mini-header framing of one direction of a channel, carried from record
/// to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageFramer {
    state: State,
}

impl Default for MessageFramer {
    fn default() -> Self {
        MessageFramer::new()
    }
}

impl MessageFramer {
    /// The framer of a stream read from its start.
    pub fn new() -> MessageFramer {
        MessageFramer {
            state: State::Start,
        }
    }

    /// The framer of a stream whose start is missing (trimmed by the flight
    /// recorder): lost until [`MessageFramer::resume`].
    pub fn lost() -> MessageFramer {
        MessageFramer { state: State::Lost }
    }

    /// Whether the next byte of the stream starts a message (or the stream
    /// itself, link phase included).
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Start | State::Header { have: 0, .. })
    }

    /// Whether nothing of the stream has been seen yet.
    pub fn at_start(&self) -> bool {
        self.state == State::Start
    }

    /// Whether framing is lost.
    pub fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    /// Whether the stream is inside a message body.
    pub fn in_body(&self) -> bool {
        matches!(self.state, State::Body { .. })
    }

    /// Framing is lost (damage: an unknown number of bytes is missing).
    pub fn lose(&mut self) {
        self.state = State::Lost;
    }

    /// The next byte starts a message: the owner found out where framing
    /// resumes after it was lost.
    pub fn resume(&mut self) {
        self.state = FRESH_HEADER;
    }

    /// Classifies the first bytes of `data` (the rest of a record) and moves
    /// past them; the caller moves on by the length the piece says. An
    /// empty `data`, or a lost framer, gives [`Piece::Lost`] for a lost
    /// framer and `Body(0)` otherwise.
    pub fn next_piece(&mut self, direction: Direction, data: &[u8]) -> Piece {
        if self.state == State::Lost {
            return Piece::Lost;
        }
        if data.is_empty() {
            return Piece::Body(0);
        }
        if self.state == State::Start {
            self.state = match link_phase_len(direction, data) {
                Some(0) => FRESH_HEADER,
                Some(n) => State::Link(n),
                // A link message cut short: what follows is unknown.
                None => State::Lost,
            };
        }
        match &mut self.state {
            State::Start | State::Lost => Piece::Lost,
            State::Link(n) => {
                let take = (*n).min(data.len() as u64);
                *n -= take;
                if *n == 0 {
                    self.state = FRESH_HEADER;
                }
                Piece::Link(take as usize)
            }
            State::Header { have, buf } => {
                let take = (MINI_HEADER_LEN - *have).min(data.len());
                buf[*have..*have + take].copy_from_slice(&data[..take]);
                *have += take;
                if *have < MINI_HEADER_LEN {
                    return Piece::PartialHeader(take);
                }
                let ty = u16::from_le_bytes([buf[0], buf[1]]);
                let size = u32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]);
                self.state = if size == 0 {
                    FRESH_HEADER
                } else {
                    State::Body { left: size }
                };
                Piece::Header {
                    len: take,
                    ty,
                    size,
                }
            }
            State::Body { left } => {
                let take = (*left as usize).min(data.len());
                *left -= take as u32;
                if *left == 0 {
                    self.state = FRESH_HEADER;
                }
                Piece::Body(take)
            }
        }
    }

    /// Moves past a whole record whose contents do not matter beyond their
    /// framing.
    pub fn feed(&mut self, direction: Direction, mut data: &[u8]) {
        while !data.is_empty() {
            let n = match self.next_piece(direction, data) {
                Piece::Link(n) | Piece::PartialHeader(n) | Piece::Body(n) => n,
                Piece::Header { len, .. } => len,
                Piece::Lost => return,
            };
            data = &data[n..];
        }
    }

    /// `bytes` of the stream were dropped by the capture writer: framing
    /// survives only if they lie inside the link phase or the current
    /// message's body. Returns whether it survived.
    pub fn skip(&mut self, bytes: u64) -> bool {
        if bytes == 0 {
            return !self.is_lost();
        }
        match &mut self.state {
            State::Link(n) if *n > bytes => *n -= bytes,
            State::Link(n) if *n == bytes => self.state = FRESH_HEADER,
            State::Body { left } if u64::from(*left) >= bytes => {
                *left -= bytes as u32;
                if *left == 0 {
                    self.state = FRESH_HEADER;
                }
            }
            _ => self.state = State::Lost,
        }
        !self.is_lost()
    }
}

/// Largest body size [`plausible_start`] accepts: far above any SPICE
/// message ryll sees (display images are sent in pieces well below it), and
/// small enough that random bytes rarely pass.
const MAX_PLAUSIBLE_SIZE: u32 = 64 << 20;

/// Whether a mini header of message type `ty` and body `size` looks like a
/// real one of any channel: SPICE's common messages are types 1–10 and
/// every channel's own start at 101 and stay below 400.
fn plausible_header(ty: u16, size: u32) -> bool {
    ((1..=10).contains(&ty) || (101..400).contains(&ty)) && size <= MAX_PLAUSIBLE_SIZE
}

/// A mini header found by [`mini_headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MiniHeader {
    /// Offset of the header in the data walked.
    pub at: usize,
    /// Message type.
    pub ty: u16,
    /// Body size.
    pub size: u32,
}

impl MiniHeader {
    /// Offset just past the message's body (saturating): where the next
    /// header is.
    pub fn end(&self) -> usize {
        self.at
            .saturating_add(MINI_HEADER_LEN)
            .saturating_add(self.size as usize)
    }
}

/// The mini headers of `data`, taken to start at a message: each read
/// where the previous message's body ends, until the data ends. An `Err`
/// (the last item) gives the offset of a header cut short by the end of
/// the data. The last message's body may run past the end. The one walk
/// over whole buffers, for checks that a buffer frames; [`MessageFramer`]
/// is the same walk a record at a time.
pub fn mini_headers(data: &[u8]) -> impl Iterator<Item = Result<MiniHeader, usize>> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= data.len() {
            return None;
        }
        let Some(h) = data.get(at..at.saturating_add(MINI_HEADER_LEN)) else {
            let cut = at;
            at = data.len();
            return Some(Err(cut));
        };
        let header = MiniHeader {
            at,
            ty: u16::from_le_bytes([h[0], h[1]]),
            size: u32::from_le_bytes([h[2], h[3], h[4], h[5]]),
        };
        at = header.end();
        Some(Ok(header))
    })
}

/// Whether `data` starts at a message boundary by `plausible`: at least
/// one mini header, each of a type and size it accepts, chained to the end
/// of the data (the last message may go on in later records) with no
/// header cut short.
pub fn chains_to_end(data: &[u8], mut plausible: impl FnMut(u16, u32) -> bool) -> bool {
    let mut any = false;
    for h in mini_headers(data) {
        match h {
            Ok(h) if plausible(h.ty, h.size) => any = true,
            _ => return false,
        }
    }
    any
}

/// Whether a record of a stream whose framing was lost plausibly starts at
/// a message: from its first byte, mini headers of plausible types and
/// sizes chained to its end (the last message may go on in later records).
/// A heuristic, for picking framing up again where nothing depends on it
/// being right but where the output starts (redaction, which must fail
/// closed, has its own stricter test per channel).
pub fn plausible_start(data: &[u8]) -> bool {
    chains_to_end(data, plausible_header)
}

/// Length of the SPICE link phase a direction's stream opens with: 0 if
/// it does not start with one (ryll records after the link), `None` if it
/// starts with a link header cut short. The client sends its link message,
/// the auth mechanism (4 bytes) and the encrypted ticket (128); the server
/// its link reply and the link result (4).
fn link_phase_len(direction: Direction, data: &[u8]) -> Option<u64> {
    let magic = crate::spice::link::SPICE_MAGIC;
    let n = data.len().min(magic.len());
    if data[..n] != magic[..n] {
        return Some(0);
    }
    let h = data.get(..16)?;
    let size = u64::from(u32::from_le_bytes([h[12], h[13], h[14], h[15]]));
    let after = match direction {
        Direction::ClientToServer => 4 + crate::spice::link::TICKET_LEN as u64,
        Direction::ServerToClient => 4,
    };
    Some(16 + size + after)
}

/// A SPICE message with a mini header: type, body length, body. For the
/// tests of this module and of redaction.
#[cfg(test)]
pub(crate) fn test_message(ty: u16, body: &[u8]) -> Vec<u8> {
    let mut v = ty.to_le_bytes().to_vec();
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_message as msg;

    #[test]
    fn boundaries_are_found_at_every_split() {
        let mut stream = msg(1, &[7; 10]);
        let second = stream.len();
        stream.extend(msg(2, &[]));
        let third = stream.len();
        stream.extend(msg(3, &[9; 3]));
        let boundaries = [0, second, third, stream.len()];
        for cut in 0..=stream.len() {
            let mut f = MessageFramer::new();
            f.feed(Direction::ServerToClient, &stream[..cut]);
            assert_eq!(f.at_boundary(), boundaries.contains(&cut), "cut at {cut}");
            f.feed(Direction::ServerToClient, &stream[cut..]);
            assert!(f.at_boundary());
        }
    }

    #[test]
    fn the_link_phase_is_passed_over() {
        let link = crate::spice::link::LinkPhase::new(2, 0);
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let mut stream = link.bytes(dir).to_vec();
            let data = stream.len();
            stream.extend(msg(4, &[1, 2]));
            let mut f = MessageFramer::new();
            f.feed(dir, &stream[..20]);
            assert!(!f.at_boundary());
            f.feed(dir, &stream[20..data]);
            assert!(f.at_boundary(), "{dir:?}");
            assert_eq!(
                f.next_piece(dir, &stream[data..]),
                Piece::Header {
                    len: 6,
                    ty: 4,
                    size: 2
                }
            );
        }
    }

    #[test]
    fn gaps_keep_framing_only_inside_a_body() {
        let mut f = MessageFramer::new();
        f.feed(Direction::ServerToClient, &msg(1, &[0; 10])[..8]);
        assert!(f.skip(8));
        assert!(f.at_boundary());
        f.feed(Direction::ServerToClient, &msg(1, &[0; 10])[..3]);
        assert!(!f.skip(1));
        assert!(f.is_lost());
        assert_eq!(f.next_piece(Direction::ServerToClient, &[1]), Piece::Lost);
        f.resume();
        assert!(f.at_boundary());
        assert!(MessageFramer::lost().is_lost());
    }

    #[test]
    fn plausible_starts() {
        let mut two = msg(1, &[0; 4]);
        two.extend(msg(302, &[0; 100]));
        assert!(plausible_start(&two));
        assert!(plausible_start(&two[..20]), "the last message goes on");
        assert!(!plausible_start(&two[3..]));
        assert!(!plausible_start(&two[..12]), "a header cut short");
        assert!(!plausible_start(&msg(50, &[])));
        assert!(!plausible_start(&[]));
    }

    #[test]
    fn mini_headers_walk_bodies_and_report_a_cut_header() {
        let mut data = msg(1, &[7; 4]);
        data.extend(msg(302, &[0; 2]));
        data.extend_from_slice(&[9, 9, 9]);
        let walked: Vec<_> = mini_headers(&data).collect();
        assert_eq!(
            walked,
            [
                Ok(MiniHeader {
                    at: 0,
                    ty: 1,
                    size: 4
                }),
                Ok(MiniHeader {
                    at: 10,
                    ty: 302,
                    size: 2
                }),
                Err(18),
            ]
        );
        // A body size at the top of u32 ends the walk, not the arithmetic.
        let huge = [0x65, 0, 0xff, 0xff, 0xff, 0xff, 1, 2];
        let walked: Vec<_> = mini_headers(&huge).collect();
        assert_eq!(walked.len(), 1);
        assert_eq!(walked[0].map(|h| h.end()), Ok(6 + u32::MAX as usize));
    }
}
