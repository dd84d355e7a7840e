//! DescribeAcls and CreateAcls on an rdkafka admin client's handle: rdkafka 0.39 does
//! not wrap the ACL requests. With `topic_configs/alter.rs`, one of the crate's two
//! modules with `unsafe`; every call of librdkafka's C API has what keeps it sound
//! beside it.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::bindings as rd;
use rdkafka::client::Client;
use rdkafka::types::RDKafkaErrorCode;

use super::{Acl, Operation, Permission};

// The getters of a described binding, declared returning `c_int` rather than the
// bindings' Rust enums: a value a broker sends that the enum does not list must not be
// undefined behaviour. Same symbols, same ABI (the C enums are ints).
unsafe extern "C" {
    fn rd_kafka_AclBinding_restype(acl: *const rd::rd_kafka_AclBinding_t) -> c_int;
    fn rd_kafka_AclBinding_resource_pattern_type(acl: *const rd::rd_kafka_AclBinding_t) -> c_int;
    fn rd_kafka_AclBinding_operation(acl: *const rd::rd_kafka_AclBinding_t) -> c_int;
    fn rd_kafka_AclBinding_permission_type(acl: *const rd::rd_kafka_AclBinding_t) -> c_int;
    fn rd_kafka_event_error(rkev: *mut rd::rd_kafka_event_t) -> c_int;
    fn rd_kafka_error_code(error: *const rd::rd_kafka_error_t) -> c_int;
}

/// Why an ACL request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclError {
    /// The request failed or the broker refused it: the code and librdkafka's message.
    Refused(RDKafkaErrorCode, String),
    /// No answer within the timeout.
    TimedOut,
    /// A value librdkafka cannot take.
    Invalid(String),
}

impl std::fmt::Display for AclError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AclError::Refused(code, msg) if msg.is_empty() => write!(f, "{code}"),
            AclError::Refused(code, msg) => write!(f, "{code}: {msg}"),
            AclError::TimedOut => write!(f, "no answer to the ACL request"),
            AclError::Invalid(msg) => write!(f, "{msg}"),
        }
    }
}

fn code(raw: c_int) -> RDKafkaErrorCode {
    RDKafkaErrorCode::from(resp_err(raw))
}

/// The bindings' error enum for `raw`, or `Unknown` for a value it does not list.
fn resp_err(raw: c_int) -> rd::rd_kafka_resp_err_t {
    use rd::rd_kafka_resp_err_t as E;
    // The enum has gaps; only values librdkafka documents are converted, the rest are
    // reported as an unknown error with the number in the message.
    [
        E::RD_KAFKA_RESP_ERR_NO_ERROR,
        E::RD_KAFKA_RESP_ERR__TIMED_OUT,
        E::RD_KAFKA_RESP_ERR__TRANSPORT,
        E::RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE,
        E::RD_KAFKA_RESP_ERR__INVALID_ARG,
        E::RD_KAFKA_RESP_ERR_SECURITY_DISABLED,
        E::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
        E::RD_KAFKA_RESP_ERR_INVALID_REQUEST,
        E::RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION,
        E::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        E::RD_KAFKA_RESP_ERR_POLICY_VIOLATION,
        E::RD_KAFKA_RESP_ERR_NOT_CONTROLLER,
        E::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
    ]
    .into_iter()
    .find(|e| *e as c_int == raw)
    .unwrap_or(E::RD_KAFKA_RESP_ERR_UNKNOWN)
}

/// Every literal-pattern ACL binding on topics that `client`'s cluster holds.
/// Blocking: call from `spawn_blocking`.
pub fn describe_topic_acls<C: ClientContext>(
    client: &Client<C>,
    timeout: Duration,
) -> Result<Vec<Acl>, AclError> {
    let mut errstr = [0 as c_char; 256];
    // SAFETY: `client` keeps the handle alive. The filter is created, handed to the
    // request (which copies it) and destroyed; `request` destroys the options and the
    // queue on every path; the event is read then destroyed by `Event`'s drop, and
    // every string read from it is copied first.
    unsafe {
        let filter = rd::rd_kafka_AclBindingFilter_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            std::ptr::null(),
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
            std::ptr::null(),
            std::ptr::null(),
            rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ANY,
            rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        if filter.is_null() {
            return Err(AclError::Invalid(text(errstr.as_ptr())));
        }
        let event = request(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBEACLS,
            timeout,
            |rk, options, queue| rd::rd_kafka_DescribeAcls(rk, filter, options, queue),
        );
        rd::rd_kafka_AclBinding_destroy(filter);
        let event = event?;
        let result = rd::rd_kafka_event_DescribeAcls_result(event.0);
        if result.is_null() {
            return Err(AclError::Invalid("not a DescribeAcls result".into()));
        }
        let mut n = 0usize;
        let acls = rd::rd_kafka_DescribeAcls_result_acls(result, &mut n);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let a = *acls.add(i);
            let topic_literal = rd_kafka_AclBinding_restype(a)
                == rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC as c_int
                && rd_kafka_AclBinding_resource_pattern_type(a)
                    == rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL
                        as c_int;
            if !topic_literal {
                continue;
            }
            let operation = match rd_kafka_AclBinding_operation(a) {
                x if x == rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_READ as c_int => {
                    Operation::Read
                }
                x if x == rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_DESCRIBE as c_int => {
                    Operation::Describe
                }
                x if x == rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ALL as c_int => {
                    Operation::All
                }
                _ => Operation::Other,
            };
            let permission = match rd_kafka_AclBinding_permission_type(a) {
                x if x
                    == rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW
                        as c_int =>
                {
                    Permission::Allow
                }
                x if x
                    == rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_DENY
                        as c_int =>
                {
                    Permission::Deny
                }
                _ => continue,
            };
            out.push(Acl {
                topic: text(rd::rd_kafka_AclBinding_name(a)),
                principal: text(rd::rd_kafka_AclBinding_principal(a)),
                host: text(rd::rd_kafka_AclBinding_host(a)),
                operation,
                permission,
            });
        }
        Ok(out)
    }
}

/// Creates `acls` (literal topic bindings, READ or DESCRIBE) as one request; the
/// outcome of each, in order. Blocking: call from `spawn_blocking`.
pub fn create_topic_acls<C: ClientContext>(
    client: &Client<C>,
    acls: &[Acl],
    timeout: Duration,
) -> Result<Vec<Result<(), AclError>>, AclError> {
    let cstr =
        |s: &str| CString::new(s).map_err(|_| AclError::Invalid(format!("{s:?} holds a NUL byte")));
    let strings: Vec<[CString; 3]> = acls
        .iter()
        .map(|a| Ok([cstr(&a.topic)?, cstr(&a.principal)?, cstr(&a.host)?]))
        .collect::<Result<_, AclError>>()?;
    let mut errstr = [0 as c_char; 256];
    // SAFETY: as in `describe_topic_acls`. Each binding created is destroyed once the
    // request (which copies them) is made, also when a later one cannot be created.
    unsafe {
        let mut bindings: Vec<*mut rd::rd_kafka_AclBinding_t> = Vec::with_capacity(acls.len());
        for (a, [topic, principal, host]) in acls.iter().zip(&strings) {
            let operation = match a.operation {
                Operation::Read => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_READ,
                Operation::Describe => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_DESCRIBE,
                Operation::All | Operation::Other => {
                    destroy_all(&mut bindings);
                    return Err(AclError::Invalid(format!(
                        "only READ and DESCRIBE are created, not {:?}",
                        a.operation
                    )));
                }
            };
            let permission = match a.permission {
                Permission::Allow => {
                    rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW
                }
                Permission::Deny => {
                    rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_DENY
                }
            };
            let b = rd::rd_kafka_AclBinding_new(
                rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                topic.as_ptr(),
                rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
                principal.as_ptr(),
                host.as_ptr(),
                operation,
                permission,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            if b.is_null() {
                destroy_all(&mut bindings);
                return Err(AclError::Invalid(text(errstr.as_ptr())));
            }
            bindings.push(b);
        }
        let event = request(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEACLS,
            timeout,
            |rk, options, queue| {
                rd::rd_kafka_CreateAcls(rk, bindings.as_mut_ptr(), bindings.len(), options, queue)
            },
        );
        destroy_all(&mut bindings);
        let event = event?;
        let result = rd::rd_kafka_event_CreateAcls_result(event.0);
        if result.is_null() {
            return Err(AclError::Invalid("not a CreateAcls result".into()));
        }
        let mut n = 0usize;
        let results = rd::rd_kafka_CreateAcls_result_acls(result, &mut n);
        let mut out: Vec<Result<(), AclError>> = (0..n)
            .map(|i| {
                let err = rd::rd_kafka_acl_result_error(*results.add(i));
                if err.is_null() || rd_kafka_error_code(err) == 0 {
                    Ok(())
                } else {
                    Err(AclError::Refused(
                        code(rd_kafka_error_code(err)),
                        text(rd::rd_kafka_error_string(err)),
                    ))
                }
            })
            .collect();
        // A broker that answers fewer results than bindings says nothing of the rest.
        out.resize_with(acls.len(), || {
            Err(AclError::Invalid(
                "the broker answered no result for it".into(),
            ))
        });
        Ok(out)
    }
}

/// # Safety
/// Every pointer in `bindings` was returned by `rd_kafka_AclBinding_new` and not
/// destroyed yet.
unsafe fn destroy_all(bindings: &mut Vec<*mut rd::rd_kafka_AclBinding_t>) {
    for b in bindings.drain(..) {
        // SAFETY: as the caller promises.
        unsafe { rd::rd_kafka_AclBinding_destroy(b) };
    }
}

/// A result event, destroyed when dropped.
struct Event(*mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: an `Event` holds a live event it owns (checked non-null on creation).
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

/// Makes one admin request with a request timeout, and waits for its result event,
/// which it checks for a request-level error.
///
/// # Safety
/// `call` must make exactly one admin request of type `op` on the handle, options and
/// queue it is given, and nothing else with them.
unsafe fn request<C: ClientContext>(
    client: &Client<C>,
    op: rd::rd_kafka_admin_op_t,
    timeout: Duration,
    call: impl FnOnce(*mut rd::rd_kafka_t, *mut rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
) -> Result<Event, AclError> {
    let rk = client.native_ptr();
    let ms = timeout.as_millis().clamp(1, 3_600_000) as i32;
    let mut errstr = [0 as c_char; 256];
    // SAFETY: `rk` lives as long as `client`; the options and the queue are destroyed
    // on every path (a request in flight holds its own reference to the queue).
    unsafe {
        let options = rd::rd_kafka_AdminOptions_new(rk, op);
        if options.is_null() {
            return Err(AclError::Invalid(
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
            return Err(AclError::Invalid(text(errstr.as_ptr())));
        }
        let queue = rd::rd_kafka_queue_new(rk);
        call(rk, options, queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        let event = rd::rd_kafka_queue_poll(queue, ms.saturating_add(1000));
        rd::rd_kafka_queue_destroy(queue);
        if event.is_null() {
            return Err(AclError::TimedOut);
        }
        let event = Event(event);
        let err = rd_kafka_event_error(event.0);
        if err != 0 {
            return Err(AclError::Refused(
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
