//! Parse-don't-validate values of the contact registry. E-mails, language tags, site and
//! customer numbers and bounded texts are the shared ones of `kc_runtime::values` (e-mails
//! checked exactly as identity checks them).

use chrono::NaiveDate;
use kc_runtime::Violation;
pub use kc_runtime::values::{
    CustomerNumber, Email, Etag, Locale, SiteNumber, optional_email, optional_text, parse_id,
    required_text,
};

/// The officially assigned ISO 3166-1 alpha-2 codes.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL \
BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ \
EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR \
HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU \
LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU \
NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO \
SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU \
WF WS YE YT ZA ZM ZW";

/// Longest site name, in characters.
pub const MAX_SITE_NAME_CHARS: usize = 200;
/// Longest job title, in characters.
pub const MAX_JOB_TITLE_CHARS: usize = 100;

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryCode(String);

impl CountryCode {
    /// Parses a country code (case-insensitive).
    pub fn parse(field: &str, text: &str) -> Result<Self, Violation> {
        let code = text.trim().to_ascii_uppercase();
        if code.len() == 2 && ISO_3166_ALPHA2.split(' ').any(|known| known == code) {
            Ok(Self(code))
        } else {
            Err(Violation::new(
                field,
                format!(
                    "`{}` is not an ISO 3166-1 alpha-2 country code such as FR or US",
                    text.trim()
                ),
            ))
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A value whose text is its stored and published form (site and customer numbers, country
/// codes, language tags).
pub trait AsText {
    /// The text.
    fn as_text(&self) -> &str;
}

/// `AsText` of values whose `as_str` is their text (an inherent method of each, so no
/// blanket impl can name it).
macro_rules! as_text_is_as_str {
    ($($value:ty),+ $(,)?) => {
        $(impl AsText for $value {
            fn as_text(&self) -> &str {
                self.as_str()
            }
        })+
    };
}

as_text_is_as_str!(SiteNumber, CustomerNumber, CountryCode, Locale);

/// Serializes a value as its text (for `#[serde(serialize_with)]`: the audit trail records
/// sites with their numbers, country and language as plain strings).
pub fn serialize_text<T: AsText, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.as_text())
}

/// A phone number normalised to E.164: `+`, then 7 to 15 digits. Spaces, dots, dashes and
/// parentheses are dropped, and a leading international `00` becomes `+`.
pub fn optional_phone(field: &str, text: &str) -> Result<Option<String>, Violation> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let compact: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')' | '\u{a0}'))
        .collect();
    let number = if let Some(rest) = compact.strip_prefix('+') {
        rest
    } else if let Some(rest) = compact.strip_prefix("00") {
        rest
    } else {
        return Err(Violation::new(
            field,
            "phone number must be international, starting with + and the country code",
        ));
    };
    if !(7..=15).contains(&number.len())
        || !number.bytes().all(|b| b.is_ascii_digit())
        || number.starts_with('0')
    {
        return Err(Violation::new(
            field,
            "phone number must be E.164: + then a country code and 7 to 15 digits in all",
        ));
    }
    Ok(Some(format!("+{number}")))
}

/// An optional `YYYY-MM-DD` date.
pub fn optional_date(field: &str, text: &str) -> Result<Option<NaiveDate>, Violation> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| Violation::new(field, "must be a date as YYYY-MM-DD"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries() {
        assert_eq!(CountryCode::parse("f", "fr").unwrap().as_str(), "FR");
        for bad in ["", "F", "FRA", "XX", "ZZ"] {
            assert!(CountryCode::parse("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones() {
        assert_eq!(
            optional_phone("f", "+33 1 23 45 67 89").unwrap().as_deref(),
            Some("+33123456789")
        );
        assert_eq!(
            optional_phone("f", "0044 (20) 7946-0958")
                .unwrap()
                .as_deref(),
            Some("+442079460958")
        );
        assert_eq!(optional_phone("f", "  ").unwrap(), None);
        for bad in [
            "01 23 45 67 89",
            "+33",
            "+1234567890123456",
            "+33 1 2x 45 67 89",
            "+0123456789",
        ] {
            assert!(optional_phone("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(
            optional_date("f", "2027-03-31").unwrap(),
            NaiveDate::from_ymd_opt(2027, 3, 31)
        );
        assert!(optional_date("f", "31/03/2027").is_err());
    }
}
