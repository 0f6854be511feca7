//! `ryll-replay`: replays a recorded SPICE session over loopback sockets
//! through a capture sink, as ryll's channel loops would see it, and prints
//! per channel what was moved and how long the read loop spent in the sink.
//!
//! ```text
//! ryll-replay --server-port 5931 --capture out/ SESSION.pcap
//!             [--sink spool|ryll-threads|none] [--pace max|recorded] [--repeat N]
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use ryll_hook::{CaptureSink, NoCaptureSink, SpoolSink};
use ryll_tools::baseline::{DesignSink, RyllThreads};
use ryll_tools::recorded;
use ryll_tools::replay::{replay, Pace, ReplayOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SinkKind {
    /// The spool ([`SpoolSink`]).
    Spool,
    /// ryll 0.3.0's bounded queue and pcap writer thread.
    RyllThreads,
    /// Capture nothing (the baseline).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PaceArg {
    Max,
    Recorded,
}

/// Replay a recorded SPICE session (pcap) through a capture sink over real
/// loopback sockets.
#[derive(Debug, Parser)]
#[command(name = "ryll-replay", version)]
struct Args {
    /// Server port of the recorded session (to find its connections in the
    /// pcap); the replay server listens on it on 127.0.0.1 too.
    #[arg(long, default_value_t = 5931)]
    server_port: u16,
    /// Port the replay server listens on, if not --server-port (0: any).
    #[arg(long)]
    listen_port: Option<u16>,
    /// Capture directory (required unless --sink none).
    #[arg(long)]
    capture: Option<PathBuf>,
    /// Which capture design the read loops call.
    #[arg(long, value_enum, default_value_t = SinkKind::Spool)]
    sink: SinkKind,
    /// Write as fast as possible, or at the recorded times.
    #[arg(long, value_enum, default_value_t = PaceArg::Max)]
    pace: PaceArg,
    /// Replay the whole session this many times.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// The recorded session.
    session: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ryll-replay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whatever is behind the trait object, plus how to finish it.
enum Chosen {
    Spool(Arc<SpoolSink>),
    Threads(Arc<DesignSink<RyllThreads>>),
    None,
}

fn run(args: &Args) -> Result<(), String> {
    let session = recorded::load(&args.session, args.server_port).map_err(|e| e.to_string())?;
    let port = args.listen_port.unwrap_or(args.server_port);
    let capture = || {
        args.capture
            .clone()
            .ok_or_else(|| format!("--sink {:?} needs --capture DIR", args.sink))
    };
    let chosen = match args.sink {
        SinkKind::Spool => Chosen::Spool(Arc::new(
            SpoolSink::create(capture()?, "127.0.0.1", port, None).map_err(|e| e.to_string())?,
        )),
        SinkKind::RyllThreads => Chosen::Threads(Arc::new(DesignSink(
            RyllThreads::create(capture()?).map_err(|e| e.to_string())?,
        ))),
        SinkKind::None => Chosen::None,
    };
    let sink: Arc<dyn CaptureSink> = match &chosen {
        Chosen::Spool(s) => s.clone(),
        Chosen::Threads(t) => t.clone(),
        Chosen::None => Arc::new(NoCaptureSink),
    };
    let opts = ReplayOptions {
        server_port: port,
        pace: match args.pace {
            PaceArg::Max => Pace::Max,
            PaceArg::Recorded => Pace::Recorded,
        },
        repeat: args.repeat,
    };
    let report = replay(&session, sink, &opts).map_err(|e| format!("replay: {e}"))?;
    print!("{}", report.table());
    let t = Instant::now();
    match &chosen {
        Chosen::Spool(s) => {
            s.close().map_err(|e| format!("closing the spool: {e}"))?;
            let dropped: u64 = s
                .all_counters()
                .iter()
                .map(|(_, c)| c.dropped_records)
                .sum();
            println!(
                "spool closed in {:.3} s; {dropped} records dropped in all",
                t.elapsed().as_secs_f64()
            );
        }
        Chosen::Threads(d) => {
            d.0.close();
            println!(
                "ryll-threads closed in {:.3} s; {} write errors",
                t.elapsed().as_secs_f64(),
                d.0.write_errors()
            );
        }
        Chosen::None => {}
    }
    Ok(())
}
