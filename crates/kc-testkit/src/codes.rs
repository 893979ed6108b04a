//! Reading the codes identity mails, as notification does: from identity's event stream,
//! opened with the test opening key ([`crate::secrets`]). Tests that go through a real SMTP
//! server read the mail instead; this is for harnesses that need a proven account quickly.

use std::time::Duration;

use futures::StreamExt;
use kc_proto::identity::event::Payload;
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{VerificationPurpose, WatchEventsRequest};
use tonic::transport::Channel;

use crate::secrets::open_code;

/// How long a code may take to appear in the stream.
const CODE_PATIENCE: Duration = Duration::from_secs(20);

/// A code mailed by identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailedCode {
    /// The address it was mailed to.
    pub email: String,
    /// Why it was mailed.
    pub purpose: VerificationPurpose,
    /// The code.
    pub code: String,
}

/// Follows identity's event stream as a privileged caller and hands out the codes mailed to
/// an address, oldest first, each once.
#[derive(Debug, Clone)]
pub struct CodeReader {
    identity: IdentityServiceClient<Channel>,
    token: String,
    cursor: String,
}

impl CodeReader {
    /// A reader over identity at `channel`, reading with `token` (an operator's or a
    /// service's), from the start of the stream.
    pub fn new(channel: Channel, token: impl Into<String>) -> Self {
        Self {
            identity: IdentityServiceClient::new(channel),
            token: token.into(),
            cursor: String::new(),
        }
    }

    /// The next code mailed to `email` (compared case-insensitively) after the last one this
    /// reader returned for any address; codes already withdrawn (their sealed code dropped
    /// from the outbox) are skipped. Panics when none arrives within 20 s.
    pub async fn next_code(&mut self, email: &str) -> MailedCode {
        let wanted = email.trim().to_lowercase();
        let mut request = tonic::Request::new(WatchEventsRequest {
            after_cursor: self.cursor.clone(),
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token)
                .parse()
                .expect("token is ASCII"),
        );
        let mut stream = self
            .identity
            .watch_events(request)
            .await
            .expect("watch identity events")
            .into_inner();
        let found = tokio::time::timeout(CODE_PATIENCE, async {
            while let Some(item) = stream.next().await {
                let event = item.expect("identity event").event.expect("event body");
                if let Some(Payload::EmailVerificationRequested(requested)) = &event.payload
                    && requested.email == wanted
                    && !requested.sealed_code.is_empty()
                {
                    self.cursor = event.cursor.clone();
                    return MailedCode {
                        email: requested.email.clone(),
                        purpose: requested.purpose(),
                        code: open_code(&requested.sealed_code),
                    };
                }
            }
            panic!("identity's event stream ended");
        })
        .await;
        found.unwrap_or_else(|_| panic!("a code for {wanted} arrives within {CODE_PATIENCE:?}"))
    }
}
