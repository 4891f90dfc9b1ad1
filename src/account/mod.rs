//! The account pages: who you are, your sessions (end any or all but this one),
//! your password, deleting your account. What they rest on, the per-user session
//! index and credential epoch, is `session::index`.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/account` | username, member since, links; the delete form |
//! | GET | `/account/sessions` | every active session of this user |
//! | POST | `/account/sessions/revoke` | `session` = a session's handle → that session ends |
//! | POST | `/account/sessions/revoke-others` | every session but this one ends |
//! | GET/POST | `/account/password` | change the password; other sessions end |
//! | POST | `/account/delete` | `password` → account, cart and sessions gone |

pub mod pages;
