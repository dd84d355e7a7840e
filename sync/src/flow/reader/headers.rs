//! A record's headers as the reader uses them: what decides its fate and its size
//! ([`HeaderScan`]), and the list sent with it ([`for_target`]).

use std::ffi::CString;

use crate::message_ffi::HeaderList;
use crate::provenance::{PATH_HEADER, PATH_HEADER_C, is_reserved};

/// What the reader needs of a record's headers to decide and to count it.
pub(super) struct HeaderScan<'h> {
    /// The value of `duplex.path` (`Some(None)` for a null value), if the record has one.
    pub(super) path_value: Option<Option<&'h [u8]>>,
    /// Bytes of the user's headers, names and values: the record's size in the budget.
    pub(super) header_bytes: usize,
}

impl<'h> HeaderScan<'h> {
    pub(super) fn of(headers: impl Iterator<Item = (&'h [u8], Option<&'h [u8]>)>) -> Self {
        let mut scan = HeaderScan {
            path_value: None,
            header_bytes: 0,
        };
        for (name, value) in headers {
            if !is_reserved(name) {
                scan.header_bytes += name.len() + value.map_or(0, <[u8]>::len);
            } else if name == PATH_HEADER.as_bytes() {
                scan.path_value = Some(value);
            }
        }
        scan
    }
}

/// The list sent with a record: its own (`None` when it has no headers), without
/// Duplex's `duplex.*` headers, with `path` as its `duplex.path`, last. What to remove is
/// read off this list, the one sent, not off the bytes the decision was read from: were
/// those read wrong, a `duplex.*` header left here would reach the target.
pub(super) fn for_target(list: Option<HeaderList>, path: &[u8]) -> HeaderList {
    let mut list = list.unwrap_or_else(|| HeaderList::with_capacity(1));
    let (mut had_path, mut other_reserved) = (false, false);
    for (name, _) in list.iter() {
        if name == PATH_HEADER.as_bytes() {
            had_path = true;
        } else if is_reserved(name) {
            other_reserved = true;
        }
    }
    if other_reserved {
        // Other `duplex.` names are Duplex's own too, and not copied (rare: none is
        // written today). Names as read hold no NUL byte.
        let names: Vec<CString> = list
            .iter()
            .filter(|(n, _)| is_reserved(n) && *n != PATH_HEADER.as_bytes())
            .filter_map(|(n, _)| CString::new(n).ok())
            .collect();
        for name in &names {
            list.remove(name);
        }
    }
    if had_path {
        list.remove(PATH_HEADER_C);
    }
    list.add(PATH_HEADER.as_bytes(), Some(path));
    list
}
