//! Header names as bytes: reading a consumed message's headers, and adding one to the
//! headers of a record to produce.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use rdkafka::bindings as rd;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Header, Headers, OwnedHeaders};

use super::raw_headers::{self, RawHeaders};

// Declared returning `c_int` rather than the bindings' Rust enum: a value the enum does
// not list must not be undefined behaviour (as in admin_ffi). Same symbols, same ABI.
unsafe extern "C" {
    fn rd_kafka_message_headers(
        rkmessage: *const rd::rd_kafka_message_t,
        hdrsp: *mut *mut rd::rd_kafka_headers_t,
    ) -> c_int;
    fn rd_kafka_header_get_all(
        hdrs: *const rd::rd_kafka_headers_t,
        idx: usize,
        namep: *mut *const c_char,
        valuep: *mut *const c_void,
        sizep: *mut usize,
    ) -> c_int;
    fn rd_kafka_header_add(
        hdrs: *mut rd::rd_kafka_headers_t,
        name: *const c_char,
        name_size: isize,
        value: *const c_void,
        value_size: isize,
    ) -> c_int;
    fn rd_kafka_header_remove(hdrs: *mut rd::rd_kafka_headers_t, name: *const c_char) -> c_int;
    fn rd_kafka_message_detach_headers(
        rkmessage: *mut rd::rd_kafka_message_t,
        hdrsp: *mut *mut rd::rd_kafka_headers_t,
    ) -> c_int;
}

/// The headers of a consumed message in record order, each as (name, value): the name
/// as the bytes the record holds, the value `None` for a null value.
pub fn headers<'m>(msg: &'m BorrowedMessage<'_>) -> HeaderIter<'m> {
    // SAFETY: `msg.ptr()` is the message `msg` owns, alive while `'m` lasts, and
    // `HeaderIter` borrows for no longer. librdkafka (where it parses them) parses the
    // headers on the first call without a lock, so two threads must not read one
    // message's headers at once (as with rdkafka's own `Message::headers`): no caller
    // shares a message.
    unsafe { HeaderIter::of(msg.ptr()) }
}

/// Iterator over a message's headers; see [`headers`].
#[derive(Debug)]
pub struct HeaderIter<'m> {
    /// Read from the record's header bytes (a consumer's message, raw_headers.rs), or,
    /// when `None`, from the list below.
    pub(super) raw: Option<RawHeaders<'m>>,
    hdrs: *const rd::rd_kafka_headers_t,
    next: usize,
    _message: PhantomData<&'m ()>,
}

impl<'m> HeaderIter<'m> {
    /// The headers of the message at `msg`: read in place from the record's header bytes
    /// where that is known to be right (raw_headers.rs), else through librdkafka's parse,
    /// which keeps the list with the message. Either way the same headers.
    ///
    /// # Safety
    /// `msg` must be a message librdkafka handed over that stays alive, and is not
    /// destroyed or changed by another thread, for `'m`.
    pub(crate) unsafe fn of(msg: *const rd::rd_kafka_message_t) -> HeaderIter<'m> {
        // SAFETY: as the caller promises.
        match unsafe { HeaderIter::in_place(msg) } {
            Some(raw) => HeaderIter::raw(raw),
            // SAFETY: as the caller promises.
            None => unsafe { HeaderIter::parsed(msg) },
        }
    }

    /// The headers of the message at `msg` read in place from the record's header bytes,
    /// or `None` where that read does not apply (raw_headers.rs) or the cross-check found
    /// it wrong. No list is made, but when a cross-check is due: then librdkafka's, which
    /// stays with the message (and may be detached from it later). What is returned reads
    /// the record's bytes only, never a list (its type says so), and those bytes stay
    /// with the message whether or not its list is detached.
    ///
    /// # Safety
    /// As [`HeaderIter::of`].
    pub(super) unsafe fn in_place(msg: *const rd::rd_kafka_message_t) -> Option<RawHeaders<'m>> {
        // SAFETY: as the caller promises.
        let raw = unsafe { raw_headers::bytes_of(msg) }.and_then(RawHeaders::parse)?;
        if !raw_headers::cross_check_due() {
            return Some(raw);
        }
        // SAFETY: as the caller promises. librdkafka keeps the list it parses with the
        // message, so a later call hands over the same list, not parsed again.
        if unsafe { HeaderIter::parsed(msg) }.eq(raw.clone()) {
            return Some(raw);
        }
        raw_headers::disable("a record's headers");
        None
    }

    fn raw(raw: RawHeaders<'m>) -> HeaderIter<'m> {
        HeaderIter {
            raw: Some(raw),
            hdrs: ptr::null(),
            next: 0,
            _message: PhantomData,
        }
    }

    /// The headers of the message at `msg`, through librdkafka's parse.
    ///
    /// # Safety
    /// As [`HeaderIter::of`].
    pub(super) unsafe fn parsed(msg: *const rd::rd_kafka_message_t) -> HeaderIter<'m> {
        let mut hdrs: *mut rd::rd_kafka_headers_t = ptr::null_mut();
        // SAFETY: as the caller promises. librdkafka parses the headers on the first call
        // and keeps them with the message: the list lives as long as the message. Any
        // error (no headers, headers that cannot be parsed) leaves `hdrs` null, read as
        // no headers, as rdkafka's `Message::headers` does.
        let err = unsafe { rd_kafka_message_headers(msg, &mut hdrs) };
        if err != 0 {
            hdrs = ptr::null_mut();
        }
        HeaderIter {
            raw: None,
            hdrs,
            next: 0,
            _message: PhantomData,
        }
    }

    /// The headers of a record to produce, as [`headers`] reads a consumed one's.
    #[cfg(test)]
    fn of_owned(headers: &'m OwnedHeaders) -> HeaderIter<'m> {
        HeaderIter {
            raw: None,
            hdrs: list_of(headers),
            next: 0,
            _message: PhantomData,
        }
    }
}

/// A header list of librdkafka's, owned here: taken from a consumed message
/// ([`super::ConsumedMut::detach_headers`]) to be changed and handed to the producer
/// with its record ([`super::send`]), so that a flow neither copies a record's headers one by one into
/// a new list nor frees the parsed one. Destroyed when dropped, unless the producer took
/// it.
#[derive(Debug)]
pub struct HeaderList {
    list: NonNull<rd::rd_kafka_headers_t>,
}

// SAFETY: the list is librdkafka's plain memory, owned by this value alone; librdkafka
// keeps no pointer to it (a detached list is no longer the message's).
unsafe impl Send for HeaderList {}

impl HeaderList {
    /// An empty list with room for `capacity` headers.
    pub fn with_capacity(capacity: usize) -> HeaderList {
        // SAFETY: allocates a list; librdkafka aborts rather than return null.
        let list = unsafe { rd::rd_kafka_headers_new(capacity) };
        HeaderList {
            list: NonNull::new(list).expect("rd_kafka_headers_new returned null"),
        }
    }

    /// The headers of `msg`, taken from it: the list librdkafka parses them into, now
    /// owned here, in record order, each name with the length the record gives it (a
    /// name holding a NUL byte stays whole here, though [`HeaderList::iter`] reads it up
    /// to the NUL). `None` when the record has no headers, or headers librdkafka cannot
    /// parse. The message keeps its raw headers: reading them again parses them again.
    /// Through [`super::ConsumedMut::detach_headers`].
    ///
    /// # Safety
    /// `msg` is a message librdkafka handed over and not destroyed yet, from which no
    /// header list read is borrowed (the detached list may be changed and freed here).
    pub(super) unsafe fn detach(msg: *mut rd::rd_kafka_message_t) -> Option<HeaderList> {
        let mut list: *mut rd::rd_kafka_headers_t = ptr::null_mut();
        // SAFETY: see the function's contract. librdkafka parses the headers if it has
        // not yet, and gives the list up.
        let err = unsafe { rd_kafka_message_detach_headers(msg, &mut list) };
        if err != 0 {
            return None;
        }
        NonNull::new(list).map(|list| HeaderList { list })
    }

    /// The headers in order, names as bytes (see [`headers`]).
    pub fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            raw: None,
            hdrs: self.list.as_ptr(),
            next: 0,
            _message: PhantomData,
        }
    }

    /// Removes every header named `name` (as [`HeaderList::iter`] reads names: up to a
    /// NUL byte). A name holding a NUL byte matches nothing.
    pub fn remove(&mut self, name: &CStr) {
        // SAFETY: the list is ours, and `&mut self` proves nothing borrows a header of it
        // (librdkafka frees the removed ones). A name it does not hold is `NOENT`.
        unsafe { rd_kafka_header_remove(self.list.as_ptr(), name.as_ptr()) };
    }

    /// Adds a header at the end: `name` as given, any bytes.
    pub fn add(&mut self, name: &[u8], value: Option<&[u8]>) {
        // SAFETY: the list is ours, and `&mut self` proves nothing else uses it.
        unsafe { add_to(self.list.as_ptr(), name, value) }
    }

    /// The list, for the producer: it owns it once a record carrying it was taken.
    pub(super) fn into_raw(self) -> *mut rd::rd_kafka_headers_t {
        std::mem::ManuallyDrop::new(self).list.as_ptr()
    }

    /// A list [`HeaderList::into_raw`] gave out and the producer did not take.
    ///
    /// # Safety
    /// `list` must come from `into_raw`, and nothing else may own it.
    pub(super) unsafe fn from_raw(list: *mut rd::rd_kafka_headers_t) -> HeaderList {
        HeaderList {
            list: NonNull::new(list).expect("a list from into_raw"),
        }
    }
}

impl Drop for HeaderList {
    fn drop(&mut self) {
        // SAFETY: the list is ours and nothing borrows it (`&mut self`).
        unsafe { rd::rd_kafka_headers_destroy(self.list.as_ptr()) }
    }
}

/// The native list an `OwnedHeaders` owns. rdkafka's `BorrowedHeaders` is a zero-sized
/// view whose address is the native list (`OwnedHeaders::as_borrowed` casts the pointer
/// it owns, and rdkafka reads it back the same way); the list is librdkafka's memory,
/// which no Rust reference covers.
fn list_of(headers: &OwnedHeaders) -> *mut rd::rd_kafka_headers_t {
    ptr::from_ref::<BorrowedHeaders>(headers.as_borrowed())
        .cast::<rd::rd_kafka_headers_t>()
        .cast_mut()
}

impl<'m> Iterator for HeaderIter<'m> {
    type Item = (&'m [u8], Option<&'m [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(raw) = &mut self.raw {
            return raw.next();
        }
        if self.hdrs.is_null() {
            return None;
        }
        let mut name: *const c_char = ptr::null();
        let mut value: *const c_void = ptr::null();
        let mut size: usize = 0;
        // SAFETY: `hdrs` is the message's header list, alive for `'m`; an index past the
        // end returns an error and leaves the out-pointers alone.
        let err = unsafe {
            rd_kafka_header_get_all(self.hdrs, self.next, &mut name, &mut value, &mut size)
        };
        if err != 0 || name.is_null() {
            return None;
        }
        self.next += 1;
        // SAFETY: librdkafka keeps each name NUL-terminated and each value as `size`
        // bytes, in the list, which lives for `'m`. A null value pointer is a null value.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value = (!value.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) });
        Some((name, value))
    }
}

/// `headers` with one more header at the end: `name` as given, whether or not it is
/// UTF-8. A name that is UTF-8 goes through rdkafka's own `insert`.
pub fn add_header(headers: OwnedHeaders, name: &[u8], value: Option<&[u8]>) -> OwnedHeaders {
    if let Ok(key) = std::str::from_utf8(name)
        && !name.contains(&0)
    {
        return headers.insert(Header { key, value });
    }
    let before = headers.count();
    // SAFETY: `list_of` is the header list `headers` owns, and `headers` is ours (moved
    // in), so nothing else reads or writes it meanwhile.
    unsafe { add_to(list_of(&headers), name, value) };
    // The count, read through rdkafka (O(1)), proves the header went to this list: a
    // later rdkafka whose `as_borrowed` no longer points at the native list fails here,
    // not silently.
    assert_eq!(
        headers.count(),
        before + 1,
        "the header went to another list"
    );
    headers
}

/// Appends a header to `list`: `name.len()` bytes of name, whatever they are, and the
/// value (`None`: a null value).
///
/// # Safety
/// `list` must be a live header list that nothing else reads or writes meanwhile.
unsafe fn add_to(list: *mut rd::rd_kafka_headers_t, name: &[u8], value: Option<&[u8]>) {
    let (value_ptr, value_len) = match value {
        Some(v) => (v.as_ptr().cast::<c_void>(), v.len() as isize),
        None => (ptr::null(), 0),
    };
    // SAFETY: as the caller promises; librdkafka copies the name and the value before
    // it returns.
    let err = unsafe {
        rd_kafka_header_add(
            list,
            name.as_ptr().cast::<c_char>(),
            name.len() as isize,
            value_ptr,
            value_len,
        )
    };
    // librdkafka 2.12.1's rd_kafka_header_add does not fail.
    assert_eq!(err, 0, "rd_kafka_header_add failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_is_not_utf8_is_added_as_it_is() {
        let h = OwnedHeaders::new();
        let h = add_header(h, b"trace", Some(b"1"));
        let h = add_header(h, b"\xff\xfename", Some(b"\x00\x01"));
        let h = add_header(h, b"\xc3", None);
        let h = add_header(h, b"", Some(b""));
        assert_eq!(h.count(), 4);
        let read: Vec<_> = HeaderIter::of_owned(&h).collect();
        assert_eq!(
            read,
            vec![
                (&b"trace"[..], Some(&b"1"[..])),
                (&b"\xff\xfename"[..], Some(&b"\x00\x01"[..])),
                (&b"\xc3"[..], None),
                (&b""[..], Some(&b""[..])),
            ]
        );
    }

    #[test]
    fn no_headers_reads_as_none() {
        assert_eq!(HeaderIter::of_owned(&OwnedHeaders::new()).count(), 0);
    }
}
