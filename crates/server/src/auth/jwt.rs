//! Access tokens: HS256 JWTs carrying the user's id and name, short-lived.

use std::time::Duration;

use chatgroup_protocol::{Millis, UserId, UserInfo};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The claims we sign. `sub` is the user id as a string, as RFC 7519 wants.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    name: String,
    iat: u64,
    exp: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// Signed by us, but past its expiry.
    #[error("token expired")]
    Expired,
    /// Not a token we issued (bad signature, malformed, wrong algorithm).
    #[error("invalid token")]
    Invalid,
}

/// A verified token: who, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    pub(crate) user: UserInfo,
    /// Expiry, milliseconds since the Unix epoch.
    pub(crate) expires_at: Millis,
}

/// Signs and verifies access tokens with one HMAC secret.
pub(crate) struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Jwt")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Jwt {
    /// Keys from `secret` (the store's generated one, or `--jwt-secret`).
    ///
    /// # Errors
    /// The secret is empty.
    pub(crate) fn new(secret: &[u8], ttl: Duration) -> Result<Self, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: a token that expired is expired (the default allows 60 s late).
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if secret.is_empty() {
            return Err(TokenError::Invalid);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret).map_err(|_| TokenError::Invalid)?,
            decoding: DecodingKey::from_secret(secret).map_err(|_| TokenError::Invalid)?,
            validation,
            ttl,
        })
    }

    /// Issues a token for `user`, valid from `now_ms` for the configured lifetime; returns
    /// it with its expiry.
    pub(crate) fn issue(&self, user: &UserInfo, now_ms: Millis) -> (String, Millis) {
        let iat = u64::try_from(now_ms / 1000).unwrap_or(0);
        let exp = iat + self.ttl.as_secs().max(1);
        let claims = Claims {
            sub: user.id.0.to_string(),
            name: user.username.clone(),
            iat,
            exp,
        };
        // HS256 signing of a small struct cannot fail.
        let token =
            encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default();
        (
            token,
            i64::try_from(exp).unwrap_or(i64::MAX).saturating_mul(1000),
        )
    }

    /// Verifies a token's signature and expiry.
    pub(crate) fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|err| {
            match err.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            }
        })?;
        let id = data
            .claims
            .sub
            .parse::<u64>()
            .map_err(|_| TokenError::Invalid)?;
        Ok(Verified {
            user: UserInfo {
                id: UserId(id),
                username: data.claims.name,
            },
            expires_at: i64::try_from(data.claims.exp)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserInfo {
        UserInfo {
            id: UserId(7),
            username: "alice".into(),
        }
    }

    fn now() -> Millis {
        crate::auth::now_ms()
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let jwt = Jwt::new(b"secret-one", Duration::from_secs(60)).unwrap();
        let (token, exp) = jwt.issue(&alice(), now());
        let v = jwt.verify(&token).unwrap();
        assert_eq!(v.user, alice());
        assert_eq!(v.expires_at, exp);
        let (old, _) = jwt.issue(&alice(), now() - 120_000);
        assert_eq!(jwt.verify(&old), Err(TokenError::Expired));
    }

    #[test]
    fn another_secret_or_a_tampered_token_is_invalid() {
        let jwt = Jwt::new(b"secret-one", Duration::from_secs(60)).unwrap();
        let other = Jwt::new(b"secret-two", Duration::from_secs(60)).unwrap();
        let (token, _) = other.issue(&alice(), now());
        assert_eq!(jwt.verify(&token), Err(TokenError::Invalid));
        let (mut token, _) = jwt.issue(&alice(), now());
        token.insert(token.len() / 2, 'x');
        assert_eq!(jwt.verify(&token), Err(TokenError::Invalid));
        assert_eq!(jwt.verify(""), Err(TokenError::Invalid));
        assert_eq!(jwt.verify("a.b.c"), Err(TokenError::Invalid));
    }

    #[test]
    fn alg_none_is_refused() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = b64.encode(format!(
            r#"{{"sub":"7","name":"alice","iat":0,"exp":{}}}"#,
            now() / 1000 + 600
        ));
        let jwt = Jwt::new(b"secret-one", Duration::from_secs(60)).unwrap();
        assert_eq!(
            jwt.verify(&format!("{header}.{body}.")),
            Err(TokenError::Invalid)
        );
    }
}
