//! IncrementalAlterConfigs (KIP-339) on an rdkafka admin client's handle.
//!
//! rdkafka 0.39 wraps only AlterConfigs, which replaces every dynamic setting of a
//! topic with the ones sent (a key left out is reset) and which Tansu does not serve;
//! IncrementalAlterConfigs sets or removes the keys named and nothing else. This is the
//! crate's one module with `unsafe`: the calls of librdkafka's C API, each with what
//! keeps it sound beside it.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::bindings as rd;
use rdkafka::client::Client;
use rdkafka::types::RDKafkaErrorCode;

use super::Change;

/// Why a change was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterError {
    /// The request failed or the broker refused it: librdkafka's code and message.
    Refused(RDKafkaErrorCode, String),
    /// No answer within the timeout: the change may or may not have been applied.
    TimedOut,
    /// A key or value librdkafka cannot take (an interior NUL byte, an unknown op).
    Invalid(String),
}

impl std::fmt::Display for AlterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AlterError::Refused(code, msg) if msg.is_empty() => write!(f, "{code}"),
            AlterError::Refused(code, msg) => write!(f, "{code}: {msg}"),
            AlterError::TimedOut => write!(f, "no answer to IncrementalAlterConfigs"),
            AlterError::Invalid(msg) => write!(f, "{msg}"),
        }
    }
}

/// Applies `changes` to `topic`, as one request (the broker applies all or none).
/// Blocking: call from `spawn_blocking`.
pub fn alter_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    changes: &[Change],
    timeout: Duration,
) -> Result<(), AlterError> {
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| AlterError::Invalid(format!("{s:?} holds a NUL byte")))
    };
    if topic.is_empty() {
        return Err(AlterError::Invalid("a topic name is required".to_string()));
    }
    let name = cstr(topic)?;
    let ops: Vec<(CString, Option<CString>)> = changes
        .iter()
        .map(|c| match c {
            Change::Set(k, v) => Ok((cstr(k)?, Some(cstr(v)?))),
            Change::Delete(k) => Ok((cstr(k)?, None)),
        })
        .collect::<Result<_, AlterError>>()?;
    let rk = client.native_ptr();
    // librdkafka takes request timeouts up to an hour.
    let ms = timeout.as_millis().clamp(1, 3_600_000) as i32;
    // SAFETY: `rk` is a live handle for as long as `client` is borrowed. Every object
    // created here is destroyed on every path out of this block: the resource and the
    // options after the call that copies them, the queue after the poll (a request
    // still in flight holds its own reference to it), the event after it is read.
    // Strings passed in outlive the calls that read them (librdkafka copies them);
    // strings read out are copied before their owner is destroyed.
    unsafe {
        let resource = rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            name.as_ptr(),
        );
        if resource.is_null() {
            return Err(AlterError::Invalid(format!(
                "librdkafka cannot name topic {topic:?}"
            )));
        }
        for (k, v) in &ops {
            let op = if v.is_some() {
                rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET
            } else {
                rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE
            };
            let value = v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
            let err =
                rd::rd_kafka_ConfigResource_add_incremental_config(resource, k.as_ptr(), op, value);
            if !err.is_null() {
                let msg = text(rd::rd_kafka_error_string(err));
                rd::rd_kafka_error_destroy(err);
                rd::rd_kafka_ConfigResource_destroy(resource);
                return Err(AlterError::Invalid(msg));
            }
        }
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        );
        let mut errstr = [0 as c_char; 256];
        let set = rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        if set != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            rd::rd_kafka_AdminOptions_destroy(options);
            rd::rd_kafka_ConfigResource_destroy(resource);
            return Err(AlterError::Invalid(text(errstr.as_ptr())));
        }
        let queue = rd::rd_kafka_queue_new(rk);
        let mut resources = [resource];
        rd::rd_kafka_IncrementalAlterConfigs(rk, resources.as_mut_ptr(), 1, options, queue);
        rd::rd_kafka_ConfigResource_destroy(resource);
        rd::rd_kafka_AdminOptions_destroy(options);
        // The request times out after `ms`; its answer (or its timeout) is the event.
        let event = rd::rd_kafka_queue_poll(queue, ms.saturating_add(1000));
        rd::rd_kafka_queue_destroy(queue);
        if event.is_null() {
            return Err(AlterError::TimedOut);
        }
        let outcome = read_result(event);
        rd::rd_kafka_event_destroy(event);
        outcome
    }
}

/// The outcome an IncrementalAlterConfigs result event reports.
///
/// # Safety
/// `event` must be a live event, not destroyed before this returns.
unsafe fn read_result(event: *mut rd::rd_kafka_event_t) -> Result<(), AlterError> {
    // SAFETY: the caller keeps `event` alive; the result and its resources belong to it.
    unsafe {
        let err = rd::rd_kafka_event_error(event);
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let msg = text(rd::rd_kafka_event_error_string(event));
            return Err(AlterError::Refused(err.into(), msg));
        }
        let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(event);
        if result.is_null() {
            return Err(AlterError::Invalid(
                "librdkafka answered with another event than IncrementalAlterConfigs' result"
                    .to_string(),
            ));
        }
        let mut n = 0usize;
        let resources = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut n);
        for i in 0..n {
            let r = *resources.add(i);
            let err = rd::rd_kafka_ConfigResource_error(r);
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                let msg = text(rd::rd_kafka_ConfigResource_error_string(r));
                return Err(AlterError::Refused(err.into(), msg));
            }
        }
        Ok(())
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
