//! Replays a recorded SPICE session over real loopback sockets, the way
//! ryll's channel loops experience it, through any [`CaptureSink`].
//!
//! Per recorded connection (one SPICE channel):
//!
//! - a *server* writes the recorded server→client bytes, link phase
//!   included, and reads (and checks) everything the client sends;
//! - a *client read loop* performs the link phase (not captured), then
//!   reads into a 256 KiB buffer — the size of the renderer's display
//!   reads — and calls `packet_received(name, &buf[..n])` for every read,
//!   timing that call: the time a channel loop spends capturing instead of
//!   reading its socket;
//! - a *client writer* sends the recorded client→server chunks after the
//!   link phase, one write and one `packet_sent` per chunk.
//!
//! Both writers go in recorded order, either as fast as the sockets take
//! them ([`Pace::Max`]) or at the recorded times ([`Pace::Recorded`]). Every
//! connection of the session runs at once, as in a real client. The client
//! checks every byte it reads against the recording, and the server every
//! byte it receives, so a replay that finishes without error delivered the
//! session exactly.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::recorded::{Chunk, Connection, Session};
use ryll_hook::{CaptureSink, SpoolSink};
use spool::Direction;

/// The renderer's read buffer for the display channel.
pub const READ_BUFFER_BYTES: usize = 256 << 10;

/// How fast the writers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the sockets take the bytes.
    Max,
    /// Each chunk at its recorded time since the session started.
    Recorded,
}

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Port the replay server listens on (127.0.0.1); 0 picks a free one.
    pub server_port: u16,
    /// Writer pacing.
    pub pace: Pace,
    /// Times the whole session is replayed, one after the other, each with
    /// new connections.
    pub repeat: u32,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            server_port: 0,
            pace: Pace::Max,
            repeat: 1,
        }
    }
}

/// What one channel did over the whole replay.
#[derive(Debug, Clone, Default)]
pub struct ChannelStats {
    /// Bytes read after the link phase (all handed to `packet_received`).
    pub bytes_received: u64,
    /// Reads (`packet_received` calls).
    pub reads: u64,
    /// Bytes written after the link phase.
    pub bytes_sent: u64,
    /// Writes (`packet_sent` calls).
    pub writes: u64,
    /// Calls the sink answered `false` (ryll's `writer_dropped_count`).
    pub drops: u64,
    /// Nanoseconds each `packet_received` call took, one per read.
    pub read_sink_ns: Vec<u64>,
    /// Nanoseconds of each whole read-loop iteration as a channel loop
    /// lives it: the `read()` (including any wait for data) plus the sink
    /// call. What a sink costs the loop, relative to what the loop costs.
    pub read_loop_ns: Vec<u64>,
}

impl ChannelStats {
    fn merge(&mut self, other: ChannelStats) {
        self.bytes_received += other.bytes_received;
        self.reads += other.reads;
        self.bytes_sent += other.bytes_sent;
        self.writes += other.writes;
        self.drops += other.drops;
        self.read_sink_ns.extend(other.read_sink_ns);
        self.read_loop_ns.extend(other.read_loop_ns);
    }

    /// `q`-quantile (0..=1) of the per-read sink time, nearest rank.
    pub fn read_sink_quantile(&self, q: f64) -> Duration {
        let mut v = self.read_sink_ns.clone();
        v.sort_unstable();
        Duration::from_nanos(quantile_sorted(&v, q))
    }

    /// `q`-quantile (0..=1) of the whole read-loop iteration time.
    pub fn read_loop_quantile(&self, q: f64) -> Duration {
        let mut v = self.read_loop_ns.clone();
        v.sort_unstable();
        Duration::from_nanos(quantile_sorted(&v, q))
    }
}

/// Nearest-rank quantile of sorted values (0 for none).
pub fn quantile_sorted(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Per channel name, in name order.
    pub channels: BTreeMap<String, ChannelStats>,
    /// Wall time of the replay (not counting closing the sink).
    pub elapsed: Duration,
}

impl ReplayReport {
    /// All bytes read and written.
    pub fn total_bytes(&self) -> u64 {
        self.channels
            .values()
            .map(|c| c.bytes_received + c.bytes_sent)
            .sum()
    }

    /// A table: per channel bytes, chunks, drops, the time in the sink per
    /// read and the whole read-loop iteration (read + sink), as p50, p99,
    /// p99.9 and max.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<10} {:>12} {:>8} {:>11} {:>7} {:>7}  {:<39}  {:<39}\n",
            "channel",
            "bytes_in",
            "reads",
            "bytes_out",
            "writes",
            "drops",
            "sink call p50 / p99 / p99.9 / max",
            "read loop p50 / p99 / p99.9 / max"
        );
        let fmt = |ns: u64| {
            let us = ns as f64 / 1e3;
            if us >= 1000.0 {
                format!("{:.2}ms", us / 1000.0)
            } else {
                format!("{us:.2}us")
            }
        };
        let quartet = |v: &[u64]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            [0.5, 0.99, 0.999, 1.0]
                .map(|q| fmt(quantile_sorted(&v, q)))
                .join(" / ")
        };
        for (name, c) in &self.channels {
            out += &format!(
                "{:<10} {:>12} {:>8} {:>11} {:>7} {:>7}  {:<39}  {:<39}\n",
                name,
                c.bytes_received,
                c.reads,
                c.bytes_sent,
                c.writes,
                c.drops,
                quartet(&c.read_sink_ns),
                quartet(&c.read_loop_ns)
            );
        }
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        out += &format!(
            "total {} bytes in {:.2} s ({:.1} MB/s)\n",
            self.total_bytes(),
            secs,
            self.total_bytes() as f64 / secs / 1e6
        );
        out
    }
}

/// Replays `session` `opts.repeat` times through `sink`.
pub fn replay(
    session: &Session,
    sink: Arc<dyn CaptureSink>,
    opts: &ReplayOptions,
) -> io::Result<ReplayReport> {
    let listener = TcpListener::bind(("127.0.0.1", opts.server_port))?;
    let addr = listener.local_addr()?;
    let start = Instant::now();
    let mut report = ReplayReport::default();
    for _ in 0..opts.repeat.max(1) {
        for (name, stats) in replay_once(session, &listener, addr, &sink, opts.pace)? {
            report.channels.entry(name).or_default().merge(stats);
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

/// Server port a capture made by [`replay_into_capture`] names in its
/// metadata (the replay's own listener takes any free port).
pub const CAPTURE_SERVER_PORT: u16 = 5931;

/// Replays `session` once, as fast as the sockets go, into a new capture
/// directory `capture` through ryll's [`SpoolSink`]: a capture made as
/// ryll makes one. Returns the sink still open (a live capture, its newest
/// segments staged; [`SpoolSink::close`] ends it) and what the replay
/// measured.
pub fn replay_into_capture(
    session: &Session,
    capture: &std::path::Path,
) -> Result<(Arc<SpoolSink>, ReplayReport), String> {
    let sink = SpoolSink::create(capture, "127.0.0.1", CAPTURE_SERVER_PORT, None)
        .map_err(|e| format!("{}: {e}", capture.display()))?;
    let sink = Arc::new(sink);
    let report = replay(
        session,
        sink.clone() as Arc<dyn CaptureSink>,
        &ReplayOptions::default(),
    )
    .map_err(|e| format!("replaying into {}: {e}", capture.display()))?;
    Ok((sink, report))
}

type Joined = std::thread::JoinHandle<io::Result<ChannelStats>>;

fn replay_once(
    session: &Session,
    listener: &TcpListener,
    addr: SocketAddr,
    sink: &Arc<dyn CaptureSink>,
    pace: Pace,
) -> io::Result<Vec<(String, ChannelStats)>> {
    let t0 = Instant::now();
    let mut running: Vec<(String, Vec<Joined>)> = Vec::new();
    for conn in &session.connections {
        // Connect, then accept: the one connection in the backlog is ours,
        // so each server thread serves the recording of its own client.
        let client = TcpStream::connect(addr)?;
        let (server, _) = listener.accept()?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        let conn = Arc::new(conn.clone());
        let mut threads = Vec::new();
        threads.extend(spawn_server(&conn, server, t0, pace)?);
        threads.extend(spawn_client(&conn, client, Arc::clone(sink), t0, pace)?);
        running.push((conn.name.clone(), threads));
    }
    let mut out = Vec::new();
    let mut first_error = None;
    for (name, threads) in running {
        let mut stats = ChannelStats::default();
        for t in threads {
            match t.join() {
                Ok(Ok(s)) => stats.merge(s),
                Ok(Err(e)) => {
                    first_error.get_or_insert(io::Error::new(e.kind(), format!("{name}: {e}")));
                }
                Err(_) => {
                    first_error.get_or_insert(io::Error::other(format!("{name}: thread panicked")));
                }
            }
        }
        out.push((name, stats));
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn spawn<F>(name: &str, f: F) -> io::Result<Joined>
where
    F: FnOnce() -> io::Result<ChannelStats> + Send + 'static,
{
    std::thread::Builder::new().name(name.into()).spawn(f)
}

fn sleep_until(t0: Instant, ts_ns: u64, pace: Pace) {
    if pace == Pace::Recorded {
        let due = t0 + Duration::from_nanos(ts_ns);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

fn chunks(conn: &Connection, dir: Direction) -> impl Iterator<Item = &Chunk> {
    conn.chunks.iter().filter(move |c| c.dir == dir)
}

fn mismatch(what: &str, at: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what} differs from the recording at byte {at}"),
    )
}

/// Reads exactly `want.len()` bytes and checks them.
fn expect_exact(stream: &mut TcpStream, want: &[u8], what: &str) -> io::Result<()> {
    let mut got = vec![0u8; want.len()];
    stream.read_exact(&mut got)?;
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(at) => Err(mismatch(what, at as u64)),
        None => Ok(()),
    }
}

/// Reads to EOF, checking the bytes against `want`; returns the count.
fn read_and_check(
    stream: &mut TcpStream,
    want: &[u8],
    what: &str,
    mut each: impl FnMut(&[u8], Instant),
) -> io::Result<u64> {
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut at = 0usize;
    loop {
        let read_started = Instant::now();
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        each(&buf[..n], read_started);
        let expected = want
            .get(at..at + n)
            .ok_or_else(|| mismatch(what, want.len() as u64))?;
        if let Some(p) = expected.iter().zip(&buf[..n]).position(|(a, b)| a != b) {
            return Err(mismatch(what, (at + p) as u64));
        }
        at += n;
    }
    if at != want.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{what}: {at} of {} bytes arrived", want.len()),
        ));
    }
    Ok(at as u64)
}

fn spawn_server(
    conn: &Arc<Connection>,
    stream: TcpStream,
    t0: Instant,
    pace: Pace,
) -> io::Result<Vec<Joined>> {
    let mut reader = stream.try_clone()?;
    let mut writer = stream;
    let (c1, c2) = (Arc::clone(conn), Arc::clone(conn));
    let write = spawn(&format!("srv-w-{}", conn.name), move || {
        writer.write_all(&c1.link_s2c)?;
        for c in chunks(&c1, Direction::ServerToClient) {
            sleep_until(t0, c.ts_ns, pace);
            writer.write_all(&c.data)?;
        }
        writer.shutdown(Shutdown::Write)?;
        Ok(ChannelStats::default())
    })?;
    let read = spawn(&format!("srv-r-{}", conn.name), move || {
        expect_exact(&mut reader, &c2.link_c2s, "client link phase")?;
        let want = c2.stream(Direction::ClientToServer);
        read_and_check(&mut reader, &want, "client→server stream", |_, _| {})?;
        Ok(ChannelStats::default())
    })?;
    Ok(vec![write, read])
}

fn spawn_client(
    conn: &Arc<Connection>,
    stream: TcpStream,
    sink: Arc<dyn CaptureSink>,
    t0: Instant,
    pace: Pace,
) -> io::Result<Vec<Joined>> {
    let mut reader = stream.try_clone()?;
    let mut writer = stream;
    let (c1, c2) = (Arc::clone(conn), Arc::clone(conn));
    let sink2 = Arc::clone(&sink);
    // The writer starts its post-link chunks once the link has completed,
    // as a channel loop does.
    let (linked_tx, linked_rx) = mpsc::channel::<()>();
    let read = spawn(&format!("cli-r-{}", conn.name), move || {
        expect_exact(&mut reader, &c1.link_s2c, "server link phase")?;
        let _ = linked_tx.send(());
        let name = c1.name.as_str();
        let want = c1.stream(Direction::ServerToClient);
        let mut stats = ChannelStats {
            read_sink_ns: Vec::with_capacity(c1.chunks.len()),
            read_loop_ns: Vec::with_capacity(c1.chunks.len()),
            ..Default::default()
        };
        let bytes = read_and_check(
            &mut reader,
            &want,
            "server→client stream",
            |chunk, read_started| {
                let t = Instant::now();
                let ok = sink.packet_received(name, chunk);
                let end = Instant::now();
                stats.read_sink_ns.push((end - t).as_nanos() as u64);
                stats
                    .read_loop_ns
                    .push((end - read_started).as_nanos() as u64);
                stats.reads += 1;
                stats.drops += u64::from(!ok);
            },
        )?;
        stats.bytes_received = bytes;
        Ok(stats)
    })?;
    let write = spawn(&format!("cli-w-{}", conn.name), move || {
        writer.write_all(&c2.link_c2s)?;
        let mut stats = ChannelStats::default();
        if linked_rx.recv().is_err() {
            // The read loop failed the link phase and says why.
            return Ok(stats);
        }
        for c in chunks(&c2, Direction::ClientToServer) {
            sleep_until(t0, c.ts_ns, pace);
            writer.write_all(&c.data)?;
            let ok = sink2.packet_sent(&c2.name, &c.data);
            stats.writes += 1;
            stats.bytes_sent += c.data.len() as u64;
            stats.drops += u64::from(!ok);
        }
        writer.shutdown(Shutdown::Write)?;
        Ok(stats)
    })?;
    Ok(vec![read, write])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile_sorted(&v, 0.5), 500);
        assert_eq!(quantile_sorted(&v, 0.99), 990);
        assert_eq!(quantile_sorted(&v, 0.999), 999);
        assert_eq!(quantile_sorted(&v, 1.0), 1000);
        assert_eq!(quantile_sorted(&v, 0.0), 1);
        assert_eq!(quantile_sorted(&[], 0.5), 0);
    }
}
