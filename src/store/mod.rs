//! TEMP (lead): wired properly at the merge with the store module.
#[cfg(test)]
pub(crate) mod sim;
pub(crate) mod vfs;
