//! Producer modes: [`Multi`] (many cloneable publishers) or [`Single`] (one), chosen
//! at the type level by the builder.

use crate::ring::{MpCursor, Producers, Sequencer, SpCursor};

#[cfg(doc)]
use super::builder::BusBuilder;

/// Type-level producer mode: many producers ([`Multi`], the default) or one
/// ([`Single`]). Sealed: each mode names the ring sequencer its publishers claim
/// with, so a publisher can only make the claims its ring was built for.
// The sealing trait is crate-private on purpose (it names the ring's cursor types).
#[allow(private_bounds)]
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

pub(super) mod sealed {
    /// The mode's ring sequencer: a publisher of mode `M` holds an
    /// `M::Sequencer`.
    pub(crate) trait Sealed {
        /// The cursor a publisher of this mode claims with.
        type Sequencer: super::Sequencer;
    }
}

impl sealed::Sealed for Multi {
    type Sequencer = MpCursor;
}

impl sealed::Sealed for Single {
    type Sequencer = SpCursor;
}

/// The ring kind for mode `M`.
pub(super) fn producers<M: ProducerMode>() -> Producers {
    <M as sealed::Sealed>::Sequencer::PRODUCERS
}
