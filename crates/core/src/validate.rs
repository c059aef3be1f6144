//! Input rules shared by every entry point (handlers, operator commands, workers); each returns the reason a value is refused. The rules
//! every text input passes whatever the handler ([`plain_text`], [`json_text`]) are applied by
//! the extractors and the request middleware, so both backends see the same input: PostgreSQL
//! cannot store a NUL in `text` or `jsonb`, SQLite can, and neither should.

use serde_json::Value;

/// Longest value, in characters, that an error reason or an audit row quotes; longer input is
/// cut, so a 900 KB invalid value does not come back 900 KB long.
pub const MAX_QUOTED_CHARS: usize = 512;

/// Tenant slugs that would collide with the Magic DNS zone's own names (`ns.<domain>` is the
/// name server, `hostmaster.<domain>` the SOA contact).
pub const RESERVED_TENANT_SLUGS: &[&str] = &["ns", "hostmaster"];

/// Tenant slugs: a DNS label (they become part of Magic DNS names): 1–63 of `a-z`, `0-9`, `-`,
/// not starting or ending with `-`.
pub fn slug(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && !value.starts_with('-')
        && !value.ends_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(
            "must be 1-63 lower-case letters, digits and '-', not starting or ending with '-'"
                .into(),
        )
    }
}

/// Tenant slugs: a [`slug`] that is not one of the Magic DNS zone's own names
/// ([`RESERVED_TENANT_SLUGS`]), since the slug becomes `<slug>.<domain>`.
pub fn tenant_slug(value: &str) -> Result<(), String> {
    slug(value)?;
    if RESERVED_TENANT_SLUGS.contains(&value) {
        return Err(format!(
            "{value:?} is reserved: <slug>.<Magic DNS domain> would collide with the DNS zone's own \
             name {value}.<domain>; choose another slug"
        ));
    }
    Ok(())
}

/// Usernames: 1–64 of letters, digits, `.`, `_`, `-`, `@`, starting with a letter or digit.
/// Stored lower-case.
pub fn username(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(
            "must be 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit"
                .into(),
        )
    }
}

/// Display names: 1–100 characters, not only spaces, and no control or invisible format
/// characters ([`is_hidden`]): a bidirectional override (U+202E) makes a name read differently
/// from what it is.
pub fn display_name(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if value.chars().count() > 100 {
        return Err("must be at most 100 characters".into());
    }
    if let Some(c) = value.chars().find(|&c| is_hidden(c)) {
        return Err(format!(
            "must not contain control or format characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(())
}

/// Control characters (Unicode Cc), format characters (Cf: bidirectional embeddings, overrides
/// and isolates, zero-width characters, the BOM, tags) and the line and paragraph separators:
/// characters that are invisible or change how the text around them is shown.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            u32::from(c),
            0x00AD
                | 0x0600..=0x0605
                | 0x061C
                | 0x06DD
                | 0x070F
                | 0x0890..=0x0891
                | 0x08E2
                | 0x180E
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x2064
                | 0x2066..=0x206F
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0001
                | 0xE0020..=0xE007F
        )
}

/// A path segment or query value: no control characters at all (no identifier, slug, filter
/// or cursor has one).
pub fn plain_text(value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "must not contain control characters (found U+{:04X})",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// Every string of a JSON body, keys included: no NUL. Returns the field's path (`name`,
/// `tags[2]`) and the reason.
pub fn json_text(value: &Value) -> Result<(), (String, String)> {
    fn walk(value: &Value, path: &mut String) -> Result<(), (String, String)> {
        let refuse = |path: &str| {
            let field = if path.is_empty() { "body" } else { path };
            Err((
                bounded(field),
                "must not contain the NUL character (U+0000)".to_owned(),
            ))
        };
        match value {
            Value::String(text) if text.contains('\0') => refuse(path),
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{index}]"));
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Value::Object(members) => {
                for (key, item) in members {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    if key.contains('\0') {
                        return refuse(path);
                    }
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(value, &mut String::new())
}

/// `text` as an error reason or audit row may quote it: NULs escaped (no backend stores them
/// alike) and at most [`MAX_QUOTED_CHARS`] characters, marked with `…` when cut.
pub fn bounded(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_QUOTED_CHARS * 4));
    for (count, c) in text.chars().enumerate() {
        if count == MAX_QUOTED_CHARS {
            out.push('…');
            break;
        }
        match c {
            '\0' => out.push_str("\\u0000"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value with every string (keys included) [`bounded`], for an audit row's details.
pub fn bounded_json(value: Value) -> Value {
    match value {
        Value::String(text) => Value::String(bounded(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(bounded_json).collect()),
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .map(|(key, item)| (bounded(&key), bounded_json(item)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(slug("acme-01").is_ok());
        assert!(tenant_slug("acme-01").is_ok());
        assert!(tenant_slug("ns").unwrap_err().contains("reserved"));
        assert!(tenant_slug("hostmaster").is_err());
        assert!(tenant_slug("Acme").is_err());
        for bad in ["", "-a", "a-", "Acme", "a_b", &"a".repeat(64)] {
            assert!(slug(bad).is_err(), "{bad}");
        }
        assert!(username("alice.smith@example.com").is_ok());
        for bad in ["", ".a", "a b", &"a".repeat(65)] {
            assert!(username(bad).is_err(), "{bad}");
        }
        assert!(display_name("Acme Corp").is_ok());
        assert!(display_name("Zürich Büro").is_ok());
        for bad in [
            "",
            "   ",
            "a\nb",
            &"a".repeat(101),
            "evil\u{202E}gpj.exe",
            "a\u{200B}b",
            "a\u{2066}b",
            "\u{FEFF}a",
            "a\0b",
        ] {
            assert!(display_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_inputs() {
        assert!(plain_text("acme-01").is_ok());
        assert!(plain_text("a\0").is_err());
        assert!(plain_text("a\u{7f}").is_err());
        let body = serde_json::json!({"name": "ok", "tags": ["x", "a\u{0}b"]});
        assert_eq!(json_text(&body).unwrap_err().0, "tags[1]");
        let nested = serde_json::json!({"grant": {"k\u{0}": 1}});
        assert_eq!(json_text(&nested).unwrap_err().0, "grant.k\\u0000");
        assert!(json_text(&serde_json::json!({"a": ["b", {"c": "d"}]})).is_ok());
        assert!(json_text(&serde_json::json!("\u{0}")).is_err());
    }

    #[test]
    fn quoting_is_bounded_and_nul_free() {
        assert_eq!(bounded("a\0b"), "a\\u0000b");
        let long = bounded(&"é".repeat(900_000));
        assert_eq!(long.chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(long.ends_with('…'));
        let details = bounded_json(serde_json::json!({"name": "x\u{0}", "n": 1}));
        assert_eq!(details, serde_json::json!({"name": "x\\u0000", "n": 1}));
    }
}
