//! How failures of the `clickhouse` client become [`StoreError`]s.

use std::error::Error as _;
use std::fmt;

use tenancy_core::store::StoreError;

/// A ClickHouse failure, as carried inside a [`StoreError`].
///
/// It holds the client's message and the messages of its causes, flattened
/// into one line, with anything that looks like a credential removed: the
/// user and password part of URLs and the values of `password=`, `key=` and
/// `X-ClickHouse-Key` fields. The original error is not kept, so logging
/// the whole source chain of a [`StoreError`] cannot reveal more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseError {
    message: String,
}

impl ClickHouseError {
    /// An error with `message`, redacted.
    pub fn new(message: impl AsRef<str>) -> Self {
        Self {
            message: redact(message.as_ref()),
        }
    }

    /// The redacted message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ClickHouseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClickHouseError {}

/// Maps a client error: network failures are [`StoreError::Unavailable`],
/// client timeouts [`StoreError::Timeout`], everything else (server
/// exceptions, decoding) [`StoreError::Backend`].
pub(crate) fn store_error(error: clickhouse::error::Error) -> StoreError {
    use clickhouse::error::Error;
    match error {
        Error::TimedOut => StoreError::Timeout,
        Error::Network(_) => StoreError::unavailable(flatten(&error)),
        _ => StoreError::backend(flatten(&error)),
    }
}

/// A [`StoreError::Backend`] with `message`.
pub(crate) fn backend(message: impl AsRef<str>) -> StoreError {
    StoreError::backend(ClickHouseError::new(message))
}

/// A [`StoreError::Corrupt`] for a stored row that cannot be decoded.
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("audit_log row with an invalid {what}"))
}

/// `error` and its causes, `: `-separated, redacted.
fn flatten(error: &clickhouse::error::Error) -> ClickHouseError {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Many errors repeat their cause in their own message.
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    ClickHouseError::new(message)
}

/// `text` without URL user info and without the values of credential fields.
fn redact(text: &str) -> String {
    let mut out = redact_userinfo(text);
    for field in ["password=", "password:", "key=", "x-clickhouse-key:"] {
        out = redact_field(&out, field);
    }
    out
}

/// Replaces `user:password@` after every `://` with `***@`.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Replaces the value after every (ASCII case-insensitive) `field` with `***`.
fn redact_field(text: &str, field: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find(field) {
        let value_start = search + found + field.len();
        let value_start = value_start
            + text[value_start..]
                .find(|c: char| c != ' ')
                .unwrap_or(text.len() - value_start);
        let value_end = text[value_start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | ',' | ';' | '\'' | '"'))
            .map_or(text.len(), |i| value_start + i);
        out.push_str(&text[copied..value_start]);
        if value_end > value_start {
            out.push_str("***");
        }
        copied = value_end;
        search = value_end.max(value_start);
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_removed_from_urls() {
        assert_eq!(
            redact("cannot reach http://admin:hunter2@db.example:8123/?database=x"),
            "cannot reach http://***@db.example:8123/?database=x"
        );
        assert_eq!(
            redact("http://127.0.0.1:8123 refused"),
            "http://127.0.0.1:8123 refused"
        );
    }

    #[test]
    fn credential_fields_are_removed() {
        assert_eq!(
            redact("GET /?user=default&password=hunter2&query=1"),
            "GET /?user=default&password=***&query=1"
        );
        assert_eq!(
            redact("header X-ClickHouse-Key: hunter2 sent"),
            "header X-ClickHouse-Key: *** sent"
        );
        assert_eq!(redact("Password: hunter2"), "Password: ***");
        assert_eq!(
            redact("Code: 193, Wrong password for user default"),
            "Code: 193, Wrong password for user default"
        );
    }

    #[test]
    fn network_errors_are_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = clickhouse::error::Error::Network(Box::new(io));
        assert!(matches!(store_error(error), StoreError::Unavailable(_)));
        assert!(matches!(
            store_error(clickhouse::error::Error::TimedOut),
            StoreError::Timeout
        ));
        let server = clickhouse::error::Error::BadResponse("Code: 60, no table".into());
        assert!(matches!(store_error(server), StoreError::Backend(_)));
    }
}
