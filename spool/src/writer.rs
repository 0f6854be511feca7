//! (in progress)
pub struct Spool;
pub struct SpoolConfig;
pub struct ChannelCounters;
pub struct ChannelHandle;
pub struct SpoolError;
pub enum StagingChoice {}
