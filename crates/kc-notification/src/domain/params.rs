//! The template parameters each kind takes (listed on the proto's `NoticeKind`), and their
//! validation for SendNotice and RenderPreview.

use std::collections::BTreeMap;

use kc_runtime::Violation;

use super::Kind;

/// Longest parameter value, in characters.
pub(crate) const MAX_VALUE_CHARS: usize = 2000;
/// Longest idempotency key, in characters.
pub(crate) const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;

/// The parameters the service fills in itself for every template; RenderPreview takes them
/// too.
pub(crate) const COMMON: [&str; 3] = ["site_name", "site_number", "recipient_name"];

/// Template parameters: name → value.
pub(crate) type Params = BTreeMap<String, String>;

/// One parameter of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// Its name.
    pub name: &'static str,
    /// Whether SendNotice must give it.
    pub required: bool,
}

/// A required parameter (a struct literal, so the lists are constants).
macro_rules! req {
    ($name:literal) => {
        ParamSpec {
            name: $name,
            required: true,
        }
    };
}

/// An optional parameter.
macro_rules! opt {
    ($name:literal) => {
        ParamSpec {
            name: $name,
            required: false,
        }
    };
}

impl Kind {
    /// The parameters this kind takes.
    pub fn params(self) -> &'static [ParamSpec] {
        match self {
            Kind::ContractChange => &[req!("summary"), opt!("effective_date")],
            Kind::Renewal => &[req!("end_date"), opt!("quote_reference")],
            Kind::UpdateAvailable => &[req!("product"), req!("version")],
            Kind::ProofOfEntitlement => &[req!("order_number")],
            Kind::MediaShipment => &[req!("order_number"), opt!("tracking_number")],
            Kind::Invoice => &[req!("invoice_number"), opt!("amount"), opt!("due_date")],
            Kind::Technical => &[req!("topic"), req!("summary")],
            Kind::EmailVerification
            | Kind::Invitation
            | Kind::PasswordReset
            | Kind::EmailChangeVerification => &[opt!("code"), opt!("expire_time")],
            Kind::RegistrationAddressTaken | Kind::RegistrationAddressConfusable => {
                &[opt!("email")]
            }
            Kind::EmailChangeRequested => &[opt!("new_email")],
            Kind::NotificationEmailVerification => {
                &[opt!("code"), opt!("expire_time"), opt!("role")]
            }
            Kind::NotificationEmailChangeRequested => &[opt!("new_email"), opt!("role")],
            Kind::AccessRequestSubmitted => &[
                opt!("requester_name"),
                opt!("requester_email"),
                opt!("request_kind"),
                opt!("justification"),
                opt!("request_id"),
                opt!("expire_time"),
            ],
            Kind::AccessRequestDecided => &[
                opt!("decision"),
                opt!("reason"),
                opt!("granted"),
                opt!("request_id"),
            ],
            Kind::RightsChanged => &[opt!("changes"), opt!("reason")],
            Kind::SiteUserWelcome => &[opt!("levels"), opt!("reason")],
            Kind::RightsEndingSoon | Kind::RightsEnded => &[opt!("levels"), opt!("end_time")],
            Kind::SupportEnding => &[opt!("end_date"), opt!("milestone_days")],
            Kind::SupportLapsed => &[opt!("end_date")],
            Kind::DomainPolicyChanged => &[opt!("domain"), opt!("mode")],
            Kind::ContactRoleAssigned | Kind::ContactRoleRemoved => {
                &[opt!("contact_name"), opt!("role")]
            }
            Kind::PrimaryTransferred => &[opt!("previous_name"), opt!("new_name")],
            Kind::PrimaryRecoveryRequested => &[
                opt!("requester_name"),
                opt!("requester_email"),
                opt!("previous_name"),
                opt!("reason"),
                opt!("recovery_id"),
                opt!("waiting_end_time"),
            ],
            Kind::PrimaryRecoveryRefused => &[
                opt!("requester_name"),
                opt!("previous_name"),
                opt!("decided_by_name"),
                opt!("reason"),
                opt!("recovery_id"),
            ],
            Kind::PrimaryRecoveryAttested => &[
                opt!("requester_name"),
                opt!("previous_name"),
                opt!("new_name"),
                opt!("reason"),
                opt!("recovery_id"),
            ],
        }
    }

    fn takes(self, name: &str) -> bool {
        self.params().iter().any(|spec| spec.name == name)
    }

    fn param_list(self) -> String {
        self.params()
            .iter()
            .map(|spec| spec.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Who gives the parameters, which decides what is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// SendNotice: only the kind's own keys; the required ones must be there.
    Send,
    /// RenderPreview: the kind's keys and the common ones; nothing is required except for
    /// caller notice kinds, checked as for SendNotice.
    Preview,
}

/// Checks `params` for `kind`: every violation names `params.<key>`. Values are at most
/// [`MAX_VALUE_CHARS`] characters without control characters other than line breaks and
/// tabs; required ones are not blank.
pub(crate) fn validate(kind: Kind, params: &Params, usage: Use) -> Result<(), Vec<Violation>> {
    let mut violations = Vec::new();
    let field = |key: &str| format!("params.{}", printable_key(key));
    for (key, value) in params {
        let common = usage == Use::Preview && COMMON.contains(&key.as_str());
        if !common && !kind.takes(key) {
            let takes = match kind.param_list() {
                list if list.is_empty() => "no parameters".to_owned(),
                list => format!("only {list}"),
            };
            violations.push(Violation::new(
                field(key),
                format!(
                    "is not a parameter of {} (it takes {takes})",
                    kind.proto_name()
                ),
            ));
            continue;
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            violations.push(Violation::new(
                field(key),
                format!("must be at most {MAX_VALUE_CHARS} characters"),
            ));
        } else if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            violations.push(Violation::new(
                field(key),
                "must not contain control characters other than line breaks and tabs",
            ));
        }
    }
    if kind.is_notice() {
        for spec in kind.params().iter().filter(|spec| spec.required) {
            let given = params
                .get(spec.name)
                .is_some_and(|value| !value.trim().is_empty());
            if !given {
                violations.push(Violation::new(
                    format!("params.{}", spec.name),
                    format!("is required for {}", kind.proto_name()),
                ));
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

/// A key as it may appear in a field path: at most 100 characters, control characters
/// replaced.
fn printable_key(key: &str) -> String {
    let mut printable: String = key
        .chars()
        .take(100)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if key.chars().count() > 100 {
        printable.push('…');
    }
    printable
}

/// Checks SendNotice's idempotency key: 1 to 200 characters, no control characters.
pub(crate) fn idempotency_key(field: &str, key: &str) -> Result<String, Violation> {
    if key.is_empty() {
        return Err(Violation::new(field, "is required"));
    }
    if key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(Violation::new(
            field,
            format!("must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(Violation::new(field, "must not contain control characters"));
    }
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn fields(result: Result<(), Vec<Violation>>) -> Vec<String> {
        result
            .unwrap_err()
            .into_iter()
            .map(|violation| violation.field)
            .collect()
    }

    #[test]
    fn required_and_optional_keys() {
        let ok = params(&[("summary", "New terms"), ("effective_date", "2026-01-01")]);
        assert!(validate(Kind::ContractChange, &ok, Use::Send).is_ok());
        assert!(
            validate(
                Kind::ContractChange,
                &params(&[("summary", "x")]),
                Use::Send
            )
            .is_ok()
        );
        assert_eq!(
            fields(validate(Kind::ContractChange, &params(&[]), Use::Send)),
            ["params.summary"]
        );
        assert_eq!(
            fields(validate(
                Kind::Technical,
                &params(&[("topic", " "), ("summary", "")]),
                Use::Send
            )),
            ["params.topic", "params.summary"]
        );
        // every notice kind: its required keys and nothing else pass
        for kind in Kind::ALL.into_iter().filter(|k| k.is_notice()) {
            let all: Params = kind
                .params()
                .iter()
                .map(|spec| (spec.name.to_owned(), "value".to_owned()))
                .collect();
            assert!(validate(kind, &all, Use::Send).is_ok(), "{kind:?}");
            assert!(kind.params().iter().any(|spec| spec.required), "{kind:?}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let bad = params(&[("order_number", "42"), ("colour", "red")]);
        let violations = validate(Kind::ProofOfEntitlement, &bad, Use::Send).unwrap_err();
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "params.colour");
        assert!(violations[0].description.contains("order_number"));
        // the common keys are the service's own on SendNotice, allowed on previews
        let named = params(&[("order_number", "42"), ("site_name", "Lyon")]);
        assert_eq!(
            fields(validate(Kind::ProofOfEntitlement, &named, Use::Send)),
            ["params.site_name"]
        );
        assert!(validate(Kind::ProofOfEntitlement, &named, Use::Preview).is_ok());
        assert_eq!(
            fields(validate(
                Kind::RightsChanged,
                &params(&[("x", "1")]),
                Use::Preview
            )),
            ["params.x"]
        );
    }

    #[test]
    fn previews_check_notice_kinds_like_send_notice() {
        assert_eq!(
            fields(validate(Kind::Invoice, &params(&[]), Use::Preview)),
            ["params.invoice_number"]
        );
        // event kinds require nothing
        assert!(validate(Kind::AccessRequestDecided, &params(&[]), Use::Preview).is_ok());
    }

    #[test]
    fn values_are_bounded() {
        let long = "é".repeat(MAX_VALUE_CHARS + 1);
        assert_eq!(
            fields(validate(
                Kind::ContractChange,
                &params(&[("summary", &long)]),
                Use::Send
            )),
            ["params.summary"]
        );
        let exact = "é".repeat(MAX_VALUE_CHARS);
        assert!(
            validate(
                Kind::ContractChange,
                &params(&[("summary", &exact)]),
                Use::Send
            )
            .is_ok()
        );
        let multiline = params(&[("summary", "line one\r\nline two\tend")]);
        assert!(validate(Kind::ContractChange, &multiline, Use::Send).is_ok());
        let bell = params(&[("summary", "ding\u{7}")]);
        assert_eq!(
            fields(validate(Kind::ContractChange, &bell, Use::Send)),
            ["params.summary"]
        );
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(idempotency_key("k", "order-42").unwrap(), "order-42");
        assert!(idempotency_key("k", "").is_err());
        assert!(idempotency_key("k", &"x".repeat(200)).is_ok());
        assert!(idempotency_key("k", &"x".repeat(201)).is_err());
        assert!(idempotency_key("k", "a\nb").is_err());
    }
}
