//! IncrementalAlterConfigs (KIP-339). rdkafka 0.39 wraps only AlterConfigs, which
//! replaces every dynamic setting of a topic with the ones sent (a key left out is
//! reset) and which Tansu does not serve; IncrementalAlterConfigs sets or removes the
//! keys named and nothing else.

use std::ffi::CString;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::bindings as rd;
use rdkafka::client::Client;

use super::{AdminError, c_string, code, rd_kafka_ConfigResource_error, request, text};
use crate::topic_configs::Change;

/// Applies `changes` to `topic`, as one request (the broker applies all or none).
pub fn alter_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    changes: &[Change],
    timeout: Duration,
) -> Result<(), AdminError> {
    if topic.is_empty() {
        return Err(AdminError::Invalid("a topic name is required".to_string()));
    }
    let name = c_string(topic)?;
    let ops: Vec<(CString, Option<CString>)> = changes
        .iter()
        .map(|c| match c {
            Change::Set(k, v) => Ok((c_string(k)?, Some(c_string(v)?))),
            Change::Delete(k) => Ok((c_string(k)?, None)),
        })
        .collect::<Result<_, AdminError>>()?;
    // SAFETY: the resource is destroyed on every path out of this block (the request
    // copies it); the strings passed in outlive the calls that read them; the event's
    // resources belong to the event, alive until `event` drops after the reads.
    unsafe {
        let resource = rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            name.as_ptr(),
        );
        if resource.is_null() {
            return Err(AdminError::Invalid(format!(
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
                return Err(AdminError::Invalid(msg));
            }
        }
        let event = request(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
            timeout,
            |rk, options, queue| {
                let mut resources = [resource];
                rd::rd_kafka_IncrementalAlterConfigs(rk, resources.as_mut_ptr(), 1, options, queue)
            },
        );
        rd::rd_kafka_ConfigResource_destroy(resource);
        let event = event?;
        let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(event.0);
        if result.is_null() {
            return Err(AdminError::Invalid(
                "not an IncrementalAlterConfigs result".into(),
            ));
        }
        let mut n = 0usize;
        let resources = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut n);
        for i in 0..n {
            let r = *resources.add(i);
            let err = rd_kafka_ConfigResource_error(r);
            if err != 0 {
                return Err(AdminError::Refused(
                    code(err),
                    text(rd::rd_kafka_ConfigResource_error_string(r)),
                ));
            }
        }
        Ok(())
    }
}
