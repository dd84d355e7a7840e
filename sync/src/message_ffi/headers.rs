//! Header names as bytes: reading a consumed message's headers, and adding one to the
//! headers of a record to produce.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::ptr;

use rdkafka::bindings as rd;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Header, Headers, OwnedHeaders};

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
}

/// The headers of a consumed message in record order, each as (name, value): the name
/// as the bytes the record holds, the value `None` for a null value.
pub fn headers<'m>(msg: &'m BorrowedMessage<'_>) -> HeaderIter<'m> {
    // SAFETY: `msg.ptr()` is the message `msg` owns, alive while `'m` lasts, and
    // `HeaderIter` borrows for no longer. librdkafka parses the headers on the first
    // call without a lock, so two threads must not read one message's headers at once
    // (as with rdkafka's own `Message::headers`): no caller shares a message.
    unsafe { HeaderIter::of(msg.ptr()) }
}

/// Iterator over a message's headers; see [`headers`].
#[derive(Debug)]
pub struct HeaderIter<'m> {
    hdrs: *const rd::rd_kafka_headers_t,
    next: usize,
    _message: PhantomData<&'m ()>,
}

impl<'m> HeaderIter<'m> {
    /// The headers of the message at `msg`.
    ///
    /// # Safety
    /// `msg` must be a message librdkafka handed over that stays alive, and is not
    /// destroyed or changed by another thread, for `'m`.
    pub(crate) unsafe fn of(msg: *const rd::rd_kafka_message_t) -> HeaderIter<'m> {
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
            hdrs,
            next: 0,
            _message: PhantomData,
        }
    }

    /// The headers of a record to produce, as [`headers`] reads a consumed one's.
    pub fn of_owned(headers: &'m OwnedHeaders) -> HeaderIter<'m> {
        HeaderIter {
            hdrs: list_of(headers),
            next: 0,
            _message: PhantomData,
        }
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
    let list = list_of(&headers);
    let (value_ptr, value_len) = match value {
        Some(v) => (v.as_ptr().cast::<c_void>(), v.len() as isize),
        None => (ptr::null(), 0),
    };
    // SAFETY: `list` is the header list `headers` owns, and `headers` is ours (moved
    // in), so nothing else reads or writes it meanwhile. librdkafka copies the name
    // (`name.len()` bytes) and the value before it returns.
    let err = unsafe {
        rd_kafka_header_add(
            list,
            name.as_ptr().cast::<c_char>(),
            name.len() as isize,
            value_ptr,
            value_len,
        )
    };
    // librdkafka 2.12.1's rd_kafka_header_add does not fail. The count, read through
    // rdkafka (O(1)), proves the header went to this list: a later rdkafka whose
    // `as_borrowed` no longer points at the native list fails here, not silently.
    assert_eq!(err, 0, "rd_kafka_header_add failed");
    assert_eq!(
        headers.count(),
        before + 1,
        "the header went to another list"
    );
    headers
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
