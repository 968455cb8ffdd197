//! Re-entrancy: which buses, and in which [`Role`], the current thread is inside,
//! so that a call that would wait for this very thread (joining the dispatcher
//! from one of its handlers, or from inside a claim) is refused instead of
//! deadlocking.

/// What the current thread is doing for a bus, while an [`Inside`] guard lives.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Running the bus's dispatcher loop, or one of its handlers or hooks:
    /// waiting for that dispatcher from here would wait for this very call.
    Dispatch,
    /// Holding a multi-producer claim of the bus (running a `publish_with` closure
    /// or a `publish_batch` iterator): the dispatcher waits for the claimed
    /// sequence, so joining it from here would deadlock.
    Claim,
}

#[cfg(not(loom))]
thread_local! {
    /// The (bus, role) pairs this thread is inside, innermost last. Keyed by bus,
    /// not per thread: a handler of bus A may subscribe to, or shut down, bus B.
    static INSIDE: std::cell::RefCell<Vec<(usize, Role)>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(loom)]
loom::thread_local! {
    static INSIDE: std::cell::RefCell<Vec<(usize, Role)>> = std::cell::RefCell::new(Vec::new());
}

/// Marks the current thread as inside a bus (see [`Role`]) while alive.
pub(crate) struct Inside {
    bus: usize,
}

impl Inside {
    pub(crate) fn enter(bus: usize, role: Role) -> Self {
        INSIDE.with(|i| i.borrow_mut().push((bus, role)));
        Inside { bus }
    }

    /// Whether the current thread is inside `bus` in `role`.
    pub(crate) fn is(bus: usize, role: Role) -> bool {
        INSIDE.with(|i| i.borrow().contains(&(bus, role)))
    }

    /// Whether the current thread is inside `bus` in any role.
    pub(crate) fn any(bus: usize) -> bool {
        INSIDE.with(|i| i.borrow().iter().any(|&(b, _)| b == bus))
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.with(|i| {
            let mut i = i.borrow_mut();
            if let Some(k) = i.iter().rposition(|&(b, _)| b == self.bus) {
                i.remove(k);
            }
        });
    }
}
