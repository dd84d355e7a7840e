//! DescribeAcls and CreateAcls, which rdkafka 0.39 does not wrap.

use std::ffi::{c_char, c_int};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::bindings as rd;
use rdkafka::client::Client;

use super::{
    AdminError, c_string, code, rd_kafka_AclBinding_operation, rd_kafka_AclBinding_permission_type,
    rd_kafka_AclBinding_resource_pattern_type, rd_kafka_AclBinding_restype, rd_kafka_error_code,
    request, text,
};
use crate::acls::{Acl, Operation, Permission};

/// Every literal-pattern ACL binding on topics that `client`'s cluster holds.
pub fn describe_topic_acls<C: ClientContext>(
    client: &Client<C>,
    timeout: Duration,
) -> Result<Vec<Acl>, AdminError> {
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
            return Err(AdminError::Invalid(text(errstr.as_ptr())));
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
            return Err(AdminError::Invalid("not a DescribeAcls result".into()));
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
/// outcome of each, in order.
pub fn create_topic_acls<C: ClientContext>(
    client: &Client<C>,
    acls: &[Acl],
    timeout: Duration,
) -> Result<Vec<Result<(), AdminError>>, AdminError> {
    let strings: Vec<[std::ffi::CString; 3]> = acls
        .iter()
        .map(|a| {
            Ok([
                c_string(&a.topic)?,
                c_string(&a.principal)?,
                c_string(&a.host)?,
            ])
        })
        .collect::<Result<_, AdminError>>()?;
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
                    return Err(AdminError::Invalid(format!(
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
                return Err(AdminError::Invalid(text(errstr.as_ptr())));
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
            return Err(AdminError::Invalid("not a CreateAcls result".into()));
        }
        let mut n = 0usize;
        let results = rd::rd_kafka_CreateAcls_result_acls(result, &mut n);
        let mut out: Vec<Result<(), AdminError>> = (0..n)
            .map(|i| {
                let err = rd::rd_kafka_acl_result_error(*results.add(i));
                if err.is_null() || rd_kafka_error_code(err) == 0 {
                    Ok(())
                } else {
                    Err(AdminError::Refused(
                        code(rd_kafka_error_code(err)),
                        text(rd::rd_kafka_error_string(err)),
                    ))
                }
            })
            .collect();
        // A broker that answers fewer results than bindings says nothing of the rest.
        out.resize_with(acls.len(), || {
            Err(AdminError::Invalid(
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
