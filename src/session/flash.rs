//! Flash messages: shown once, on the next page.

use serde::{Deserialize, Serialize};

/// A message shown once on the next page ("Added 2 × Blue Teapot to your cart").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
    /// An optional link after the text ("View cart"): path and label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FlashKind {
    Info,
    Success,
    Error,
}

impl FlashKind {
    pub fn css_class(self) -> &'static str {
        match self {
            FlashKind::Info => "flash-info",
            FlashKind::Success => "flash-success",
            FlashKind::Error => "flash-error",
        }
    }
}

impl Flash {
    /// The same message, followed by a link.
    pub fn with_link(mut self, path: &str, label: &str) -> Self {
        self.link = Some((path.to_owned(), label.to_owned()));
        self
    }

    pub fn success(text: impl Into<String>) -> Self {
        Flash {
            kind: FlashKind::Success,
            text: text.into(),
            link: None,
        }
    }
    pub fn info(text: impl Into<String>) -> Self {
        Flash {
            kind: FlashKind::Info,
            text: text.into(),
            link: None,
        }
    }
    pub fn error(text: impl Into<String>) -> Self {
        Flash {
            kind: FlashKind::Error,
            text: text.into(),
            link: None,
        }
    }
}
