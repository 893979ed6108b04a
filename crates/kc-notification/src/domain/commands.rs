//! The requests of the notification API once parsed: every field is a checked domain value
//! (`convert` builds them from the proto requests).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::params::Params;
use super::{Kind, ListFilter};

/// A SendNotice request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoticeRequest {
    /// Site.
    pub site_id: Uuid,
    /// A caller notice kind.
    pub kind: Kind,
    /// Template parameters.
    pub params: Params,
    /// The caller's key.
    pub idempotency_key: String,
}

/// One notification, by id (GetNotification, RetryNotification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotificationRef {
    /// Its id.
    pub notification_id: Uuid,
}

/// A ListNotifications request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListQuery {
    /// Which notifications.
    pub filter: ListFilter,
    /// The creation time and id of the last notification of the previous page; `None` for
    /// the first page.
    pub before: Option<(DateTime<Utc>, Uuid)>,
    /// Most notifications on the page.
    pub page_size: u32,
}

/// A RenderPreview request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreviewRequest {
    /// Any known kind.
    pub kind: Kind,
    /// The language asked for, as given (N1 picks the language of the preview).
    pub locale: String,
    /// Template parameters.
    pub params: Params,
}
