//! Accounts and tokens: register, login, refresh, logout, who am I, find people.

use chatgroup_protocol::rest::{Credentials, RefreshRequest, Session, UserList};
use chatgroup_protocol::{ErrorCode, UserInfo};
use chatgroup_store::StoreError;

use super::{authenticate, body, json_response, ok, ApiError, ApiRequest, ApiResult};
use crate::auth::{self, rules};
use crate::context::ServerCtx;
use crate::http::query;
use crate::http::response::Response;

/// The most users one search returns.
const SEARCH_MAX: usize = 50;

/// `POST /api/register {username, password}` → 201 with a session.
pub(super) async fn register(req: &ApiRequest, ctx: &ServerCtx) -> ApiResult {
    let creds: Credentials = body(req)?;
    rules::check_username(&creds.username).map_err(|(c, m)| ApiError::new(c, m))?;
    rules::check_password(&creds.password).map_err(|(c, m)| ApiError::new(c, m))?;
    // Hashing is bounded by the password semaphore, so a registration flood queues rather
    // than exhausting the machine.
    let hash = ctx
        .auth
        .passwords
        .hash(&creds.password)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Internal,
                "could not hash the password; try again",
            )
        })?;
    let user = match ctx.store.create_user(&creds.username, &hash).await {
        Ok(user) => user,
        Err(StoreError::UsernameTaken) => {
            return Err(ApiError::new(
                ErrorCode::UsernameTaken,
                format!("the username {:?} is taken", creds.username),
            ));
        }
        Err(err) => return Err(err.into()),
    };
    tracing::info!(user = %user.id, username = %user.username, "registered");
    let session = issue(ctx, user).await?;
    Ok(json_response(201, &session))
}

/// `POST /api/login {username, password}` → a session. Unknown user and wrong password get
/// the same answer in the same time.
pub(super) async fn login(req: &ApiRequest, ctx: &ServerCtx) -> ApiResult {
    let creds: Credentials = body(req)?;
    if creds.username.len() > 64 || creds.password.len() > rules::PASSWORD_MAX_BYTES {
        return Err(bad_credentials());
    }
    ctx.auth
        .throttle
        .check(&creds.username, req.peer)
        .map_err(ApiError::rate_limited)?;
    let found = ctx.store.user_by_name(&creds.username).await?;
    let (user, stored) = match found {
        Some(found) => (Some(found.user), Some(found.password_hash)),
        None => (None, None),
    };
    let valid = ctx.auth.passwords.verify(&creds.password, stored).await;
    match user {
        Some(user) if valid => {
            ctx.auth.throttle.succeeded(&creds.username);
            ok(&issue(ctx, user).await?)
        }
        _ => {
            ctx.auth.throttle.failed(&creds.username, req.peer);
            Err(bad_credentials())
        }
    }
}

fn bad_credentials() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCredentials,
        "unknown username or wrong password",
    )
}

/// `POST /api/token/refresh {refreshToken}` → a new session; the old refresh token is spent.
pub(super) async fn refresh(req: &ApiRequest, ctx: &ServerCtx) -> ApiResult {
    let request: RefreshRequest = body(req)?;
    let (token, hash) = new_refresh()?;
    let now = auth::now_ms();
    let rotated = ctx
        .store
        .rotate_refresh_token(
            auth::hash_refresh_token(&request.refresh_token),
            hash,
            now + refresh_ttl_ms(ctx),
            now,
        )
        .await?;
    let Some(user) = rotated else {
        return Err(ApiError::new(
            ErrorCode::TokenInvalid,
            "refresh token unknown, expired or already used; log in again",
        ));
    };
    let (access_token, expires_at) = ctx.auth.jwt.issue(&user, now);
    ok(&Session {
        user,
        access_token,
        expires_at,
        refresh_token: token,
    })
}

/// `POST /api/logout {refreshToken}` → 204; the refresh token stops working. (Access tokens
/// are short-lived and expire by themselves.)
pub(super) async fn logout(req: &ApiRequest, ctx: &ServerCtx) -> ApiResult {
    let request: RefreshRequest = body(req)?;
    ctx.store
        .revoke_refresh_token(auth::hash_refresh_token(&request.refresh_token))
        .await?;
    Ok(Response::status(204))
}

/// `GET /api/me` → the authenticated user.
pub(super) async fn me(req: &ApiRequest, ctx: &ServerCtx) -> ApiResult {
    let user = authenticate(req, ctx)?;
    // The token may outlive the account's name (it carries the name at login); answer with
    // what the store has now.
    match ctx.store.user(user.id).await? {
        Some(user) => ok(&user),
        None => Err(ApiError::new(ErrorCode::TokenInvalid, "no such user")),
    }
}

/// `GET /api/users?prefix=al&limit=20` → users whose name starts with the prefix.
pub(super) async fn search(req: &ApiRequest, ctx: &ServerCtx) -> ApiResult {
    authenticate(req, ctx)?;
    let params =
        query::parse(req.query.as_deref()).map_err(|m| ApiError::new(ErrorCode::Invalid, m))?;
    let prefix = params.get("prefix").map_or("", String::as_str);
    if prefix.len() > 64 {
        return Err(ApiError::new(ErrorCode::Invalid, "prefix is too long"));
    }
    let limit = match params.get("limit") {
        None => 20,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=SEARCH_MAX).contains(n))
            .ok_or_else(|| ApiError::new(ErrorCode::Invalid, "limit must be 1 to 50"))?,
    };
    let users = ctx.store.search_users(prefix, limit).await?;
    ok(&UserList { users })
}

/// An access token and a stored refresh token for `user`.
async fn issue(ctx: &ServerCtx, user: UserInfo) -> Result<Session, ApiError> {
    let now = auth::now_ms();
    let (refresh_token, hash) = new_refresh()?;
    ctx.store
        .add_refresh_token(user.id, hash, now + refresh_ttl_ms(ctx))
        .await?;
    let (access_token, expires_at) = ctx.auth.jwt.issue(&user, now);
    Ok(Session {
        user,
        access_token,
        expires_at,
        refresh_token,
    })
}

fn new_refresh() -> Result<(String, [u8; 32]), ApiError> {
    auth::new_refresh_token()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "no randomness available"))
}

fn refresh_ttl_ms(ctx: &ServerCtx) -> i64 {
    i64::try_from(ctx.auth.refresh_ttl.as_millis()).unwrap_or(i64::MAX)
}
