//! The CLI's environment: where the session file lives. This is the only module that reads
//! environment variables; clap reads `WATCHGRID_SERVER` and `WATCHGRID_TOKEN` itself.

use std::ffi::OsString;
use std::path::PathBuf;

/// Overrides the directory that holds `session.json`.
pub const CONFIG_DIR_VAR: &str = "WATCHGRID_CONFIG_DIR";

/// The directory of the session file, from the process environment.
pub fn config_dir() -> Result<PathBuf, String> {
    resolve_config_dir(|name| std::env::var_os(name))
}

/// `$WATCHGRID_CONFIG_DIR`, else `$XDG_CONFIG_HOME/watchgrid`, else `$HOME/.config/watchgrid`.
/// Empty values count as unset, and a relative `XDG_CONFIG_HOME` is ignored, as the XDG base
/// directory specification says.
pub fn resolve_config_dir(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, String> {
    let set = |name: &str| var(name).filter(|value| !value.is_empty());
    if let Some(dir) = set(CONFIG_DIR_VAR) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(xdg) = set("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
    {
        return Ok(xdg.join("watchgrid"));
    }
    if let Some(home) = set("HOME") {
        return Ok(PathBuf::from(home).join(".config").join("watchgrid"));
    }
    Err(format!(
        "cannot find a directory for the session file: set {CONFIG_DIR_VAR} or HOME"
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(vars: &[(&str, &str)]) -> Result<PathBuf, String> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        resolve_config_dir(|name| vars.get(name).cloned())
    }

    #[test]
    fn precedence() {
        let all = [
            ("WATCHGRID_CONFIG_DIR", "/override"),
            ("XDG_CONFIG_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(resolve(&all), Ok(PathBuf::from("/override")));
        assert_eq!(resolve(&all[1..]), Ok(PathBuf::from("/xdg/watchgrid")));
        assert_eq!(
            resolve(&all[2..]),
            Ok(PathBuf::from("/home/u/.config/watchgrid"))
        );
        assert!(resolve(&[]).is_err());
    }

    #[test]
    fn empty_and_relative_values_are_ignored() {
        assert_eq!(
            resolve(&[
                ("WATCHGRID_CONFIG_DIR", ""),
                ("XDG_CONFIG_HOME", "relative"),
                ("HOME", "/h"),
            ]),
            Ok(PathBuf::from("/h/.config/watchgrid"))
        );
    }
}
