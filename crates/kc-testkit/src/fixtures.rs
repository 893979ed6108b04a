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
