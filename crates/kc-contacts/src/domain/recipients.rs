//! Who receives a notice of each purpose (the notification table of DOMAIN.md, R1, C4).
//! The compliance gaps of a site are in [`super::compliance`].

use super::{Contact, ContactRole, Site};

/// Why a notice is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticePurpose {
    /// Agreement or contractual change.
    Contractual,
    /// S&S renewal notice.
    Renewal,
    /// Software update available.
    UpdateAvailable,
    /// Proof of entitlement.
    ProofOfEntitlement,
    /// Media shipment.
    Shipping,
    /// Invoice.
    Billing,
    /// Support or technical matter.
    Technical,
}

impl NoticePurpose {
    /// The roles that receive the notice, first choice first; the last is always PRIMARY
    /// (R1: a purpose without its own contact goes to the primary contact).
    pub fn role_chain(self) -> &'static [ContactRole] {
        use ContactRole::*;
        match self {
            Self::Contractual => &[Primary],
            Self::Renewal => &[Renewal, Administrative, Primary],
            Self::UpdateAvailable | Self::ProofOfEntitlement => &[Administrative, Primary],
            Self::Shipping => &[Shipping, Primary],
            Self::Billing => &[Billing, Primary],
            Self::Technical => &[SiteTechnical, Primary],
        }
    }

    /// What the notice is, for rule texts.
    fn label(self) -> &'static str {
        match self {
            Self::Contractual => "contractual notices",
            Self::Renewal => "S&S renewal notices",
            Self::UpdateAvailable => "software update notices",
            Self::ProofOfEntitlement => "proofs of entitlement",
            Self::Shipping => "media shipment notices",
            Self::Billing => "invoices",
            Self::Technical => "support and technical notices",
        }
    }
}

/// The rule of DOMAIN.md that says what a role receives.
fn role_rule(role: ContactRole) -> &'static str {
    match role {
        ContactRole::Primary => "C1",
        ContactRole::Administrative => "C3",
        ContactRole::SiteTechnical => "C5",
        _ => "C6",
    }
}

/// One chosen recipient and the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The contact through which it receives the notice.
    pub contact: Contact,
    /// Why, citing the rule.
    pub rule: String,
}

/// The recipients of a notice on a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Recipients among the contacts.
    pub recipients: Vec<Recipient>,
    /// Business partner copy (C4): the e-mail and the rule.
    pub business_partner: Option<(String, String)>,
}

/// Resolves the recipients of a notice of `purpose` among `contacts` of `site`.
///
/// Walks the purpose's role chain and stops at the first role someone holds; every holder
/// of that role receives the notice. Proofs of entitlement also go to the business partner
/// when the site names one (C4).
pub fn resolve(purpose: NoticePurpose, site: &Site, contacts: &[Contact]) -> Resolution {
    let chain = purpose.role_chain();
    let mut recipients = Vec::new();
    for (position, role) in chain.iter().enumerate() {
        let holders: Vec<&Contact> = contacts.iter().filter(|c| c.role == *role).collect();
        if holders.is_empty() {
            continue;
        }
        let rule = if purpose == NoticePurpose::Contractual {
            "C1: contractual notices go to the PRIMARY contact".to_owned()
        } else if position == 0 {
            format!(
                "{}: {} go to the {role} contact",
                role_rule(*role),
                purpose.label()
            )
        } else {
            let missing: Vec<&str> = chain[..position].iter().map(|r| r.name()).collect();
            // R1 is the fallback to the primary; an intermediate fallback (renewal notices to
            // the administrative contact) is the rule of the role that receives them.
            let rule_id = if *role == ContactRole::Primary {
                "R1"
            } else {
                role_rule(*role)
            };
            format!(
                "{rule_id}: no {} contact, fell back to {role}",
                missing.join(" or ")
            )
        };
        recipients.extend(holders.into_iter().map(|contact| Recipient {
            contact: contact.clone(),
            rule: rule.clone(),
        }));
        break;
    }
    let business_partner = match (purpose, &site.business_partner_email) {
        (NoticePurpose::ProofOfEntitlement, Some(email)) => Some((
            email.clone(),
            "C4: the business partner receives a copy of proofs of entitlement".to_owned(),
        )),
        _ => None,
    };
    Resolution {
        recipients,
        business_partner,
    }
}
