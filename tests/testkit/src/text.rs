//! What a tool printed, checked for what must not reach a terminal.

/// Escape sequences a hostile capture puts in its strings: an OSC that
/// retitles the terminal, a CSI that clears the screen, and a C1 CSI.
pub const TERMINAL_ESCAPES: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m";

/// Whether `s` holds a control character other than the line breaks and
/// tab text is laid out with.
pub fn has_control(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
}
