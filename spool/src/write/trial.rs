//! When the retirer tries to compress a channel's segments.
//!
//! Trying costs a first block's worth of zstd (`TRIAL_BLOCK`) on every
//! segment, shrinking or not. A channel whose traffic does not compress —
//! display traffic of compressed images, mostly — pays that for nothing,
//! segment after segment. So after a segment that did not shrink, the
//! channel's next segments are written as they are without a try: one,
//! then, while tries keep failing, twice as many each time, up to
//! [`MAX_SKIP`]. A segment that shrinks ends the backoff. Traffic that turns
//! compressible is compressed again within [`MAX_SKIP`] segments.

/// Most segments of a channel written without a try between two tries.
pub(crate) const MAX_SKIP: u32 = 8;

/// One channel's backoff.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Trial {
    /// Segments still to write without a try.
    skip_left: u32,
    /// Segments to skip after the next failed try (0: none failed yet).
    next_skip: u32,
}

impl Trial {
    /// Whether the channel's next segment should be tried; counts it if
    /// not.
    pub(crate) fn wanted(&mut self) -> bool {
        if self.skip_left == 0 {
            return true;
        }
        self.skip_left -= 1;
        false
    }

    /// What a try gave: `shrank` or not.
    pub(crate) fn tried(&mut self, shrank: bool) {
        if shrank {
            *self = Trial::default();
            return;
        }
        self.next_skip = (self.next_skip * 2).clamp(1, MAX_SKIP);
        self.skip_left = self.next_skip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of `n` segments are tried when every try fails.
    fn tried_when_nothing_shrinks(n: usize) -> Vec<usize> {
        let mut t = Trial::default();
        (0..n)
            .filter(|_| {
                let want = t.wanted();
                if want {
                    t.tried(false);
                }
                want
            })
            .collect()
    }

    #[test]
    fn failed_tries_space_out_to_the_cap() {
        // Skips of 1, 2, 4, 8, 8, ...
        assert_eq!(
            tried_when_nothing_shrinks(50),
            vec![0, 2, 5, 10, 19, 28, 37, 46]
        );
    }

    #[test]
    fn a_segment_that_shrinks_ends_the_backoff() {
        let mut t = Trial::default();
        for _ in 0..5 {
            while !t.wanted() {}
            t.tried(false);
        }
        while !t.wanted() {}
        t.tried(true);
        assert!(t.wanted() && t.wanted(), "every segment is tried again");
        t.tried(false);
        assert!(!t.wanted(), "a new failure skips one");
        assert!(t.wanted());
    }
}
