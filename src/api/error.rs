//! The one mapping from domain errors to gRPC statuses. Whatever a client sent gets a
//! code that says what to do (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
//! ALREADY_EXISTS, ABORTED); INTERNAL and UNAVAILABLE are only for the service's own
//! trouble (its log, its engine stopping).

use duplex_sync::control::ControlError;
use duplex_sync::engine::ChangeError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::state::CommandError;
use crate::state::log::LogError;

/// INVALID_ARGUMENT naming the field, with a `google.rpc.BadRequest` field violation.
pub fn invalid(field: &str, problem: impl Into<String>) -> Status {
    let problem = problem.into();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {problem}"),
        ErrorDetails::with_bad_request_violation(field, problem),
    )
}

impl From<CommandError> for Status {
    fn from(e: CommandError) -> Status {
        let msg = e.to_string();
        match e {
            CommandError::InvalidArgument { field, problem } => invalid(field, problem),
            CommandError::NotFound(_) => Status::not_found(msg),
            CommandError::FailedPrecondition(_) => Status::failed_precondition(msg),
            CommandError::KeyReused { .. } => Status::already_exists(msg),
            CommandError::Aborted { .. } => Status::aborted(msg),
            CommandError::Log(e) => e.into(),
        }
    }
}

impl From<LogError> for Status {
    fn from(e: LogError) -> Status {
        Status::internal(format!("the event log failed: {e}"))
    }
}

/// The engine could not apply a recorded change.
pub fn control(e: ControlError) -> Status {
    {
        match e {
            ControlError::UnknownFlow(_) => Status::not_found(e.to_string()),
            ControlError::Stopped(_) => shutting_down(&e.to_string()),
        }
    }
}

/// A change cut short by a shutdown: UNAVAILABLE, saying it is recorded and applies at
/// the next start. `what` says what stopped.
pub fn shutting_down(what: &str) -> Status {
    Status::unavailable(format!(
        "{what}: the service is shutting down; the change is recorded and applies at the next start"
    ))
}

/// The engine could not prepare a topology change; nothing was recorded or changed.
pub fn topology_change(e: ChangeError) -> Status {
    let msg = e.to_string();
    match e {
        ChangeError::Busy
        | ChangeError::Settling
        | ChangeError::Draining(_)
        | ChangeError::Splits { .. }
        | ChangeError::Unsupported(_) => Status::failed_precondition(msg),
        ChangeError::CutTask(_) => Status::internal(format!("{msg}; nothing changed")),
        ChangeError::Cut { .. } => Status::unavailable(format!(
            "{msg}; nothing changed and the flows run on as before: retry once the cluster answers"
        )),
        ChangeError::Stopped => Status::unavailable(format!(
            "{msg}: the service is shutting down; nothing changed"
        )),
    }
}
