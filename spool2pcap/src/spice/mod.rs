//! What the converter knows of SPICE: the channel table (names, types,
//! ports, [`channels`]), the link phase it synthesizes ([`link`]), the
//! mini-header framing of recorded bytes ([`messages`]) and the redaction
//! built on it ([`redact`]).

pub mod channels;
pub mod link;
pub mod messages;
pub mod redact;
