//! Input rules shared by the handlers; each returns the reason a value is refused.

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
/// ([`crate::dns::RESERVED_TENANT_SLUGS`]), since the slug becomes `<slug>.<domain>`.
pub fn tenant_slug(value: &str) -> Result<(), String> {
    slug(value)?;
    if crate::dns::RESERVED_TENANT_SLUGS.contains(&value) {
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

/// Display names: 1–100 characters, no control characters, not only spaces.
pub fn display_name(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if value.chars().count() > 100 {
        return Err("must be at most 100 characters".into());
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
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
        for bad in ["", "   ", "a\nb", &"a".repeat(101)] {
            assert!(display_name(bad).is_err(), "{bad:?}");
        }
    }
}
