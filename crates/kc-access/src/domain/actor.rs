//! Who acts in a call: the person responsible (and the service it came through), read from
//! the caller of the request. Access management serves services and operators only.

use kc_runtime::Caller;
use uuid::Uuid;

use super::{AccessError, Result};

/// What kind of caller acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// An operator, acting as itself.
    Operator,
    /// A person a service acts for (`x-kc-on-behalf-of`).
    Person,
    /// A service acting for nobody: it may read, not change.
    Service,
}

/// The caller responsible for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    /// The person responsible: the on-behalf-of user, else the caller itself.
    pub actor_id: Uuid,
    /// The service account the call came through, if any.
    pub via_service: Option<Uuid>,
    /// What kind of caller it is.
    pub kind: ActorKind,
}

impl Actor {
    /// The caller of a request: services and operators only (customers are refused).
    pub fn of(caller: &Caller) -> Result<Self> {
        if !caller.is_privileged() {
            return Err(AccessError::Forbidden(
                "customer tokens are refused by access management: call the gateway".into(),
            ));
        }
        let kind = match (caller.is_operator(), caller.on_behalf_of) {
            (true, _) => ActorKind::Operator,
            (false, Some(_)) => ActorKind::Person,
            (false, None) => ActorKind::Service,
        };
        Ok(Self {
            actor_id: caller.actor(),
            via_service: caller.is_service().then_some(caller.subject),
            kind,
        })
    }

    /// The actor of a change: a person or an operator, never a service acting for nobody.
    pub fn person(self) -> Result<Self> {
        if self.kind == ActorKind::Service {
            return Err(AccessError::Forbidden(
                "a change needs a person to hold responsible: name the user in x-kc-on-behalf-of"
                    .into(),
            ));
        }
        Ok(self)
    }

    /// Whether the actor is an operator.
    pub fn is_operator(self) -> bool {
        self.kind == ActorKind::Operator
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kc_runtime::token::CallerKind;

    fn caller(kind: CallerKind, on_behalf_of: Option<Uuid>) -> Caller {
        Caller {
            subject: Uuid::from_u128(1),
            kind,
            email: String::new(),
            on_behalf_of,
            scopes: Vec::new(),
        }
    }

    #[test]
    fn callers() {
        let person = Uuid::from_u128(2);
        let service = Actor::of(&caller(CallerKind::Service, Some(person))).unwrap();
        assert_eq!(service.actor_id, person);
        assert_eq!(service.via_service, Some(Uuid::from_u128(1)));
        assert!(service.person().is_ok());
        let bare = Actor::of(&caller(CallerKind::Service, None)).unwrap();
        assert!(matches!(bare.person(), Err(AccessError::Forbidden(_))));
        let operator = Actor::of(&caller(CallerKind::Operator, None)).unwrap();
        assert!(operator.is_operator() && operator.person().is_ok());
        assert!(matches!(
            Actor::of(&caller(CallerKind::Customer, None)),
            Err(AccessError::Forbidden(_))
        ));
    }
}
