//! Regenerates `fixtures/` from the recorded session in `fixtures/recorded/`:
//! `cargo run -p e2e --bin make-fixtures -- fixtures [SESSION.pcap PORT]`.

use std::path::PathBuf;
use std::process::ExitCode;

use e2e::{fixtures, recorded};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: make-fixtures OUTDIR [SESSION.pcap SERVER_PORT]");
        return ExitCode::from(2);
    };
    let session_path = args
        .next()
        .map_or_else(recorded::recorded_session_path, PathBuf::from);
    let port = match args.next().map(|p| p.parse::<u16>()) {
        None => recorded::RECORDED_SESSION_PORT,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!("make-fixtures: bad port: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&out, &session_path, port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("make-fixtures: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(out: &std::path::Path, session_path: &std::path::Path, port: u16) -> Result<(), String> {
    let session = recorded::load(session_path, port).map_err(|e| e.to_string())?;
    let capture = out.join(fixtures::CAPTURE);
    if capture.exists() {
        std::fs::remove_dir_all(&capture).map_err(|e| format!("{}: {e}", capture.display()))?;
    }
    fixtures::write_capture(&session, &capture)?;
    fixtures::write_damaged(&capture, &out.join("damaged"))?;
    for c in &session.connections {
        println!(
            "{:<8} c2s {:>7} bytes  s2c {:>7} bytes  {} chunks",
            c.name,
            c.stream(spool::Direction::ClientToServer).len(),
            c.stream(spool::Direction::ServerToClient).len(),
            c.chunks.len()
        );
    }
    println!(
        "wrote {} and {}",
        capture.display(),
        out.join("damaged").display()
    );
    Ok(())
}
