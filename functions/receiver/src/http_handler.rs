//! Function URL (payload 2.0) adapter: request in, one use-case call, response out.

use std::convert::Infallible;

use gemini_hooks::usecases::http::{HttpReply, handle};
use gemini_hooks::usecases::receive::Receiver;
use lambda_http::{Body, Request, RequestExt, Response};

/// Answers one delivery. `lambda_http` has already base64-decoded the body when the function
/// URL marked it `isBase64Encoded`, so `body()` holds the raw bytes that were signed.
pub(crate) async fn function_handler(
    receiver: &Receiver,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    let deadline_ms = request
        .lambda_context_ref()
        .and_then(|c| i64::try_from(c.deadline).ok());
    let reply = handle(
        receiver,
        request.method(),
        request.headers(),
        request.body().as_ref(),
        deadline_ms,
    )
    .await;
    Ok(to_response(reply))
}

fn to_response(reply: HttpReply) -> Response<Body> {
    let mut response = Response::new(Body::Text(reply.body));
    *response.status_mut() = lambda_http::http::StatusCode::from_u16(reply.status)
        .unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in reply.headers {
        if let Ok(value) = lambda_http::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
