//! The matrix's tests: the table covers every RPC of the service, and every RPC admits exactly
//! the callers its permission names.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::fixture::Fixture;
use super::*;
use prost::Message;
use prost_types::FileDescriptorSet;
use tonic::{Code, Status};

/// The RPC of a case: its name up to the qualifier.
fn rpc_of(case: &str) -> &str {
    case.split('(').next().unwrap_or(case)
}

/// Every method of `GatewayService` in the compiled descriptor set.
fn proto_methods() -> BTreeSet<String> {
    let set = FileDescriptorSet::decode(kc_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let (package, service) = kc_gateway::SERVICE_NAME
        .rsplit_once('.')
        .expect("a qualified service name");
    let file = set
        .file
        .iter()
        .find(|file| file.package() == package && file.service.iter().any(|s| s.name() == service))
        .expect("the gateway proto is in the descriptor set");
    file.service
        .iter()
        .find(|s| s.name() == service)
        .expect("GatewayService")
        .method
        .iter()
        .map(|method| method.name().to_owned())
        .collect()
}

#[test]
fn the_matrix_covers_every_rpc_of_the_service() {
    let proto = proto_methods();
    let table: BTreeSet<String> = MATRIX
        .iter()
        .map(|(case, _, _)| rpc_of(case).to_owned())
        .collect();
    let missing: Vec<_> = proto.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "RPCs missing from the matrix: {missing:?}"
    );
    let unknown: Vec<_> = table.difference(&proto).collect();
    assert!(unknown.is_empty(), "matrix rows of no RPC: {unknown:?}");
    let cases: BTreeSet<&str> = MATRIX.iter().map(|(case, _, _)| *case).collect();
    assert_eq!(cases.len(), MATRIX.len(), "a case is in the matrix twice");
    // The public RPCs are exactly the session RPCs, and only they admit anonymous callers.
    let public: BTreeSet<&str> = MATRIX
        .iter()
        .filter(|(_, allowed, _)| allowed.contains(&Anonymous))
        .map(|(case, _, _)| *case)
        .collect();
    assert_eq!(
        public,
        BTreeSet::from([
            "Register",
            "VerifyEmail",
            "RequestPasswordReset",
            "ResetPassword",
            "Login",
            "Refresh",
            "IssueServiceToken",
            "Logout"
        ])
    );
}

/// What one cell of the matrix saw.
fn outcome(result: &Result<(), Status>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(status) => format!("{:?}: {}", status.code(), status.message()),
    }
}

// DOMAIN.md T2, T3, T4, U4, U5, A3, C2, C3 (both states of the switch), C8: every RPC ×
// every kind of caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_admits_exactly_the_callers_its_permission_names() {
    let fixture = Fixture::build(Suite::start().await).await;
    let mut failures = Vec::new();
    let mut report = String::new();
    for (case, allowed, tolerated) in MATRIX {
        for who in CALLERS {
            let result = fixture.attempt(case, who).await;
            let seen = outcome(&result);
            let _ = writeln!(report, "{case:<40} {:<13} {seen}", format!("{who:?}"));
            let code = result.as_ref().err().map(Status::code);
            let fine = if allowed.contains(&who) {
                match code {
                    None => true,
                    Some(code) => tolerated.contains(&(who, code)),
                }
            } else if who == Anonymous {
                code == Some(Code::Unauthenticated)
            } else {
                code == Some(Code::PermissionDenied)
            };
            if !fine {
                let expected = if allowed.contains(&who) {
                    "allowed".to_owned()
                } else if who == Anonymous {
                    "Unauthenticated".to_owned()
                } else {
                    "PermissionDenied".to_owned()
                };
                failures.push(format!(
                    "{case} as {who:?}: expected {expected}, got {seen}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cell(s) of the matrix differ:\n{}\n\nthe whole matrix:\n{report}",
        failures.len(),
        failures.join("\n")
    );
}
