//! Storage handed in: a slice the driver borrows or (feature `alloc`) owns.

use core::ops::{Deref, DerefMut};

/// One of the driver's tables: a borrowed slice (firmware: arrays in a
/// `static`) or, with `alloc`, a vector allocated once by
/// [`Tables::with_capacity`](crate::Tables::with_capacity).
///
/// Only the answer table ever grows, and only an owned one: when every ticket
/// is taken (answers not yet picked up by their futures), one more is pushed.
pub(crate) enum Table<'a, X> {
    Borrowed(&'a mut [X]),
    #[cfg(feature = "alloc")]
    Owned(alloc::vec::Vec<X>),
}

impl<X> Table<'_, X> {
    /// Appends `x` if the table can grow; returns its index.
    pub(crate) fn grow(&mut self, x: X) -> Option<usize> {
        match self {
            Table::Borrowed(_) => {
                let _ = x;
                None
            }
            #[cfg(feature = "alloc")]
            Table::Owned(v) => {
                v.push(x);
                Some(v.len() - 1)
            }
        }
    }
}

impl<X> Deref for Table<'_, X> {
    type Target = [X];
    #[inline(always)]
    fn deref(&self) -> &[X] {
        match self {
            Table::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Table::Owned(v) => v,
        }
    }
}

impl<X> DerefMut for Table<'_, X> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [X] {
        match self {
            Table::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Table::Owned(v) => v,
        }
    }
}
