//! Parse-don't-validate values of the contact registry. E-mails and language tags are the
//! shared ones of `kc_runtime::values`, checked exactly as identity checks them.

use chrono::NaiveDate;
use kc_runtime::Violation;
pub use kc_runtime::values::{Email, Locale, parse_etag, parse_id};

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

/// Parses a number of 7 to 10 ASCII digits (site and customer numbers).
fn digits(field: &str, what: &str, text: &str) -> Result<String, Violation> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Violation::new(field, format!("{what} is required")));
    }
    if !(7..=10).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Violation::new(
            field,
            format!("{what} must be 7 to 10 digits"),
        ));
    }
    Ok(text.to_owned())
}

/// A site number: 7 to 10 digits (S2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteNumber(String);

impl SiteNumber {
    /// Parses a site number.
    pub fn parse(field: &str, text: &str) -> Result<Self, Violation> {
        digits(field, "site number", text).map(Self)
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A customer number: 7 to 10 digits (S2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerNumber(String);

impl CustomerNumber {
    /// Parses a customer number.
    pub fn parse(field: &str, text: &str) -> Result<Self, Violation> {
        digits(field, "customer number", text).map(Self)
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

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

/// Trims `text` and checks it has 1 to `max` characters and no control characters.
pub fn required_text(field: &str, text: &str, max: usize) -> Result<String, Violation> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Violation::new(field, "is required"));
    }
    optional_text(field, text, max).map(|value| value.unwrap_or_default())
}

/// Like [`required_text`], but an empty text is `None`.
pub fn optional_text(field: &str, text: &str, max: usize) -> Result<Option<String>, Violation> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.chars().count() > max {
        return Err(Violation::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(Violation::new(field, "must not contain control characters"));
    }
    Ok(Some(text.to_owned()))
}

/// An optional e-mail address, checked as identity checks login e-mails.
pub fn optional_email(field: &str, text: &str) -> Result<Option<String>, Violation> {
    if text.trim().is_empty() {
        Ok(None)
    } else {
        Email::parse(field, text).map(|email| Some(email.as_str().to_owned()))
    }
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
    fn numbers() {
        assert_eq!(
            SiteNumber::parse("f", " 1234567 ").unwrap().as_str(),
            "1234567"
        );
        assert!(SiteNumber::parse("f", "1234567890").is_ok());
        for bad in ["", "123456", "12345678901", "12345a7", "１２３４５６７"] {
            assert!(SiteNumber::parse("f", bad).is_err(), "{bad}");
            assert!(CustomerNumber::parse("f", bad).is_err(), "{bad}");
        }
    }

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
    fn texts_and_dates() {
        assert_eq!(required_text("f", " Paris ", 200).unwrap(), "Paris");
        assert!(required_text("f", " ", 200).is_err());
        assert!(required_text("f", &"é".repeat(201), 200).is_err());
        assert!(optional_text("f", "a\nb", 100).is_err());
        assert_eq!(
            optional_date("f", "2027-03-31").unwrap(),
            NaiveDate::from_ymd_opt(2027, 3, 31)
        );
        assert!(optional_date("f", "31/03/2027").is_err());
    }
}
