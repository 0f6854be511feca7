//! Following a capture while it is written.

mod common;

use std::time::{Duration, Instant};

use common::*;
use spool::read::event::Event;
use spool::read::follow::{Follower, Status};
use spool::Direction;

#[test]
fn follower_sees_every_record_in_order_soon_and_ends_at_close() {
    let dirs = Dirs::new();
    let spool = spool(
        dirs.config()
            .segment_bytes(64 << 10)
            .channels(&["display", "inputs"]),
    );
    let mut follower = Follower::open(&dirs.capture()).unwrap();
    let start = Instant::now();
    let n = 3000u64;
    let mut seen: Vec<(String, u64)> = Vec::new();
    let mut worst_latency = Duration::ZERO;
    let mut status = Status::Running;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..n {
                let ch = if i % 10 == 0 { "inputs" } else { "display" };
                // The timestamp is the append's wall time since `start`.
                let ts = start.elapsed().as_nanos() as u64;
                let mut data = payload(i as usize, 200 + (i as usize % 900));
                data[..8].copy_from_slice(&i.to_le_bytes());
                append_kept(&spool, ch, Direction::ServerToClient, ts, &data);
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            spool.close().unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while status == Status::Running {
            assert!(Instant::now() < deadline, "follower never finished");
            status = follower.poll(&mut |ch, ev| match ev {
                Event::Data(d) => {
                    let i = u64::from_le_bytes(d.payload[..8].try_into().unwrap());
                    let latency = start
                        .elapsed()
                        .saturating_sub(Duration::from_nanos(d.ts_ns));
                    worst_latency = worst_latency.max(latency);
                    seen.push((ch.to_string(), i));
                }
                Event::Gap(_) => {}
                Event::Damage(d) => panic!("{ch}: {d}"),
            });
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert_eq!(status, Status::Finished { clean: true });
    assert_eq!(seen.len() as u64, n);
    for ch in ["display", "inputs"] {
        let idx: Vec<u64> = seen
            .iter()
            .filter(|(c, _)| c == ch)
            .map(|(_, i)| *i)
            .collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "{ch} out of order");
    }
    // Informational: the latency target is measured by spool2pcap's follow
    // benchmark, not asserted in a unit test.
    eprintln!("worst append-to-follower latency: {worst_latency:?}");
}

#[test]
fn follower_finishes_when_the_writer_dies() {
    let dirs = Dirs::new();
    let spool = spool(dirs.config().channels(&["main"]));
    for i in 0..10u64 {
        spool.append_at("main", Direction::ClientToServer, i, &[i as u8; 100]);
    }
    let mut follower = Follower::open(&dirs.capture()).unwrap();
    let mut got = 0;
    assert_eq!(
        follower.poll(&mut |_, ev| if let Event::Data(_) = ev {
            got += 1
        }),
        Status::Running
    );
    assert_eq!(got, 10);
    // Leak the spool as a crash would: no close, and the staging lock freed
    // by hand below is what a dead process leaves.
    let staging = spool.staging_dir().to_path_buf();
    std::mem::forget(spool);
    // Simulate the dead writer: its flock is released when its process
    // ends; here, by replacing the lock file with one nobody holds.
    std::fs::remove_file(staging.join("lock")).unwrap();
    std::fs::write(staging.join("lock"), b"").unwrap();
    let status = follower.poll(&mut |_, _| {});
    assert_eq!(status, Status::Finished { clean: false });
}

/// One event as a value, for comparing a reader's output with a
/// follower's: everything but `records_lost`, which only the reader can
/// tell (from sequence numbers across the whole channel).
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Data(Direction, u64, u32, Vec<u8>),
    Gap(spool::read::event::Gap),
    Damage(std::path::PathBuf, u64, u64, spool::read::event::DamageKind),
}

impl Seen {
    fn of(ev: Event<'_>) -> Seen {
        match ev {
            Event::Data(d) => Seen::Data(d.direction, d.ts_ns, d.seq, d.payload.to_vec()),
            Event::Gap(g) => Seen::Gap(g),
            Event::Damage(d) => Seen::Damage(d.file, d.offset, d.len, d.kind),
        }
    }
}

type ByChannel = std::collections::BTreeMap<String, Vec<Seen>>;

fn read_all(dir: &std::path::Path) -> ByChannel {
    let capture = spool::Capture::open(dir).unwrap();
    let mut out = ByChannel::new();
    for ch in capture.channels() {
        let mut r = capture.reader(&ch.name).unwrap();
        let mut seen = Vec::new();
        while let Some(ev) = r.next_event() {
            seen.push(Seen::of(ev));
        }
        out.insert(ch.name.clone(), seen);
    }
    out
}

fn follow_all(dir: &std::path::Path) -> ByChannel {
    let mut follower = Follower::open(dir).unwrap();
    let mut out = ByChannel::new();
    for _ in 0..100 {
        let status = follower.poll(&mut |ch, ev| {
            out.entry(ch.to_string()).or_default().push(Seen::of(ev));
        });
        if status != Status::Running {
            for ch in follower.channels() {
                out.entry(ch.to_string()).or_default();
            }
            return out;
        }
    }
    panic!(
        "{}: the follower never finished a closed capture",
        dir.display()
    );
}

/// Whatever the damage, a follower of a closed capture yields exactly what
/// the reader yields: the same records, and the same damage reported at the
/// same place. They parse segments with one parser.
#[test]
fn follower_reads_every_damaged_fixture_as_the_reader_does() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/damaged");
    let mut fixtures: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    fixtures.sort();
    assert!(
        fixtures.len() >= 6,
        "fixtures missing in {}",
        root.display()
    );
    for dir in fixtures {
        let read = read_all(&dir);
        let followed = follow_all(&dir);
        assert_eq!(
            read.keys().collect::<Vec<_>>(),
            followed.keys().collect::<Vec<_>>(),
            "{}: channels",
            dir.display()
        );
        for (ch, seen) in &read {
            let records = |v: &[Seen]| v.iter().filter(|s| matches!(s, Seen::Data(..))).count();
            assert!(
                records(seen) > 0 || dir.ends_with("hostile-name"),
                "{}: {ch}: nothing read",
                dir.display()
            );
            assert_eq!(
                records(seen),
                records(&followed[ch]),
                "{}: {ch}: records",
                dir.display()
            );
            assert_eq!(seen, &followed[ch], "{}: {ch}", dir.display());
        }
    }
}
