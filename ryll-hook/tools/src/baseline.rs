//! The capture designs the spool replaces, reimplemented for comparison.
//!
//! These exist so the spool can be measured against what it replaces, on the
//! same traffic and the same machine: the `append` benchmark
//! (`cargo bench -p e2e --bench append`) times all of them per call, and
//! `ryll-replay --sink ryll-threads` (and the `replay` benchmark) replays a
//! session through ryll 0.3.0's. They are our own code following ryll's design
//! (frames built with etherparse, written with pcap-file, as ryll's
//! `capture.rs` does); nothing here is meant for capturing in production.
//!
//! - [`InlinePcap`]: ryll up to 0.2. The channel loop itself builds an
//!   Ethernet/IPv4/TCP frame for every chunk and writes it to the channel's
//!   pcap file, unbuffered, under that channel's lock: every append costs
//!   allocations and several `write(2)` calls, and waits for the disk.
//! - [`RyllThreads`]: ryll 0.3.0. The channel loop copies the chunk into an
//!   `Arc<[u8]>` and `try_send`s it into a bounded queue (1024 items) drained
//!   by one writer thread doing [`InlinePcap`]'s work; a full queue drops the
//!   chunk.
//!
//! Both implement [`CaptureDesign`], as does [`spool::Spool`], so a caller
//! can pick a design at run time; [`DesignSink`] puts any of them behind
//! the renderer's `CaptureSink`, the trait the channel loops call.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use ryll_hook::CaptureSink;
use spool::{Direction, Spool};

/// A capture sink as ryll's channel loops use it: one call per chunk read
/// from or written to a socket, `false` when the chunk was not captured.
pub trait CaptureDesign: Send + Sync {
    /// Captures `data` as one chunk of `channel` in direction `dir`.
    /// Returns `false` if it was dropped.
    fn append(&self, channel: &str, dir: Direction, data: &[u8]) -> bool;

    /// Stops capturing and waits until everything accepted is written.
    /// Later appends return `false`. Idempotent.
    fn close(&self);
}

/// The spool as a [`CaptureDesign`]. `close` discards the result; call
/// [`Spool::close`] afterwards to read it (it returns the first call's
/// result again).
impl CaptureDesign for Spool {
    fn append(&self, channel: &str, dir: Direction, data: &[u8]) -> bool {
        Spool::append(self, channel, dir, data)
    }

    fn close(&self) {
        let _ = Spool::close(self);
    }
}

/// Any of the earlier capture designs as a [`CaptureSink`], so a replay can
/// drive them through the same trait the channel loops call. Frames are
/// accepted and ignored.
#[derive(Debug)]
pub struct DesignSink<D>(pub D);

impl<D: CaptureDesign> CaptureSink for DesignSink<D> {
    fn packet_sent(&self, channel: &str, data: &[u8]) -> bool {
        self.0.append(channel, Direction::ClientToServer, data)
    }

    fn packet_received(&self, channel: &str, data: &[u8]) -> bool {
        self.0.append(channel, Direction::ServerToClient, data)
    }

    fn frame(&self, _surface_id: u32, _pixels: &[u8], _width: u32, _height: u32) -> bool {
        true
    }
}

// ── Frames, as ryll builds them ─────────────────────────

/// Fake addresses in the frames (ryll's).
const CLIENT_IP: [u8; 4] = [10, 0, 0, 1];
const SERVER_IP: [u8; 4] = [10, 0, 0, 2];
const SERVER_PORT: u16 = 5900;

/// libpcap's maximum snapshot length, which ryll writes: a full 65,495-byte
/// segment plus headers exceeds pcap-file's default of 65,535.
pub const PCAP_SNAPLEN: u32 = 262_144;

/// Largest TCP payload in one IPv4 packet: 65535 − 20 (IP) − 20 (TCP).
pub const MAX_SEGMENT_PAYLOAD: usize = 65_495;

/// Most channels either design holds (as the spool).
const MAX_CHANNELS: usize = 64;

fn pcap_header() -> PcapHeader {
    PcapHeader {
        datalink: DataLink::ETHERNET,
        snaplen: PCAP_SNAPLEN,
        ..Default::default()
    }
}

/// ryll's client port for a channel; other channels (which ryll does not
/// capture) get a port of their own from their table slot.
fn channel_port(channel: &str, slot: usize) -> u16 {
    match channel {
        "main" => 10001,
        "display" => 10002,
        "inputs" => 10003,
        "cursor" => 10004,
        "usbredir" => 10009,
        _ => 10100 + slot as u16,
    }
}

/// Splits `data` into TCP segments of at most [`MAX_SEGMENT_PAYLOAD`] bytes
/// and builds a frame (a fresh `Vec`) for each, as ryll's `segment_payload`.
/// Always at least one frame, empty payloads included.
pub fn segment_payload(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    data: &[u8],
) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + MAX_SEGMENT_PAYLOAD).min(data.len());
        let seg_seq = seq.wrapping_add(offset as u32);
        frames.push(build_tcp_frame(src, dst, seg_seq, ack, &data[offset..end]));
        offset = end;
    }
    if frames.is_empty() {
        frames.push(build_tcp_frame(src, dst, seq, ack, data));
    }
    frames
}

/// One Ethernet + IPv4 + TCP frame around `payload`, checksummed, as ryll's
/// `build_tcp_frame`. Empty if `payload` does not fit one IPv4 packet.
pub fn build_tcp_frame(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    use etherparse::{Ethernet2Header, IpNumber, Ipv4Header, TcpHeader};

    let mut tcp = TcpHeader::new(src.1, dst.1, seq, 65535);
    tcp.acknowledgment_number = ack;
    tcp.ack = true;
    let ip_payload_len = tcp.header_len() + payload.len();
    if ip_payload_len > 65_515 {
        return Vec::new();
    }
    let Ok(mut ipv4) = Ipv4Header::new(ip_payload_len as u16, 64, IpNumber::TCP, src.0, dst.0)
    else {
        return Vec::new();
    };
    ipv4.dont_fragment = true;
    tcp.checksum = tcp.calc_checksum_ipv4(&ipv4, payload).unwrap_or(0);
    let eth = Ethernet2Header {
        source: [0x02, 0x00, 0x00, 0x00, 0x00, 0x01],
        destination: [0x02, 0x00, 0x00, 0x00, 0x00, 0x02],
        ether_type: etherparse::ether_type::IPV4,
    };
    let mut frame = Vec::with_capacity(14 + 20 + tcp.header_len() + payload.len());
    eth.write(&mut frame).ok();
    ipv4.write(&mut frame).ok();
    tcp.write(&mut frame).ok();
    frame.extend_from_slice(payload);
    frame
}

/// One channel's pcap file and TCP sequence state (ryll's
/// `PcapChannelWriter`): an unbuffered `File`, so every frame is in the
/// kernel when the call returns, at the price of five `write(2)`s a frame.
pub struct PcapChannelWriter {
    writer: PcapWriter<File>,
    client_seq: u32,
    server_seq: u32,
    client_port: u16,
    /// Frames pcap-file refused (too long, or a write error).
    pub refused_frames: u64,
}

impl PcapChannelWriter {
    /// Creates `path` and writes the pcap header.
    pub fn create(path: &Path, client_port: u16) -> io::Result<PcapChannelWriter> {
        let file = File::create(path)?;
        let writer = PcapWriter::with_header(file, pcap_header())
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(PcapChannelWriter {
            writer,
            client_seq: 1000,
            server_seq: 2000,
            client_port,
            refused_frames: 0,
        })
    }

    /// Writes `data` as the next chunk of the stream in direction `dir`,
    /// stamped `elapsed` after the session start. `false` if any frame was
    /// refused.
    pub fn write(&mut self, dir: Direction, data: &[u8], elapsed: Duration) -> bool {
        let client = (CLIENT_IP, self.client_port);
        let server = (SERVER_IP, SERVER_PORT);
        let (src, dst, seq, ack) = match dir {
            Direction::ClientToServer => (client, server, self.client_seq, self.server_seq),
            Direction::ServerToClient => (server, client, self.server_seq, self.client_seq),
        };
        let mut ok = true;
        for frame in segment_payload(src, dst, seq, ack, data) {
            let packet = PcapPacket::new(elapsed, frame.len() as u32, &frame);
            if self.writer.write_packet(&packet).is_err() {
                self.refused_frames += 1;
                ok = false;
            }
        }
        let next = match dir {
            Direction::ClientToServer => &mut self.client_seq,
            Direction::ServerToClient => &mut self.server_seq,
        };
        *next = next.wrapping_add(data.len() as u32);
        ok
    }
}

/// A fixed table of channel names, looked up without a lock, registered
/// under one (the spool's scheme, so lookups cost the designs the same).
struct ChannelTable<T> {
    slots: Box<[OnceLock<(String, T)>]>,
    register: Mutex<()>,
}

impl<T> ChannelTable<T> {
    fn new() -> Self {
        ChannelTable {
            slots: (0..MAX_CHANNELS).map(|_| OnceLock::new()).collect(),
            register: Mutex::new(()),
        }
    }

    fn find(&self, name: &str) -> Option<(usize, &T)> {
        self.slots
            .iter()
            .map_while(|s| s.get())
            .enumerate()
            .find(|(_, (n, _))| n == name)
            .map(|(i, (_, t))| (i, t))
    }

    /// Finds `name`, or adds it with `make(slot)`. `None` if the name is
    /// not a valid channel name, the table is full or `make` fails.
    fn get_or_add(&self, name: &str, make: impl FnOnce(usize) -> Option<T>) -> Option<(usize, &T)> {
        if let Some(found) = self.find(name) {
            return Some(found);
        }
        spool::store::format::validate_channel_name(name).ok()?;
        let _guard = self.register.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = self.find(name) {
            return Some(found);
        }
        let slot = self.slots.iter().position(|s| s.get().is_none())?;
        let value = make(slot)?;
        let _ = self.slots[slot].set((name.to_string(), value));
        self.slots[slot].get().map(|(_, t)| (slot, t))
    }
}

fn pcap_path(dir: &Path, channel: &str) -> PathBuf {
    dir.join(format!("{channel}.pcap"))
}

// ── ryll ≤ 0.2: inline ─────────────────────────────────

/// ryll up to 0.2: every append builds the frames and writes them to the
/// channel's pcap file (`<dir>/<channel>.pcap`, unbuffered) before
/// returning, under that channel's `Mutex`. The caller pays for the
/// allocations, the checksum and the `write(2)`s, and waits whenever the
/// disk does.
pub struct InlinePcap {
    dir: PathBuf,
    start: Instant,
    channels: ChannelTable<Mutex<Option<PcapChannelWriter>>>,
}

impl InlinePcap {
    /// Captures into `dir` (created if missing). A channel's file is
    /// created on its first append.
    pub fn create(dir: impl Into<PathBuf>) -> io::Result<InlinePcap> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(InlinePcap {
            dir,
            start: Instant::now(),
            channels: ChannelTable::new(),
        })
    }

    /// Writes `data` to `channel`'s pcap now. `false` if the channel's file
    /// could not be created, a frame was refused, or after `close`.
    pub fn append(&self, channel: &str, dir: Direction, data: &[u8]) -> bool {
        let Some((_, writer)) = self.channels.get_or_add(channel, |slot| {
            let path = pcap_path(&self.dir, channel);
            let w = PcapChannelWriter::create(&path, channel_port(channel, slot)).ok()?;
            Some(Mutex::new(Some(w)))
        }) else {
            return false;
        };
        let mut guard = writer.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(w) => w.write(dir, data, self.start.elapsed()),
            None => false,
        }
    }

    /// Closes every channel's file. Later appends return `false`.
    pub fn close(&self) {
        for (_, writer) in self.channels.slots.iter().map_while(|s| s.get()) {
            writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }
}

impl CaptureDesign for InlinePcap {
    fn append(&self, channel: &str, dir: Direction, data: &[u8]) -> bool {
        InlinePcap::append(self, channel, dir, data)
    }

    fn close(&self) {
        InlinePcap::close(self)
    }
}

// ── ryll 0.3.0: queue + writer thread ───────────────────

/// Items the queue holds, as ryll 0.3.0's `PCAP_QUEUE_CAPACITY`.
pub const QUEUE_CAPACITY: usize = 1024;

/// One queued chunk (ryll's `PcapQueueItem`; the channel is a table slot
/// rather than a `&'static str`).
struct QueueItem {
    slot: usize,
    dir: Direction,
    payload: Arc<[u8]>,
    elapsed: Duration,
}

/// ryll 0.3.0: every append copies the chunk into a fresh `Arc<[u8]>` and
/// `try_send`s it into a `sync_channel(1024)`, under the `Mutex` guarding
/// the sender; one writer thread drains the queue doing [`InlinePcap`]'s
/// work. When the writer falls 1024 chunks behind, appends return `false`
/// and the chunk is lost, with nothing in the pcap to say so.
///
/// Unlike ryll 0.3.0, which captures only `main`, `display`, `cursor`,
/// `inputs` and `usbredir` (and silently returns `true` for any other
/// channel), this takes any valid channel name, so the comparison covers
/// the same traffic the spool captures. A channel's file is created by the
/// writer thread on its first chunk.
pub struct RyllThreads {
    start: Instant,
    tx: Mutex<Option<SyncSender<QueueItem>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    channels: Arc<ChannelTable<()>>,
    /// Chunks the writer could not write (file creation or pcap errors).
    write_errors: Arc<AtomicU64>,
}

impl RyllThreads {
    /// Captures into `dir` (created if missing) and starts the writer.
    pub fn create(dir: impl Into<PathBuf>) -> io::Result<RyllThreads> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let write_errors = Arc::new(AtomicU64::new(0));
        let channels = Arc::new(ChannelTable::new());
        let (errors, table) = (Arc::clone(&write_errors), Arc::clone(&channels));
        let thread = std::thread::Builder::new()
            .name("ryll-capture-pcap".into())
            .spawn(move || writer_loop(rx, &dir, &table, &errors))?;
        Ok(RyllThreads {
            start: Instant::now(),
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            channels,
            write_errors,
        })
    }

    /// Queues `data` for the writer. `false` if the queue is full (the chunk
    /// is dropped), the channel name is invalid, or after `close`.
    pub fn append(&self, channel: &str, dir: Direction, data: &[u8]) -> bool {
        let Some((slot, _)) = self.channels.get_or_add(channel, |_| Some(())) else {
            return false;
        };
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return false;
        };
        let item = QueueItem {
            slot,
            dir,
            payload: Arc::from(data),
            elapsed: self.start.elapsed(),
        };
        tx.try_send(item).is_ok()
    }

    /// Stops accepting chunks, then waits for the writer to drain the
    /// queue and exit.
    pub fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    /// Chunks the writer thread failed to write.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }
}

impl Drop for RyllThreads {
    fn drop(&mut self) {
        self.close();
    }
}

impl CaptureDesign for RyllThreads {
    fn append(&self, channel: &str, dir: Direction, data: &[u8]) -> bool {
        RyllThreads::append(self, channel, dir, data)
    }

    fn close(&self) {
        RyllThreads::close(self)
    }
}

/// The writer thread (ryll's `pcap_writer_loop`): drains the queue until
/// every sender is gone, creating a channel's pcap on its first chunk.
fn writer_loop(
    rx: Receiver<QueueItem>,
    dir: &Path,
    channels: &ChannelTable<()>,
    errors: &AtomicU64,
) {
    let mut writers: Vec<Option<PcapChannelWriter>> = (0..MAX_CHANNELS).map(|_| None).collect();
    for item in rx {
        let writer = &mut writers[item.slot];
        if writer.is_none() {
            // The slot was filled before the item was queued.
            if let Some((name, _)) = channels.slots[item.slot].get() {
                let path = pcap_path(dir, name);
                *writer = PcapChannelWriter::create(&path, channel_port(name, item.slot)).ok();
            }
        }
        let ok = match writer.as_mut() {
            Some(w) => w.write(item.dir, &item.payload, item.elapsed),
            None => false,
        };
        if !ok {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::PcapReader;

    /// (frame lengths, TCP payload bytes) of every packet in a pcap.
    fn frames(path: &Path) -> (Vec<usize>, usize) {
        let mut r = PcapReader::new(File::open(path).unwrap()).unwrap();
        let (mut lens, mut payload) = (Vec::new(), 0);
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            let s = etherparse::SlicedPacket::from_ethernet(&p.data).unwrap();
            match s.transport {
                Some(etherparse::TransportSlice::Tcp(t)) => payload += t.payload().len(),
                _ => panic!("not TCP"),
            }
            lens.push(p.data.len());
        }
        (lens, payload)
    }

    fn exercise(design: &dyn CaptureDesign, dir: &Path) {
        assert!(design.append("display", Direction::ServerToClient, &[7u8; 200_000]));
        assert!(design.append("display", Direction::ClientToServer, b"hello"));
        assert!(design.append("webdav", Direction::ServerToClient, &[1u8; 64]));
        assert!(!design.append("Not/A/Channel", Direction::ServerToClient, b"x"));
        design.close();
        assert!(!design.append("display", Direction::ServerToClient, b"late"));
        let (lens, payload) = frames(&dir.join("display.pcap"));
        // 200,000 = 3 × 65,495 + 3,515, then the 5-byte chunk.
        assert_eq!(lens, vec![65_549, 65_549, 65_549, 3_569, 59]);
        assert_eq!(payload, 200_005);
        assert_eq!(frames(&dir.join("webdav.pcap")), (vec![118], 64));
    }

    #[test]
    fn inline_pcap_writes_segmented_frames() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&InlinePcap::create(dir.path()).unwrap(), dir.path());
    }

    #[test]
    fn ryll_threads_writes_segmented_frames() {
        let dir = tempfile::tempdir().unwrap();
        let design = RyllThreads::create(dir.path()).unwrap();
        exercise(&design, dir.path());
        assert_eq!(design.write_errors(), 0);
    }

    #[test]
    fn ryll_threads_drops_when_the_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let design = RyllThreads::create(dir.path()).unwrap();
        let chunk = vec![0u8; 64 << 10];
        let dropped = (0..4 * QUEUE_CAPACITY)
            .filter(|_| !design.append("display", Direction::ServerToClient, &chunk))
            .count();
        design.close();
        assert!(dropped > 0, "a 256 MiB burst fitted the queue");
    }

    /// The earlier designs drive through the same trait (for ryll-replay).
    #[test]
    fn design_sink_adapts_ryll_threads() {
        let root = tempfile::tempdir().unwrap();
        let threads = RyllThreads::create(root.path().join("pcaps")).unwrap();
        let sink = DesignSink(threads);
        assert!(sink.packet_received("display", b"abc"));
        assert!(sink.packet_sent("display", b"de"));
        sink.0.close();
        assert!(root.path().join("pcaps").read_dir().unwrap().count() > 0);
    }
}
