//! External tools the end-to-end tests drive (tshark). What a test needs
//! from the machine, and what happens when it is missing (ignored with the
//! reason; a failure under `CI=true`), is the `needs` crate's.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub use spool2pcap::spice::channels::SERVER_PORT;

/// Runs tshark with `args`; returns stdout, or the failure with stderr.
pub fn tshark(args: &[&str]) -> Result<String, String> {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .map_err(|e| format!("tshark: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // tshark warns when run as root; that is not a problem with the file.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Running as user \"root\""))
        .collect();
    if !out.status.success() || !complaints.is_empty() {
        return Err(format!(
            "tshark {}: exit {:?}: {}",
            args.join(" "),
            out.status.code(),
            complaints.join(" / ")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One TCP conversation as tshark reassembles it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Followed {
    /// Bytes sent by the client (the side that is not the server port).
    pub client: Vec<u8>,
    /// Bytes sent by the server (the server port).
    pub server: Vec<u8>,
}

/// Reassembles every TCP stream in `file` with `tshark -z follow,tcp,raw`,
/// keyed by the client's port.
pub fn follow_all(file: &Path, server_port: u16) -> Result<BTreeMap<u16, Followed>, String> {
    let f = file.to_string_lossy();
    let streams = tshark(&["-r", &f, "-T", "fields", "-e", "tcp.stream"])?;
    let count = streams
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .max()
        .map_or(0, |m| m + 1);
    let mut args: Vec<String> = vec!["-r".into(), f.to_string(), "-q".into()];
    for s in 0..count {
        args.push("-z".into());
        args.push(format!("follow,tcp,raw,{s}"));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tshark(&refs)?;
    parse_follow(&out, server_port)
}

fn parse_follow(out: &str, server_port: u16) -> Result<BTreeMap<u16, Followed>, String> {
    let mut result = BTreeMap::new();
    let mut nodes: [Option<u16>; 2] = [None, None];
    let mut current = Followed::default();
    let mut in_stream = false;
    for line in out.lines() {
        if line.starts_with("=====") {
            if in_stream {
                let client_port = nodes
                    .iter()
                    .flatten()
                    .copied()
                    .find(|&p| p != server_port)
                    .ok_or("follow output without a client node")?;
                result.insert(client_port, std::mem::take(&mut current));
                nodes = [None, None];
            }
            in_stream = false;
            continue;
        }
        if let Some(rest) = line.strip_prefix("Node ") {
            let (idx, addr) = rest.split_once(": ").ok_or("bad Node line")?;
            let port = addr
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or("bad Node address")?;
            let i: usize = idx.parse().map_err(|_| "bad Node index")?;
            if i < 2 {
                nodes[i] = Some(port);
            }
            in_stream = true;
            continue;
        }
        if !in_stream || line.starts_with("Follow:") || line.starts_with("Filter:") {
            continue;
        }
        // Raw mode: node 0's data at column 0, node 1's indented by a tab.
        let (node, hex) = match line.strip_prefix('\t') {
            Some(h) => (1, h),
            None => (0, line),
        };
        let bytes = decode_hex(hex.trim()).ok_or_else(|| format!("bad hex line {line:?}"))?;
        let from_server = nodes[node] == Some(server_port);
        if from_server {
            current.server.extend(bytes);
        } else {
            current.client.extend(bytes);
        }
    }
    Ok(result)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The `spool2pcap` binary of this build: next to the test executable's
/// directory in the target directory (`cargo test --workspace` builds it),
/// or built on demand when this crate's tests run alone.
pub fn spool2pcap_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("spool2pcap");
    if !bin.exists() {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "spool2pcap"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "building spool2pcap failed");
    }
    bin
}

/// The SPICE messages of each TCP connection in `file` as tshark decodes
/// them with the server on `server_port`: keyed by the client's port,
/// message types in the order tshark completes them, both directions
/// interleaved. A frame can complete several messages (tshark lists their
/// types comma-separated); a message spread over several frames is listed
/// once, in the frame that completes it.
///
/// spool2pcap's own output ([`SERVER_PORT`]) is read with no option, as a
/// user double-clicking it would: it must decode by Wireshark's SPICE
/// heuristic alone. A recording of a real server on another port gets
/// "Decode As" SPICE on that port (5900 is Wireshark's VNC port).
pub fn spice_messages(
    file: &Path,
    server_port: u16,
) -> BTreeMap<u16, Vec<(spool::Direction, u16)>> {
    let file = file.to_string_lossy();
    let mut args = vec!["-r", &file];
    let decode = format!("tcp.port=={server_port},spice");
    if server_port != SERVER_PORT {
        args.extend(["-d", &decode]);
    }
    args.extend([
        "-T",
        "fields",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
        "-e",
        "spice.message_type",
    ]);
    let out = tshark(&args).unwrap_or_else(|e| panic!("{e}"));
    let mut result: BTreeMap<u16, Vec<(spool::Direction, u16)>> = BTreeMap::new();
    for line in out.lines() {
        let mut f = line.split('\t');
        let (Some(src), Some(dst), Some(types)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (Ok(src), Ok(dst)) = (src.parse::<u16>(), dst.parse::<u16>()) else {
            continue;
        };
        let (client, dir) = if dst == server_port {
            (src, spool::Direction::ClientToServer)
        } else {
            (dst, spool::Direction::ServerToClient)
        };
        let entry = result.entry(client).or_default();
        for t in types.split(',').filter(|t| !t.is_empty()) {
            let t = t
                .parse::<u16>()
                .unwrap_or_else(|_| panic!("bad message type {t:?} in {line:?}"));
            entry.push((dir, t));
        }
    }
    result
}

/// [`spice_messages`] split by direction: message types per (client port,
/// direction).
pub fn spice_messages_by_direction(
    file: &Path,
    server_port: u16,
) -> BTreeMap<(u16, spool::Direction), Vec<u16>> {
    let mut result: BTreeMap<(u16, spool::Direction), Vec<u16>> = BTreeMap::new();
    for (port, messages) in spice_messages(file, server_port) {
        for (dir, t) in messages {
            result.entry((port, dir)).or_default().push(t);
        }
    }
    result
}
