//! Re-entrancy: which buses, and in which [`Role`], the current thread is inside,
//! so that a call that would wait for this very thread (joining the dispatcher
//! from one of its handlers, or from inside a claim) is refused instead of
//! deadlocking — and so that a publish from a handler becomes a follow-up
//! instead of waiting for ring space the dispatcher cannot free
//! (see [`follow_ups`](super::follow_ups)).

use std::cell::{Cell, RefCell};

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

/// One entry of the stack: the bus, the role, and (for `Dispatch`) the root
/// sequence follow-ups published from here belong to.
type Entry = (usize, Role, u64);

#[cfg(not(loom))]
thread_local! {
    /// The entries this thread is inside, innermost last. Keyed by bus, not per
    /// thread: a handler of bus A may subscribe to, or shut down, bus B.
    static INSIDE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    /// `INSIDE.len()`: one TLS read tells a publisher it is outside every bus.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

#[cfg(loom)]
loom::thread_local! {
    static INSIDE: RefCell<Vec<Entry>> = RefCell::new(Vec::new());
    static DEPTH: Cell<u32> = Cell::new(0);
}

/// Marks the current thread as inside a bus (see [`Role`]) while alive.
pub(crate) struct Inside {
    bus: usize,
}

impl Inside {
    pub(crate) fn enter(bus: usize, role: Role) -> Self {
        Self::enter_at(bus, role, 0)
    }

    /// Enters with the root sequence of the work about to run (see
    /// [`follow_ups`](super::follow_ups)).
    pub(crate) fn enter_at(bus: usize, role: Role, root: u64) -> Self {
        INSIDE.with(|i| i.borrow_mut().push((bus, role, root)));
        DEPTH.with(|d| d.set(d.get() + 1));
        Inside { bus }
    }

    /// Whether the current thread is inside `bus` in `role`.
    pub(crate) fn is(bus: usize, role: Role) -> bool {
        INSIDE.with(|i| i.borrow().iter().any(|&(b, r, _)| b == bus && r == role))
    }

    /// Whether the current thread is inside `bus` in any role.
    pub(crate) fn any(bus: usize) -> bool {
        INSIDE.with(|i| i.borrow().iter().any(|&(b, _, _)| b == bus))
    }

    /// If the current thread dispatches for `bus` (a handler or hook of it), the
    /// root its follow-ups belong to. One thread-local read when the thread is
    /// inside no bus at all — the publish fast path.
    #[inline]
    pub(crate) fn dispatch_root(bus: usize) -> Option<u64> {
        if DEPTH.with(Cell::get) == 0 {
            return None;
        }
        INSIDE.with(|i| {
            i.borrow()
                .iter()
                .rev()
                .find(|&&(b, r, _)| b == bus && r == Role::Dispatch)
                .map(|&(_, _, root)| root)
        })
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.with(|i| {
            let mut i = i.borrow_mut();
            if let Some(k) = i.iter().rposition(|&(b, _, _)| b == self.bus) {
                i.remove(k);
            }
        });
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}
