//! Containing panics from user code: the bus calls user code (handlers, hooks,
//! clocks, predicates, a payload's `Clone` and `Drop`) on threads it must keep
//! alive, so every such call is made through `catch_unwind`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The message of a caught panic (`&str` and `String` payloads; anything else is
/// described, not shown).
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Drops `value` where user code (a payload's or a handler's `Drop`) may panic:
/// the panic is contained, so it cannot take the dispatcher or a task with it.
pub(crate) fn drop_quietly<T>(value: T) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        // The panic's own payload: a `&str` or `String` in every real case.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(p)));
    }
}
