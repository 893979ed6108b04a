//! Words shown to recipients in their language (N1): role names, request kinds, decisions,
//! domain policy modes, tools and levels, and dates.

use chrono::{DateTime, NaiveDate, Utc};

use super::{Lang, Role};

/// The name of a contact role, e.g. `Site technical contact` / `Contact technique du site`.
pub(crate) fn role_name(role: Role, lang: Lang) -> &'static str {
    match (lang, role) {
        (Lang::En, Role::Primary) => "Primary contact",
        (Lang::En, Role::Administrative) => "Administrative contact",
        (Lang::En, Role::SiteTechnical) => "Site technical contact",
        (Lang::En, Role::Secondary) => "Secondary contact",
        (Lang::En, Role::Renewal) => "Renewal contact",
        (Lang::En, Role::Shipping) => "Shipping contact",
        (Lang::En, Role::Billing) => "Billing contact",
        (Lang::En, Role::SiteUser) => "Site user",
        (Lang::Fr, Role::Primary) => "Contact principal",
        (Lang::Fr, Role::Administrative) => "Contact administratif",
        (Lang::Fr, Role::SiteTechnical) => "Contact technique du site",
        (Lang::Fr, Role::Secondary) => "Contact secondaire",
        (Lang::Fr, Role::Renewal) => "Contact pour le renouvellement",
        (Lang::Fr, Role::Shipping) => "Contact pour les expéditions",
        (Lang::Fr, Role::Billing) => "Contact pour la facturation",
        (Lang::Fr, Role::SiteUser) => "Utilisateur du site",
    }
}

/// Several roles, in the registry's order, joined: `Primary contact, Site technical contact`.
pub(crate) fn role_names(roles: &[Role], lang: Lang) -> String {
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    roles
        .iter()
        .map(|role| role_name(*role, lang))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What an access request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// Tool access to a site.
    SiteAccess,
    /// A support level on a site.
    SupportAccess,
}

/// The name of a request kind.
pub(crate) fn request_kind_name(kind: RequestKind, lang: Lang) -> &'static str {
    match (lang, kind) {
        (Lang::En, RequestKind::SiteAccess) => "site access",
        (Lang::En, RequestKind::SupportAccess) => "support access",
        (Lang::Fr, RequestKind::SiteAccess) => "accès au site",
        (Lang::Fr, RequestKind::SupportAccess) => "accès au support",
    }
}

/// How an access request was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Approved, with the granted levels.
    Approved,
    /// Rejected, with a reason (A4).
    Rejected,
}

/// The word for a decision.
pub(crate) fn decision_name(decision: Decision, lang: Lang) -> &'static str {
    match (lang, decision) {
        (Lang::En, Decision::Approved) => "approved",
        (Lang::En, Decision::Rejected) => "rejected",
        (Lang::Fr, Decision::Approved) => "approuvée",
        (Lang::Fr, Decision::Rejected) => "refusée",
    }
}

/// What a domain policy does with matching requests (A7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PolicyMode {
    /// Requests wait for an approver.
    Manual,
    /// Requests are proposed the baseline; an approver decides.
    AutoPending,
    /// Requests are approved at once with the baseline.
    AutoApprove,
}

/// The description of a policy mode.
pub(crate) fn policy_mode_name(mode: PolicyMode, lang: Lang) -> &'static str {
    match (lang, mode) {
        (Lang::En, PolicyMode::Manual) => "manual: every request waits for an approver",
        (Lang::En, PolicyMode::AutoPending) => {
            "automatic proposal: requests get the baseline proposed, an approver decides"
        }
        (Lang::En, PolicyMode::AutoApprove) => {
            "automatic approval: requests are granted the baseline at once"
        }
        (Lang::Fr, PolicyMode::Manual) => {
            "manuelle : chaque demande attend la décision d'un approbateur"
        }
        (Lang::Fr, PolicyMode::AutoPending) => {
            "proposition automatique : le niveau de base est proposé, un approbateur décide"
        }
        (Lang::Fr, PolicyMode::AutoApprove) => {
            "approbation automatique : le niveau de base est accordé aussitôt"
        }
    }
}

/// A tool of DOMAIN.md's tool table, or the support level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Right {
    /// Software and services (tool 1).
    Software,
    /// Reporting (tool 2).
    Reporting,
    /// Entitlements (tool 3).
    Entitlements,
    /// Account management (tool 4).
    AccountManagement,
    /// Manage access (tool 5).
    ManageAccess,
    /// Contact updates (tool 6).
    ContactUpdates,
    /// Account documents (tool 7).
    AccountDocuments,
    /// Support access (U1–U4).
    Support,
}

impl Right {
    /// The seven tools, then support, in DOMAIN.md's order.
    pub(crate) const ALL: [Right; 8] = [
        Right::Software,
        Right::Reporting,
        Right::Entitlements,
        Right::AccountManagement,
        Right::ManageAccess,
        Right::ContactUpdates,
        Right::AccountDocuments,
        Right::Support,
    ];

    /// The level codes of this right by access management's numbers (1 = the lowest).
    fn levels(self) -> &'static [Level] {
        use Level::*;
        match self {
            Right::Software => &[None, DownloadsOnly, DownloadsAndMedia, Full],
            Right::Reporting | Right::AccountDocuments => &[None, View],
            Right::Entitlements | Right::ManageAccess | Right::ContactUpdates => {
                &[None, View, Update]
            }
            Right::AccountManagement => &[None, Granted],
            Right::Support => &[NoAccess, Basic, Full, Administrator],
        }
    }

    /// The level of access management's number for this right; `None` for UNSPECIFIED (0)
    /// and numbers this service does not know.
    pub(crate) fn level(self, number: i32) -> Option<Level> {
        let index = usize::try_from(number.checked_sub(1)?).ok()?;
        self.levels().get(index).copied()
    }
}

/// A level of a tool or of support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// NONE.
    None,
    /// DOWNLOADS_ONLY.
    DownloadsOnly,
    /// DOWNLOADS_AND_MEDIA.
    DownloadsAndMedia,
    /// FULL.
    Full,
    /// VIEW.
    View,
    /// UPDATE.
    Update,
    /// GRANTED.
    Granted,
    /// NO_ACCESS (support).
    NoAccess,
    /// BASIC (support).
    Basic,
    /// ADMINISTRATOR (support).
    Administrator,
}

/// The name of a tool or of support.
pub(crate) fn right_name(right: Right, lang: Lang) -> &'static str {
    match (lang, right) {
        (Lang::En, Right::Software) => "Software and services",
        (Lang::En, Right::Reporting) => "Reporting",
        (Lang::En, Right::Entitlements) => "Entitlements",
        (Lang::En, Right::AccountManagement) => "Account management",
        (Lang::En, Right::ManageAccess) => "Manage access",
        (Lang::En, Right::ContactUpdates) => "Contact updates",
        (Lang::En, Right::AccountDocuments) => "Account documents",
        (Lang::En, Right::Support) => "Support",
        (Lang::Fr, Right::Software) => "Logiciels et services",
        (Lang::Fr, Right::Reporting) => "Rapports",
        (Lang::Fr, Right::Entitlements) => "Droits d'utilisation",
        (Lang::Fr, Right::AccountManagement) => "Gestion du compte",
        (Lang::Fr, Right::ManageAccess) => "Gestion des accès",
        (Lang::Fr, Right::ContactUpdates) => "Mise à jour des contacts",
        (Lang::Fr, Right::AccountDocuments) => "Documents du compte",
        (Lang::Fr, Right::Support) => "Support",
    }
}

/// The name of a level.
pub(crate) fn level_name(level: Level, lang: Lang) -> &'static str {
    match (lang, level) {
        (Lang::En, Level::None) => "none",
        (Lang::En, Level::DownloadsOnly) => "downloads only",
        (Lang::En, Level::DownloadsAndMedia) => "downloads and media",
        (Lang::En, Level::Full) => "full",
        (Lang::En, Level::View) => "view",
        (Lang::En, Level::Update) => "update",
        (Lang::En, Level::Granted) => "granted",
        (Lang::En, Level::NoAccess) => "no access",
        (Lang::En, Level::Basic) => "basic",
        (Lang::En, Level::Administrator) => "administrator",
        (Lang::Fr, Level::None) => "aucun",
        (Lang::Fr, Level::DownloadsOnly) => "téléchargements seulement",
        (Lang::Fr, Level::DownloadsAndMedia) => "téléchargements et supports physiques",
        (Lang::Fr, Level::Full) => "complet",
        (Lang::Fr, Level::View) => "consultation",
        (Lang::Fr, Level::Update) => "modification",
        (Lang::Fr, Level::Granted) => "accordée",
        (Lang::Fr, Level::NoAccess) => "aucun accès",
        (Lang::Fr, Level::Basic) => "de base",
        (Lang::Fr, Level::Administrator) => "administrateur",
    }
}

/// Levels held, one line each: `Reporting: view`.
pub(crate) fn levels_text(levels: &[(Right, Level)], lang: Lang) -> String {
    levels
        .iter()
        .map(|(right, level)| {
            format!(
                "{}{} {}",
                right_name(*right, lang),
                colon(lang),
                level_name(*level, lang)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Changes of levels, one line each: `Reporting: none → view`.
pub(crate) fn changes_text(changes: &[(Right, Level, Level)], lang: Lang) -> String {
    changes
        .iter()
        .map(|(right, before, after)| {
            format!(
                "{}{} {} → {}",
                right_name(*right, lang),
                colon(lang),
                level_name(*before, lang),
                level_name(*after, lang)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// French typography puts a space before a colon.
fn colon(lang: Lang) -> &'static str {
    match lang {
        Lang::En => ":",
        Lang::Fr => "\u{a0}:",
    }
}

/// A time as recipients read it, in UTC: `2026-03-01 14:05 UTC` / `01/03/2026 14:05 UTC`.
pub(crate) fn time_text(time: DateTime<Utc>, lang: Lang) -> String {
    match lang {
        Lang::En => time.format("%Y-%m-%d %H:%M UTC").to_string(),
        Lang::Fr => time.format("%d/%m/%Y %H:%M UTC").to_string(),
    }
}

/// A calendar day as recipients read it: `2026-03-31` / `31/03/2026`.
pub(crate) fn date_text(date: NaiveDate, lang: Lang) -> String {
    match lang {
        Lang::En => date.format("%Y-%m-%d").to_string(),
        Lang::Fr => date.format("%d/%m/%Y").to_string(),
    }
}

/// The placeholder name of a recipient nobody named (the business partner's copy, a user
/// without a display name).
pub(crate) fn sample(key: &str, lang: Lang) -> &'static str {
    match (key, lang) {
        ("site_name", Lang::En) => "Example site",
        ("site_name", Lang::Fr) => "Site exemple",
        ("site_number", _) => "1234567",
        ("recipient_name", Lang::En) => "Alex Example",
        ("recipient_name", Lang::Fr) => "Camille Exemple",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn roles_are_named_in_each_language() {
        assert_eq!(
            role_name(Role::SiteTechnical, Lang::Fr),
            "Contact technique du site"
        );
        assert_eq!(
            role_names(
                &[Role::SiteTechnical, Role::Primary, Role::Primary],
                Lang::En
            ),
            "Primary contact, Site technical contact"
        );
        for role in Role::ALL {
            assert_ne!(role_name(role, Lang::Fr), role_name(role, Lang::En));
        }
    }

    #[test]
    fn levels_by_number() {
        assert_eq!(Right::Software.level(3), Some(Level::DownloadsAndMedia));
        assert_eq!(Right::Support.level(1), Some(Level::NoAccess));
        assert_eq!(Right::Reporting.level(3), None);
        assert_eq!(Right::Reporting.level(0), None);
        assert_eq!(Right::Reporting.level(-1), None);
        assert_eq!(
            changes_text(&[(Right::Reporting, Level::None, Level::View)], Lang::En),
            "Reporting: none → view"
        );
        assert_eq!(
            levels_text(&[(Right::Support, Level::Full)], Lang::Fr),
            "Support\u{a0}: complet"
        );
    }

    #[test]
    fn times() {
        let time = Utc.with_ymd_and_hms(2026, 3, 1, 14, 5, 0).unwrap();
        assert_eq!(time_text(time, Lang::En), "2026-03-01 14:05 UTC");
        assert_eq!(time_text(time, Lang::Fr), "01/03/2026 14:05 UTC");
        let day = NaiveDate::from_ymd_opt(2027, 3, 31).unwrap();
        assert_eq!(date_text(day, Lang::En), "2027-03-31");
        assert_eq!(date_text(day, Lang::Fr), "31/03/2027");
    }
}
