//! The network layer Wireshark sees: Ethernet II, IPv4 and TCP frames for
//! one synthetic connection per channel ([`tcp`]). Nothing here knows SPICE.

pub mod tcp;
