//! `ryll-capture`: a headless SPICE client (the renderer's own
//! `run_headless`, the session ryll runs with `--headless`) that captures
//! every channel into a spool: `ryll --capture DIR` writing spools.
//!
//! ```text
//! ryll-capture --capture DIR [--duration SECS] spice://HOST:PORT
//! ryll-capture --capture DIR [--duration SECS] --host HOST --port PORT
//! ```
//!
//! Ends after `--duration`, on Ctrl-C / SIGTERM / SIGHUP, or when the
//! server goes away. A stop ends the session at once however busy it is
//! (see [`ryll_hook::shutdown`]): the channel tasks and their sockets are
//! gone within a second, then the spool is closed, so the capture holds
//! everything the sink accepted. What a slow disk has not taken by then is
//! left to a detached mover and the process exits.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ryll_hook::{shutdown, CaptureSink, SpoolSink};
use shakenfist_spice_protocol::link::H264Offer;
use shakenfist_spice_protocol::ConnectionConfig;
use shakenfist_spice_renderer::notification::NotificationEntry;
use shakenfist_spice_renderer::{
    ByteCounter, ChannelSnapshots, LogConfig, NotificationSink, TrafficSink,
};

/// Headless SPICE client capturing every channel into a spool.
#[derive(Debug, Parser)]
#[command(name = "ryll-capture", version)]
struct Args {
    /// Capture directory (created; must not hold a capture already).
    #[arg(long)]
    capture: PathBuf,
    /// Stop after this many seconds (default: until Ctrl-C or the server
    /// closes the session).
    #[arg(long)]
    duration: Option<f64>,
    /// SPICE server host (ryll's --host).
    #[arg(long)]
    host: Option<String>,
    /// SPICE server port (ryll's --port).
    #[arg(long)]
    port: Option<u16>,
    /// SPICE password, if the server wants one.
    #[arg(long)]
    password: Option<String>,
    /// Write sealed segments as they were staged, uncompressed (by
    /// default they are compressed with zstd when that saves space).
    #[arg(long)]
    no_compress: bool,
    /// `spice://HOST:PORT` (instead of --host/--port).
    url: Option<String>,
}

/// Parses `spice://HOST:PORT` (also `HOST:PORT`, `[v6]:PORT`). Any other
/// scheme, and a host with a colon outside brackets, is refused.
fn parse_url(url: &str) -> Result<(String, u16), String> {
    let bad = || format!("{url}: want spice://HOST:PORT");
    let rest = match url.split_once("://") {
        Some(("spice", rest)) => rest,
        Some(_) => return Err(format!("{url}: not a spice:// URL")),
        None => url,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains([':', '[', ']']) => return Err(bad()),
        None => host,
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#']) {
        return Err(bad());
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{url}: bad port {port:?}"))?;
    if port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

fn target(args: &Args) -> Result<(String, u16), String> {
    match (&args.url, &args.host, args.port) {
        (Some(url), None, None) => parse_url(url),
        (None, Some(h), Some(p)) => Ok((h.clone(), p)),
        (None, Some(_), None) | (None, None, Some(_)) => {
            Err("--host and --port go together".into())
        }
        (None, None, None) => Err("give spice://HOST:PORT or --host and --port".into()),
        _ => Err("give either spice://HOST:PORT or --host/--port, not both".into()),
    }
}

/// ryll's traffic ring and notifications are for its UI and bug reports;
/// the capture is the spool, so these record nothing.
struct NoTraffic(Instant);

impl TrafficSink for NoTraffic {
    fn record_sent(&self, _: &'static str, _: u16, _: &'static str, _: &[u8]) {}
    fn record_received(&self, _: &'static str, _: u16, _: &'static str, _: &[u8]) {}
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

struct PrintNotifications;

impl NotificationSink for PrintNotifications {
    fn push(&self, entry: NotificationEntry) {
        eprintln!(
            "ryll-capture: {:?} from {:?}: {}",
            entry.severity, entry.source, entry.message
        );
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ryll-capture: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    // First of all, so that a Ctrl-C in the first milliseconds closes the
    // capture rather than killing the process with its segments staged.
    let stop = stop_on_ctrl_c()?;
    let (host, port) = target(args)?;
    let duration = duration(args)?;
    let created_dir = !args.capture.exists();
    let sink = Arc::new(
        SpoolSink::with_config(
            spool::SpoolConfig::new(&args.capture).compress(!args.no_compress),
            ryll_hook::metadata::ryll_metadata(&host, port, None),
        )
        .map_err(|e| e.to_string())?,
    );
    let cancel = Arc::new(AtomicBool::new(false));
    let config = ConnectionConfig {
        host: host.clone(),
        port,
        password: args.password.clone(),
        ..Default::default()
    };
    let started = Instant::now();
    // A deadline too far away to represent is no deadline.
    let deadline = duration.and_then(|d| started.checked_add(d));
    let result = run_session(config, &sink, &stop, &cancel, deadline)?;
    let closed = shutdown::close_for_exit(&sink);
    let secs = started.elapsed().as_secs_f64();
    let nothing = print_counters(&sink);
    let stopped = stop.load(Ordering::SeqCst);
    let failed = match result {
        // Stopped (Ctrl-C, SIGTERM, --duration): not an error, however the
        // session took it.
        None => None,
        Some(Err(_)) if stopped || cancel.load(Ordering::SeqCst) => None,
        Some(Err(e)) => Some(format!("session: {e}")),
        Some(Ok(())) => None,
    };
    if let (Some(e), true, true, Ok(_)) = (&failed, nothing, created_dir, &closed) {
        // A session that never connected leaves no empty capture behind.
        if let Err(rm) = std::fs::remove_dir_all(&args.capture) {
            eprintln!("ryll-capture: removing {}: {rm}", args.capture.display());
        }
        return Err(e.clone());
    }
    println!("captured {secs:.1} s into {}", args.capture.display());
    closed.map_err(|e| format!("closing the capture: {e}"))?;
    failed.map_or(Ok(()), Err)
}

/// A flag Ctrl-C (and SIGTERM) sets.
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| format!("installing the Ctrl-C handler: {e}"))?;
    Ok(stop)
}

/// `--duration`, checked: a positive number of seconds, or none.
fn duration(args: &Args) -> Result<Option<Duration>, String> {
    let Some(d) = args.duration else {
        return Ok(None);
    };
    Duration::try_from_secs_f64(d)
        .ok()
        .filter(|d| !d.is_zero())
        .map(Some)
        .ok_or_else(|| format!("--duration {d}: want a positive number of seconds"))
}

/// Runs the headless session into `sink` until it ends, `stop` is set or
/// `deadline` passes: `None` if it was stopped before it ended, else how
/// it ended (its error with its causes). Every
/// channel task is gone when this returns, so no packet call is in flight
/// and closing the sink keeps everything it accepted.
fn run_session(
    config: ConnectionConfig,
    sink: &Arc<SpoolSink>,
    stop: &Arc<AtomicBool>,
    cancel: &Arc<AtomicBool>,
    deadline: Option<Instant>,
) -> Result<Option<Result<(), String>>, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("tokio: {e}"))?;
    let result = runtime.block_on(async {
        let timer = {
            let stop = Arc::clone(stop);
            tokio::spawn(async move {
                if let Some(d) = deadline {
                    tokio::time::sleep_until(d.into()).await;
                    stop.store(true, Ordering::SeqCst);
                }
            })
        };
        let capture: Arc<dyn CaptureSink> = sink.clone();
        let session = shakenfist_spice_renderer::run_headless(
            config,
            false, // cadence keystrokes
            None,  // paste text
            0,
            false, // paste as keystrokes
            Vec::new(),
            None,
            Some(capture),
            1, // monitors
            Arc::new(ByteCounter::new()),
            Arc::new(NoTraffic(Instant::now())),
            ChannelSnapshots::new(),
            Arc::new(PrintNotifications),
            LogConfig::default(),
            Arc::clone(cancel),
            H264Offer::default(),
            256 << 20, // ryll's default image cache cap
            256 << 20, // ryll's default GLZ dictionary cap
            2,         // ryll's default compression (auto GLZ)
            None,
        );
        let res = shutdown::run_until_stopped(session, stop, cancel).await;
        timer.abort();
        res.map(|r| r.map_err(|e| format!("{e:#}")))
    });
    // Drops every channel task that is still running, and their sockets
    // with them.
    runtime.shutdown_timeout(shutdown::RUNTIME_SHUTDOWN);
    Ok(result)
}

/// Prints each channel's counts; returns whether nothing was captured.
fn print_counters(sink: &SpoolSink) -> bool {
    let counters = sink.all_counters();
    for (name, c) in &counters {
        if c.records + c.dropped_records > 0 {
            println!(
                "{name}: {} records, {} bytes, {} dropped records ({} bytes)",
                c.records, c.bytes, c.dropped_records, c.dropped_bytes
            );
        }
    }
    counters.iter().all(|(_, c)| c.records == 0)
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls() {
        assert_eq!(parse_url("spice://h:5900").unwrap(), ("h".into(), 5900));
        assert_eq!(
            parse_url("spice://[::1]:5901/").unwrap(),
            ("::1".into(), 5901)
        );
        assert_eq!(parse_url("127.0.0.1:1").unwrap(), ("127.0.0.1".into(), 1));
        assert!(parse_url("spice://h").is_err());
        assert!(parse_url("spice://h:0").is_err());
        assert!(parse_url("spice://:5900").is_err());
        assert!(parse_url("spice://h:99999").is_err());
        assert!(parse_url("http://h:5900").is_err());
        assert!(parse_url("a:b:c:5900").is_err());
        assert!(parse_url("spice://[::1:5900").is_err());
        assert!(parse_url("spice://user@h:5900").is_err());
    }
}
