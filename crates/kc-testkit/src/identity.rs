//! The calls to identity every harness makes, on a channel to it: signing in, a service
//! token, and a person registered and proven with the code identity mailed (rule I1).

use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{
    AuthenticateRequest, IssueServiceTokenRequest, RegisterUserRequest, RegisterUserResponse, User,
    VerifyEmailRequest,
};
use tonic::transport::Channel;

use crate::codes::CodeReader;

/// Signs `email` in with `password`: the access token.
pub async fn sign_in(identity: &Channel, email: &str, password: &str) -> String {
    IdentityServiceClient::new(identity.clone())
        .authenticate(AuthenticateRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .unwrap_or_else(|status| panic!("sign {email} in: {status:?}"))
        .into_inner()
        .access_token
}

/// The service token of a service account.
pub async fn service_token(identity: &Channel, client_id: &str, client_secret: &str) -> String {
    IdentityServiceClient::new(identity.clone())
        .issue_service_token(IssueServiceTokenRequest {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        })
        .await
        .unwrap_or_else(|status| panic!("service token of {client_id}: {status:?}"))
        .into_inner()
        .access_token
}

/// RegisterUser: identity's answer, which says nothing whatever the address (rule I2).
pub async fn register(
    identity: &Channel,
    email: &str,
    name: &str,
    password: &str,
    locale: &str,
) -> RegisterUserResponse {
    IdentityServiceClient::new(identity.clone())
        .register_user(RegisterUserRequest {
            email: email.into(),
            display_name: name.into(),
            password: password.into(),
            locale: locale.into(),
        })
        .await
        .unwrap_or_else(|status| panic!("register {email}: {status:?}"))
        .into_inner()
}

/// A person to register with [`register_proven`].
#[derive(Debug, Clone, Copy)]
pub struct Registration<'a> {
    /// The login e-mail.
    pub email: &'a str,
    /// The display name.
    pub name: &'a str,
    /// The password.
    pub password: &'a str,
    /// The locale of its mails.
    pub locale: &'a str,
}

/// Registers a person and proves its address with the code identity mailed, read from
/// identity's stream with `reader_token` (an operator's or a service's) as notification
/// reads it: the proven, active user.
pub async fn register_proven(
    identity: &Channel,
    reader_token: &str,
    person: Registration<'_>,
) -> User {
    let Registration {
        email,
        name,
        password,
        locale,
    } = person;
    register(identity, email, name, password, locale).await;
    let mailed = CodeReader::new(identity.clone(), reader_token)
        .next_code(person.email)
        .await;
    IdentityServiceClient::new(identity.clone())
        .verify_email(VerifyEmailRequest {
            email: person.email.into(),
            code: mailed.code,
            password: person.password.into(),
        })
        .await
        .unwrap_or_else(|status| panic!("verify {}: {status:?}", person.email))
        .into_inner()
        .user
        .expect("the verified user")
}
