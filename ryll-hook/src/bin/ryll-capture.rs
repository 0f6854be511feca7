//! `ryll-capture`: a headless SPICE client (the renderer's own
//! `run_headless`, the session ryll runs with `--headless`) that captures
//! every channel into a spool: `ryll --capture DIR` writing spools.
//!
//! ```text
//! ryll-capture --capture DIR [--duration SECS] spice://HOST:PORT
//! ryll-capture --capture DIR [--duration SECS] --host HOST --port PORT
//! ```
//!
//! Ends after `--duration`, on Ctrl-C / SIGTERM, or when the server goes
//! away; in every case the renderer is cancelled first (so no channel loop
//! is still calling the sink) and then the spool is closed, so the capture
//! directory holds everything the sink accepted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ryll_hook::{CaptureSink, SpoolSink};
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
    /// `spice://HOST:PORT` (instead of --host/--port).
    url: Option<String>,
}

/// Parses `spice://HOST:PORT` (also `HOST:PORT`, `[v6]:PORT`).
fn parse_url(url: &str) -> Result<(String, u16), String> {
    let rest = url.strip_prefix("spice://").unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{url}: want spice://HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{url}: bad port {port:?}"))?;
    if host.is_empty() || port == 0 {
        return Err(format!("{url}: want spice://HOST:PORT"));
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
    let (host, port) = target(args)?;
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            return Err(format!("--duration {d}: want a positive number of seconds"));
        }
    }
    let sink =
        Arc::new(SpoolSink::create(&args.capture, &host, port, None).map_err(|e| e.to_string())?);

    // Ctrl-C and SIGTERM raise `stop`; a watcher task turns that (or the
    // end of --duration) into the renderer's cancel flag, as ryll's own
    // bridge does.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .map_err(|e| format!("installing the Ctrl-C handler: {e}"))?;
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let config = ConnectionConfig {
        host: host.clone(),
        port,
        password: args.password.clone(),
        ..Default::default()
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("tokio: {e}"))?;
    let started = Instant::now();
    let result = runtime.block_on(async {
        let deadline = args.duration.map(|d| started + Duration::from_secs_f64(d));
        let (stop_w, cancel_w) = (Arc::clone(&stop), Arc::clone(&cancel));
        let watcher = tokio::spawn(async move {
            loop {
                let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
                if timed_out || stop_w.load(Ordering::SeqCst) {
                    cancel_w.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let capture: Arc<dyn CaptureSink> = sink.clone();
        let res = shakenfist_spice_renderer::run_headless(
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
            Arc::clone(&cancel),
            H264Offer::default(),
            256 << 20, // ryll's default image cache cap
            256 << 20, // ryll's default GLZ dictionary cap
            2,         // ryll's default compression (auto GLZ)
            None,
        )
        .await;
        watcher.abort();
        res
    });
    // Every channel task has ended with run_headless, so no packet call is
    // in flight: closing now captures everything that was accepted.
    drop(runtime);
    let closed = sink.close();
    let secs = started.elapsed().as_secs_f64();
    for (name, c) in sink.all_counters() {
        if c.records + c.dropped_records > 0 {
            println!(
                "{name}: {} records, {} bytes, {} dropped records ({} bytes)",
                c.records, c.bytes, c.dropped_records, c.dropped_bytes
            );
        }
    }
    println!("captured {secs:.1} s into {}", args.capture.display());
    closed.map_err(|e| format!("closing the capture: {e}"))?;
    match result {
        Ok(()) => Ok(()),
        // Ending because we asked to is not an error.
        Err(_) if cancel.load(Ordering::SeqCst) => Ok(()),
        Err(e) => Err(format!("session: {e:#}")),
    }
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
    }
}
