//! How long messages live: disappearing-message timers, the organisation's
//! maximum retention, and the recall/edit window. Pure rules; the engine
//! applies them when sending and receiving, the server enforces what it can
//! see (the expiry on the envelope).
//!
//! Every message carries its own lifetime (`expires_in`, seconds from
//! sending), so a timer change never shortens or extends messages already
//! sent, and a device that was off at the moment of expiry deletes the
//! message the next time it runs.

use crate::error::CoreError;
use rampart_proto::Millis;
use rampart_proto::api::MessagePolicy;
use rampart_proto::limits::{MAX_TIMER_SECS, MIN_TIMER_SECS};

/// Checks a timer a user asks for (`None`: off) against the allowed range
/// and the organisation's maximum retention.
pub fn check_timer(timer: Option<u32>, policy: &MessagePolicy) -> Result<(), CoreError> {
    match (timer, policy.max_retention_secs) {
        (Some(secs), _) if !(MIN_TIMER_SECS..=MAX_TIMER_SECS).contains(&secs) => {
            Err(CoreError::TimerOutOfRange(secs))
        }
        (Some(secs), Some(max)) if secs > max => {
            Err(CoreError::RetentionExceeded { max_secs: max })
        }
        (None, Some(max)) => Err(CoreError::RetentionExceeded { max_secs: max }),
        _ => Ok(()),
    }
}

/// The lifetime of a message about to be sent: the per-message override if
/// given (checked like a timer), else the conversation's timer, never longer
/// than the organisation allows (a timer set before the organisation
/// lowered its maximum is cut to the maximum).
pub fn message_lifetime(
    timer: Option<u32>,
    override_secs: Option<u32>,
    policy: &MessagePolicy,
) -> Result<Option<u32>, CoreError> {
    if let Some(secs) = override_secs {
        check_timer(Some(secs), policy)?;
        return Ok(Some(secs));
    }
    Ok(match (timer, policy.max_retention_secs) {
        (Some(t), Some(max)) => Some(t.min(max)),
        (Some(t), None) => Some(t),
        (None, max) => max,
    })
}

/// When this device deletes a received message: its lifetime counted from
/// when the server accepted it, but never later than its lifetime counted
/// from now (so a skewed server clock cannot stretch it).
pub fn receive_expiry(expires_in: Option<u32>, server_time: Millis, now: Millis) -> Option<Millis> {
    let ms = u64::from(expires_in?) * 1000;
    Some(server_time.saturating_add(ms).min(now.saturating_add(ms)))
}

/// When the sender's own copy is deleted.
pub fn send_expiry(expires_in: Option<u32>, now: Millis) -> Option<Millis> {
    expires_in.map(|s| now.saturating_add(u64::from(s) * 1000))
}

/// Whether a recall or edit sent at `at` of a message sent at `sent_at`
/// (both by the same sender's clock) is within the window.
pub fn within_window(sent_at: Millis, at: Millis, policy: &MessagePolicy) -> bool {
    at.saturating_sub(sent_at) <= u64::from(policy.recall_window_secs) * 1000
}

const UNITS: [(u32, &str); 5] = [
    (7 * 24 * 3600, "week"),
    (24 * 3600, "day"),
    (3600, "hour"),
    (60, "minute"),
    (1, "second"),
];

/// "1 hour", "90 minutes", "4 weeks": the largest unit that divides exactly.
pub fn describe(secs: u32) -> String {
    let (size, name) = UNITS
        .iter()
        .copied()
        .find(|(size, _)| secs.is_multiple_of(*size) && secs >= *size)
        .unwrap_or((1, "second"));
    let n = secs / size;
    if n == 1 {
        format!("1 {name}")
    } else {
        format!("{n} {name}s")
    }
}

/// Parses "30s", "5m", "1h", "2d", "4w" (or a bare number of seconds).
/// Refuses zero, negative, fractional and overflowing values.
pub fn parse_duration(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let multiplier: u32 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        "w" => 7 * 24 * 3600,
        _ => {
            return Err(format!(
                "{text:?} is not a duration; use a whole number with s, m, h, d or w (e.g. 30s, 5m, 1h, 4w)"
            ));
        }
    };
    if digits.is_empty() {
        return Err(format!("{text:?} is not a duration; e.g. 30s, 5m, 1h, 4w"));
    }
    let secs = digits
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is far too long; timers run up to 4 weeks"))?;
    if secs == 0 {
        return Err("a duration must be longer than zero (use `off` to turn the timer off)".into());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: Option<u32>) -> MessagePolicy {
        MessagePolicy {
            max_retention_secs: max,
            ..MessagePolicy::default()
        }
    }

    #[test]
    fn timers_respect_range_and_organisation_maximum() {
        let free = policy(None);
        assert!(check_timer(None, &free).is_ok());
        assert!(check_timer(Some(30), &free).is_ok());
        assert!(check_timer(Some(MAX_TIMER_SECS), &free).is_ok());
        assert!(matches!(
            check_timer(Some(29), &free),
            Err(CoreError::TimerOutOfRange(29))
        ));
        assert!(check_timer(Some(MAX_TIMER_SECS + 1), &free).is_err());
        let capped = policy(Some(3600));
        assert!(check_timer(Some(3600), &capped).is_ok());
        assert!(matches!(
            check_timer(Some(3601), &capped),
            Err(CoreError::RetentionExceeded { max_secs: 3600 })
        ));
        assert!(matches!(
            check_timer(None, &capped),
            Err(CoreError::RetentionExceeded { .. })
        ));
    }

    #[test]
    fn lifetime_is_override_then_timer_then_maximum() {
        let free = policy(None);
        assert_eq!(message_lifetime(None, None, &free).unwrap(), None);
        assert_eq!(message_lifetime(Some(60), None, &free).unwrap(), Some(60));
        assert_eq!(
            message_lifetime(Some(60), Some(300), &free).unwrap(),
            Some(300)
        );
        assert!(message_lifetime(None, Some(5), &free).is_err());
        let capped = policy(Some(600));
        assert_eq!(message_lifetime(None, None, &capped).unwrap(), Some(600));
        assert_eq!(
            message_lifetime(Some(3600), None, &capped).unwrap(),
            Some(600)
        );
        assert!(message_lifetime(None, Some(601), &capped).is_err());
    }

    #[test]
    fn receive_expiry_is_never_later_than_lifetime_from_now() {
        assert_eq!(receive_expiry(None, 1000, 2000), None);
        assert_eq!(receive_expiry(Some(30), 1_000, 2_000), Some(31_000));
        // A server clock far ahead cannot stretch the lifetime.
        assert_eq!(receive_expiry(Some(30), 900_000, 2_000), Some(32_000));
    }

    #[test]
    fn durations_parse_and_describe() {
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("5m"), Ok(300));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("4w"), Ok(MAX_TIMER_SECS));
        assert_eq!(parse_duration("90"), Ok(90));
        for bad in [
            "",
            "0s",
            "-5m",
            "1.5h",
            "5x",
            "h",
            "99999999999s",
            "4294967295w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(describe(3600), "1 hour");
        assert_eq!(describe(5400), "90 minutes");
        assert_eq!(describe(30), "30 seconds");
        assert_eq!(describe(MAX_TIMER_SECS), "4 weeks");
        assert_eq!(describe(2 * 86400), "2 days");
    }
}
