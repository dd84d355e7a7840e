//! What rdkafka 0.39's safe API cannot express about messages, through librdkafka's C
//! API: header names as the bytes a record holds ([`headers`], [`add_header`]),
//! consuming in batches ([`Batches`], and [`BatchStream`] for async readers), and
//! producing through a topic handle with the header list taken from the consumed record
//! ([`send`], [`HeaderList`]). The crate's third place with `unsafe` (besides admin_ffi/
//! and alloc.rs); every call has what keeps it sound beside it.
//!
//! **Why header names are bytes here.** Kafka's protocol calls a header name a UTF-8
//! string, but brokers store whatever a producer sent, and librdkafka's C API lets a
//! producer send any bytes. rdkafka's `Headers::iter` turns each name into `&str` with
//! `unwrap()`: one record whose header name is not UTF-8 panicked the flow that read
//! it, and the engine with it, again at every restart, since the record stays where it
//! is. Read here, a name is the bytes librdkafka holds, and a flow copies it as it is.
//!
//! **Except a NUL byte.** librdkafka keeps a name's length but hands it over only as a
//! NUL-terminated string, so a name holding a NUL byte (valid UTF-8, which a Java client
//! can send) reads as its bytes before it: a flow writes that shorter name, and the
//! verifier reads the same on both sides and cannot tell. rdkafka did the same before.
//! docs/headers.md says so.
//!
//! **Read in place.** A consumed record's headers are read from the bytes it came with
//! (raw_headers.rs), where librdkafka's private message layout is known (2.12.1, checked
//! at run time, and cross-checked against librdkafka's own parse in samples),
//! instead of through the list librdkafka builds with one allocation per header; the
//! same headers either way.
#![allow(unsafe_code)]

mod batch;
mod consumed;
mod headers;
mod produce;
mod raw_headers;
mod stream;

pub use batch::{Batch, Batches, IntoIterMut};
pub use consumed::{ConsumeError, Consumed, ConsumedMut};
pub use headers::{HeaderIter, HeaderList, add_header, headers};
pub use produce::{Outgoing, TopicHandle, send};
pub use raw_headers::RawHeaders;
pub use raw_headers::misreads as headers_misreads;
pub use stream::BatchStream;
