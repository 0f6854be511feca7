//! The deadline, file and text helpers do what the tests rely on: a
//! command or call past its deadline fails the test instead of hanging
//! it, a snapshot passes over a FIFO without opening it, and a control
//! character is found.

use std::panic::catch_unwind;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::deadline::{call_within, run_within};
use testkit::files::{mkfifo, snapshot};
use testkit::text::{has_control, TERMINAL_ESCAPES};

#[test]
fn a_command_past_its_deadline_is_killed_and_fails_the_test() {
    let start = Instant::now();
    let r =
        catch_unwind(|| run_within(Command::new("sleep").arg("30"), Duration::from_millis(200)));
    assert!(r.is_err());
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_command_within_its_deadline_gives_all_it_printed() {
    // More than a pipe holds: read while it runs, never blocked.
    let o = run_within(
        Command::new("sh").args(["-c", "head -c 1000000 /dev/zero; echo err >&2; exit 3"]),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(o.stdout.len(), 1_000_000);
    assert_eq!(o.stderr, b"err\n");
}

#[test]
fn a_call_past_its_deadline_fails_the_test() {
    let r = catch_unwind(|| {
        call_within("sleeper", Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(30))
        })
    });
    assert!(r.is_err());
    assert_eq!(call_within("quick", Duration::from_secs(30), || 7), 7);
}

#[test]
fn a_snapshot_lists_a_fifo_without_opening_it() {
    let dir = std::env::temp_dir().join(format!("testkit-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/file"), b"bytes").unwrap();
    mkfifo(&dir.join("fifo"));
    let s = call_within("snapshot", Duration::from_secs(30), {
        let dir = dir.clone();
        move || snapshot(&dir)
    });
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[&dir.join("sub/file")], b"bytes");
    assert!(s[&dir.join("fifo")].is_empty());
}

#[test]
fn control_characters_are_found_line_breaks_are_not() {
    assert!(has_control(TERMINAL_ESCAPES));
    assert!(has_control("\u{9b}"));
    assert!(!has_control("line\nnext\ttab\r\n é"));
}
