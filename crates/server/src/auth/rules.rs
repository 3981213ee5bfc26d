//! What makes a valid username and password. Documented in `docs/protocol.md`; change both
//! together.

use chatgroup_protocol::ErrorCode;

/// Shortest username.
pub(crate) const USERNAME_MIN: usize = 3;
/// Longest username.
pub(crate) const USERNAME_MAX: usize = 32;
/// Shortest password, in characters.
pub(crate) const PASSWORD_MIN: usize = 8;
/// Longest password, in bytes: argon2 takes any length, but hashing megabytes on request
/// would be a denial of service.
pub(crate) const PASSWORD_MAX_BYTES: usize = 256;

/// Checks a username: 3–32 characters from `a-z A-Z 0-9 _ . -`, starting with a letter or a
/// digit. ASCII only, so two names cannot look the same and differ in bytes.
pub(crate) fn check_username(name: &str) -> Result<(), (ErrorCode, String)> {
    let bad = |why: &str| Err((ErrorCode::InvalidUsername, why.to_owned()));
    let len = name.chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&len) {
        return bad("a username has 3 to 32 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return bad("a username may contain only letters a-z, digits, '_', '.' and '-'");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("a username starts with a letter or a digit");
    }
    Ok(())
}

/// Checks a password: at least 8 characters, at most 256 bytes, not only whitespace.
pub(crate) fn check_password(password: &str) -> Result<(), (ErrorCode, String)> {
    let bad = |why: &str| Err((ErrorCode::InvalidPassword, why.to_owned()));
    if password.chars().count() < PASSWORD_MIN {
        return bad("a password has at least 8 characters");
    }
    if password.len() > PASSWORD_MAX_BYTES {
        return bad("a password has at most 256 bytes");
    }
    if password.trim().is_empty() {
        return bad("a password cannot be only whitespace");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["bob", "alice_1", "a.b-c", "X9z", &"a".repeat(32)] {
            assert!(check_username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "",
            "_bob",
            "bob smith",
            "bøb",
            "a/b",
            &"a".repeat(33),
            "<b>",
        ] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(check_password("correct horse").is_ok());
        assert!(check_password("short").is_err());
        assert!(check_password("        ").is_err());
        assert!(check_password(&"x".repeat(257)).is_err());
        assert!(check_password("pässwörd").is_ok());
    }
}
