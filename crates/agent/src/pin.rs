//! Key pinning: the server's WireGuard public key is stored at enrollment and never changed
//! silently. When the server presents another key, the agent refuses to talk to it and says
//! how to re-enroll.

/// What the server presents, compared with the pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// The same key: whatever is wrong, it is not the server's identity.
    Matches,
    /// Another key.
    Changed { pinned: String, presented: String },
}

/// Compare the pinned key with the one the server presents now. Keys are base64 text;
/// surrounding whitespace is not part of a key.
pub fn check(pinned: &str, presented: &str) -> PinCheck {
    if pinned.trim() == presented.trim() {
        PinCheck::Matches
    } else {
        PinCheck::Changed {
            pinned: pinned.trim().to_string(),
            presented: presented.trim().to_string(),
        }
    }
}

/// The one documented message of a changed key (printed after `watchgrid-agent: `).
pub fn refusal_message(pinned: &str, presented: &str, server_url: &str) -> String {
    format!(
        "the server's WireGuard key changed (pinned {pinned}, server now presents {presented}); \
         refusing to connect. If the server was rebuilt on purpose, re-enroll this device: \
         watchgrid-agent enroll --server {server_url} --token <new token> --force"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const NEW: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    #[test]
    fn comparison() {
        for (pinned, presented, expected) in [
            (OLD, OLD, PinCheck::Matches),
            (
                OLD,
                " xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n",
                PinCheck::Matches,
            ),
            (
                OLD,
                NEW,
                PinCheck::Changed {
                    pinned: OLD.into(),
                    presented: NEW.into(),
                },
            ),
            (
                OLD,
                "",
                PinCheck::Changed {
                    pinned: OLD.into(),
                    presented: String::new(),
                },
            ),
        ] {
            assert_eq!(check(pinned, presented), expected, "{presented:?}");
        }
    }

    #[test]
    fn the_refusal_message_is_exactly_the_documented_one() {
        assert_eq!(
            refusal_message(OLD, NEW, "https://wg.example.com"),
            "the server's WireGuard key changed (pinned \
             xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=, server now presents \
             TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=); refusing to connect. If the server \
             was rebuilt on purpose, re-enroll this device: watchgrid-agent enroll --server \
             https://wg.example.com --token <new token> --force"
        );
        let err = crate::error::AgentError::KeyChanged {
            pinned: OLD.into(),
            presented: NEW.into(),
            server_url: "https://wg.example.com".into(),
        };
        assert_eq!(
            err.one_line(),
            refusal_message(OLD, NEW, "https://wg.example.com")
        );
        assert_eq!(err.exit_code(), crate::error::EXIT_KEY_CHANGED);
    }
}
