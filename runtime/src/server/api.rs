//! The `/v1` router and its OpenAPI 3.1 document, built from one list of
//! handlers (`utoipa_axum::routes!`), so that no route is served without
//! being described, nor described without being served: each handler's
//! `#[utoipa::path]` gives both its path and its description. The document
//! is served at `GET /v1/openapi.json`, to anyone the request guard lets
//! through (it holds no tenant's data).
//!
//! Invariants: every operation answers errors in the one shape
//! (`#/components/schemas/Error`), and lists every status it may answer:
//! its own, and those any `/v1` request may meet ([`ANY_REQUEST`]: the
//! request guard, tokens, hyper's own refusals, a host at fault); its
//! security is a bearer token, or none when the server has no tokens
//! configured. `/healthz` and `/metrics` are not in the document.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, ResponseBuilder, SecurityRequirement};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{AppState, events, guests, sessions, stop};

/// The name of the bearer-token security scheme.
const BEARER: &str = "bearer";

/// Statuses any `/v1` request may be answered, whatever its route, with
/// the error code(s) each stands for.
const ANY_REQUEST: &[(u16, &str)] = &[
    (
        400,
        "`bad_request`: malformed JSON, wrong types, unknown fields, a bad query or path \
         parameter, or a request that is not HTTP/1.1; `bad_name`, `bad_config`, `bad_seq`",
    ),
    (
        401,
        "`unauthorized`: tokens are configured and the request has none, or an unknown one",
    ),
    (
        403,
        "`forbidden_origin` (a foreign `Origin`), `forbidden_host` (a `Host` that is not \
         loopback while no tokens are configured)",
    ),
    (414, "`uri_too_long`"),
    (
        415,
        "`unsupported_media_type`: a body whose `Content-Type` is not the route's",
    ),
    (
        431,
        "`headers_too_large`: a request head past `max_head_bytes`, or over 100 headers",
    ),
    (
        500,
        "`internal`: the server's fault (a damaged log, a bug), never the request's",
    ),
    (
        503,
        "`unavailable` (send it again) or `journal_unavailable` (read the log first)",
    ),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Logbook",
        description = "Durable sessions of WebAssembly agents, each a hash-chained log. \
            See docs/http-api.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "guests", description = "Guest components"),
        (name = "sessions", description = "Sessions, their input, events and approvals"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// The `/v1` routes, and their document.
pub(crate) fn v1() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi_json))
        .routes(routes!(guests::add, guests::list))
        .routes(routes!(sessions::create, sessions::list))
        .routes(routes!(sessions::put_by_name))
        .routes(routes!(sessions::get))
        .routes(routes!(sessions::input))
        .routes(routes!(events::events))
        .routes(routes!(sessions::decide))
        .routes(routes!(sessions::fork))
        .routes(routes!(sessions::unpark))
        .routes(routes!(stop::stop))
        .routes(routes!(stop::resume))
        .split_for_parts();
    finish(&mut doc);
    (router, doc)
}

/// What the derive does not say: the crate's version, the security scheme,
/// the statuses every route shares, and OpenAPI's form of a catch-all path
/// parameter (axum's `{*name}` is `{name}`).
fn finish(doc: &mut utoipa::openapi::OpenApi) {
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A tenant's token (`[tenants.NAME] token_envs`). With no tokens \
                     configured the server is loopback-only and takes none.",
                ))
                .build(),
        ),
    );
    // Either a token, or none (a server without tokens configured).
    doc.security = Some(vec![
        SecurityRequirement::new(BEARER, Vec::<String>::new()),
        SecurityRequirement::default(),
    ]);
    let paths = std::mem::take(&mut doc.paths.paths);
    for (path, mut item) in paths {
        let path = path.replace("{*", "{");
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            // An operation open to anyone (this document) never answers 401.
            let anonymous = operation
                .security
                .as_ref()
                .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()));
            for (status, description) in ANY_REQUEST {
                if anonymous && *status == 401 {
                    continue;
                }
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(*description)
                            .content(
                                "application/json",
                                utoipa::openapi::ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("Error")))
                                    .build(),
                            )
                            .build()
                            .into()
                    });
            }
        }
        doc.paths.paths.insert(path, item);
    }
}

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of /v1", body = serde_json::Value))
)]
async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
        .into_response()
}
