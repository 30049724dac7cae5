//! Why a server token was refused: the closed set of reasons and their stable codes.

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Over `MAX_TOKEN_BYTES`.
    TooLarge,
    /// Not three base64url parts, the header or claims are not the contract's JSON, or `jti` or
    /// `sub` is empty or longer than [`MAX_ID_CLAIM_BYTES`](super::MAX_ID_CLAIM_BYTES).
    Malformed,
    /// `alg: none`.
    AlgNone,
    /// An HMAC algorithm while only public keys are configured (e.g. HS256 "signed" with the
    /// public key).
    AlgorithmConfusion,
    /// Any other algorithm than EdDSA (or HS256 where explicitly enabled).
    AlgorithmNotAllowed,
    /// No key with the header's `kid`.
    UnknownKid,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// `nbf` or `iat` is in the future.
    NotYetValid,
    /// `exp - iat` is over the configured maximum.
    LifetimeTooLong,
    /// `aud` names none of this worker's audiences (by default its pool and its id).
    WrongAudience,
    /// `iss` is not the configured Hub.
    WrongIssuer,
    /// `workflow_sha256` is not the dispatched workflow's hash.
    WorkflowMismatch,
    /// `params_sha256` is not the hash of the run's parameter values.
    ParamsMismatch,
    /// The workflow uses a connection the token does not grant.
    ConnectionNotInScope,
    /// `scope` does not allow this call (`run` vs `inspect`).
    WrongScope,
    /// The `role` may not run workflows.
    RoleNotAllowed,
    /// This `jti` was seen before.
    Replayed,
}

impl Reason {
    /// Every reason, in documentation order (the metrics start each at 0).
    pub const ALL: [Reason; 18] = [
        Reason::TooLarge,
        Reason::Malformed,
        Reason::AlgNone,
        Reason::AlgorithmConfusion,
        Reason::AlgorithmNotAllowed,
        Reason::UnknownKid,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::LifetimeTooLong,
        Reason::WrongAudience,
        Reason::WrongIssuer,
        Reason::WorkflowMismatch,
        Reason::ParamsMismatch,
        Reason::ConnectionNotInScope,
        Reason::WrongScope,
        Reason::RoleNotAllowed,
        Reason::Replayed,
    ];

    /// Stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::TooLarge => "token_too_large",
            Reason::Malformed => "token_malformed",
            Reason::AlgNone => "alg_none",
            Reason::AlgorithmConfusion => "algorithm_confusion",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::UnknownKid => "unknown_kid",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "token_expired",
            Reason::NotYetValid => "token_not_yet_valid",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::WrongAudience => "wrong_audience",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WorkflowMismatch => "workflow_mismatch",
            Reason::ParamsMismatch => "params_mismatch",
            Reason::ConnectionNotInScope => "connection_not_in_scope",
            Reason::WrongScope => "wrong_scope",
            Reason::RoleNotAllowed => "role_not_allowed",
            Reason::Replayed => "token_replayed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    /// `ALL` holds every variant once: the match fails to compile when a variant is added,
    /// and the positions must agree.
    #[test]
    fn all_lists_every_reason_once() {
        fn position(r: Reason) -> usize {
            match r {
                Reason::TooLarge => 0,
                Reason::Malformed => 1,
                Reason::AlgNone => 2,
                Reason::AlgorithmConfusion => 3,
                Reason::AlgorithmNotAllowed => 4,
                Reason::UnknownKid => 5,
                Reason::BadSignature => 6,
                Reason::Expired => 7,
                Reason::NotYetValid => 8,
                Reason::LifetimeTooLong => 9,
                Reason::WrongAudience => 10,
                Reason::WrongIssuer => 11,
                Reason::WorkflowMismatch => 12,
                Reason::ParamsMismatch => 13,
                Reason::ConnectionNotInScope => 14,
                Reason::WrongScope => 15,
                Reason::RoleNotAllowed => 16,
                Reason::Replayed => 17,
            }
        }
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(position(*r), i, "{r:?}");
        }
    }
}
