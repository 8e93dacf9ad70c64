use std::fmt;

/// A secret (an SRT passphrase) that never shows in `Debug` output, logs, events or
/// saved state.
///
/// It implements neither `Display` nor `Serialize`; read it only where it is used,
/// with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `url` as it may be shown: in an error, a log line, a `Debug` output.
///
/// Replaces with `***` every secret the string holds:
///
/// - the password of a userinfo (`redis://:***@host`, `srt://user:***@host:9000`), in
///   any scheme, or none;
/// - the value of every query parameter whose name (percent-decoded, in any case)
///   contains `passphrase`, `password`, `passwd`, `secret` or `token`, or is `pass`,
///   `pwd` or `pw` (`?mode=caller&passphrase=***`). A value runs to the next `&`, and
///   over any following `&`-separated part without an `=` (an unencoded `&` in a
///   passphrase).
///
/// It takes any string, malformed ones included (a mistyped scheme, no scheme, `&`
/// for `?`, unencoded `/`, `@`, `=` or `#` in a password), and never panics; when in
/// doubt it hides more. A userinfo user name is kept, and so is everything else.
///
/// ```
/// use mirror_reconnect::connection::redact_url;
///
/// assert_eq!(
///     redact_url("srt://1.2.3.4:9000?mode=caller&passphrase=hunter2hunter2"),
///     "srt://1.2.3.4:9000?mode=caller&passphrase=***",
/// );
/// assert_eq!(redact_url("redis://:hunter2@cache:6379/0"), "redis://:***@cache:6379/0");
/// assert_eq!(redact_url("srtt://h:1?PassPhrase=hunter2"), "srtt://h:1?PassPhrase=***");
/// assert_eq!(redact_url("udp://127.0.0.1:5000"), "udp://127.0.0.1:5000");
/// ```
pub fn redact_url(url: &str) -> String {
    redact_userinfo(&redact_values(url))
}

/// What hides a secret.
const HIDDEN: &str = "***";

/// Characters that end a query parameter's name when looking back from its `=`.
/// ASCII only, so that the byte after one is a character boundary.
fn ends_a_name(c: char) -> bool {
    matches!(
        c,
        '?' | '&' | ';' | '#' | ',' | '/' | ':' | '@' | '=' | '"' | '\'' | '<' | '>'
    ) || c.is_ascii_whitespace()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// A parameter name, percent-decoded (lossily), trimmed and lowercased.
fn normalized_name(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex(hi).zip(hex(lo)).map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).trim().to_ascii_lowercase()
}

/// Whether a parameter of this name holds a secret, as [`redact_url`] judges it.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let name = normalized_name(name);
    ["passphrase", "password", "passwd", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
        || matches!(name.as_str(), "pass" | "pwd" | "pw")
}

/// Where a secret value that starts at `start` ends: at the next `&` that is followed
/// by a part with an `=` (the next parameter), or at the end.
fn secret_end(s: &str, start: usize) -> usize {
    let mut end = start;
    loop {
        let Some(amp) = s.get(end..).and_then(|rest| rest.find('&')) else {
            return s.len();
        };
        let amp = end + amp;
        let next = s.get(amp + 1..).unwrap_or_default();
        let part = next.split('&').next().unwrap_or_default();
        if part.contains('=') {
            return amp;
        }
        // A part without `=` after a secret: most likely the rest of it.
        end = amp + 1 + part.len();
        if end >= s.len() {
            return s.len();
        }
    }
}

/// Hide the values of secret-named `name=value` parameters, wherever they are.
fn redact_values(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut pos = 0;
    while let Some(eq) = s
        .get(pos..)
        .and_then(|rest| rest.find('='))
        .map(|i| pos + i)
    {
        let head = s.get(..eq).unwrap_or_default();
        let name_start = head.rfind(ends_a_name).map_or(0, |i| i + 1).max(copied);
        let name = s.get(name_start..eq).unwrap_or_default();
        if is_secret_name(name) {
            let end = secret_end(s, eq + 1);
            out.push_str(s.get(copied..=eq).unwrap_or_default());
            out.push_str(HIDDEN);
            copied = end;
            pos = end;
        } else {
            pos = eq + 1;
        }
    }
    out.push_str(s.get(copied..).unwrap_or_default());
    out
}

/// Whether `s` is a URL scheme (`srt`, `redis+unix`).
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Hide the password of a `user:password@` userinfo.
fn redact_userinfo(s: &str) -> String {
    let start = s
        .find("://")
        .filter(|&i| s.get(..i).is_some_and(is_scheme))
        .map_or(0, |i| i + 3);
    let rest = s.get(start..).unwrap_or_default();
    // The userinfo ends at the last `@` before the query; the query starts at a `?`
    // followed by a parameter (`=` or `&`), so that a `?` in a password does not
    // pass for one.
    let before_query = match rest.find('?') {
        Some(q) => rest
            .get(q..)
            .and_then(|query| query.find(['=', '&']))
            .map_or(rest.len(), |i| q + i),
        None => rest.len(),
    };
    let Some(at) = rest.get(..before_query).and_then(|r| r.rfind('@')) else {
        return s.to_owned();
    };
    let userinfo = rest.get(..at).unwrap_or_default();
    let Some(colon) = userinfo.find(':') else {
        return s.to_owned();
    };
    format!(
        "{}{}:{HIDDEN}{}",
        s.get(..start).unwrap_or_default(),
        userinfo.get(..colon).unwrap_or_default(),
        rest.get(at..).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MARKER: &str = "s3cr3t-MARKER";

    #[test]
    fn query_secrets_are_hidden_whatever_their_case() {
        for (url, shown) in [
            (
                "srt://1.2.3.4:9000?mode=caller&passphrase=s3cr3t-MARKER&latency=80",
                "srt://1.2.3.4:9000?mode=caller&passphrase=***&latency=80",
            ),
            (
                "srtt://1.2.3.4:9000?PassPhrase=s3cr3t-MARKER",
                "srtt://1.2.3.4:9000?PassPhrase=***",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&PASSWORD=s3cr3t-MARKER",
                "redis+unix:///run/redis.sock?db=1&PASSWORD=***",
            ),
            (
                "redis+unix:///run/redis.sock?pass=s3cr3t-MARKER",
                "redis+unix:///run/redis.sock?pass=***",
            ),
            // Percent-encoded names, a mistyped separator, `==`.
            ("x://h?pass%70hrase=s3cr3t-MARKER", "x://h?pass%70hrase=***"),
            (
                "srt://h:1&passphrase=s3cr3t-MARKER",
                "srt://h:1&passphrase=***",
            ),
            (
                "srt://h:1?passphrase==s3cr3t-MARKER",
                "srt://h:1?passphrase=***",
            ),
            // An unencoded `&` inside the passphrase: the rest is taken as part of it.
            (
                "srt://h:1?passphrase=abc&s3cr3t-MARKER&mode=caller",
                "srt://h:1?passphrase=***&mode=caller",
            ),
            // Spaces, `#` and `@` inside a value.
            (
                "srt://h:1?passphrase=a b#c@s3cr3t-MARKER",
                "srt://h:1?passphrase=***",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn userinfo_passwords_are_hidden_in_any_scheme() {
        for (url, shown) in [
            (
                "redis://:s3cr3t-MARKER@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            (
                "rediss://user:s3cr3t-MARKER@cache.example:6380",
                "rediss://user:***@cache.example:6380",
            ),
            (
                "srt://u:s3cr3t-MARKER@1.2.3.4:9000?streamid=cam1",
                "srt://u:***@1.2.3.4:9000?streamid=cam1",
            ),
            // Unencoded `/`, `@`, `=` and `?` in a password.
            ("redis://:ab/s3cr3t-MARKER@h:1/0", "redis://:***@h:1/0"),
            ("redis://u:a@s3cr3t-MARKER@h:1", "redis://u:***@h:1"),
            ("redis://:s3cr3t-MARKER==@h", "redis://:***@h"),
            ("redis://:ab?s3cr3t-MARKER@h:1/0", "redis://:***@h:1/0"),
            // Without a scheme, or with a broken one.
            ("u:s3cr3t-MARKER@1.2.3.4:9000", "u:***@1.2.3.4:9000"),
            ("redis:/u:s3cr3t-MARKER@h:1", "redis:***@h:1"),
            // Both at once.
            (
                "srt://u:s3cr3t-MARKER@h:1?passphrase=s3cr3t-MARKER",
                "srt://u:***@h:1?passphrase=***",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn what_is_not_secret_is_shown_as_it_is() {
        for url in [
            "",
            "-",
            "memory",
            "file:/var/lib/relay",
            "udp://127.0.0.1:5000",
            "udp://nohost",
            "redis://127.0.0.1:6379/2",
            "redis://user@127.0.0.1:6379",
            "srt://[::1]:9000?mode=listener&streamid=live/cam1&latency=200&pbkeylen=16",
            "srt://h:1?streamid=me@cam&mode=caller",
            "srt://h:1?streamid=#!::r=live,u=admin&mode=caller",
            "srt://h:1?passive=1&bypass=0",
            "srt://é@ü:1?ü=é",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn a_scheme_that_is_not_one_hides_more() {
        assert_eq!(redact_url("\u{1F4F9}://é:ü@h"), "\u{1F4F9}:***@h");
        assert_eq!(redact_url(" srt://u:pw@h"), " srt:***@h");
    }

    /// A secret value: the marker, maybe among characters a sloppy URL may hold.
    fn secret() -> impl Strategy<Value = String> {
        ("[^&]{0,6}", "[^&]{0,6}").prop_map(|(a, b)| format!("{a}{MARKER}{b}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = redact_url(&s);
        }

        #[test]
        fn never_panics_on_url_like_noise(s in "[a-z:/?&=@#%.\\[\\] 0-9é]{0,40}") {
            let _ = redact_url(&s);
        }

        #[test]
        fn a_query_secret_never_shows(
            scheme in "(srt|srtt|redis|rediss|udp|x+y|)(://|:/|:|)",
            host in "[a-z0-9.:\\[\\]]{0,12}",
            before in proptest::collection::vec("[a-z_]{1,8}=[a-z0-9/@:#?=]{0,8}", 0..3),
            key in "(passphrase|PassPhrase|PASSPHRASE|password|Password|pass|pwd)",
            eq in "(=|==)",
            value in secret(),
            after in proptest::collection::vec("[a-z_]{1,8}=[a-z0-9/@:#?=]{0,8}", 0..3),
            sep in "(\\?|&)",
        ) {
            let mut url = format!("{scheme}{host}{sep}");
            for pair in &before {
                url.push_str(pair);
                url.push('&');
            }
            url.push_str(&format!("{key}{eq}{value}"));
            for pair in &after {
                url.push('&');
                url.push_str(pair);
            }
            let shown = redact_url(&url);
            prop_assert!(!shown.contains(MARKER), "{} -> {}", url, shown);
        }

        #[test]
        fn a_userinfo_password_never_shows(
            scheme in "(srt|redis|rediss|valkey|http|x)(://|:/|)",
            user in "[a-z0-9._-]{0,8}",
            // `?` or `=` unencoded in a password, not both: `?k=` starts a query.
            (password, tail) in prop_oneof![
                ("[^&=]{0,6}", "[^&=]{0,6}"),
                ("[^?&]{0,6}", "[^?&]{0,6}"),
            ],
            host in "[a-z0-9.:\\[\\] -]{0,16}",
            rest in "(/[0-9]{0,2})?(\\?[a-z]{1,6}=[a-z0-9@]{0,6})?",
        ) {
            // `srt` `:` `//s3cr3t@h` is `srt://s3cr3t@h`, a user name.
            prop_assume!(!password.starts_with("//"));
            let url = format!("{scheme}{user}:{password}{MARKER}{tail}@{host}{rest}");
            let shown = redact_url(&url);
            prop_assert!(!shown.contains(MARKER), "{} -> {}", url, shown);
        }
    }
}
