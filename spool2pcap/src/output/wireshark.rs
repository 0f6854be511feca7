//! How to open what was written in Wireshark.
//!
//! The synthetic connections use ports no Wireshark dissector claims
//! ([`crate::spice::channels`]), so Wireshark's SPICE heuristic (on by
//! default) decodes them: the file opens decoded with no option. The
//! "Decode As" rule remains for a Wireshark whose SPICE heuristic is
//! switched off.

use std::path::Path;

use crate::spice::channels::SERVER_PORT;

/// Wireshark's "Decode As" for the synthetic connections, only needed when
/// Wireshark's SPICE heuristic is switched off.
pub fn decode_as() -> String {
    decode_as_for(SERVER_PORT)
}

/// Wireshark's "Decode As" SPICE for connections to `server_port`.
pub fn decode_as_for(server_port: u16) -> String {
    format!("tcp.port=={server_port},spice")
}

/// The exact shell command that opens `file` in Wireshark, SPICE decoded:
/// `wireshark FILE` (the path quoted for a POSIX shell where needed).
pub fn wireshark_command(file: &Path) -> String {
    wireshark_command_for(file, SERVER_PORT)
}

/// [`wireshark_command`] for connections to `server_port`: on another port
/// than [`SERVER_PORT`] (one a dissector may claim, like VNC's 5900) it
/// asks for SPICE with "Decode As".
pub fn wireshark_command_for(file: &Path, server_port: u16) -> String {
    if server_port == SERVER_PORT {
        format!("wireshark {}", shell_quote(file))
    } else {
        format!(
            "wireshark -d {} {}",
            decode_as_for(server_port),
            shell_quote(file)
        )
    }
}

/// `path` as one POSIX shell word: unchanged if it holds only safe
/// characters, else in single quotes (a quote inside as `'\''`). Bytes
/// that are not UTF-8 are shown as U+FFFD, so such a path must be typed by
/// hand.
pub fn shell_quote(path: &Path) -> String {
    let s = path.to_string_lossy();
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=,+@%".contains(c));
    if safe {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
