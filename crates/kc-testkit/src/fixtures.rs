//! Requests the services' tests build alike.

use kc_proto::contacts::{CreateSiteRequest, Program};
use uuid::Uuid;

/// A valid `CreateSite` request for the registry: the site "Lyon Part-Dieu" (FR, in French,
/// Passport Advantage) without S&S, whose primary contact is `primary`.
pub fn site_request(site_number: &str, customer_number: &str, primary: Uuid) -> CreateSiteRequest {
    CreateSiteRequest {
        site_number: site_number.into(),
        customer_number: customer_number.into(),
        name: "Lyon Part-Dieu".into(),
        country_code: "FR".into(),
        language: "fr".into(),
        program: Program::PassportAdvantage as i32,
        support_active: false,
        support_end_date: String::new(),
        business_partner_email: String::new(),
        primary_user_id: primary.to_string(),
        site_technical_user_id: String::new(),
        primary_details: None,
        site_technical_details: None,
    }
}

/// Every tool of access management at its NONE level, or (`top`) at its top level.
fn every_tool(top: bool) -> kc_proto::access::ToolAccess {
    use kc_proto::access::{
        AccountDocumentsAccess as Docs, AccountManagementAccess as Am, ContactUpdatesAccess as Cu,
        EntitlementsAccess as En, ManageAccess as Ma, ReportingAccess as Re, SoftwareAccess as Sw,
        ToolAccess,
    };
    let pick = |none: i32, full: i32| if top { full } else { none };
    ToolAccess {
        software: pick(Sw::None as i32, Sw::Full as i32),
        reporting: pick(Re::None as i32, Re::View as i32),
        entitlements: pick(En::None as i32, En::Update as i32),
        account_management: pick(Am::None as i32, Am::Granted as i32),
        manage_access: pick(Ma::None as i32, Ma::Update as i32),
        contact_updates: pick(Cu::None as i32, Cu::Update as i32),
        account_documents: pick(Docs::None as i32, Docs::View as i32),
    }
}

/// Every tool NONE.
pub fn no_tools() -> kc_proto::access::ToolAccess {
    every_tool(false)
}

/// Every tool at its top level.
pub fn top_tools() -> kc_proto::access::ToolAccess {
    every_tool(true)
}
