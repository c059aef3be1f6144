//! Logging set-up: `tracing` with text or JSON lines on stderr.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber. `level` is an `EnvFilter` directive (`info`,
/// `watchgrid_server=debug,info`, ...). Calling it twice is harmless (tests do).
pub fn init(format: LogFormat, level: &str) {
    let filter =
        EnvFilter::try_new(with_quiet_dns(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a log file or journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// `hickory-server` logs every DNS request at `info`; keep it at `warn` unless the filter names
/// it (`WATCHGRID_LOG_LEVEL=info,hickory_server=info` logs queries).
pub fn with_quiet_dns(level: &str) -> String {
    if level.contains("hickory_server") {
        level.to_owned()
    } else {
        format!("{level},hickory_server=warn")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dns_request_logs_stay_at_warn_unless_asked_for() {
        assert_eq!(super::with_quiet_dns("info"), "info,hickory_server=warn");
        assert_eq!(
            super::with_quiet_dns("debug,hickory_server=info"),
            "debug,hickory_server=info"
        );
    }
}
