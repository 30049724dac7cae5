//! What the worker records about a refused call: the metrics (token reasons, SQL and
//! expression codes, admission refusals) and, for a refused token, one WARN line with the
//! reason code and a digest of the token's `jti`. Never the token, never the raw `jti`.

use sha2::{Digest, Sha256};

use super::{RunFailure, Worker};
use crate::metrics::{Code, Reason};
use crate::workflow::problem::ProblemSource;

impl Worker {
    /// Counts (and for tokens, logs) a refusal of a call that presented `token`.
    pub(crate) fn record_refusal(&self, f: &RunFailure, token: &str) {
        let metrics = self.metrics();
        match f {
            RunFailure::Token(e) => {
                let reason = e.reason.code();
                metrics
                    .token_rejections
                    .get_or_create(&Reason { reason })
                    .inc();
                let jti = jti_digest(token);
                tracing::warn!(
                    reason,
                    jti_sha256 = jti.as_deref().unwrap_or("none"),
                    "token refused"
                );
            }
            RunFailure::InvalidWorkflow(problems) => {
                for p in &problems.0 {
                    let family = match p.source {
                        ProblemSource::Sql => &metrics.sql_rejections,
                        ProblemSource::Expression => &metrics.expression_rejections,
                        ProblemSource::Workflow => continue,
                    };
                    family.get_or_create(&Code { code: p.code }).inc();
                }
            }
            _ => {}
        }
    }

    /// Counts an `Execute` refused at admission (no slot free, or draining).
    pub(crate) fn record_admission_refusal(&self, f: &RunFailure) {
        let reason = match f {
            RunFailure::OverCapacity => crate::metrics::OVER_CAPACITY,
            RunFailure::Draining => crate::metrics::DRAINING,
            _ => return,
        };
        self.metrics()
            .runs_refused
            .get_or_create(&Reason { reason })
            .inc();
    }
}

/// The first 16 hex digits of the SHA-256 of the token's `jti` claim, read without verifying
/// anything (a refused token may be forged: the digest only lets an operator match log lines
/// with the Hub's records); `None` when the token is too large, not a JWT, or has no string
/// `jti`.
pub(crate) fn jti_digest(token: &str) -> Option<String> {
    use base64::Engine as _;
    if token.len() > crate::token::MAX_TOKEN_BYTES {
        return None;
    }
    let claims = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let jti = value.get("jti")?.as_str()?;
    let digest = hex::encode(Sha256::digest(jti.as_bytes()));
    Some(digest[..16].to_owned())
}

#[cfg(test)]
mod tests {
    use super::jti_digest;

    #[test]
    fn the_jti_digest_is_a_sha256_prefix_of_the_claim() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"EdDSA"}"#),
            b64(r#"{"jti":"abc","sub":"alice"}"#)
        );
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(jti_digest(&token).as_deref(), Some("ba7816bf8f01cfea"));
        assert_eq!(jti_digest("not a token"), None);
        assert_eq!(
            jti_digest(&format!("{}.{}.x", b64("{}"), b64(r#"{"jti":7}"#))),
            None
        );
        let huge = format!("a.{}.b", "A".repeat(crate::token::MAX_TOKEN_BYTES));
        assert_eq!(jti_digest(&huge), None);
    }
}
