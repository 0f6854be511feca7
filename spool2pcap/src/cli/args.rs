//! The command line as clap sees it: commands, options and their help.
//!
//! `-h` gives each command's short help, `--help` the long one (clap's
//! convention, as in tshark's own tools); the long explanation of the whole
//! tool (exit status, ports, what is made up, the security model, examples)
//! is the top-level `--help`'s closing text only, once. Completions and the
//! man page are generated from these definitions ([`Cli::command`]), so
//! they never drift from the parser.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use spool2pcap::{Format, Redaction, TimeMode};

/// Convert ryll capture spools to pcap/pcapng for Wireshark.
///
/// A capture directory (manifest.json and spool/, as ryll writes it)
/// becomes pcap or pcapng files that Wireshark opens decoded as SPICE, with
/// no option. `info`, `verify` and `recover` look at and repair captures;
/// `completions` and `man` print what a shell and man(1) need.
#[derive(Parser, Debug)]
#[command(name = "spool2pcap", version, after_long_help = after_help())]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write pcap/pcapng files from a capture directory.
    ///
    /// One file per channel (-o OUTDIR), or every channel merged in time
    /// order into one (-w FILE, or -w - for standard output). The format
    /// follows -w's file name (.pcapng: pcapng) unless --format says. A cut
    /// (--from, --until, --count) keeps part of the session. Damaged data is
    /// skipped, marked in the output where it was, and makes the exit
    /// status 1.
    #[command(after_long_help = CONVERT_EXAMPLES)]
    Convert(ConvertArgs),
    /// Summarize capture directories, like capinfos.
    ///
    /// Records, bytes, time span, drops, damage and clean shutdown per
    /// channel, counted by reading every record. Several directories are
    /// summarized one after the other (with --json: a JSON array); the exit
    /// status is the worst of them.
    Info {
        /// Capture directories (each holding manifest.json and spool/).
        #[arg(value_name = "DIR", required = true, num_args = 1..)]
        dirs: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read every record, print each damaged region, exit 1 if any.
    ///
    /// The regions, records and bytes lost are those `info` reports for the
    /// same capture.
    Verify {
        /// Capture directory.
        dir: PathBuf,
        /// Print the verdict as JSON (no line per region as it is found).
        #[arg(long)]
        json: bool,
        /// Print nothing; the exit status says it (0 intact, 1 damaged).
        #[arg(short, long, conflicts_with = "json")]
        quiet: bool,
    },
    /// Move what a crashed session left staged in memory into its capture.
    ///
    /// convert/info read staged segments in place without this, but a
    /// reboot loses them.
    Recover {
        /// Capture directory.
        dir: PathBuf,
    },
    /// List the in-memory traffic rings of ryll sessions that died.
    ///
    /// ryll records every session into one (its next start writes them as
    /// bug reports). With --convert, write each as a pcap and remove it;
    /// with --delete, remove them unread.
    Rings {
        /// Write each ring, all channels merged, keystrokes and clipboard
        /// redacted, as OUTDIR/<ring>.pcap (created 0700 if missing), then
        /// remove the ring.
        #[arg(long, value_name = "OUTDIR", conflicts_with = "delete")]
        convert: Option<PathBuf>,
        /// Remove the rings without reading them.
        #[arg(long)]
        delete: bool,
    },
    /// Print a shell completion script to standard output.
    ///
    /// Install it where the shell looks, e.g. for bash:
    /// spool2pcap completions bash > ~/.local/share/bash-completion/completions/spool2pcap
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to standard output.
    ///
    /// Install it with:
    /// spool2pcap man > ~/.local/share/man/man1/spool2pcap.1
    Man,
}

/// `--format`: the command line's names for [`Format`] (the library's
/// types do not depend on clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Classic libpcap format (`.pcap`), nanosecond timestamps.
    Pcap,
    /// pcapng (`.pcapng`): one interface per channel, named after it.
    Pcapng,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Pcap => Format::Pcap,
            FormatArg::Pcapng => Format::Pcapng,
        }
    }
}

/// `--time`: the command line's names for [`TimeMode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeArg {
    /// Wall-clock time: session start (Unix epoch) + the record's offset.
    Absolute,
    /// Time since the session started (the first packet is near 0).
    Relative,
}

impl From<TimeArg> for TimeMode {
    fn from(t: TimeArg) -> TimeMode {
        match t {
            TimeArg::Absolute => TimeMode::Absolute,
            TimeArg::Relative => TimeMode::Relative,
        }
    }
}

/// `convert`'s options.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("out").required(true).args(["outdir", "write"])))]
pub struct ConvertArgs {
    /// Capture directory (the one holding manifest.json and spool/).
    pub dir: PathBuf,
    /// Write one file per channel into OUTDIR.
    ///
    /// The files are named <channel>.pcap (or .pcapng); OUTDIR is created
    /// with mode 0700 if missing.
    #[arg(short = 'o', long = "outdir", value_name = "OUTDIR")]
    pub outdir: Option<PathBuf>,
    /// Write all channels, merged in time order, into FILE ("-": stdout).
    ///
    /// FILE is created with mode 0600; a FILE named *.pcapng gets pcapng
    /// unless --format says otherwise.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Convert only these channels (e.g. display,main).
    ///
    /// Comma-separated or repeated. Default: all channels.
    #[arg(long = "channel", value_name = "NAME", value_delimiter = ',', value_parser = parse_channel)]
    pub channels: Vec<String>,
    /// Output format [default: from -w FILE's name, .pcapng: pcapng, else pcap].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Timestamps: wall clock (session start + offset) or from session start.
    #[arg(long, value_enum, default_value_t = TimeArg::Absolute)]
    pub time: TimeArg,
    /// Overwrite existing output files (regular files only).
    #[arg(long)]
    pub force: bool,
    /// No synthetic SPICE link phase (then nothing decodes as SPICE).
    ///
    /// ryll records channels after their link phase, and Wireshark's SPICE
    /// dissector decodes nothing without one; by default a synthetic one is
    /// put in front of every channel whose capture lacks it.
    #[arg(long)]
    pub no_synth_link: bool,
    /// No synthetic TCP handshake and FIN exchange.
    #[arg(long)]
    pub no_synth_tcp: bool,
    /// Follow a capture that is being written (needs -w FILE or -w -).
    ///
    /// Records are streamed as they are committed (flushing every poll),
    /// until the session closes.
    #[arg(long, conflicts_with_all = ["from", "until", "count"])]
    pub follow: bool,
    /// Zero what must not be published: inputs, keys, keystrokes, clipboard, all, none.
    ///
    /// Comma-separated or repeated. "inputs" (or its synonyms "keys",
    /// "keystrokes"): scancodes of key messages; "clipboard": clipboard data
    /// in agent messages; "all": both; "none": nothing. Message headers,
    /// sizes, timing and TCP sequence numbers are kept.
    #[arg(long = "redact", value_name = "WHAT", value_parser = parse_redaction)]
    pub redact: Vec<Redaction>,
    /// Keep records from SECS seconds after the session start on.
    ///
    /// Like editcap -A. A cut (--from, --until, --count) writes one classic
    /// pcap (-w FILE or -w -); each channel and direction starts at its
    /// first SPICE message that begins in the cut.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub from: Option<u64>,
    /// Keep records up to SECS seconds after the session start.
    ///
    /// Like editcap -B.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub until: Option<u64>,
    /// Keep at most the first N data records (from --from on).
    ///
    /// Like tshark -c: all channels, in time order. Records with the same
    /// timestamp as the Nth are kept too, and a message begun before the
    /// cut is left out.
    #[arg(short = 'c', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Put the synthetic server on PORT instead of 5930.
    ///
    /// 5930 and the client ports are ones no Wireshark dissector claims, so
    /// SPICE decodes with no option; on another port (5900 is Wireshark's
    /// VNC) open the file with the printed `wireshark -d tcp.port==PORT,spice`.
    #[arg(long, value_name = "PORT", default_value_t = spool2pcap::spice::channels::SERVER_PORT,
          value_parser = clap::value_parser!(u16).range(1..),
          conflicts_with_all = ["from", "until", "count"])]
    pub server_port: u16,
    /// Print nothing but errors (no summary, hint or progress bar).
    #[arg(short, long)]
    pub quiet: bool,
    /// Map the segment files of a cleanly closed capture owned by you
    /// instead of reading them.
    ///
    /// Faster, but a segment that shrinks or hits a disk error
    /// mid-conversion then kills spool2pcap with SIGBUS instead of giving
    /// an error.
    #[arg(long, conflicts_with = "no_mmap")]
    pub mmap: bool,
    /// Read segment files (the default).
    #[arg(long, hide = true)]
    pub no_mmap: bool,
}

impl ConvertArgs {
    /// Whether a cut (--from, --until, --count) was asked for.
    pub fn has_cut(&self) -> bool {
        self.from.is_some() || self.until.is_some() || self.count.is_some()
    }
}

fn parse_redaction(s: &str) -> Result<Redaction, String> {
    Redaction::parse(s).map_err(|e| e.to_string())
}

fn parse_channel(s: &str) -> Result<String, String> {
    spool::store::format::validate_channel_name(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// Seconds (decimals allowed, e.g. 12.5) as nanoseconds.
fn parse_secs(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?}: not a number of seconds (e.g. 12 or 12.5)");
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let mut ns = 0u64;
    for (i, b) in frac.bytes().take(9).enumerate() {
        ns += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
    }
    secs.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(ns))
        .ok_or_else(bad)
}

const CONVERT_EXAMPLES: &str = "\
Examples:
  spool2pcap convert ./capture -o ./pcaps
  spool2pcap convert ./capture -w all.pcapng
  spool2pcap convert ./capture --channel display,main -w - | wireshark -k -i -
  spool2pcap convert --follow -w - ./capture | wireshark -k -i -
  spool2pcap convert ./capture -w report.pcapng --redact inputs,clipboard
  spool2pcap convert ./capture -w first-minute.pcap --until 60
  spool2pcap convert ./capture -w - --from 30 -c 100 | tshark -r -";

/// The top-level `--help`'s closing text: exit codes, how channels become
/// TCP connections (ports and SPICE types listed from the one channel
/// table, [`spool2pcap::spice::channels::SPICE_CHANNELS`]), the security
/// model and examples.
fn after_help() -> String {
    use spool2pcap::spice::channels::{known_port, SERVER_PORT, SPICE_CHANNELS};
    let words = |text: &str| text.split(' ').map(str::to_string).collect::<Vec<_>>();
    let per_channel = |value: &dyn Fn(&str, u8) -> String| {
        SPICE_CHANNELS
            .iter()
            .map(|(name, ty)| format!("{name} {},", value(name, *ty)))
            .collect::<Vec<_>>()
    };
    let ports = wrap(
        [
            words("Client ports:"),
            per_channel(&|name, _| known_port(name).unwrap_or_default().to_string()),
            words("other channels 10100-15099 (hash of the name)."),
        ]
        .concat(),
    );
    let mut types = per_channel(&|_, ty| ty.to_string());
    types[0].insert(0, '(');
    let types = wrap(
        [
            words("type"),
            types,
            words("other names: 10, port) and, if the channel was closed cleanly, a FIN exchange."),
        ]
        .concat(),
    );
    format!(
        "\
Exit status:
  0  success (also when the reader of standard output goes away, as
     with `spool2pcap convert -w - DIR | head`: the output then ends early)
  1  success, but damaged spool data was found and skipped (see the report)
  2  usage error
  3  the capture could not be read, or the output could not be written

Each channel becomes a TCP connection from 10.0.0.1:<port> to 10.0.0.2:{SERVER_PORT}.
{ports}
No Wireshark dissector claims these ports, so Wireshark's SPICE heuristic
decodes the connections with no option (the real server's address is in
the pcapng section comment and in `spool2pcap info`).

ryll records channels after their SPICE link phase, and Wireshark's SPICE
dissector decodes nothing without one, so by default each connection gets a
synthetic TCP handshake, a synthetic link phase announcing the channel's SPICE
{types}
Data keeps client seq 1000 and server seq 2000. Open the result with:
wireshark FILE

{AFTER_HELP_REST}"
    )
}

/// `words` joined by spaces into lines of at most 78 columns.
fn wrap(words: Vec<String>) -> String {
    let mut text = String::new();
    let mut line = String::new();
    for word in words {
        if !line.is_empty() && line.len() + 1 + word.len() > 78 {
            text.push_str(&line);
            text.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    text + &line
}

const AFTER_HELP_REST: &str = "\
Capture directories are untrusted (bug reports come from strangers). What
one holds may make spool2pcap read the regular files inside it (bounded in
size), report damage and skip it, and copy its strings, control characters
replaced and length cut, into the output and onto the terminal. It may not
make spool2pcap follow a symlink (none is followed on an output path, nor a
capture file's), wait on a FIFO or device, write anywhere but the output
named, overwrite one of the capture's own files or write inside its spool/,
or write a file Wireshark refuses.

Shell completions and the man page:
  spool2pcap completions bash > ~/.local/share/bash-completion/completions/spool2pcap
  spool2pcap man > ~/.local/share/man/man1/spool2pcap.1

Examples:
  spool2pcap convert ./capture -o ./pcaps
  spool2pcap convert ./capture -w all.pcapng
  spool2pcap convert ./capture --channel display -w - | wireshark -k -i -
  spool2pcap convert --follow -w - ./capture | wireshark -k -i -
  spool2pcap convert ./capture -w report.pcapng --redact inputs,clipboard
  spool2pcap convert ./capture -w - --from 30 --until 40 | tshark -r -
  spool2pcap info ./capture --json
  spool2pcap info ./captures/*
  spool2pcap recover ./capture
  spool2pcap verify ./capture";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_to_nanoseconds() {
        assert_eq!(parse_secs("12"), Ok(12_000_000_000));
        assert_eq!(parse_secs("12.5"), Ok(12_500_000_000));
        assert_eq!(parse_secs("0.000000001"), Ok(1));
        assert_eq!(parse_secs(".25"), Ok(250_000_000));
        for bad in ["", ".", "-1", "1e3", "x", "99999999999999999999"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
