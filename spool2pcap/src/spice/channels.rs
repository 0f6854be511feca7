//! Which client TCP port each channel gets in the synthetic capture.
//!
//! A spool records bytes per channel, not sockets, so the converter invents a
//! TCP connection per channel: client `10.0.0.1:<port>` to server
//! `10.0.0.2:5930`. Wireshark tells conversations apart by port, so every
//! channel of one conversion must get a port of its own, and the same channel
//! should get the same port every time so that filters (`tcp.port == 10002`)
//! keep working from one capture to the next.
//!
//! A channel of [`SPICE_CHANNELS`] gets `10000 +` its SPICE channel type
//! (main 10001, display 10002, …); any other name gets
//! `10100 + FNV-1a-32(name) mod 5000`.
//!
//! The fixed ports match the ports ryll's own live capture has always used
//! (10000 + the SPICE channel type), so old and new captures line up. Other
//! names are hashed into a range that cannot meet the known ports; if two
//! names of one capture hash to the same port, the one that sorts later moves
//! up by one (wrapping inside the range) until it is free.
//!
//! None of these ports, nor the server's ([`SERVER_PORT`]), is one Wireshark
//! gives to a dissector by default: Wireshark tries a port's dissector
//! before its heuristics, and SPICE has only a heuristic (enabled by
//! default), so a file on free ports opens decoded as SPICE with no "Decode
//! As" at all. The hashed range holds a few ports Wireshark does claim
//! ([`WIRESHARK_CLAIMED_PORTS`]); they are never given out.

use std::collections::{BTreeSet, HashMap};

pub use crate::net::tcp::SERVER_PORT;

/// First port of the range for channels without a SPICE channel type.
pub const HASHED_PORT_BASE: u16 = 10100;

/// Size of the range for channels without a SPICE channel type.
pub const HASHED_PORT_RANGE: u16 = 5000;

/// Ports of the hashed range that Wireshark (4.0, `tshark -G decodes`,
/// table `tcp.port`) dissects as another protocol by default (beep,
/// tls, couchbase, memcache, http, doip, mpeg_dsmcc, uma): a channel on
/// one of them would show as that protocol instead of SPICE.
pub const WIRESHARK_CLAIMED_PORTS: &[u16] =
    &[10288, 11207, 11210, 11211, 11371, 13400, 13819, 14001];

/// SPICE channel types by name (from spice-protocol's `SPICE_CHANNEL_*`),
/// in type order: the one table of the channels the converter knows, which
/// ryll-hook also registers its channels from.
pub const SPICE_CHANNELS: &[(&str, u8)] = &[
    ("main", 1),
    ("display", 2),
    ("inputs", 3),
    ("cursor", 4),
    ("playback", 5),
    ("record", 6),
    ("tunnel", 7),
    ("smartcard", 8),
    ("usbredir", 9),
    ("port", 10),
    ("webdav", 11),
];

/// ryll's name for a SPICE channel type (`SPICE_CHANNEL_*`), or `None` for
/// a type this table does not know.
pub fn spice_channel_name(channel_type: u8) -> Option<&'static str> {
    SPICE_CHANNELS
        .iter()
        .find(|(_, ty)| *ty == channel_type)
        .map(|(name, _)| *name)
}

/// The SPICE channel type (`SPICE_CHANNEL_*`) of a ryll channel name, or
/// `None` for a name this table does not know.
pub fn spice_channel_type(channel: &str) -> Option<u8> {
    SPICE_CHANNELS
        .iter()
        .find(|(name, _)| *name == channel)
        .map(|(_, ty)| *ty)
}

/// The fixed client port of a channel with a SPICE channel type, or `None`.
pub fn known_port(channel: &str) -> Option<u16> {
    spice_channel_type(channel).map(|ty| 10000 + u16::from(ty))
}

/// The preferred port of a channel without a SPICE channel type: a stable
/// hash of the name, so it does not depend on the Rust version or the run,
/// moved up past [`WIRESHARK_CLAIMED_PORTS`].
pub fn hashed_port(channel: &str) -> u16 {
    let start = (fnv1a32(channel.as_bytes()) % u32::from(HASHED_PORT_RANGE)) as u16;
    unclaimed_from(HASHED_PORT_BASE + start)
}

/// The first port of the hashed range from `port` on (wrapping inside the
/// range) that Wireshark does not claim: a few probes, as the claimed
/// ports are few and apart.
fn unclaimed_from(port: u16) -> u16 {
    let mut offset = port - HASHED_PORT_BASE;
    for _ in 0..HASHED_PORT_RANGE {
        let p = HASHED_PORT_BASE + offset;
        if !WIRESHARK_CLAIMED_PORTS.contains(&p) {
            break;
        }
        offset = (offset + 1) % HASHED_PORT_RANGE;
    }
    HASHED_PORT_BASE + offset
}

/// Words of [`TakenPorts`]: one bit per port of the hashed range.
const RANGE_WORDS: usize = (HASHED_PORT_RANGE as usize).div_ceil(64);

/// Which ports of the hashed range are taken — given out, or claimed by
/// Wireshark — one bit each. The next free port from any other is found
/// by reading at most [`RANGE_WORDS`]` + 1` words (80), however full the
/// range: probing port by port cost up to the whole range per channel once
/// it filled up, a hostile capture's thousands of channels squared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TakenPorts {
    /// Bit `i % 64` of word `i / 64`: port `HASHED_PORT_BASE + i` is taken.
    /// The bits past the range are set, so they are never free.
    words: [u64; RANGE_WORDS],
    /// Ports of the range still free.
    free: usize,
}

impl Default for TakenPorts {
    fn default() -> Self {
        let mut t = TakenPorts {
            words: [0; RANGE_WORDS],
            free: usize::from(HASHED_PORT_RANGE),
        };
        let last = RANGE_WORDS - 1;
        t.words[last] = !0u64 << (usize::from(HASHED_PORT_RANGE) - last * 64);
        for &p in WIRESHARK_CLAIMED_PORTS {
            t.take(p);
        }
        t
    }
}

impl TakenPorts {
    /// Marks `port` taken; a port outside the hashed range is ignored.
    fn take(&mut self, port: u16) {
        let Some(i) = port
            .checked_sub(HASHED_PORT_BASE)
            .filter(|&i| i < HASHED_PORT_RANGE)
        else {
            return;
        };
        let (word, bit) = (usize::from(i) / 64, 1u64 << (i % 64));
        if self.words[word] & bit == 0 {
            self.words[word] |= bit;
            self.free -= 1;
        }
    }

    /// The first free port from `port` (in the hashed range) on, wrapping
    /// inside the range; `None` when every port is taken.
    fn next_free(&self, port: u16) -> Option<u16> {
        if self.free == 0 {
            return None;
        }
        let start = usize::from(port - HASHED_PORT_BASE);
        let (first, bit) = (start / 64, start % 64);
        let at = |word: usize, free: u64| {
            let i = word * 64 + free.trailing_zeros() as usize;
            HASHED_PORT_BASE + i as u16
        };
        let here = !self.words[first] & (!0u64 << bit);
        if here != 0 {
            return Some(at(first, here));
        }
        // Round the range once, back to the bits below `port` last.
        (1..=RANGE_WORDS)
            .map(|k| (first + k) % RANGE_WORDS)
            .find(|&w| self.words[w] != !0)
            .map(|w| at(w, !self.words[w]))
    }
}

/// The preferred port of any channel, before collisions are resolved.
pub fn preferred_port(channel: &str) -> u16 {
    known_port(channel).unwrap_or_else(|| hashed_port(channel))
}

/// 32-bit FNV-1a: tiny, fixed for all time, and good enough to spread names.
fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Client ports for a set of channels, distinct from each other.
///
/// Looked up by name and by port in constant time: a hostile capture can
/// list tens of thousands of channels, and a scan per lookup made reading
/// one quadratic (and a scan per probe, cubic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMap {
    entries: Vec<(String, u16)>,
    by_name: HashMap<String, u16>,
    taken: TakenPorts,
}

/// The port for a channel that has no fixed one: its hashed port, or the
/// next free one after it; once every hashed port is taken (more channels
/// than the range has ports), the hashed port, shared.
fn free_hashed_port(name: &str, taken: &TakenPorts) -> u16 {
    let start = hashed_port(name);
    taken.next_free(start).unwrap_or(start)
}

impl PortMap {
    /// Assigns a port to every name (duplicates are ignored). Known channels
    /// get their fixed ports; the others are placed in name order, so the
    /// result depends only on the set of names, not on their order.
    pub fn new<'a, I: IntoIterator<Item = &'a str>>(channels: I) -> PortMap {
        let names: BTreeSet<&str> = channels.into_iter().collect();
        let mut map = PortMap::default();
        for name in names.iter().filter(|n| known_port(n).is_some()) {
            map.insert(name, preferred_port(name));
        }
        for name in names.iter().filter(|n| known_port(n).is_none()) {
            let port = free_hashed_port(name, &map.taken);
            map.insert(name, port);
        }
        map.entries.sort();
        map
    }

    fn insert(&mut self, name: &str, port: u16) {
        self.taken.take(port);
        self.by_name.insert(name.to_string(), port);
        self.entries.push((name.to_string(), port));
    }

    /// Adds `channel` if it is not in the map yet and returns its port,
    /// never moving a port already given out. For a capture followed live,
    /// where channels appear one by one: a hashed name that collides moves up
    /// by one, as in [`PortMap::new`], but in order of appearance.
    pub fn assign(&mut self, channel: &str) -> u16 {
        if let Some(&p) = self.by_name.get(channel) {
            return p;
        }
        let port = known_port(channel).unwrap_or_else(|| free_hashed_port(channel, &self.taken));
        self.insert(channel, port);
        port
    }

    /// The port of `channel`, or its preferred port if it was not in the set.
    pub fn port(&self, channel: &str) -> u16 {
        self.by_name
            .get(channel)
            .copied()
            .unwrap_or_else(|| preferred_port(channel))
    }

    /// `(channel, port)` pairs, sorted by channel name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u16)> {
        self.entries.iter().map(|(n, p)| (n.as_str(), *p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_channels_use_spice_channel_types() {
        let expect = [
            ("main", 10001),
            ("display", 10002),
            ("inputs", 10003),
            ("cursor", 10004),
            ("playback", 10005),
            ("record", 10006),
            ("tunnel", 10007),
            ("smartcard", 10008),
            ("usbredir", 10009),
            ("port", 10010),
            ("webdav", 10011),
        ];
        for (name, port) in expect {
            assert_eq!(known_port(name), Some(port), "{name}");
            assert_eq!(PortMap::new([name]).port(name), port);
        }
    }

    #[test]
    fn unknown_channels_hash_into_their_range_stably() {
        let p = hashed_port("vendor_x");
        assert!((HASHED_PORT_BASE..HASHED_PORT_BASE + HASHED_PORT_RANGE).contains(&p));
        // FNV-1a-32 of "a" is 0xe40c292c; pinned so the table never drifts.
        assert_eq!(
            hashed_port("a"),
            HASHED_PORT_BASE + (0xe40c_292cu32 % 5000) as u16
        );
        // A name whose hash lands on a port Wireshark claims moves past it.
        let claimed = (0..100_000u32)
            .map(|i| format!("c{i}"))
            .find(|n| {
                let raw = HASHED_PORT_BASE
                    + (fnv1a32(n.as_bytes()) % u32::from(HASHED_PORT_RANGE)) as u16;
                raw == 11210
            })
            .expect("a name hashing onto 11210");
        assert_eq!(hashed_port(&claimed), 11212, "11210 and 11211 are claimed");
        let m = PortMap::new([claimed.as_str()]);
        assert_eq!(m.port(&claimed), 11212);
        assert_eq!(PortMap::default().assign(&claimed), 11212);
        assert_eq!(known_port("vendor_x"), None);
    }

    #[test]
    fn collisions_are_bumped_and_order_independent() {
        // Find two names that hash to the same port.
        let mut seen = std::collections::HashMap::new();
        let mut pair = None;
        for i in 0..100_000u32 {
            let n = format!("c{i}");
            if let Some(prev) = seen.insert(hashed_port(&n), n.clone()) {
                pair = Some((prev, n));
                break;
            }
        }
        let (a, b) = pair.expect("a collision among 100000 names in 5000 ports");
        let m1 = PortMap::new([a.as_str(), b.as_str(), "main"]);
        let m2 = PortMap::new(["main", b.as_str(), a.as_str()]);
        assert_eq!(m1, m2);
        assert_ne!(m1.port(&a), m1.port(&b));
        let (first, second) = if a < b { (&a, &b) } else { (&b, &a) };
        assert_eq!(m1.port(first), hashed_port(first));
        let expect =
            HASHED_PORT_BASE + (hashed_port(second) - HASHED_PORT_BASE + 1) % HASHED_PORT_RANGE;
        assert_eq!(m1.port(second), expect);
    }

    #[test]
    fn many_channels_all_distinct() {
        let names: Vec<String> = (0..3000).map(|i| format!("ch{i}")).collect();
        let m = PortMap::new(names.iter().map(String::as_str));
        let ports: BTreeSet<u16> = m.iter().map(|(_, p)| p).collect();
        assert_eq!(ports.len(), names.len());
        assert!(WIRESHARK_CLAIMED_PORTS.iter().all(|p| !ports.contains(p)));
    }

    /// The bitmap finds what probing port by port finds, whatever is taken.
    #[test]
    fn the_next_free_port_is_the_one_probing_finds() {
        let mut taken = TakenPorts::default();
        let mut reference = std::collections::HashSet::new();
        let probe = |from: u16, taken: &std::collections::HashSet<u16>| {
            (0..HASHED_PORT_RANGE)
                .map(|k| HASHED_PORT_BASE + (from - HASHED_PORT_BASE + k) % HASHED_PORT_RANGE)
                .find(|p| !taken.contains(p) && !WIRESHARK_CLAIMED_PORTS.contains(p))
        };
        let mut x: u32 = 12345;
        for round in 0..usize::from(HASHED_PORT_RANGE) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let from = HASHED_PORT_BASE + ((x >> 8) % u32::from(HASHED_PORT_RANGE)) as u16;
            let found = taken.next_free(from);
            assert_eq!(found, probe(from, &reference), "round {round} from {from}");
            // Fill the range, clustering around a few ports as colliding
            // hashes do: take what was found.
            if let Some(p) = found {
                taken.take(p);
                reference.insert(p);
            }
        }
        assert_eq!(taken.free, 0);
        assert_eq!(taken.next_free(HASHED_PORT_BASE), None);
    }

    /// Up to the last free port of the range, every channel gets one of its
    /// own; past it, channels share their hashed port.
    #[test]
    fn a_nearly_full_range_still_gives_distinct_ports_then_shares() {
        let free = usize::from(HASHED_PORT_RANGE) - WIRESHARK_CLAIMED_PORTS.len();
        let names: Vec<String> = (0..free).map(|i| format!("ch{i}")).collect();
        let mut m = PortMap::new(names.iter().map(String::as_str).chain(["main"]));
        let ports: BTreeSet<u16> = m.iter().map(|(_, p)| p).collect();
        assert_eq!(ports.len(), free + 1);
        assert!(WIRESHARK_CLAIMED_PORTS.iter().all(|p| !ports.contains(p)));
        assert_eq!(m.taken.free, 0);
        // The range is full: a new channel shares its hashed port, and
        // known channels keep their fixed ones.
        assert_eq!(m.assign("one-more"), hashed_port("one-more"));
        assert_eq!(m.assign("display"), 10002);
        // One port short of full, the last channel finds the one left.
        let mut m = PortMap::new(names[..free - 1].iter().map(String::as_str));
        let left: Vec<u16> = (HASHED_PORT_BASE..HASHED_PORT_BASE + HASHED_PORT_RANGE)
            .filter(|p| !WIRESHARK_CLAIMED_PORTS.contains(p))
            .filter(|p| !m.iter().any(|(_, q)| q == *p))
            .collect();
        assert_eq!(left.len(), 1);
        assert_eq!(m.assign(&names[free - 1]), left[0]);
    }
}
