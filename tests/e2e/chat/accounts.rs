//! Accounts and tokens: register, login, refresh rotation, logout, who am I, user search;
//! the username and password rules; login throttling; forged, tampered and expired tokens on
//! REST and on the socket; socket authentication by `?token=` or a first `auth` message, and
//! its timeout.

use std::time::Duration;

use chatgroup_protocol::rest::{RefreshRequest, Session, UserList};
use chatgroup_protocol::{ClientMsg, ErrorCode, ServerMsg, UserInfo};
use rfc6455::CloseCode;

use super::client::{Api, ChatClient, ChatServer, PASSWORD};
use crate::support::WAIT;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn refresh(api: &Api, token: &str) -> super::client::Reply {
    api.post(
        "/api/token/refresh",
        None,
        &RefreshRequest {
            refresh_token: token.to_owned(),
        },
    )
    .await
}

#[tokio::test]
async fn register_login_refresh_logout_me_and_search() {
    let server = ChatServer::start().await;
    let api = server.api();

    let before = now_ms();
    let alice: Session = api.register("alice", PASSWORD).await.expect(201);
    assert_eq!(alice.user.username, "alice");
    assert!(!alice.access_token.is_empty() && !alice.refresh_token.is_empty());
    assert_ne!(alice.access_token, alice.refresh_token);
    assert!(
        alice.expires_at > before,
        "the access token expires in the future"
    );
    let me: UserInfo = api.get("/api/me", &alice.access_token).await.expect(200);
    assert_eq!(me, alice.user);

    // Login gives the same user and new tokens.
    let login: Session = api.login("alice", PASSWORD).await.expect(200);
    assert_eq!(login.user, alice.user);
    assert_ne!(login.refresh_token, alice.refresh_token);
    let me: UserInfo = api.get("/api/me", &login.access_token).await.expect(200);
    assert_eq!(me, alice.user);

    // Refresh rotates: the new pair works, the spent refresh token does not, twice.
    let rotated: Session = refresh(&api, &login.refresh_token).await.expect(200);
    assert_eq!(rotated.user, alice.user);
    assert_ne!(rotated.refresh_token, login.refresh_token);
    let me: UserInfo = api.get("/api/me", &rotated.access_token).await.expect(200);
    assert_eq!(me, alice.user);
    refresh(&api, &login.refresh_token)
        .await
        .expect_error(ErrorCode::TokenInvalid);
    let again: Session = refresh(&api, &rotated.refresh_token).await.expect(200);

    // Logout revokes that refresh token (and only that one).
    let out = api
        .post(
            "/api/logout",
            None,
            &RefreshRequest {
                refresh_token: again.refresh_token.clone(),
            },
        )
        .await;
    assert_eq!(out.status, 204, "logout: {}", out.body);
    refresh(&api, &again.refresh_token)
        .await
        .expect_error(ErrorCode::TokenInvalid);
    let _: Session = refresh(&api, &alice.refresh_token).await.expect(200);
    refresh(&api, "not-a-refresh-token")
        .await
        .expect_error(ErrorCode::TokenInvalid);

    // Search by prefix, sorted by name, limited.
    for name in ["alex", "bob", "albert"] {
        api.signup(name).await;
    }
    let found: UserList = api
        .get("/api/users?prefix=al&limit=20", &alice.access_token)
        .await
        .expect(200);
    let names: Vec<&str> = found.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(
        names,
        ["albert", "alex", "alice"],
        "prefix search, by username"
    );
    let one: UserList = api
        .get("/api/users?prefix=al&limit=1", &alice.access_token)
        .await
        .expect(200);
    assert_eq!(one.users.len(), 1);
    let none: UserList = api
        .get("/api/users?prefix=zz", &alice.access_token)
        .await
        .expect(200);
    assert!(none.users.is_empty());

    // Authentication is required, and the wrong method is 405 with Allow.
    api.request("GET", "/api/me", None, None)
        .await
        .expect_error(ErrorCode::NotAuthenticated);
    api.request("GET", "/api/users?prefix=al", None, None)
        .await
        .expect_error(ErrorCode::NotAuthenticated);
    let wrong = api.request("GET", "/api/register", None, None).await;
    assert_eq!(wrong.status, 405, "{}", wrong.body);
    assert_eq!(wrong.header("allow"), Some("POST"));
    server.stop().await;
}

#[tokio::test]
async fn registration_rules_are_enforced() {
    let server = ChatServer::start().await;
    let api = server.api();

    let long_name = "a".repeat(33);
    for bad in [
        "ab",
        "",
        "_bob",
        ".bob",
        "-bob",
        "bob smith",
        "bøb",
        "a/b",
        "<b>",
        &long_name,
    ] {
        api.register(bad, PASSWORD)
            .await
            .expect_error(ErrorCode::InvalidUsername);
    }
    // The bounds themselves are fine.
    for ok in ["abc", "a.b-c_9", &"z".repeat(32)] {
        let _: Session = api.register(ok, PASSWORD).await.expect(201);
    }

    let too_long = "p".repeat(257);
    for bad in ["", "1234567", "        ", too_long.as_str()] {
        api.register("dora", bad)
            .await
            .expect_error(ErrorCode::InvalidPassword);
    }
    let _: Session = api.register("dora", "12345678").await.expect(201);
    let _: Session = api.register("edna", &"p".repeat(256)).await.expect(201);
    let _: Session = api.login("edna", &"p".repeat(256)).await.expect(200);

    // Unique whatever the case.
    let _: Session = api.register("Carol", PASSWORD).await.expect(201);
    for taken in ["Carol", "carol", "CAROL", "cArOl"] {
        api.register(taken, PASSWORD)
            .await
            .expect_error(ErrorCode::UsernameTaken);
    }
    // Login is case-insensitive too, and names the account as registered.
    let carol: Session = api.login("carol", PASSWORD).await.expect(200);
    assert_eq!(carol.user.username, "Carol");

    // Bodies that are not the right JSON.
    api.request("POST", "/api/register", None, Some("{\"username\":"))
        .await
        .expect_error(ErrorCode::Malformed);
    api.request(
        "POST",
        "/api/register",
        None,
        Some("{\"username\":\"fred\"}"),
    )
    .await
    .expect_error(ErrorCode::Invalid);
    api.request("POST", "/api/register", None, Some("[1,2]"))
        .await
        .expect_error(ErrorCode::Invalid);
    api.request("POST", "/api/register", None, None)
        .await
        .expect_error(ErrorCode::Invalid);
    server.stop().await;
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let server = ChatServer::start().await;
    let api = server.api();
    api.signup("dave").await;
    let wrong = api.login("dave", "not the password").await;
    let unknown = api.login("nobody", "not the password").await;
    let wrong_body = wrong.expect_error(ErrorCode::InvalidCredentials);
    let unknown_body = unknown.expect_error(ErrorCode::InvalidCredentials);
    assert_eq!(wrong_body, unknown_body, "nothing tells the two apart");
    assert_eq!(wrong.body, unknown.body);
    server.stop().await;
}

#[tokio::test]
async fn five_failed_logins_for_one_username_are_throttled() {
    let server = ChatServer::start().await;
    let api = server.api();
    api.signup("erin").await;
    api.signup("frank").await;
    for _ in 0..5 {
        api.login("erin", "wrong password")
            .await
            .expect_error(ErrorCode::InvalidCredentials);
    }
    // Even the right password is refused now, before any password check.
    for password in [PASSWORD, "wrong password"] {
        let throttled = api.login("erin", password).await;
        let body = throttled.expect_error(ErrorCode::RateLimited);
        let retry: u64 = throttled
            .header("retry-after")
            .expect("Retry-After header")
            .parse()
            .expect("Retry-After in seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        let ms = body.retry_after_ms.expect("retryAfterMs");
        assert!(ms > 0 && ms <= 60_000, "retryAfterMs {ms}");
    }
    // Another username (the same case-folded name is the same account).
    api.login("ERIN", PASSWORD)
        .await
        .expect_error(ErrorCode::RateLimited);
    let _: Session = api.login("frank", PASSWORD).await.expect(200);
    server.stop().await;
}

#[tokio::test]
async fn twenty_failed_logins_from_one_address_are_throttled() {
    let server = ChatServer::start().await;
    let api = server.api();
    api.signup("gail").await;
    // Different usernames each time: only the per-address limit can trip.
    for i in 0..20 {
        api.login(&format!("ghost{i}"), "wrong password")
            .await
            .expect_error(ErrorCode::InvalidCredentials);
    }
    let throttled = api.login("gail", PASSWORD).await;
    throttled.expect_error(ErrorCode::RateLimited);
    assert!(throttled.header("retry-after").is_some());
    server.stop().await;
}

/// An HS256 token for `user` signed with `secret`, expiring in `ttl_s` seconds.
fn sign(user: &UserInfo, secret: &[u8], ttl_s: i64) -> String {
    let now = now_ms() / 1000;
    let claims = serde_json::json!({
        "sub": user.id.0.to_string(),
        "name": user.username,
        "iat": now,
        "exp": now + ttl_s,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret).expect("an HMAC key"),
    )
    .expect("sign a token")
}

/// `token` with its payload replaced by `user`'s claims, keeping the original signature.
fn tamper(token: &str, user: &UserInfo) -> String {
    let other = sign(user, b"whatever-secret-whatever-secret-whatever", 600);
    let mut parts: Vec<&str> = token.split('.').collect();
    let payload = other.split('.').nth(1).expect("a JWT has three parts");
    parts[1] = payload;
    parts.join(".")
}

#[tokio::test]
async fn forged_and_tampered_tokens_are_invalid_on_rest_and_close_4001() {
    let server = ChatServer::start().await;
    let api = server.api();
    let gina = api.signup("gina").await;
    let hank = api.signup("hank").await;

    let forged = sign(&gina.info, b"a-secret-that-is-not-the-servers-one!!", 600);
    let tampered = tamper(&gina.token, &hank.info);
    for bad in [forged.as_str(), tampered.as_str(), "garbage", "a.b.c"] {
        api.get("/api/me", bad)
            .await
            .expect_error(ErrorCode::TokenInvalid);
        api.get("/api/conversations", bad)
            .await
            .expect_error(ErrorCode::TokenInvalid);
    }
    // Not a bearer token at all.
    let basic = crate::support::http(
        server.addr(),
        "GET /api/me HTTP/1.1\r\nHost: t\r\nAuthorization: Basic Z2luYTpwdw==\r\n\r\n",
    )
    .await;
    assert_eq!(basic.status, 401, "{}", basic.body);

    // On the socket: by query, and by first message.
    for bad in [forged.as_str(), tampered.as_str(), "garbage"] {
        let c = ChatClient::open(server.addr(), &format!("/ws?token={bad}")).await;
        let reason = c.expect_close(CloseCode(4001)).await;
        assert!(!reason.is_empty(), "4001 says why");
        let mut c = ChatClient::open(server.addr(), "/ws").await;
        c.send(&ClientMsg::Auth {
            token: bad.to_owned(),
        })
        .await;
        c.expect_close(CloseCode(4001)).await;
    }
    // The real token still works.
    let me: UserInfo = api.get("/api/me", &gina.token).await.expect(200);
    assert_eq!(me, gina.info);
    server.stop().await;
}

#[tokio::test]
async fn expired_token_is_token_expired_on_rest_and_close_4001_on_connect() {
    let server = ChatServer::start_with(|cfg| cfg.token_ttl = Duration::from_secs(1)).await;
    let api = server.api();
    let ivy = api.signup("ivy").await;
    let me: UserInfo = api.get("/api/me", &ivy.token).await.expect(200);
    assert_eq!(me, ivy.info);
    assert!(ivy.expires_at <= now_ms() + 1_500, "a 1 s token");

    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = api.get("/api/me", &ivy.token).await;
        if reply.status == 401 {
            reply.expect_error(ErrorCode::TokenExpired);
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let c = ChatClient::open(server.addr(), &format!("/ws?token={}", ivy.token)).await;
    let reason = c.expect_close(CloseCode(4001)).await;
    assert!(!reason.is_empty());
    let mut c = ChatClient::open(server.addr(), "/ws").await;
    c.send(&ClientMsg::Auth {
        token: ivy.token.clone(),
    })
    .await;
    c.expect_close(CloseCode(4001)).await;

    // Refreshing gives a working token again.
    let fresh: Session = refresh(&api, &ivy.refresh).await.expect(200);
    let me: UserInfo = api.get("/api/me", &fresh.access_token).await.expect(200);
    assert_eq!(me, ivy.info);
    server.stop().await;
}

#[tokio::test]
async fn token_expiring_while_connected_can_be_renewed_on_the_socket_or_closes_4001() {
    let server = ChatServer::start_with(|cfg| {
        cfg.token_ttl = Duration::from_secs(1);
        cfg.auth_timeout = Duration::from_secs(2);
    })
    .await;
    let api = server.api();
    let jack = api.signup("jack").await;
    let kim = api.signup("kim").await;
    let group = api.create_group(&jack, "renewals", &[&kim]).await;

    // Tokens live 1 s: take a fresh one right before connecting (hashing passwords above
    // may have taken a while on a busy machine).
    let jack: super::client::User = refresh(&api, &jack.refresh)
        .await
        .expect::<Session>(200)
        .into();
    let mut c = ChatClient::connect(server.addr(), &jack.token).await;
    let expired = c
        .wait_for("token_expired", |m| {
            matches!(
                m,
                ServerMsg::Error {
                    code: ErrorCode::TokenExpired,
                    ..
                }
            )
        })
        .await;
    let ServerMsg::Error { reference, .. } = expired else {
        unreachable!()
    };
    assert_eq!(reference, None, "the expiry answers no request");

    // A fresh token on the same socket: ready again, and it keeps working.
    let fresh: Session = refresh(&api, &jack.refresh).await.expect(200);
    let ready = c.authenticate(&fresh.access_token).await;
    assert_eq!(ready.user, jack.info);
    assert!(ready.conversations.iter().any(|cv| cv.id == group.id));
    c.post_acked(group.id, "after-renewal", "still here").await;

    // Another user's token cannot take the socket over.
    let kim_now: Session = refresh(&api, &kim.refresh).await.expect(200);
    c.send(&ClientMsg::Auth {
        token: kim_now.access_token,
    })
    .await;
    let err = c
        .wait_for("refused takeover", |m| {
            matches!(
                m,
                ServerMsg::Error {
                    code: ErrorCode::Invalid,
                    ..
                }
            )
        })
        .await;
    assert!(matches!(err, ServerMsg::Error { .. }));

    // Not renewed this time: closed with 4001 once the auth timeout passes.
    let started = tokio::time::Instant::now();
    let reason = c.expect_close(CloseCode(4001)).await;
    assert!(!reason.is_empty());
    assert!(started.elapsed() < WAIT);
    server.stop().await;
}

#[tokio::test]
async fn socket_authenticates_by_query_token_or_first_message() {
    let server = ChatServer::start().await;
    let api = server.api();
    let lena = api.signup("lena").await;

    // By query.
    let by_query = ChatClient::connect(server.addr(), &lena.token).await;
    let ready = by_query.ready.clone().expect("ready");
    assert_eq!(ready.user, lena.info);
    assert!(!ready.epoch.is_empty());
    assert!(ready.conversations.is_empty());
    assert!(ready.expires_at > now_ms());

    // By message; requests before it are refused, the socket stays open.
    let mut by_msg = ChatClient::open(server.addr(), "/ws").await;
    by_msg.send_text("ping").await;
    by_msg
        .send(&ClientMsg::Conversations {
            reference: Some("early".into()),
        })
        .await;
    let err = by_msg.expect_error(Some("early")).await;
    ChatClient::check_error(&err, ErrorCode::NotAuthenticated);
    let ready2 = by_msg.authenticate(&lena.token).await;
    assert_eq!(ready2.user, lena.info);
    assert_eq!(ready2.epoch, ready.epoch, "one database, one epoch");
    by_msg
        .send(&ClientMsg::Conversations {
            reference: Some("now".into()),
        })
        .await;
    let answer = by_msg
        .wait_for("conversations", |m| {
            matches!(m, ServerMsg::Conversations { .. })
        })
        .await;
    assert!(
        matches!(&answer, ServerMsg::Conversations { reference: Some(r), conversations } if r == "now" && conversations.is_empty()),
        "{answer:?}"
    );
    by_query.close().await;
    by_msg.close().await;
    server.stop().await;
}

#[tokio::test]
async fn no_auth_within_the_timeout_closes_1008() {
    let server = ChatServer::start_with(|cfg| cfg.auth_timeout = Duration::from_millis(400)).await;
    let started = tokio::time::Instant::now();
    let silent = ChatClient::open(server.addr(), "/ws").await;
    let mut chatty = ChatClient::open(server.addr(), "/ws").await;
    // Unauthenticated requests do not count as authenticating.
    chatty
        .send(&ClientMsg::Conversations {
            reference: Some("c".into()),
        })
        .await;
    let err = chatty.expect_error(Some("c")).await;
    ChatClient::check_error(&err, ErrorCode::NotAuthenticated);
    silent.expect_close(CloseCode::POLICY_VIOLATION).await;
    chatty.expect_close(CloseCode::POLICY_VIOLATION).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_secs(5),
        "closed after {elapsed:?}"
    );
    server.stop().await;
}
