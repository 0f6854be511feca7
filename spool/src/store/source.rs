//! Where a parser takes a segment's bytes from: a slice already in memory,
//! or a bounded window over the file ([`crate::read`]'s readers). The
//! record parser and the block decoder ask for the bytes they need, a
//! record or a block at a time, so a reader never holds more of a segment
//! than one window, one record or one block, whatever the file claims.

/// Bytes `0..total()` of a segment (or of a part of one), handed out on
/// demand.
pub trait ByteSource {
    /// How many bytes there are.
    fn total(&self) -> u64;

    /// Bytes `at..at + len`, cut at [`ByteSource::total`]: fewer only at
    /// the end. `len` is what the caller needs at once (a record header, a
    /// whole record, a whole block), each bounded by the format's limits,
    /// so a window grows to at most that.
    fn get(&mut self, at: u64, len: usize) -> std::io::Result<&[u8]>;
}

impl ByteSource for &[u8] {
    fn total(&self) -> u64 {
        self.len() as u64
    }

    fn get(&mut self, at: u64, len: usize) -> std::io::Result<&[u8]> {
        let start = usize::try_from(at).map_or(self.len(), |a| a.min(self.len()));
        let end = start.saturating_add(len).min(self.len());
        Ok(&self[start..end])
    }
}
