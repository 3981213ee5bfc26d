//! The REST API under `/api/`: accounts and tokens ([`accounts`]), conversations and their
//! messages ([`conversations`]). JSON in and out; every error is an
//! [`ErrorBody`] with the status its code implies.
//!
//! A request is copied out of the connection's buffer into an owned [`ApiRequest`] (the
//! handlers await the store), with every header it relies on read exactly once.

mod accounts;
mod conversations;
mod files;

pub(crate) use files::send_file;
mod messages;

use std::net::IpAddr;

use bytes::Bytes;
use chatgroup_protocol::rest::ErrorBody;
use chatgroup_protocol::{ErrorCode, UserInfo};
use chatgroup_store::StoreError;
use rfc6455::{HandshakeError, RequestHead};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::response::Response;
use crate::auth::TokenError;
use crate::context::ServerCtx;

/// One API request, owned.
#[derive(Debug)]
pub(crate) struct ApiRequest {
    method: String,
    path: String,
    query: Option<String>,
    /// The bearer token from `Authorization`, if any.
    bearer: Option<String>,
    /// The `Range` header (file downloads), if any.
    range: Option<String>,
    body: Bytes,
    peer: IpAddr,
}

impl ApiRequest {
    /// Copies what the handlers need out of a parsed head. `Authorization` and
    /// `Content-Type` must not be repeated.
    pub(crate) fn new(
        head: &RequestHead<'_>,
        body: Bytes,
        peer: IpAddr,
    ) -> Result<Self, HandshakeError> {
        let bearer = match head.single_header_str("authorization")? {
            None => None,
            Some(value) => {
                let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
                    Some(token.trim().to_owned())
                } else {
                    // Present but not a bearer token: authentication fails (401), it is
                    // not treated as absent.
                    Some(String::new())
                }
            }
        };
        if !body.is_empty() {
            let json = head
                .single_header_str("content-type")?
                .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
            if !json {
                return Err(HandshakeError::Malformed(
                    "request body must be application/json",
                ));
            }
        }
        let range = head.single_header_str("range")?.map(str::to_owned);
        Ok(Self {
            range,
            method: head.method.to_owned(),
            path: head.path().to_owned(),
            query: head.query().map(str::to_owned),
            bearer,
            body,
            peer,
        })
    }
}

impl ApiRequest {
    /// A `HEAD` request: answered like `GET`, without the body.
    pub(crate) fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// A refused request: status from the code, the body says exactly what.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: ErrorCode,
    message: String,
    retry_after_ms: Option<u64>,
    /// For a known path with the wrong method: 405 with this `Allow`.
    allow: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
            allow: None,
        }
    }

    fn rate_limited(retry_after: std::time::Duration) -> Self {
        let ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
        Self {
            retry_after_ms: Some(ms),
            ..Self::new(
                ErrorCode::RateLimited,
                "too many failed attempts; try again later",
            )
        }
    }

    fn into_response(self) -> Response {
        let status = if self.allow.is_some() {
            405
        } else {
            self.code.http_status()
        };
        let retry = self.retry_after_ms;
        let body = ErrorBody {
            error: self.code,
            message: self.message,
            retry_after_ms: retry,
        };
        let mut response = json_response(status, &body);
        if let Some(ms) = retry {
            response = response.header("Retry-After", ms.div_ceil(1000).max(1).to_string());
        }
        if let Some(allow) = self.allow {
            response = response.header("Allow", allow);
        }
        if matches!(
            self.code,
            ErrorCode::NotAuthenticated | ErrorCode::TokenInvalid | ErrorCode::TokenExpired
        ) {
            response = response.header("WWW-Authenticate", "Bearer");
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if matches!(err, StoreError::Db(_)) {
            tracing::error!(error = %err, "store failed");
            return ApiError::new(ErrorCode::Internal, "internal error");
        }
        ApiError::new(err.code(), err.to_string())
    }
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::Expired => ApiError::new(ErrorCode::TokenExpired, "access token expired"),
            TokenError::Invalid => ApiError::new(ErrorCode::TokenInvalid, "invalid access token"),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// Serves one API request.
pub(crate) async fn handle(req: ApiRequest, ctx: &ServerCtx) -> Response {
    let path = req
        .path
        .strip_prefix("/api")
        .unwrap_or(&req.path)
        .to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result = match (req.method.as_str(), segments.as_slice()) {
        ("POST", ["register"]) => accounts::register(&req, ctx).await,
        ("POST", ["login"]) => accounts::login(&req, ctx).await,
        ("POST", ["token", "refresh"]) => accounts::refresh(&req, ctx).await,
        ("POST", ["logout"]) => accounts::logout(&req, ctx).await,
        ("GET", ["me"]) => accounts::me(&req, ctx).await,
        ("GET", ["users"]) => accounts::search(&req, ctx).await,
        ("GET", ["conversations"]) => conversations::list(&req, ctx).await,
        ("POST", ["conversations"]) => conversations::create(&req, ctx).await,
        ("GET", ["conversations", id]) => conversations::get(&req, ctx, id).await,
        ("POST", ["conversations", id, "members"]) => {
            conversations::add_member(&req, ctx, id).await
        }
        ("DELETE", ["conversations", id, "members", username]) => {
            conversations::remove_member(&req, ctx, id, username).await
        }
        ("GET", ["conversations", id, "messages"]) => conversations::messages(&req, ctx, id).await,
        ("POST", ["messages"]) => messages::send(&req, ctx).await,
        ("GET" | "HEAD", ["files", id]) => files::download(&req, ctx, id).await,
        (_, segments) => Err(not_routed(&req.method, segments)),
    };
    // Nothing under /api/ may be cached (it is per user, and some of it is tokens): every
    // response says `Cache-Control: no-store` already.
    result.unwrap_or_else(ApiError::into_response)
}

/// 404 for unknown paths, 405 with `Allow` for known paths and the wrong method.
fn not_routed(method: &str, segments: &[&str]) -> ApiError {
    let allow = match segments {
        ["register" | "login" | "logout" | "messages"] | ["token", "refresh"] => Some("POST"),
        ["files", _] => Some("GET, HEAD"),
        ["me" | "users"] | ["conversations", _] | ["conversations", _, "messages"] => Some("GET"),
        ["conversations"] => Some("GET, POST"),
        ["conversations", _, "members"] => Some("POST"),
        ["conversations", _, "members", _] => Some("DELETE"),
        _ => None,
    };
    match allow {
        Some(allow) => ApiError {
            allow: Some(allow),
            ..ApiError::new(
                ErrorCode::Invalid,
                format!("{method} is not allowed here; use {allow}"),
            )
        },
        None => ApiError::new(ErrorCode::NotFound, "no such endpoint"),
    }
}

/// A JSON response.
fn json_response(status: u16, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::new(status, "application/json", bytes)
}

/// 200 with a JSON body.
fn ok(body: &impl Serialize) -> ApiResult {
    Ok(json_response(200, body))
}

/// Parses the JSON body, naming what was wrong.
fn body<T: DeserializeOwned>(req: &ApiRequest) -> Result<T, ApiError> {
    if req.body.is_empty() {
        return Err(ApiError::new(ErrorCode::Invalid, "a JSON body is required"));
    }
    serde_json::from_slice(&req.body).map_err(|err| {
        let code = if err.is_syntax() || err.is_eof() {
            ErrorCode::Malformed
        } else {
            ErrorCode::Invalid
        };
        ApiError::new(code, format!("bad request body: {err}"))
    })
}

/// The user the bearer token names.
fn authenticate(req: &ApiRequest, ctx: &ServerCtx) -> Result<UserInfo, ApiError> {
    let Some(token) = req.bearer.as_deref() else {
        return Err(ApiError::new(
            ErrorCode::NotAuthenticated,
            "Authorization: Bearer <accessToken> is required",
        ));
    };
    Ok(ctx.auth.jwt.verify(token)?.user)
}

/// A path segment that must be an id.
fn id_segment(segment: &str) -> Result<u64, ApiError> {
    segment
        .parse::<u64>()
        .map_err(|_| ApiError::new(ErrorCode::NotFound, format!("{segment:?} is not an id")))
}
