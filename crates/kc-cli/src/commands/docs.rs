//! Documents printed by more than one command group.

use serde::Serialize;

use crate::values;

/// A user, as printed.
#[derive(Debug, Serialize)]
pub(crate) struct UserDoc {
    pub(crate) user_id: String,
    pub(crate) email: String,
    pub(crate) display_name: String,
    pub(crate) locale: String,
    pub(crate) kind: String,
    pub(crate) state: String,
}

impl UserDoc {
    pub(crate) fn of(user: &kc_proto::identity::User) -> Self {
        Self {
            user_id: user.user_id.clone(),
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            locale: user.locale.clone(),
            kind: values::user_kind(user.kind),
            state: values::user_state(user.state),
        }
    }
}
