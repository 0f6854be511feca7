//! A write-behind output buffer: the converting thread fills one buffer
//! while a second thread writes the previous one.
//!
//! Writing a file costs about as much as making what goes into it:
//! `write(2)` copies every byte into the page cache and ext4 books its
//! blocks, which perf puts at about a quarter of a conversion of small
//! records and a third or more of one of big records — all of it, with a
//! plain `BufWriter`, on the thread that frames the packets. [`WriteBehind`]
//! buffers the same way but hands each full buffer to a thread of its own,
//! so that with a second core free, framing and writing overlap (with the
//! other core busy it gains nothing and loses little; figures in
//! PERFORMANCE.md, 2026-11-25).
//!
//! Memory stays bounded: two buffers of the given capacity, allocated once
//! and handed back and forth, at most one of them at the writer thread.
//!
//! A buffer is sent, as `BufWriter` does, when the next piece does not fit,
//! so writes are a little short of the capacity and rarely page-aligned.
//! That is on purpose: buffers sent exactly full (1 MiB writes at 1 MiB
//! offsets) sometimes made the kernel's page-cache copies twice as slow
//! (PERFORMANCE.md, 2026-11-25).
//!
//! Errors are reported as by `BufWriter`: a failed `write(2)` shows up as
//! the error of a later `write` or of `flush`, after which every call fails
//! and nothing more is written.
//!
//! [`WriteBehind::inline`] is a plain buffered writer with the same
//! interface, for outputs where there is nothing to overlap (a pipe is
//! paced by its reader, `/dev/null` costs nothing).

use std::io::{self, Write};
use std::mem;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// A buffered writer whose writes to `W` happen on another thread.
pub struct WriteBehind<W: Write + Send + 'static> {
    /// The buffer being filled.
    buf: Vec<u8>,
    /// The other buffer, when it is not at the writer thread.
    spare: Option<Vec<u8>>,
    capacity: usize,
    /// Where the bytes go: a thread, or this thread if none could start.
    to: Target<W>,
    /// A write failed; everything after it fails too.
    failed: bool,
}

enum Target<W: Write + Send + 'static> {
    Thread {
        /// Full buffers, to the thread.
        full: SyncSender<Vec<u8>>,
        /// Written buffers, emptied, back from it, with how the write went.
        written: Receiver<(Vec<u8>, io::Result<()>)>,
        thread: JoinHandle<()>,
    },
    /// The thread could not be started: plain buffered writes.
    Inline(W),
    /// After [`WriteBehind::finish`].
    Done,
}

impl<W: Write + Send + 'static> WriteBehind<W> {
    /// Buffers of `capacity` bytes (at least 1) in front of `inner`, which
    /// is written (and flushed after every buffer) on a thread named
    /// `spool2pcap-write`. If no thread can be started, the writes are made
    /// on the calling thread instead.
    pub fn with_capacity(capacity: usize, inner: W) -> WriteBehind<W> {
        let capacity = capacity.max(1);
        let (full, full_rx) = sync_channel::<Vec<u8>>(1);
        let (written_tx, written) = sync_channel(1);
        // The thread gets `inner` through this slot, so that it can be
        // taken back if the thread does not start.
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(inner)));
        let theirs = slot.clone();
        let spawned = std::thread::Builder::new()
            .name("spool2pcap-write".into())
            .spawn(move || {
                let inner = theirs.lock().ok().and_then(|mut s| s.take());
                if let Some(inner) = inner {
                    write_loop(inner, full_rx, written_tx);
                }
            });
        match spawned {
            Ok(thread) => WriteBehind {
                buf: Vec::with_capacity(capacity),
                spare: Some(Vec::with_capacity(capacity)),
                capacity,
                to: Target::Thread {
                    full,
                    written,
                    thread,
                },
                failed: false,
            },
            Err(_) => match slot.lock().ok().and_then(|mut s| s.take()) {
                Some(inner) => WriteBehind::inline(capacity, inner),
                // The thread did start after all and took `inner` (cannot
                // happen: `spawn` fails only before running anything).
                None => WriteBehind {
                    buf: Vec::new(),
                    spare: None,
                    capacity,
                    to: Target::Done,
                    failed: false,
                },
            },
        }
    }

    /// One buffer of `capacity` bytes (at least 1) in front of `inner`,
    /// written on the calling thread: a `BufWriter`, but for sending every
    /// buffer full.
    pub fn inline(capacity: usize, inner: W) -> WriteBehind<W> {
        let capacity = capacity.max(1);
        WriteBehind {
            buf: Vec::with_capacity(capacity),
            spare: None,
            capacity,
            to: Target::Inline(inner),
            failed: false,
        }
    }

    /// Whether the writes happen on a thread of their own.
    pub fn is_threaded(&self) -> bool {
        matches!(self.to, Target::Thread { .. })
    }

    /// Writes what is buffered, waits until it has all been written, and
    /// ends the writer thread. The first error of any write, if there was
    /// one and it was not reported yet, is returned.
    pub fn finish(&mut self) -> io::Result<()> {
        let flushed = self.flush();
        if let Target::Thread { full, thread, .. } = mem::replace(&mut self.to, Target::Done) {
            drop(full);
            if thread.join().is_err() && flushed.is_ok() {
                return Err(io::Error::other("the output writer thread panicked"));
            }
        }
        flushed
    }

    fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "an earlier write to this output failed; nothing more is written",
            ));
        }
        Ok(())
    }

    /// Hands the buffer over to be written and takes an empty one.
    fn send(&mut self) -> io::Result<()> {
        self.check()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = match &mut self.to {
            Target::Thread { full, written, .. } => {
                let next = match self.spare.take() {
                    Some(b) => Ok(b),
                    None => receive(written),
                };
                next.and_then(|next| {
                    let buf = mem::replace(&mut self.buf, next);
                    full.send(buf).map_err(|_| thread_gone())
                })
            }
            Target::Inline(w) => {
                let r = w.write_all(&self.buf);
                self.buf.clear();
                r
            }
            Target::Done => Err(io::Error::other("output already finished")),
        };
        self.failed = result.is_err();
        result
    }

    /// Waits for the buffer at the writer thread, if any, to be written.
    fn wait(&mut self) -> io::Result<()> {
        self.check()?;
        let result = match &mut self.to {
            Target::Thread { written, .. } if self.spare.is_none() => {
                receive(written).map(|b| self.spare = Some(b))
            }
            Target::Inline(w) => w.flush(),
            _ => Ok(()),
        };
        self.failed = result.is_err();
        result
    }

    /// `data` does not fit what is left of the buffer: the buffer goes, and
    /// `data` starts the next one (cut in buffer-sized pieces if longer).
    #[cold]
    fn write_all_slow(&mut self, mut data: &[u8]) -> io::Result<()> {
        self.send()?;
        while data.len() > self.capacity {
            let (piece, rest) = data.split_at(self.capacity);
            self.buf.extend_from_slice(piece);
            self.send()?;
            data = rest;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
}

/// The writer thread: writes and flushes each buffer it gets, sends it back
/// emptied with the outcome, stops at the first error or when the sending
/// side is gone.
fn write_loop<W: Write>(
    mut inner: W,
    full: Receiver<Vec<u8>>,
    written: SyncSender<(Vec<u8>, io::Result<()>)>,
) {
    for mut buf in full {
        let result = inner.write_all(&buf).and_then(|()| inner.flush());
        let failed = result.is_err();
        buf.clear();
        if written.send((buf, result)).is_err() || failed {
            return;
        }
    }
}

fn receive(written: &Receiver<(Vec<u8>, io::Result<()>)>) -> io::Result<Vec<u8>> {
    match written.recv() {
        Ok((buf, Ok(()))) => Ok(buf),
        Ok((_, Err(e))) => Err(e),
        Err(_) => Err(thread_gone()),
    }
}

fn thread_gone() -> io::Error {
    io::Error::other("the output writer thread ended")
}

impl<W: Write + Send + 'static> Write for WriteBehind<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_all(data).map(|()| data.len())
    }

    #[inline]
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if !self.failed && data.len() <= self.capacity - self.buf.len() {
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        self.write_all_slow(data)
    }

    /// Writes what is buffered and waits until the writer thread has
    /// written (and flushed) all of it.
    fn flush(&mut self) -> io::Result<()> {
        self.send().and_then(|()| self.wait())
    }
}

impl<W: Write + Send + 'static> Drop for WriteBehind<W> {
    /// As `BufWriter`: what is buffered is written, errors are ignored
    /// (call [`WriteBehind::finish`] or `flush` to see them).
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer into shared memory that counts its writes, or fails after
    /// `fail_after` bytes.
    #[derive(Clone, Default)]
    struct Shared {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<Vec<usize>>>,
        fail_after: Option<usize>,
    }

    impl Write for Shared {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let mut bytes = self.bytes.lock().unwrap();
            if let Some(limit) = self.fail_after {
                if bytes.len() + data.len() > limit {
                    return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
                }
            }
            bytes.extend_from_slice(data);
            self.writes.lock().unwrap().push(data.len());
            Ok(data.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pattern(n: usize, k: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + k) as u8).collect()
    }

    #[test]
    fn writes_everything_in_order_a_buffer_at_a_time() {
        let out = Shared::default();
        let mut w = WriteBehind::with_capacity(1000, out.clone());
        assert!(w.is_threaded());
        let mut expected = Vec::new();
        for (k, n) in [0usize, 1, 999, 1000, 1001, 3, 2500, 0, 17, 600, 400]
            .into_iter()
            .enumerate()
        {
            let data = pattern(n, k);
            w.write_all(&data).unwrap();
            expected.extend_from_slice(&data);
        }
        w.flush().unwrap();
        assert_eq!(*out.bytes.lock().unwrap(), expected);
        // Writing after a flush goes on where it was.
        w.write_all(b"tail").unwrap();
        w.finish().unwrap();
        expected.extend_from_slice(b"tail");
        assert_eq!(*out.bytes.lock().unwrap(), expected);
        // As BufWriter: a buffer goes when the next piece does not fit; a
        // piece longer than a buffer goes in buffer-sized parts.
        assert_eq!(
            *out.writes.lock().unwrap(),
            [1000, 1000, 1000, 4, 1000, 1000, 517, 1000, 4]
        );
    }

    #[test]
    fn inline_writes_the_same_bytes_in_the_same_pieces() {
        let threaded = Shared::default();
        let inline = Shared::default();
        {
            let mut a = WriteBehind::with_capacity(300, threaded.clone());
            let mut b = WriteBehind::inline(300, inline.clone());
            assert!(!b.is_threaded());
            for k in 0..50 {
                let data = pattern(k * 13 % 700, k);
                a.write_all(&data).unwrap();
                b.write_all(&data).unwrap();
                if k % 17 == 0 {
                    a.flush().unwrap();
                    b.flush().unwrap();
                }
            }
            a.finish().unwrap();
            b.finish().unwrap();
        }
        assert_eq!(
            *threaded.bytes.lock().unwrap(),
            *inline.bytes.lock().unwrap()
        );
        assert_eq!(
            *threaded.writes.lock().unwrap(),
            *inline.writes.lock().unwrap()
        );
    }

    #[test]
    fn drop_writes_what_is_buffered() {
        let out = Shared::default();
        {
            let mut w = WriteBehind::with_capacity(64, out.clone());
            w.write_all(&pattern(100, 1)).unwrap();
        }
        assert_eq!(*out.bytes.lock().unwrap(), pattern(100, 1));
    }

    #[test]
    fn a_failed_write_is_reported_and_sticks() {
        let out = Shared {
            fail_after: Some(2500),
            ..Shared::default()
        };
        let mut w = WriteBehind::with_capacity(1000, out.clone());
        let mut first_error = None;
        for k in 0..10 {
            if let Err(e) = w.write_all(&pattern(700, k)) {
                first_error = Some(e);
                break;
            }
        }
        let e = match first_error {
            Some(e) => e,
            None => w.flush().expect_err("the disk is full"),
        };
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert!(w.write_all(b"more").is_err());
        assert!(w.flush().is_err());
        assert!(out.bytes.lock().unwrap().len() <= 2500);
    }

    #[test]
    fn an_error_is_seen_by_flush_at_the_latest() {
        let out = Shared {
            fail_after: Some(10),
            ..Shared::default()
        };
        let mut w = WriteBehind::with_capacity(1000, out);
        w.write_all(&pattern(100, 0)).unwrap();
        assert!(w.flush().is_err());
        assert!(w.finish().is_err());
    }
}
