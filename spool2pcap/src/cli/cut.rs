//! `convert --from/--until/--count`: which part of the session a cut keeps,
//! as the library's [`Selection::Window`] (session times, both ends
//! included).

use std::collections::BinaryHeap;
use std::path::Path;

use spool::read::event::Event;
use spool2pcap::guard::{open_capture, CaptureError};
use spool2pcap::Selection;

/// The window of session times `from_ns..=until_ns`, narrowed to end at the
/// `count`th data record at or after `from_ns` (all `channels`, or every
/// channel if empty, in time order) when a count is given.
pub fn window(
    capture: &Path,
    channels: &[String],
    from_ns: u64,
    until_ns: u64,
    count: Option<u64>,
) -> Result<Selection, CaptureError> {
    let until_ns = match count {
        Some(n) => until_ns.min(nth_time(capture, channels, from_ns, until_ns, n)?),
        None => until_ns,
    };
    Ok(Selection::Window { from_ns, until_ns })
}

/// Session time of the `n`th data record (1-based, all channels merged by
/// time) inside `from_ns..=until_ns`, or `until_ns` if there are fewer.
/// Keeps the `n` earliest times seen in a max-heap: memory bounded by what
/// the user asked for, not by the capture.
fn nth_time(
    capture: &Path,
    channels: &[String],
    from_ns: u64,
    until_ns: u64,
    n: u64,
) -> Result<u64, CaptureError> {
    let cap = open_capture(capture)?;
    let keep = usize::try_from(n).unwrap_or(usize::MAX);
    let mut earliest: BinaryHeap<u64> = BinaryHeap::new();
    for files in cap.channels() {
        if !channels.is_empty() && !channels.contains(&files.name) {
            continue;
        }
        let Some(mut reader) = cap.reader(&files.name) else {
            continue;
        };
        while let Some(event) = reader.next_event() {
            let Event::Data(d) = event else { continue };
            if d.ts_ns < from_ns || d.ts_ns > until_ns {
                continue;
            }
            if earliest.len() < keep {
                earliest.push(d.ts_ns);
            } else if earliest.peek().is_some_and(|&max| d.ts_ns < max) {
                earliest.pop();
                earliest.push(d.ts_ns);
            }
        }
    }
    Ok(match earliest.peek() {
        Some(&t) if earliest.len() >= keep => t,
        _ => until_ns,
    })
}
