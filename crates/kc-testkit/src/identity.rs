//! The calls to identity every harness makes, on a channel to it: signing in, a service
//! token, and a person registered and proven with the code identity mailed (rule I1).

use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{
    AuthenticateRequest, IssueServiceTokenRequest, RegisterUserRequest, User, VerifyEmailRequest,
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
    let mut client = IdentityServiceClient::new(identity.clone());
    client
        .register_user(RegisterUserRequest {
            email: person.email.into(),
            display_name: person.name.into(),
            password: person.password.into(),
            locale: person.locale.into(),
        })
        .await
        .unwrap_or_else(|status| panic!("register {}: {status:?}", person.email));
    let mailed = CodeReader::new(identity.clone(), reader_token)
        .next_code(person.email)
        .await;
    client
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
