//! TEMP (lead): wired properly at the merge with the store module.
#[cfg(test)]
pub(crate) mod sim;
pub(crate) mod vfs;

// TEMPORARY scaffolding of branch i11-upcast (drop at merge): the two modules it
// adds, and the `Position` the store module defines.
pub mod checkpoint;
pub mod upcast;

/// Dense, gap-free, 0-based position in the store's total order (scaffolding).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Position(pub u64);
