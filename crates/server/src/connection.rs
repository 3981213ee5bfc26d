//! One accepted TCP connection: HTTP/1.1 requests with keep-alive until it either closes or
//! upgrades to a WebSocket, at which point it hands off to the two pumps and ends, so the
//! memory of the HTTP phase is not carried for the life of the socket.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use rfc6455::deflate::DeflateParams;
use rfc6455::{
    parse_request, validate_upgrade, write_accept, write_reject, HandshakeError, HeadLimits,
    RequestHead, Role,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::Instrument as _;

use crate::chat::session::Session;
use crate::context::{ConnGuard, ServerCtx};
use crate::http::api::{self, ApiRequest};
use crate::http::query;
use crate::http::response::Response;
use crate::http::route::{conversation_param, route, Route};
use crate::http::{read_request, wants_close, ReadError};
use crate::hub::chat::ChatCommand;
use crate::hub::Command;
use crate::metrics;
use crate::origin::origin_allowed;
use crate::outbox::{OutDeflate, Outbox};
use crate::pump::read::ReadPump;
use crate::pump::replies::Replies;
use crate::pump::{self, Mode};
use crate::web;

/// What to do with a parsed request.
enum Action {
    /// Send a response; keep the connection unless it says otherwise.
    Respond { response: Response, head_only: bool },
    /// A REST call under `/api/`, answered asynchronously (it awaits the store).
    Api { req: ApiRequest, close: bool },
    /// Refuse a handshake with the codec's error response and close.
    Reject(HandshakeError),
    /// Answer 101 and become a WebSocket.
    Upgrade {
        accept: BytesMut,
        mode: Mode,
        guard: ConnGuard,
        /// permessage-deflate as the 101 agreed to it.
        deflate: Option<DeflateParams>,
    },
}

/// Answers a connection over the HTTP-phase cap with 503 and closes it, without a task or
/// a buffer: a fresh socket's send buffer takes the short response in one non-blocking write.
pub(crate) fn refuse_busy(stream: &TcpStream, metrics: &crate::Metrics) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 25\r\nConnection: close\r\nRetry-After: 1\r\n\r\ntoo many http connections";
    metrics::inc(&metrics.http_refused);
    let _ = stream.try_write(BUSY);
}

/// Serves one accepted connection until it closes or upgrades. `_slot` is its place under
/// `max_http_connections`, given back when this returns (at the upgrade, the WebSocket
/// counts against `max_connections` instead).
pub(crate) async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ServerCtx>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let limits = HeadLimits::DEFAULT
        .with_max_head_len(ctx.cfg.max_head_len)
        .with_max_headers(ctx.cfg.max_headers);
    let mut buf = BytesMut::new();
    loop {
        let read = tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => return,
            read = timeout(
                ctx.cfg.handshake_timeout,
                read_request(&mut stream, &mut buf, &limits, ctx.cfg.max_body_len),
            ) => read,
        };
        let len = match read {
            Err(_elapsed) => {
                // Slowloris or an idle keep-alive connection: cut it off. Tell a client that
                // had started a request why.
                if !buf.is_empty() {
                    tracing::debug!(%peer, "request head timed out");
                    send(&mut stream, &ctx, &Response::status(408).closing(), false).await;
                }
                return;
            }
            Ok(Err(ReadError::Closed)) => return,
            Ok(Err(ReadError::Head(err))) => {
                tracing::debug!(%peer, error = %err, "bad request head");
                reject(&mut stream, &ctx, &err).await;
                return;
            }
            Ok(Err(ReadError::BodyTooLarge)) => {
                send(&mut stream, &ctx, &Response::status(413).closing(), false).await;
                return;
            }
            Ok(Err(ReadError::TransferEncoding)) => {
                send(&mut stream, &ctx, &Response::status(501).closing(), false).await;
                return;
            }
            Ok(Ok(len)) => len,
        };
        metrics::inc(&ctx.metrics.http_requests);
        let action = match parse_request(&buf[..len.head], &limits) {
            Ok(Some((head, _))) if is_api(head.path()) => {
                let body = Bytes::copy_from_slice(&buf[len.head..len.head + len.body]);
                let close = wants_close(&head);
                match ApiRequest::new(&head, body, peer.ip()) {
                    Ok(req) => Action::Api { req, close },
                    Err(err) => Action::Reject(err),
                }
            }
            Ok(Some((head, _))) => dispatch(&head, &ctx),
            // The same bytes parsed a moment ago; this cannot differ, but never panic on input.
            _ => Action::Reject(HandshakeError::Malformed("request changed")),
        };
        buf.advance(len.head + len.body);
        match action {
            Action::Api { req, close } => {
                let head_only = req.is_head();
                let mut response = api::handle(req, &ctx).await;
                if close {
                    response = response.closing();
                }
                if !send(&mut stream, &ctx, &response, head_only).await || response.close {
                    return;
                }
            }
            Action::Respond {
                response,
                head_only,
            } => {
                if !send(&mut stream, &ctx, &response, head_only).await || response.close {
                    return;
                }
            }
            Action::Reject(err) => {
                metrics::inc(&ctx.metrics.handshakes_rejected);
                reject(&mut stream, &ctx, &err).await;
                return;
            }
            Action::Upgrade {
                accept,
                mode,
                guard,
                deflate,
            } => {
                let written = timeout(ctx.cfg.handshake_timeout, stream.write_all(&accept)).await;
                if !matches!(written, Ok(Ok(()))) {
                    return;
                }
                metrics::inc(&ctx.metrics.handshakes_accepted);
                start_websocket(stream, peer, buf, mode, guard, deflate, ctx).await;
                return;
            }
        }
    }
}

fn dispatch(head: &RequestHead<'_>, ctx: &ServerCtx) -> Action {
    let head_only = head.method == "HEAD";
    let respond = |response: Response| {
        let response = if wants_close(head) {
            response.closing()
        } else {
            response
        };
        Action::Respond {
            response,
            head_only,
        }
    };
    match route(head.method, head.path(), ctx.cfg.echo) {
        Route::Web => match head.single_header_str("if-none-match") {
            Ok(tags) => respond(web::serve(head.path(), tags, ctx.cfg.web_dir.as_deref())),
            Err(_) => respond(Response::status(400)),
        },
        Route::Health if ctx.shutdown.is_cancelled() => {
            respond(Response::new(503, "text/plain", "shutting down\n"))
        }
        Route::Health => match ctx.bus.as_ref().and_then(crate::bus::Bus::problem) {
            // Unhealthy without the bus: a load balancer sends new clients elsewhere.
            Some(problem) => respond(Response::new(
                503,
                "text/plain",
                format!("bus unavailable: {problem}\n"),
            )),
            None => respond(Response::new(200, "text/plain", "ok\n")),
        },
        Route::Metrics => {
            let mut text = ctx.metrics.render();
            metrics::render_store(&ctx.store.stats(), &mut text);
            if let Some(bus) = &ctx.bus {
                metrics::render_bus(bus.counts(), bus.problem().is_none(), &mut text);
            }
            respond(Response::new(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            ))
        }
        Route::MethodNotAllowed(allow) => respond(Response::status(405).header("Allow", allow)),
        Route::NotFound => respond(Response::status(404)),
        Route::ChatSocket => {
            let token = chat_token(head.query());
            upgrade(
                head,
                ctx,
                token.map(|t| Mode::Chat(Box::new(Session::new(t, &ctx.cfg)))),
            )
        }
        Route::BroadcastSocket => {
            let conversation = conversation_param(head.query())
                .ok_or("broadcast needs one conversation_id, a non-negative integer");
            upgrade(head, ctx, conversation.map(Mode::Broadcast))
        }
        Route::EchoSocket => upgrade(head, ctx, Ok(Mode::Echo)),
    }
}

/// Upgrades to a WebSocket in `mode`, or refuses with 400 and the `Err` text once the
/// request is a valid upgrade from an allowed origin.
fn upgrade(head: &RequestHead<'_>, ctx: &ServerCtx, mode: Result<Mode, &'static str>) -> Action {
    let refuse = |status: u16, why: &'static str| {
        metrics::inc(&ctx.metrics.handshakes_rejected);
        Action::Respond {
            response: Response::new(status, "text/plain; charset=utf-8", format!("{why}\n"))
                .closing(),
            head_only: false,
        }
    };
    let req = match validate_upgrade(head) {
        Ok(req) => req,
        Err(err) => return Action::Reject(err),
    };
    if !origin_allowed(&ctx.cfg.allowed_origins, req.origin, Some(req.host)) {
        return Action::Reject(HandshakeError::OriginNotAllowed);
    }
    let mode = match mode {
        Ok(mode) => mode,
        Err(why) => return refuse(400, why),
    };
    if ctx.shutdown.is_cancelled() {
        return refuse(503, "server shutting down");
    }
    let Ok(permit) = ctx.ws_slots.clone().try_acquire_owned() else {
        return refuse(503, "too many connections");
    };
    // RFC 7692: agree to the first permessage-deflate offer the configured mode accepts.
    let deflate = ctx
        .cfg
        .deflate
        .policy()
        .and_then(|policy| req.negotiate_deflate(&policy));
    let mut accept = BytesMut::with_capacity(240);
    match deflate.map(|agreed| agreed.header_value()) {
        Some(value) => write_accept(
            &req,
            None,
            &[("Sec-WebSocket-Extensions", &value)],
            &mut accept,
        ),
        None => write_accept(&req, None, &[], &mut accept),
    }
    Action::Upgrade {
        accept,
        mode,
        guard: ConnGuard::new(permit, ctx.metrics.clone()),
        deflate,
    }
}

/// How a connection's outgoing data frames are compressed under the agreed `deflate`.
fn out_deflate(deflate: Option<&DeflateParams>, cfg: &crate::Config) -> OutDeflate {
    let threshold = cfg.deflate_threshold;
    match deflate {
        None => OutDeflate::Off,
        // Without server context takeover no state is the connection's: the thread's
        // compressor serves it, and a broadcast's compressed frame is shared.
        Some(p) if p.compress_no_context_takeover(Role::Server) => OutDeflate::Shared { threshold },
        Some(_) => OutDeflate::Dedicated { threshold },
    }
}

async fn start_websocket(
    stream: TcpStream,
    peer: SocketAddr,
    buf: BytesMut,
    mode: Mode,
    guard: ConnGuard,
    deflate: Option<DeflateParams>,
    ctx: Arc<ServerCtx>,
) {
    let client = ctx.next_client_id();
    let (rd, wr) = stream.into_split();
    if deflate.is_some() {
        metrics::inc(&ctx.metrics.deflate.connections);
    }
    let outbox = Arc::new(
        Outbox::with_socket(ctx.cfg.outbox_depth, ctx.cfg.outbox_bytes, wr)
            .with_deflate(out_deflate(deflate.as_ref(), &ctx.cfg)),
    );
    if ctx.hub.register(client, outbox.clone()).await.is_err() {
        return;
    }
    if let Mode::Broadcast(conversation) = mode {
        if ctx.hub.join(client, conversation).await.is_err() {
            return;
        }
    }
    if let Mode::Chat(_) = mode {
        // The auth timeout runs in the hub, so a socket that never authenticates costs no
        // timer of its own.
        let open = ChatCommand::Open {
            client,
            auth_by: std::time::Instant::now() + ctx.cfg.auth_timeout,
        };
        if ctx
            .hub
            .send_command(Command::Chat(Box::new(open)))
            .await
            .is_err()
        {
            return;
        }
    }
    tracing::debug!(%peer, %client, ?mode, "websocket open");
    let writer = pump::write::run(outbox.clone(), ctx.clone(), guard);
    let reader = ReadPump {
        rd,
        buf,
        reader: None,
        deflate,
        replies: Replies::default(),
        streaming: false,
        outbox,
        client,
        mode,
        ctx: ctx.clone(),
    }
    .run();
    // Per-connection spans only when debug logging wants them: a disabled span still adds
    // its size to both pump tasks, which live as long as the connection.
    let span = tracing::debug_span!("conn", %peer, %client);
    if span.is_disabled() {
        ctx.tracker.spawn(writer);
        ctx.tracker.spawn(reader);
    } else {
        ctx.tracker.spawn(writer.instrument(span.clone()));
        ctx.tracker.spawn(reader.instrument(span));
    }
}

/// Whether a path belongs to the REST API.
fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// The `token` query parameter of `/ws`; `Err` (400) when the query is malformed or repeats
/// it. Only `token` is read: other parameters are ignored.
fn chat_token(query: Option<&str>) -> Result<Option<String>, &'static str> {
    let mut params = query::parse(query).map_err(|_| "malformed query string")?;
    Ok(params.remove("token").filter(|t| !t.is_empty()))
}

/// Writes a response within the handshake timeout; `false` if that failed. A closing
/// response ends with a lingering close.
async fn send(
    stream: &mut TcpStream,
    ctx: &ServerCtx,
    response: &Response,
    head_only: bool,
) -> bool {
    let bytes = response.encode(head_only);
    let mut ok = matches!(
        timeout(ctx.cfg.handshake_timeout, stream.write_all(&bytes)).await,
        Ok(Ok(()))
    );
    if let (true, false, Some(body)) = (ok, head_only, &response.file) {
        ok = crate::http::api::send_file(stream, ctx, body).await;
    }
    if ok && response.close {
        linger_close(stream, ctx).await;
    }
    ok
}

async fn reject(stream: &mut TcpStream, ctx: &ServerCtx, err: &HandshakeError) {
    let mut out = BytesMut::new();
    write_reject(err, &mut out);
    if matches!(
        timeout(ctx.cfg.handshake_timeout, stream.write_all(&out)).await,
        Ok(Ok(()))
    ) {
        linger_close(stream, ctx).await;
    }
}

/// Most bytes read and discarded while lingering.
const LINGER_MAX_BYTES: usize = 256 * 1024;

/// Sends FIN, then reads and discards what the client still sends for a short, bounded time.
/// Closing a socket with unread input makes the kernel send a reset, which can destroy the
/// error response in the client's receive buffer before it reads it.
async fn linger_close(stream: &mut TcpStream, ctx: &ServerCtx) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let limit = ctx.cfg.close_timeout.min(std::time::Duration::from_secs(2));
    let drain = async {
        let mut scratch = vec![0u8; 4096];
        let mut total = 0;
        while total < LINGER_MAX_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = timeout(limit, drain).await;
}
