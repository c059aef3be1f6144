//! Messages for the terminal: one printable line, and an I/O error in a few lower-case words.

/// Control characters (newlines included) become spaces, so that a message from the server
/// stays on one line and cannot drive the terminal.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// An io::Error in a few lower-case words, without the `(os error N)` suffix.
pub fn io_text(err: &std::io::Error) -> String {
    lower_first(&strip_os_error(&err.to_string()))
}

/// `Connection refused (os error 111)` → `Connection refused`.
pub(crate) fn strip_os_error(text: &str) -> String {
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text.to_string(),
    }
}

pub(crate) fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_suffixes_are_dropped() {
        assert_eq!(
            strip_os_error("Connection refused (os error 111)"),
            "Connection refused"
        );
        assert_eq!(lower_first("Connection refused"), "connection refused");
        assert_eq!(
            strip_os_error("odd (os error 5) text"),
            "odd (os error 5) text"
        );
        assert_eq!(lower_first(""), "");
    }

    #[test]
    fn io_errors_are_a_few_lower_case_words() {
        let err = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_text(&err), "no such file or directory");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(one_line("  bad\r\n\u{1b}[31mred\n"), "bad   [31mred");
    }
}
