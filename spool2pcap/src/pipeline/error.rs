//! Why a conversion (`convert`, `convert --follow`, an excerpt's reading)
//! failed: one error type for the whole pipeline, so that the CLI maps
//! every failure to one line and one exit code.

use std::path::PathBuf;

use pcap_file::PcapError;
use spool::read::capture::OpenError;

use crate::guard::CaptureError;
use crate::output::{CreateError, OutputTarget};

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The capture directory could not be read.
    #[error(transparent)]
    Open(#[from] CaptureError),
    /// A requested channel is not in the capture.
    #[error("{capture}: no channel {name:?} (channels: {available})")]
    NoSuchChannel {
        /// The capture directory.
        capture: PathBuf,
        /// The channel asked for.
        name: String,
        /// The channels there are, comma-separated.
        available: String,
    },
    /// A channel name that cannot be used as a file name.
    #[error("refusing channel name: {0}")]
    InvalidChannel(#[from] spool::store::format::InvalidChannelName),
    /// `--follow` writes one stream: it needs `-w FILE` or `-w -`.
    #[error("--follow writes one merged stream: use -w FILE or -w -, not -o OUTDIR")]
    FollowNeedsStream,
    /// An output file exists and `force` was not given.
    #[error("{0}: already exists (use --force to overwrite)")]
    Exists(PathBuf),
    /// An output file or directory, or standard output, could not be
    /// created or opened.
    #[error("{path}: cannot create: {source}")]
    Create {
        /// What could not be created.
        path: OutputTarget,
        /// Why.
        source: CreateError,
    },
    /// Writing the output failed (disk full, closed pipe…). The output is
    /// incomplete.
    #[error(
        "{path}: write failed, output incomplete: {}",
        describe_pcap_error(source)
    )]
    Write {
        /// Where.
        path: OutputTarget,
        /// Why.
        source: PcapError,
    },
}

impl ConvertError {
    /// Whether the error is the caller's mistake (a usage error) rather than
    /// a problem with the input or the output.
    pub fn is_usage(&self) -> bool {
        match self {
            ConvertError::NoSuchChannel { .. } | ConvertError::FollowNeedsStream => true,
            ConvertError::Create { source, .. } => source.is_usage(),
            _ => false,
        }
    }

    /// The error of creating `target` failing: [`ConvertError::Exists`]
    /// for a file that exists, [`ConvertError::Create`] otherwise.
    pub fn create(target: &OutputTarget, source: CreateError) -> ConvertError {
        match (source, target.path()) {
            (CreateError::Exists, Some(path)) => ConvertError::Exists(path.to_path_buf()),
            (source, _) => ConvertError::Create {
                path: target.clone(),
                source,
            },
        }
    }
}

impl From<OpenError> for ConvertError {
    fn from(e: OpenError) -> ConvertError {
        ConvertError::Open(CaptureError::Open(e))
    }
}

/// `pcap-file` shows every I/O error as "Error reading bytes", even when
/// writing; say what the system said instead.
fn describe_pcap_error(e: &PcapError) -> String {
    match e {
        PcapError::IoError(io) => io.to_string(),
        other => other.to_string(),
    }
}
