//! Writes a tiny capture and prints its one segment as a hex dump: the
//! example in FORMAT.md is this program's output.
//!
//! `cargo run -p spool --example tiny_segment -- DIR`

use spool::{Direction, Spool, SpoolConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: tiny_segment DIR")?;
    let spool = Spool::create(SpoolConfig::new(&dir).segment_bytes(64 << 10))?;
    // A SPICE mini-header message each way: type 1 (SET_ACK / ACK_SYNC),
    // then a 4-byte body.
    spool.append_at(
        "inputs",
        Direction::ServerToClient,
        1_000,
        &[1, 0, 4, 0, 0, 0, 10, 0, 0, 0],
    );
    spool.append_at(
        "inputs",
        Direction::ClientToServer,
        2_500,
        &[1, 0, 4, 0, 0, 0, 10, 0, 0, 0],
    );
    spool.close()?;
    let seg = std::path::Path::new(&dir).join("spool/inputs/00000000.seg");
    let bytes = std::fs::read(&seg)?;
    for (i, line) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = line
            .iter()
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
            .collect();
        println!("{:08x}  {:<47}  {}", i * 16, hex.join(" "), text);
    }
    Ok(())
}
