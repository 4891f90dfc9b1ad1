//! Where an order goes: the checkout form's shipping fields, each checked with a
//! message of its own (the countries and regions they may name: `regions.rs`).

use super::regions::{country_name, regions_of, COUNTRIES, REGIONS};

/// Longest accepted value of each shipping field, in characters.
pub const MAX_NAME: usize = 100;
pub const MAX_EMAIL: usize = 254;
pub const MAX_PHONE: usize = 30;
pub const MAX_ADDRESS: usize = 200;
pub const MAX_CITY: usize = 100;
pub const MAX_POSTCODE: usize = 12;

/// Where to send an order, each field checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shipping {
    pub name: String,
    /// Where the receipt goes.
    pub email: String,
    /// Optional; empty when not given.
    pub phone: String,
    pub address: String,
    /// Optional second address line (flat, floor, building); empty when not given.
    pub address2: String,
    pub city: String,
    /// ISO 3166-2 code (`US-CA`) for a country in [`REGIONS`]; empty for the others.
    pub region: String,
    pub postcode: String,
    /// ISO 3166-1 alpha-2, one of [`COUNTRIES`].
    pub country: String,
}

/// One message per wrong field (`None`: the field is fine).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShippingErrors {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub address2: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postcode: Option<String>,
    pub country: Option<String>,
}

impl ShippingErrors {
    pub fn is_empty(&self) -> bool {
        self.messages().is_empty()
    }

    /// In the order the form shows its fields.
    pub fn messages(&self) -> Vec<&str> {
        [
            &self.name,
            &self.email,
            &self.phone,
            &self.country,
            &self.address,
            &self.address2,
            &self.city,
            &self.region,
            &self.postcode,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect()
    }
}

/// The raw fields of a checkout form, as strings (possibly missing).
#[derive(Debug, Clone, Default)]
pub struct RawShipping<'a> {
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub address: Option<&'a str>,
    pub address2: Option<&'a str>,
    pub city: Option<&'a str>,
    pub region: Option<&'a str>,
    pub postcode: Option<&'a str>,
    pub country: Option<&'a str>,
}

impl Shipping {
    /// Checks every field, collecting one message per wrong field.
    pub fn parse(raw: &RawShipping<'_>) -> Result<Shipping, Box<ShippingErrors>> {
        let mut errors = ShippingErrors::default();
        let name = text_field(raw.name, "your name", MAX_NAME, &mut errors.name);
        let email = email_field(raw.email, &mut errors.email);
        let phone = phone_field(raw.phone, &mut errors.phone);
        let address = text_field(
            raw.address,
            "the street address",
            MAX_ADDRESS,
            &mut errors.address,
        );
        let address2 = if raw.address2.is_some_and(|a| !a.trim().is_empty()) {
            text_field(
                raw.address2,
                "the second address line",
                MAX_ADDRESS,
                &mut errors.address2,
            )
        } else {
            String::new()
        };
        let city = text_field(raw.city, "the town or city", MAX_CITY, &mut errors.city);
        let mut postcode = text_field(
            raw.postcode,
            "the postcode",
            MAX_POSTCODE,
            &mut errors.postcode,
        );
        if errors.postcode.is_none()
            && !postcode
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-')
        {
            errors.postcode =
                Some("Postcodes may use only letters, digits, spaces and hyphens.".into());
        }
        postcode = postcode.to_ascii_uppercase();
        let country = raw
            .country
            .map(str::trim)
            .unwrap_or_default()
            .to_ascii_uppercase();
        if country.is_empty() {
            errors.country = Some("Please choose a country.".into());
        } else if !COUNTRIES.iter().any(|(code, _)| *code == country) {
            errors.country = Some(
                "Please choose a country from the list (we ship to the countries listed only)."
                    .into(),
            );
        }
        let region = region_field(raw.region, &country, &mut errors.region);
        if errors.is_empty() {
            Ok(Shipping {
                name,
                email,
                phone,
                address,
                address2,
                city,
                region,
                postcode,
                country,
            })
        } else {
            Err(Box::new(errors))
        }
    }
}

/// The receipt's address: required, one `@` between a name and a domain with a
/// dot, no spaces. (Whether it receives mail is for the mail to find out.)
fn email_field(raw: Option<&str>, error: &mut Option<String>) -> String {
    let value = text_field(raw, "your email address", MAX_EMAIL, error);
    if error.is_some() {
        return value;
    }
    let well_formed = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.contains(' ')
                && !value.contains(['<', '>', ',', ';', '"'])
        }
        None => false,
    };
    if !well_formed {
        *error = Some(
            "Please enter your email address like name@example.com: the receipt goes there.".into(),
        );
    }
    value
}

/// An optional phone number: digits with the usual separators, at least five digits.
fn phone_field(raw: Option<&str>, error: &mut Option<String>) -> String {
    if raw.is_none_or(|p| p.trim().is_empty()) {
        return String::new();
    }
    let value = text_field(raw, "the phone number", MAX_PHONE, error);
    if error.is_none()
        && (!value
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
            || value.chars().filter(char::is_ascii_digit).count() < 5)
    {
        *error = Some(
            "Phone numbers may use only digits, spaces and + - ( ) (or leave it empty).".into(),
        );
    }
    value
}

/// The region, for a country whose addresses name one: required, and one of that
/// country's. Ignored for the other countries (a choice left over from switching).
fn region_field(raw: Option<&str>, country: &str, error: &mut Option<String>) -> String {
    let Some(regions) = regions_of(country) else {
        return String::new();
    };
    let value = raw.map(str::trim).unwrap_or_default().to_ascii_uppercase();
    let what = REGIONS
        .iter()
        .find(|(c, _, _)| *c == country)
        .map_or("region", |(_, label, _)| *label)
        .to_lowercase();
    if value.is_empty() {
        *error = Some(format!(
            "Please choose the {what}: addresses in {} need one.",
            country_name(country)
        ));
    } else if !regions.iter().any(|(code, _)| *code == value) {
        *error = Some(format!(
            "Please choose a {what} of {} from the list.",
            country_name(country)
        ));
    }
    value
}

/// A free-text field: present, not blank, not too long, no control characters,
/// and no character that stood for bytes that were not UTF-8. Inner runs of white
/// space become one space.
fn text_field(raw: Option<&str>, what: &str, max: usize, error: &mut Option<String>) -> String {
    let value = raw.unwrap_or_default();
    // A form decoder turns bytes that are not UTF-8 into U+FFFD.
    if value.contains('\u{FFFD}') {
        *error = Some(format!(
            "Please re-type {what}: it contained characters that could not be read."
        ));
        return String::new();
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        *error = Some(format!(
            "Please re-type {what}: it contained control characters."
        ));
        return String::new();
    }
    let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
    if value.is_empty() {
        *error = Some(format!("Please enter {what}."));
    } else if value.chars().count() > max {
        *error = Some(format!(
            "Please shorten {what} to {max} characters at most."
        ));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::super::regions::region_name;
    use super::*;

    fn raw<'a>(name: &'a str, country: &'a str) -> RawShipping<'a> {
        RawShipping {
            name: Some(name),
            email: Some("ada@example.com"),
            address: Some("1 Tea Street"),
            city: Some("Leeds"),
            postcode: Some("ls1 4ab"),
            country: Some(country),
            ..RawShipping::default()
        }
    }

    #[test]
    fn shipping_fields_are_checked_one_message_each() {
        let ok = Shipping::parse(&raw("  Ada   Lovelace ", "gb")).unwrap();
        assert_eq!(ok.name, "Ada Lovelace");
        assert_eq!(ok.postcode, "LS1 4AB");
        assert_eq!(ok.country, "GB");

        let errors = Shipping::parse(&raw("", "XX")).unwrap_err();
        assert!(errors.name.is_some());
        assert!(errors.country.is_some());
        assert!(errors.address.is_none());
        assert_eq!(errors.messages().len(), 2);

        let long = "x".repeat(MAX_NAME + 1);
        assert!(Shipping::parse(&raw(&long, "GB"))
            .unwrap_err()
            .name
            .is_some());
        assert!(Shipping::parse(&raw("A\u{FFFD}a", "GB"))
            .unwrap_err()
            .name
            .is_some());
        assert!(Shipping::parse(&raw("A\u{0}a", "GB"))
            .unwrap_err()
            .name
            .is_some());
        assert!(
            Shipping::parse(&RawShipping::default())
                .unwrap_err()
                .messages()
                .len()
                == 6
        );
    }

    #[test]
    fn email_phone_and_region_are_checked() {
        let bad_email = RawShipping {
            email: Some("ada at example"),
            ..raw("Ada", "GB")
        };
        assert!(Shipping::parse(&bad_email).unwrap_err().email.is_some());
        let no_email = RawShipping {
            email: None,
            ..raw("Ada", "GB")
        };
        assert!(Shipping::parse(&no_email).unwrap_err().email.is_some());
        let phone = RawShipping {
            phone: Some("+44 (0)20 7946 0000"),
            ..raw("Ada", "GB")
        };
        assert_eq!(
            Shipping::parse(&phone).unwrap().phone,
            "+44 (0)20 7946 0000"
        );
        let bad_phone = RawShipping {
            phone: Some("call me"),
            ..raw("Ada", "GB")
        };
        assert!(Shipping::parse(&bad_phone).unwrap_err().phone.is_some());

        // The US needs a state, one of its own; Britain none (a left-over one is dropped).
        assert!(Shipping::parse(&raw("Ada", "US"))
            .unwrap_err()
            .region
            .is_some());
        let western_australia = RawShipping {
            region: Some("AU-WA"),
            ..raw("Ada", "US")
        };
        assert!(Shipping::parse(&western_australia)
            .unwrap_err()
            .region
            .is_some());
        let washington = RawShipping {
            region: Some("us-wa"),
            ..raw("Ada", "US")
        };
        assert_eq!(Shipping::parse(&washington).unwrap().region, "US-WA");
        assert_eq!(region_name("US-WA"), "Washington");
        let left_over = RawShipping {
            region: Some("US-WA"),
            ..raw("Ada", "GB")
        };
        assert_eq!(Shipping::parse(&left_over).unwrap().region, "");
    }

    #[test]
    fn countries_and_regions_are_listed_by_name() {
        let names: Vec<&str> = COUNTRIES.iter().map(|(_, n)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        for (country, _, regions) in REGIONS {
            assert!(COUNTRIES.iter().any(|(c, _)| c == country));
            let names: Vec<&str> = regions.iter().map(|(_, n)| *n).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "{country}");
            assert!(regions.iter().all(|(code, _)| code.starts_with(country)));
        }
    }
}
