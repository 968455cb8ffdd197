//! Producer modes: [`Multi`] (many cloneable publishers) or [`Single`] (one), chosen
//! at the type level by the builder.

use crate::ring::Producers;

#[cfg(doc)]
use super::builder::BusBuilder;

/// Type-level producer mode: many producers ([`Multi`], the default) or one
/// ([`Single`]).
pub trait ProducerMode: sealed::Sealed + Send + 'static {}

/// Many producers: `bus.publisher()` hands out cloneable publishers that claim slots
/// with one `fetch_add` each.
#[derive(Debug)]
pub enum Multi {}

/// One producer: [`BusBuilder::build`] returns the only publisher, which claims slots
/// without any atomic read-modify-write on the shared claim cursor. It is not
/// `Clone`, so the type system rules out a second producer.
#[derive(Debug)]
pub enum Single {}

impl ProducerMode for Multi {}
impl ProducerMode for Single {}

mod sealed {
    pub trait Sealed {
        /// Single producer (else multi).
        const SINGLE: bool;
    }
    impl Sealed for super::Multi {
        const SINGLE: bool = false;
    }
    impl Sealed for super::Single {
        const SINGLE: bool = true;
    }
}

/// The ring sequencer for mode `M`.
pub(super) fn producers<M: ProducerMode>() -> Producers {
    if M::SINGLE {
        Producers::Single
    } else {
        Producers::Multi
    }
}
