//! Admin requests rdkafka 0.39 does not wrap, made on an rdkafka admin client's handle
//! through librdkafka's C API: IncrementalAlterConfigs ([`alter_topic`]), DescribeAcls
//! and CreateAcls ([`describe_topic_acls`], [`create_topic_acls`]). The crate's one
//! place with `unsafe`; every call has what keeps it sound beside it. All of them block:
//! call them from `spawn_blocking`.
#![allow(unsafe_code)]

mod acls;
mod configs;

use std::ffi::{CStr, c_char, c_int};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::bindings as rd;
use rdkafka::client::Client;
use rdkafka::types::RDKafkaErrorCode;

pub use acls::{create_topic_acls, describe_topic_acls};
pub use configs::alter_topic;

// Functions that return a code a broker sent, declared returning `c_int` rather than
// the bindings' Rust enums: a value the enum does not list must not be undefined
// behaviour. Same symbols, same ABI (the C enums are ints).
unsafe extern "C" {
    pub(crate) fn rd_kafka_event_error(rkev: *mut rd::rd_kafka_event_t) -> c_int;
    fn rd_kafka_error_code(error: *const rd::rd_kafka_error_t) -> c_int;
    fn rd_kafka_ConfigResource_error(config: *const rd::rd_kafka_ConfigResource_t) -> c_int;
    fn rd_kafka_AclBinding_restype(acl: *const rd::rd_kafka_AclBinding_t) -> c_int;
    fn rd_kafka_AclBinding_resource_pattern_type(acl: *const rd::rd_kafka_AclBinding_t) -> c_int;
    fn rd_kafka_AclBinding_operation(acl: *const rd::rd_kafka_AclBinding_t) -> c_int;
    fn rd_kafka_AclBinding_permission_type(acl: *const rd::rd_kafka_AclBinding_t) -> c_int;
}

/// Why an admin request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// The request failed or the broker refused it: the code and librdkafka's message.
    Refused(RDKafkaErrorCode, String),
    /// No answer within the timeout: the request may or may not have taken effect.
    TimedOut,
    /// A value librdkafka cannot take (an interior NUL byte, an empty name).
    Invalid(String),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Refused(code, msg) if msg.is_empty() => write!(f, "{code}"),
            AdminError::Refused(code, msg) => write!(f, "{code}: {msg}"),
            AdminError::TimedOut => write!(f, "no answer to the admin request"),
            AdminError::Invalid(msg) => write!(f, "{msg}"),
        }
    }
}

/// `s` as a C string, or why it cannot be one.
fn c_string(s: &str) -> Result<std::ffi::CString, AdminError> {
    std::ffi::CString::new(s).map_err(|_| AdminError::Invalid(format!("{s:?} holds a NUL byte")))
}

/// The error code for a raw code a broker or librdkafka sent; one the bindings do not
/// list is `Unknown` (the message keeps the text).
pub(crate) fn code(raw: c_int) -> RDKafkaErrorCode {
    rdkafka::types::RDKafkaRespErr::try_from(raw)
        .map_or(RDKafkaErrorCode::Unknown, RDKafkaErrorCode::from)
}

/// A result event, destroyed when dropped.
struct Event(*mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: an `Event` holds a live event it owns (checked non-null on creation).
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

/// Makes one admin request of type `op` with a request timeout and waits for its result
/// event, checked for a request-level error.
///
/// # Safety
/// `call` must make exactly one admin request of type `op` on the handle, options and
/// queue it is given, and nothing else with them.
unsafe fn request<C: ClientContext>(
    client: &Client<C>,
    op: rd::rd_kafka_admin_op_t,
    timeout: Duration,
    call: impl FnOnce(*mut rd::rd_kafka_t, *mut rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
) -> Result<Event, AdminError> {
    let rk = client.native_ptr();
    // librdkafka takes request timeouts up to an hour.
    let ms = timeout.as_millis().clamp(1, 3_600_000) as i32;
    let mut errstr = [0 as c_char; 256];
    // SAFETY: `rk` lives as long as `client`; the options and the queue are destroyed
    // on every path (a request in flight holds its own reference to the queue, so an
    // answer after the poll gave up is dropped with it).
    unsafe {
        let options = rd::rd_kafka_AdminOptions_new(rk, op);
        if options.is_null() {
            return Err(AdminError::Invalid(
                "librdkafka refused the admin options".into(),
            ));
        }
        let set = rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        if set != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            rd::rd_kafka_AdminOptions_destroy(options);
            return Err(AdminError::Invalid(text(errstr.as_ptr())));
        }
        let queue = rd::rd_kafka_queue_new(rk);
        call(rk, options, queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        // The request times out after `ms`; its answer (or its timeout) is the event.
        let event = rd::rd_kafka_queue_poll(queue, ms.saturating_add(1000));
        rd::rd_kafka_queue_destroy(queue);
        if event.is_null() {
            return Err(AdminError::TimedOut);
        }
        let event = Event(event);
        let err = rd_kafka_event_error(event.0);
        if err != 0 {
            return Err(AdminError::Refused(
                code(err),
                text(rd::rd_kafka_event_error_string(event.0)),
            ));
        }
        Ok(event)
    }
}

/// A C string librdkafka owns, copied (empty when null).
///
/// # Safety
/// `s` is null or a NUL-terminated string alive for the duration of the call.
unsafe fn text(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated, as the caller promises.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}
