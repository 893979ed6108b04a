//! Rule N1: each notice is written in the recipient's language; when the service has no
//! templates in it, in the site's language; else in English.

use std::fmt;

/// A language the service writes notices in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// French.
    Fr,
    /// English, the last fallback.
    En,
}

impl Lang {
    /// Every language with templates.
    pub const ALL: [Lang; 2] = [Lang::Fr, Lang::En];

    /// The tag, `fr` or `en`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    /// The language of a BCP-47 tag by its primary subtag (`fr-CA` → French), `None` when the
    /// service has no templates in it (or the tag is empty).
    pub fn of_tag(tag: &str) -> Option<Self> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("fr") {
            Some(Lang::Fr)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// A stored tag; anything else reads as English.
    pub fn from_stored(tag: &str) -> Self {
        Self::of_tag(tag).unwrap_or(Lang::En)
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Rule N1: the recipient's language when the service writes it, else the site's, else
/// English. Either may be missing (a business partner has no locale, a user-only notice no
/// site).
pub(crate) fn choose(recipient_locale: Option<&str>, site_language: Option<&str>) -> Lang {
    recipient_locale
        .and_then(Lang::of_tag)
        .or_else(|| site_language.and_then(Lang::of_tag))
        .unwrap_or(Lang::En)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipient_language_comes_first() {
        // rule N1: the recipient's language.
        assert_eq!(choose(Some("fr"), Some("en")), Lang::Fr);
        assert_eq!(choose(Some("en"), Some("fr")), Lang::En);
        // by primary subtag, whatever the region or case
        assert_eq!(choose(Some("fr-CA"), Some("en")), Lang::Fr);
        assert_eq!(choose(Some("FR_be"), None), Lang::Fr);
        assert_eq!(choose(Some("en-GB"), Some("fr")), Lang::En);
    }

    #[test]
    fn then_the_site_language() {
        // rule N1: fall back to the site's language.
        assert_eq!(choose(Some("de"), Some("fr")), Lang::Fr);
        assert_eq!(choose(Some("de-CH"), Some("fr-CH")), Lang::Fr);
        assert_eq!(choose(Some(""), Some("fr")), Lang::Fr);
        assert_eq!(choose(None, Some("fr")), Lang::Fr);
        assert_eq!(choose(Some("es"), Some("en-US")), Lang::En);
        // a tag that merely starts with the letters is not the language
        assert_eq!(choose(Some("fry"), Some("fr")), Lang::Fr);
        assert_eq!(choose(Some("fry"), None), Lang::En);
    }

    #[test]
    fn then_english() {
        // rule N1: then `en`.
        assert_eq!(choose(Some("de"), Some("it")), Lang::En);
        assert_eq!(choose(None, None), Lang::En);
        assert_eq!(choose(Some("zh-Hant-TW"), Some("")), Lang::En);
        assert_eq!(choose(None, Some("ja")), Lang::En);
    }

    #[test]
    fn stored_tags() {
        assert_eq!(Lang::from_stored("fr"), Lang::Fr);
        assert_eq!(Lang::from_stored("xx"), Lang::En);
        assert_eq!(Lang::Fr.to_string(), "fr");
    }
}
