//! The checked types a form's strings become before anything touches a store:
//! one type per rule, parsed once at the edge (a form field → [`Quantity`],
//! [`SubmissionId`]). Usernames and passwords are `auth::Username` and
//! `auth::Password`.

use crate::error::AppError;

/// Most units of one product a cart line may hold.
pub const MAX_QUANTITY: u32 = 99;

/// A line quantity from a form: a plain decimal integer in range, nothing else
/// (no sign, no exponent, no spaces inside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u32);

impl Quantity {
    /// For adding: 1 to [`MAX_QUANTITY`]. A missing field means 1.
    pub fn to_add(raw: Option<&str>) -> Result<Self, AppError> {
        match raw {
            None => Ok(Quantity(1)),
            Some(raw) => Self::parse(raw, 1),
        }
    }

    /// For updating a line: 0 (remove) to [`MAX_QUANTITY`].
    pub fn to_set(raw: Option<&str>) -> Result<Self, AppError> {
        Self::parse(
            raw.ok_or_else(|| AppError::bad_request("Please enter a quantity."))?,
            0,
        )
    }

    fn parse(raw: &str, min: u32) -> Result<Self, AppError> {
        let raw = raw.trim();
        let out_of_range = || {
            AppError::bad_request(format!(
                "Quantity must be a whole number from {min} to {MAX_QUANTITY}."
            ))
        };
        if raw.is_empty() {
            return Err(AppError::bad_request("Please enter a quantity."));
        }
        if !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(out_of_range());
        }
        // Digits only, so the only parse failure left is overflow: out of range too.
        let n: u32 = raw.parse().map_err(|_| out_of_range())?;
        if n < min || n > MAX_QUANTITY {
            return Err(out_of_range());
        }
        Ok(Quantity(n))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A form's one-time submission id: the token a page renders into each form that
/// changes something (`token::random`, 32 hex digits), which the write checks in
/// the same atomic step, so a repeat of the form is applied at most once. Scripts
/// and `curl` may send none. One rule for every form: 1 to 80 characters of
/// `A-Z a-z 0-9 - _`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionId(String);

/// A submission id was sent but is not one this shop makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedSubmission;

impl SubmissionId {
    pub const MAX_LEN: usize = 80;

    /// `Ok(None)` when the form has no id (absent or empty), the id when it is
    /// well-formed, [`MalformedSubmission`] otherwise: each page says what that
    /// means for its form (the cart refuses it; checkout shows the form again;
    /// login, logout and registration go on without an id).
    pub fn parse(raw: Option<&str>) -> Result<Option<SubmissionId>, MalformedSubmission> {
        match raw.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(id)
                if id.len() <= Self::MAX_LEN
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                Ok(Some(SubmissionId(id.to_owned())))
            }
            Some(_) => Err(MalformedSubmission),
        }
    }

    /// As [`Self::parse`], with a malformed id counted as none.
    pub fn parse_or_none(raw: Option<&str>) -> Option<SubmissionId> {
        Self::parse(raw).ok().flatten()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The cart's answer to a malformed id: the 400 page.
impl From<MalformedSubmission> for AppError {
    fn from(_: MalformedSubmission) -> Self {
        AppError::bad_request("The form could not be read. Please reload the page and try again.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_plain_integers_in_range() {
        assert_eq!(Quantity::to_add(None).unwrap().get(), 1);
        assert_eq!(Quantity::to_add(Some(" 7 ")).unwrap().get(), 7);
        assert_eq!(Quantity::to_add(Some("99")).unwrap().get(), 99);
        for bad in [
            "abc",
            "-1",
            "0",
            "100",
            "9223372036854775808",
            "1e3",
            "",
            "+5",
            "1.5",
        ] {
            assert!(
                Quantity::to_add(Some(bad)).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(Quantity::to_set(Some("0")).unwrap().get(), 0);
        assert!(Quantity::to_set(None).is_err());
    }

    #[test]
    fn submission_ids_are_plain_tokens() {
        let token = crate::token::random();
        assert_eq!(
            SubmissionId::parse(Some(&token)).unwrap().unwrap().as_str(),
            token
        );
        assert_eq!(
            SubmissionId::parse(Some("before-login_1"))
                .unwrap()
                .unwrap()
                .as_str(),
            "before-login_1"
        );
        for bad in [
            "../../etc/passwd/../../..",
            &"a".repeat(81),
            "abc def ghi jkl mno",
            "id;DROP",
        ] {
            assert_eq!(
                SubmissionId::parse(Some(bad)),
                Err(MalformedSubmission),
                "{bad:?}"
            );
            assert_eq!(SubmissionId::parse_or_none(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(SubmissionId::parse(None), Ok(None));
        assert_eq!(SubmissionId::parse(Some("  ")), Ok(None));
    }
}
