//! Which handler a request goes to (pure; unit-tested).

use crate::ids::ConversationId;

/// The handler for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /`, `/index.html` and everything under `/css/`, `/js/` and `/img/`: the browser
    /// client's files.
    Web,
    /// `GET /healthz`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `GET /ws`: the chat WebSocket.
    ChatSocket,
    /// `GET /broadcast?conversation_id=N` (only with `--echo`): the raw relay that tests and
    /// benchmarks use.
    BroadcastSocket,
    /// `GET /echo` (only with `--echo`): the echo WebSocket.
    EchoSocket,
    /// A known path with a method it does not serve; carries the `Allow` value.
    MethodNotAllowed(&'static str),
    /// Anything else.
    NotFound,
}

/// Routes by method and path; `echo` adds the test and benchmark sockets.
pub(crate) fn route(method: &str, path: &str, echo: bool) -> Route {
    let (route, allow) = match path {
        "/" | "/index.html" => (Route::Web, "GET, HEAD"),
        "/healthz" => (Route::Health, "GET, HEAD"),
        "/metrics" => (Route::Metrics, "GET, HEAD"),
        "/ws" => (Route::ChatSocket, "GET"),
        "/broadcast" if echo => (Route::BroadcastSocket, "GET"),
        "/echo" if echo => (Route::EchoSocket, "GET"),
        _ if ["/css/", "/js/", "/img/"]
            .iter()
            .any(|dir| path.starts_with(dir)) =>
        {
            (Route::Web, "GET, HEAD")
        }
        _ => return Route::NotFound,
    };
    let allowed = method == "GET" || (method == "HEAD" && allow.contains("HEAD"));
    if allowed {
        route
    } else {
        Route::MethodNotAllowed(allow)
    }
}

/// The `conversation_id` query parameter of `/broadcast`: `None` when it is absent,
/// repeated or not a non-negative integer (or the query string is malformed).
pub(crate) fn conversation_param(query: Option<&str>) -> Option<ConversationId> {
    let params = super::query::parse(query).ok()?;
    params
        .get("conversation_id")?
        .parse::<u64>()
        .ok()
        .map(ConversationId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_path_and_method() {
        assert_eq!(route("GET", "/", false), Route::Web);
        assert_eq!(route("HEAD", "/", false), Route::Web);
        assert_eq!(route("GET", "/js/app/main.js", false), Route::Web);
        assert_eq!(
            route("POST", "/css/app.css", false),
            Route::MethodNotAllowed("GET, HEAD")
        );
        assert_eq!(route("GET", "/jsx", false), Route::NotFound);
        assert_eq!(route("GET", "/healthz", false), Route::Health);
        assert_eq!(route("GET", "/metrics", false), Route::Metrics);
        assert_eq!(route("GET", "/ws", false), Route::ChatSocket);
        assert_eq!(route("HEAD", "/ws", false), Route::MethodNotAllowed("GET"));
        assert_eq!(route("POST", "/ws", false), Route::MethodNotAllowed("GET"));
        assert_eq!(
            route("DELETE", "/healthz", false),
            Route::MethodNotAllowed("GET, HEAD")
        );
        assert_eq!(route("GET", "/echo", false), Route::NotFound);
        assert_eq!(route("GET", "/echo", true), Route::EchoSocket);
        assert_eq!(route("GET", "/broadcast", false), Route::NotFound);
        assert_eq!(route("GET", "/broadcast", true), Route::BroadcastSocket);
        assert_eq!(
            route("POST", "/broadcast", true),
            Route::MethodNotAllowed("GET")
        );
        assert_eq!(route("GET", "/nope", true), Route::NotFound);
        assert_eq!(route("GET", "/ws/", false), Route::NotFound);
    }

    #[test]
    fn conversation_query() {
        assert_eq!(conversation_param(None), None);
        assert_eq!(conversation_param(Some("a=1")), None);
        assert_eq!(
            conversation_param(Some("conversation_id=42")),
            Some(ConversationId(42))
        );
        assert_eq!(
            conversation_param(Some("x&conversation_id=7&y=2")),
            Some(ConversationId(7))
        );
        assert_eq!(conversation_param(Some("conversation_id=")), None);
        assert_eq!(conversation_param(Some("conversation_id=abc")), None);
        assert_eq!(conversation_param(Some("conversation_id=-1")), None);
        assert_eq!(
            conversation_param(Some("conversation_id=1&conversation_id=2")),
            None
        );
    }
}
