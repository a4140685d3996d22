//! Error codes shared by the REST API (`{"code": "...", "message": "..."}`) and
//! the `Rejected` frame of the WebSocket.

use serde::{Deserialize, Serialize};

/// Why the server refused a request. Stable: scripts match on these names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed (bad JSON, bad field, bad frame).
    BadRequest,
    /// No valid session token was presented.
    Unauthorized,
    /// The session is valid but may not do this.
    Forbidden,
    /// The named user, device or group does not exist (or is not visible to you).
    NotFound,
    /// The thing already exists (username taken, device id reused, group exists).
    Conflict,
    /// A commit was built on an old epoch; catch up and retry. Carries the current epoch.
    StaleEpoch,
    /// A size limit was exceeded.
    TooLarge,
    /// The username breaks the naming rules.
    InvalidUsername,
    /// The password is too short or too long.
    WeakPassword,
    /// The invite code is missing, unknown, expired or used.
    InvalidInvite,
    /// Username or password wrong.
    BadCredentials,
    /// The sender is not a member of the group.
    NotMember,
    /// The MLS message could not be parsed or does not match the request.
    MalformedMls,
    /// The named device has no KeyPackage left.
    NoKeyPackage,
    /// The server failed; details are in its log, not here.
    Internal,
    /// The password was right but the account has two-factor authentication:
    /// send a current TOTP code or a recovery code too.
    TwoFactorRequired,
    /// Too many attempts; the body's `retry_after` (and the `Retry-After`
    /// header) says how many seconds to wait.
    RateLimited,
    /// A disappearing-message timer (or its absence) exceeds the
    /// organisation's maximum retention.
    RetentionExceeded,
    /// The time allowed for recalling or editing that message has passed.
    WindowClosed,
    /// The upload would take the account past its file storage quota.
    QuotaExceeded,
    /// The server has no room left to store the upload; retry later.
    StorageFull,
    /// The account was disabled by an administrator: no login, no session.
    AccountDisabled,
    /// The organisation requires two-factor authentication and this account
    /// has none: only enrolling (`/v1/2fa/setup`, `/v1/2fa/activate`),
    /// `/v1/me` and logout are open until it does.
    TwoFactorEnrolmentRequired,
}

impl ErrorCode {
    /// Numeric code used in binary frames.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::BadRequest => 1,
            Self::Unauthorized => 2,
            Self::Forbidden => 3,
            Self::NotFound => 4,
            Self::Conflict => 5,
            Self::StaleEpoch => 6,
            Self::TooLarge => 7,
            Self::InvalidUsername => 8,
            Self::WeakPassword => 9,
            Self::InvalidInvite => 10,
            Self::BadCredentials => 11,
            Self::NotMember => 12,
            Self::MalformedMls => 13,
            Self::NoKeyPackage => 14,
            Self::Internal => 15,
            Self::TwoFactorRequired => 16,
            Self::RateLimited => 17,
            Self::RetentionExceeded => 18,
            Self::WindowClosed => 19,
            Self::QuotaExceeded => 20,
            Self::StorageFull => 21,
            Self::AccountDisabled => 22,
            Self::TwoFactorEnrolmentRequired => 23,
        }
    }

    /// Inverse of [`ErrorCode::to_u16`]; unknown numbers become `Internal`
    /// so an older client still reports *something* from a newer server.
    pub fn from_u16(n: u16) -> Self {
        match n {
            1 => Self::BadRequest,
            2 => Self::Unauthorized,
            3 => Self::Forbidden,
            4 => Self::NotFound,
            5 => Self::Conflict,
            6 => Self::StaleEpoch,
            7 => Self::TooLarge,
            8 => Self::InvalidUsername,
            9 => Self::WeakPassword,
            10 => Self::InvalidInvite,
            11 => Self::BadCredentials,
            12 => Self::NotMember,
            13 => Self::MalformedMls,
            14 => Self::NoKeyPackage,
            16 => Self::TwoFactorRequired,
            17 => Self::RateLimited,
            18 => Self::RetentionExceeded,
            19 => Self::WindowClosed,
            20 => Self::QuotaExceeded,
            21 => Self::StorageFull,
            22 => Self::AccountDisabled,
            23 => Self::TwoFactorEnrolmentRequired,
            _ => Self::Internal,
        }
    }

    /// The HTTP status a REST response with this code carries.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest
            | Self::InvalidUsername
            | Self::WeakPassword
            | Self::MalformedMls
            | Self::RetentionExceeded => 400,
            Self::Unauthorized | Self::BadCredentials | Self::TwoFactorRequired => 401,
            Self::Forbidden
            | Self::NotMember
            | Self::InvalidInvite
            | Self::WindowClosed
            | Self::AccountDisabled
            | Self::TwoFactorEnrolmentRequired => 403,
            Self::NotFound | Self::NoKeyPackage => 404,
            Self::Conflict | Self::StaleEpoch => 409,
            Self::TooLarge | Self::QuotaExceeded => 413,
            Self::StorageFull => 507,
            Self::RateLimited => 429,
            Self::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The serde name is the stable, documented spelling.
        let name = match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::StaleEpoch => "stale_epoch",
            Self::TooLarge => "too_large",
            Self::InvalidUsername => "invalid_username",
            Self::WeakPassword => "weak_password",
            Self::InvalidInvite => "invalid_invite",
            Self::BadCredentials => "bad_credentials",
            Self::NotMember => "not_member",
            Self::MalformedMls => "malformed_mls",
            Self::NoKeyPackage => "no_key_package",
            Self::Internal => "internal",
            Self::TwoFactorRequired => "two_factor_required",
            Self::RateLimited => "rate_limited",
            Self::RetentionExceeded => "retention_exceeded",
            Self::WindowClosed => "window_closed",
            Self::QuotaExceeded => "quota_exceeded",
            Self::StorageFull => "storage_full",
            Self::AccountDisabled => "account_disabled",
            Self::TwoFactorEnrolmentRequired => "two_factor_enrolment_required",
        };
        f.write_str(name)
    }
}

/// The JSON body of every REST error response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// Safe for users: never contains secrets or message content.
    pub message: String,
    /// For `stale_epoch`: the group's current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_epoch: Option<u64>,
    /// For `rate_limited`: seconds until the next attempt is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_codes_round_trip() {
        for n in 1..=23u16 {
            assert_eq!(ErrorCode::from_u16(n).to_u16(), n);
        }
        assert_eq!(ErrorCode::from_u16(999), ErrorCode::Internal);
    }

    #[test]
    fn display_matches_serde_name() {
        for n in 1..=23u16 {
            let code = ErrorCode::from_u16(n);
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{code}\""));
        }
    }
}
