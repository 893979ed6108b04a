//! The suite's methods on notification: its RPCs, waiting for states, and what the SMTP
//! server received.

use super::*;

impl Suite {
    // ---- notification ----

    pub async fn send_notice(
        &self,
        site_id: &str,
        kind: Kind,
        params: &[(&str, &str)],
        key: &str,
    ) -> Result<pb::SendNoticeResponse, Status> {
        self.notifications()
            .send_notice(self.svc(send_notice_request(site_id, kind, params, key)))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn get(&self, notification_id: &str) -> pb::Notification {
        self.notifications()
            .get_notification(self.svc(pb::GetNotificationRequest {
                notification_id: notification_id.into(),
            }))
            .await
            .expect("get notification")
            .into_inner()
            .notification
            .expect("notification")
    }

    /// Every notification matching the filters (all pages), newest first.
    pub async fn list(
        &self,
        site_id: &str,
        recipient: Option<Uuid>,
        state: State,
    ) -> Vec<pb::Notification> {
        all_pages(|page_token| self.list_page(site_id, recipient, state, 1000, page_token)).await
    }

    /// One page of ListNotifications: its notifications and the next page's token.
    pub async fn list_page(
        &self,
        site_id: &str,
        recipient: Option<Uuid>,
        state: State,
        page_size: i32,
        page_token: String,
    ) -> (Vec<pb::Notification>, String) {
        let page = self
            .notifications()
            .list_notifications(self.svc(pb::ListNotificationsRequest {
                site_id: site_id.into(),
                recipient_user_id: recipient.map(|id| id.to_string()).unwrap_or_default(),
                state: state as i32,
                page_size,
                page_token,
            }))
            .await
            .expect("list notifications")
            .into_inner();
        (page.notifications, page.next_page_token)
    }

    /// Every notification of every site and recipient.
    pub async fn all(&self) -> Vec<pb::Notification> {
        self.list("", None, State::Unspecified).await
    }

    /// Polls the notifications of `recipient` (on `site_id`, every site when empty) until
    /// one of `kind` is DELIVERED, and returns it.
    pub async fn delivered(
        &self,
        site_id: &str,
        recipient: &TestUser,
        kind: Kind,
    ) -> pb::Notification {
        eventually(
            &format!(
                "a {kind:?} to {} on site {site_id:?} is delivered",
                recipient.name
            ),
            || async move {
                let found = self
                    .list(site_id, Some(recipient.id), State::Unspecified)
                    .await;
                found
                    .iter()
                    .find(|n| n.kind == kind as i32 && n.state == State::Delivered as i32)
                    .cloned()
                    .ok_or_else(|| format!("{:#?}", brief(&found)))
            },
        )
        .await
    }

    /// Polls until the notification reaches `state`, and returns it.
    pub async fn wait_state(&self, notification_id: &str, state: State) -> pb::Notification {
        eventually(
            &format!("notification {notification_id} is {state:?}"),
            || async move {
                let notification = self.get(notification_id).await;
                if notification.state == state as i32 {
                    Ok(notification)
                } else {
                    Err(format!("{notification:#?}"))
                }
            },
        )
        .await
    }

    /// Polls until every notification is DELIVERED (none pending, sending, failed or dead),
    /// and returns them all.
    pub async fn all_delivered(&self) -> Vec<pb::Notification> {
        eventually("every notification is delivered", || async move {
            let all = self.all().await;
            let open: Vec<_> = all
                .iter()
                .filter(|n| n.state != State::Delivered as i32)
                .collect();
            if open.is_empty() {
                Ok(all)
            } else {
                Err(format!("{:#?}", brief_refs(&open)))
            }
        })
        .await
    }

    /// The one message the SMTP server received for `notification` (it must have been
    /// received exactly once).
    pub async fn mail_of(&self, notification: &pb::Notification) -> ReceivedMessage {
        let id = &notification.notification_id;
        let messages = self
            .smtp()
            .wait_for(&format!("notification {id} is received"), PATIENCE, |m| {
                m.iter()
                    .any(|m| m.header("X-Keycontacts-Notification-Id") == Some(id))
            })
            .await;
        let copies: Vec<ReceivedMessage> = messages
            .into_iter()
            .filter(|m| m.header("X-Keycontacts-Notification-Id") == Some(id))
            .collect();
        assert_eq!(
            copies.len(),
            1,
            "notification {id} received exactly once: {copies:#?}"
        );
        copies.into_iter().next().expect("one copy")
    }

    /// Waits for the DELIVERED notification of `kind` to `recipient` on the site, checks the
    /// message the SMTP server received for it (address, language, headers, both parts) and
    /// returns both.
    pub async fn notice(
        &self,
        site_id: &str,
        recipient: &TestUser,
        kind: Kind,
        email: &str,
        locale: &str,
    ) -> (pb::Notification, ReceivedMessage) {
        let notification = self.delivered(site_id, recipient, kind).await;
        assert_eq!(notification.site_id, site_id, "{notification:#?}");
        assert_eq!(notification.recipient_user_id, recipient.id.to_string());
        let message = self.mail_of(&notification).await;
        check_mail(&notification, &message, email, locale);
        self.assert_language(kind, locale, &message).await;
        (notification, message)
    }

    /// Every notification to the address `email` (any site, recipient and state).
    pub async fn to_address(&self, email: &str) -> Vec<pb::Notification> {
        self.all()
            .await
            .into_iter()
            .filter(|n| n.email == email)
            .collect()
    }

    /// Polls until a notification of `kind` to the address `email` is DELIVERED, checks the
    /// message the SMTP server received for it (address, language, headers, both parts, the
    /// kind's templates in `locale`) and returns both. For identity's mails, which go to an
    /// address rather than a site's contact.
    pub async fn mail_to(
        &self,
        email: &str,
        kind: Kind,
        locale: &str,
    ) -> (pb::Notification, ReceivedMessage) {
        let notification = eventually(
            &format!("a {kind:?} to {email} is delivered"),
            || async move {
                let found = self.to_address(email).await;
                found
                    .iter()
                    .find(|n| n.kind == kind as i32 && n.state == State::Delivered as i32)
                    .cloned()
                    .ok_or_else(|| format!("{:#?}", brief(&found)))
            },
        )
        .await;
        assert_eq!(
            notification.site_id, "",
            "identity's mails are about no site"
        );
        let message = self.mail_of(&notification).await;
        check_mail(&notification, &message, email, locale);
        self.assert_language(kind, locale, &message).await;
        (notification, message)
    }

    /// Renders a preview.
    pub async fn preview(
        &self,
        kind: Kind,
        locale: &str,
        params: &[(&str, &str)],
    ) -> pb::RenderPreviewResponse {
        self.notifications()
            .render_preview(self.svc(pb::RenderPreviewRequest {
                kind: kind as i32,
                locale: locale.into(),
                params: to_map(params).into_iter().collect(),
            }))
            .await
            .expect("render preview")
            .into_inner()
    }

    /// Asserts `message` is written with `locale`'s templates of `kind` (see
    /// [`assert_language`]).
    pub async fn assert_language(&self, kind: Kind, locale: &str, message: &ReceivedMessage) {
        assert_language(
            &mut self.notifications(),
            self.caller_token(),
            kind,
            locale,
            message,
        )
        .await;
    }

    /// Reads notification's event stream from the start until `pick` finds something.
    pub async fn find_event<T>(&self, mut pick: impl FnMut(&pb::Event) -> Option<T>) -> T {
        let mut stream = self
            .notifications()
            .watch_events(self.svc(pb::WatchEventsRequest::default()))
            .await
            .expect("watch notification events")
            .into_inner();
        find_message(&mut stream, "the notification event arrives", |item| {
            pick(&item.event.expect("event body"))
        })
        .await
    }

    /// Asserts every notification was received exactly once (counted per Message-ID and per
    /// notification id), and that the SMTP server received nothing else.
    pub fn assert_each_received_once(&self, notifications: &[pb::Notification]) {
        let messages = self.smtp().messages();
        let mut per_id: HashMap<&str, usize> = HashMap::new();
        for message in &messages {
            *per_id.entry(message.message_id.as_str()).or_default() += 1;
        }
        for notification in notifications {
            let message_id = message_id_of(&notification.notification_id);
            assert_eq!(
                per_id.get(message_id.as_str()).copied().unwrap_or(0),
                1,
                "{message_id} ({:?} to {}) received exactly once",
                Kind::try_from(notification.kind),
                notification.email
            );
        }
        assert_eq!(
            messages.len(),
            notifications.len(),
            "the SMTP server received one message per notification and nothing else"
        );
    }
}
