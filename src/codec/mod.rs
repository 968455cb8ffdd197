//! Compact binary encoding (see FORMAT.md).
