//! The crate's own diagnostics: the library never prints.
//!
//! `warning!` and `error!` emit a `tracing` event under the `tracing` feature
//! and do nothing otherwise — not even evaluate their field values beyond taking
//! a reference (so a value used only in a diagnostic is not "unused"). What they
//! report is also visible without the feature, in return values, the counters and
//! metrics, and the dead-letter queue; these events add the detail.
//!
//! Syntax: a message literal, then `name = value` fields (rendered with
//! `Display`): `log::warning!("handler panicked in a hook", handler = name)`.

/// A `WARN`-level `tracing` event with `Display` fields; nothing without the
/// `tracing` feature.
macro_rules! warning {
    ($msg:literal $(, $key:ident = $value:expr)* $(,)?) => {{
        #[cfg(feature = "tracing")]
        ::tracing::warn!($($key = %$value,)* $msg);
        #[cfg(not(feature = "tracing"))]
        {
            $(let _ = &$value;)*
        }
    }};
}

/// An `ERROR`-level `tracing` event with `Display` fields; nothing without the
/// `tracing` feature.
macro_rules! error {
    ($msg:literal $(, $key:ident = $value:expr)* $(,)?) => {{
        #[cfg(feature = "tracing")]
        ::tracing::error!($($key = %$value,)* $msg);
        #[cfg(not(feature = "tracing"))]
        {
            $(let _ = &$value;)*
        }
    }};
}

pub(crate) use {error, warning};
