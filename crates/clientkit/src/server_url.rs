//! The server's base URL as both binaries accept it on the command line and store it.

use std::fmt;

use reqwest::Url;

/// A server's base URL: `http` or `https`, a host, no credentials, query or fragment.
/// Displayed without a trailing slash, which is also how the CLI's session file and the
/// agent's `state.json` store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl(Url);

impl ServerUrl {
    pub fn url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }

    /// The URL of an API path such as `/api/agent/register`.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.as_str())
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ServerUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        server_url(text)
    }
}

/// Parse a server URL; the error says what is expected (clap prints it after the argument).
pub fn server_url(text: &str) -> Result<ServerUrl, String> {
    const EXPECTED: &str =
        "expected an http:// or https:// URL such as https://watchgrid.example.com";
    let url = Url::parse(text.trim()).map_err(|_| EXPECTED.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(EXPECTED.to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not contain credentials".to_string());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL must not have a query or fragment".to_string());
    }
    Ok(ServerUrl(url))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use super::*;

    #[test]
    fn server_urls() {
        for (input, expected) in [
            ("http://127.0.0.1:9", "http://127.0.0.1:9"),
            ("HTTPS://WG.Example.com:443/", "https://wg.example.com"),
            ("https://h/prefix/", "https://h/prefix"),
        ] {
            assert_eq!(server_url(input).unwrap().as_str(), expected, "{input}");
        }
        assert_eq!(
            server_url("https://h/p/")
                .unwrap()
                .join("/api/agent/register"),
            "https://h/p/api/agent/register"
        );
        for bad in [
            "",
            "wg.example.com",
            "ftp://h",
            "https://u:p@h",
            "https://h/?x=1",
            "https://h/#f",
        ] {
            assert!(server_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_and_parse_agree() {
        let url: ServerUrl = " https://h/prefix/ ".parse().unwrap();
        assert_eq!(url.to_string(), "https://h/prefix");
        assert_eq!(url.url().as_str(), "https://h/prefix/");
        assert_eq!(
            "wg.example.com".parse::<ServerUrl>(),
            Err(
                "expected an http:// or https:// URL such as https://watchgrid.example.com"
                    .to_string()
            )
        );
        assert_eq!(
            server_url("https://u@h"),
            Err("the URL must not contain credentials".to_string())
        );
        assert_eq!(
            server_url("https://h/#f"),
            Err("the URL must not have a query or fragment".to_string())
        );
    }
}
