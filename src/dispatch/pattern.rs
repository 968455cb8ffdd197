//! Subscription patterns, with NATS subject semantics.
//!
//! **All events: `">"`** (or [`Bus::subscribe_all`](crate::Bus::subscribe_all)).
//! Not `"*"`: that is one token, and matches only single-token types like `ping`.
//!
//! A pattern is dot-separated tokens. A literal token matches itself; `*` matches
//! exactly one token; `>` — only as the last token — matches one or more tokens.
//! So `order.*` matches `order.placed` but not `order` or `order.item.added`;
//! `order.>` matches both `order.placed` and `order.item.added`, but not `order`.
//! The broker bridge uses the same patterns, so a subscription means the same in
//! process and across the broker.
//!
//! The bare pattern `"*"` is legal — single-token event types exist — but is
//! usually a mistake carried over from buses where it means "everything". Parsing
//! it emits a `WARN` `tracing` event (with the `tracing` feature), and events it
//! does not match, if nobody else wants them, are counted in
//! [`Counters::unmatched`](crate::metrics::Counters::unmatched).

use std::fmt;

/// A parsed subscription pattern: dot-separated tokens, each a literal, `*`
/// (exactly one token) or — last only — `>` (one or more tokens).
///
/// | pattern       | matches                            | does not match              |
/// |---------------|------------------------------------|-----------------------------|
/// | `>`           | **every event type**               | —                           |
/// | `order.>`     | `order.placed`, `order.item.added` | `order`                     |
/// | `order.*`     | `order.placed`                     | `order`, `order.item.added` |
/// | `*.placed`    | `order.placed`                     | `order.item.placed`         |
/// | `*`           | `ping` (one token only)            | `order.placed`              |
/// | `order.placed`| `order.placed`                     | `order.paid`                |
///
/// To receive every event, subscribe to `">"` or use
/// [`Bus::subscribe_all`](crate::Bus::subscribe_all). The bare `"*"` means "every
/// event" on some other buses, but here it is one token: it matches `ping` and
/// nothing with a dot. It is accepted (single-token types are legal), and with the
/// `tracing` feature [`Pattern::parse`] warns about it; the events it misses are
/// counted in [`Counters::unmatched`](crate::metrics::Counters::unmatched) when no
/// other subscription takes them.
///
/// # Examples
/// ```
/// use ringbus::pattern::Pattern;
/// let all = Pattern::parse(">").unwrap();
/// assert!(all.matches("ping") && all.matches("order.item.added"));
/// let star = Pattern::parse("*").unwrap();
/// assert!(star.matches("ping"));
/// assert!(!star.matches("order.placed"), "`*` is exactly one token");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: Box<str>,
    tokens: Box<[Token]>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Token {
    Literal(Box<str>),
    One,
    Tail,
}

/// Why a pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    pattern: String,
    reason: &'static str,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid pattern {:?}: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

impl Pattern {
    /// Parses `text`.
    ///
    /// The bare `"*"` parses (it matches single-token types such as `ping`), but
    /// with the `tracing` feature it emits a `WARN` event saying that `">"` is
    /// "all events".
    ///
    /// ```
    /// use ringbus::pattern::Pattern;
    /// let p = Pattern::parse("order.*").unwrap();
    /// assert!(p.matches("order.placed"));
    /// assert!(!p.matches("order.item.added"));
    /// assert!(Pattern::parse("order.>").unwrap().matches("order.item.added"));
    /// assert!(Pattern::parse("a.>.b").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let err = |reason| PatternError {
            pattern: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(err("empty"));
        }
        if text.len() > crate::event::MAX_NAME_LEN {
            return Err(err("longer than the longest event type"));
        }
        let parts: Vec<&str> = text.split('.').collect();
        let mut tokens = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let token = match *part {
                "" => return Err(err("empty token")),
                "*" => Token::One,
                ">" if i + 1 == parts.len() => Token::Tail,
                ">" => return Err(err("`>` must be the last token")),
                lit if lit.contains(['*', '>']) => {
                    return Err(err("a wildcard must be a whole token"))
                }
                lit if lit.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                    return Err(err("whitespace or control character"))
                }
                lit => Token::Literal(lit.into()),
            };
            tokens.push(token);
        }
        if text == "*" {
            crate::log::warning!(
                "ringbus: pattern \"*\" matches single-token event types only (like `ping`); all events is \">\"",
                pattern = text,
            );
        }
        Ok(Pattern {
            text: text.into(),
            tokens: tokens.into(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the event type `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = name.split('.');
        for token in self.tokens.iter() {
            match token {
                Token::Tail => return parts.next().is_some(),
                Token::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Token::Literal(lit) => {
                    if parts.next() != Some(lit) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What `subscribe` accepts as patterns: one (`&str`, `String`, [`Pattern`]) or
/// several (arrays, slices, vectors of them).
pub trait IntoPatterns {
    /// Parses every pattern.
    fn into_patterns(self) -> Result<Vec<Pattern>, PatternError>;

    /// Parses every pattern, and gives the subscription's name if one came with
    /// them ([`named`]).
    fn into_named_patterns(self) -> Result<(Vec<Pattern>, Option<String>), PatternError>
    where
        Self: Sized,
    {
        Ok((self.into_patterns()?, None))
    }
}

/// Patterns with the name of the subscription made to them: every subscribe verb
/// takes one this way (metrics, failures and dead letters show it), whatever the
/// payload type — `SubscribeOptions::name` needs a `Clone` payload.
///
/// ```
/// use ringbus::{pattern::named, Bus};
/// let bus = Bus::builder().build()?;
/// let id = bus.subscribe(named("emails", ["user.registered", "order.*"]), |_e| ())?;
/// assert_eq!(&*bus.metrics().handler(id, 0).unwrap().handler, "emails");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn named<T: IntoPatterns>(name: impl Into<String>, patterns: T) -> Named<T> {
    Named {
        name: name.into(),
        patterns,
    }
}

/// Patterns and a subscription name; made by [`named`].
#[derive(Debug, Clone)]
pub struct Named<T> {
    name: String,
    patterns: T,
}

impl<T: IntoPatterns> IntoPatterns for Named<T> {
    fn into_patterns(self) -> Result<Vec<Pattern>, PatternError> {
        self.patterns.into_patterns()
    }

    fn into_named_patterns(self) -> Result<(Vec<Pattern>, Option<String>), PatternError> {
        Ok((self.patterns.into_patterns()?, Some(self.name)))
    }
}

impl IntoPatterns for &str {
    fn into_patterns(self) -> Result<Vec<Pattern>, PatternError> {
        Ok(vec![Pattern::parse(self)?])
    }
}

impl IntoPatterns for String {
    fn into_patterns(self) -> Result<Vec<Pattern>, PatternError> {
        self.as_str().into_patterns()
    }
}

impl IntoPatterns for Pattern {
    fn into_patterns(self) -> Result<Vec<Pattern>, PatternError> {
        Ok(vec![self])
    }
}

impl<T: AsRef<str>> IntoPatterns for &[T] {
    fn into_patterns(self) -> Result<Vec<Pattern>, PatternError> {
        self.iter().map(|p| Pattern::parse(p.as_ref())).collect()
    }
}

impl<T: AsRef<str>, const N: usize> IntoPatterns for [T; N] {
    fn into_patterns(self) -> Result<Vec<Pattern>, PatternError> {
        self.as_slice().into_patterns()
    }
}

impl<T: AsRef<str>> IntoPatterns for Vec<T> {
    fn into_patterns(self) -> Result<Vec<Pattern>, PatternError> {
        self.as_slice().into_patterns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_semantics() {
        let cases = [
            ("order.placed", "order.placed", true),
            ("order.placed", "order.paid", false),
            ("order.*", "order.placed", true),
            ("order.*", "order", false),
            ("order.*", "order.item.added", false),
            ("*.placed", "order.placed", true),
            ("order.>", "order.placed", true),
            ("order.>", "order.item.added", true),
            ("order.>", "order", false),
            (">", "anything.at.all", true),
            ("*", "one", true),
            ("*", "one.two", false),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.b.d", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                Pattern::parse(pattern).unwrap().matches(name),
                expected,
                "{pattern} vs {name}"
            );
        }
    }

    #[test]
    fn invalid_patterns() {
        for bad in ["", "a..b", "a.>.b", "a*", "or>der", "a b", ".a"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
