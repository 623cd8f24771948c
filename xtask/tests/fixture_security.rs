//! In-process tests of the crate generated from the security fixture
//! (`xtask/tests/fixtures/security`): every security kind accepted,
//! rejected and short of a scope (or of a role, on an apiKey); OR, AND and
//! optional requirements; an error body that is not this project's envelope, reached through exact,
//! `4XX` and `default` responses; the problem+json fallback where the spec
//! documents nothing; and the served document's security as written.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use fixture_security_server::{rt, *};
use poem::{
    Endpoint,
    http::StatusCode,
    test::{TestClient, TestRequestBuilder},
};
use serde_json::{Value, json};

struct App;

/// Bearer-style tokens and the scopes they grant.
fn scopes_of(token: &str) -> Option<&'static [&'static str]> {
    match token {
        "bt" => Some(&[]),
        "id" => Some(&["profile"]),
        "reader" => Some(&["items:read"]),
        "writer" => Some(&["items:read", "items:write"]),
        _ => None,
    }
}

/// The scheme handler's job: known credential → principal; unknown → 401;
/// known but short of a scope the requirement asks → 403.
fn token_principal(kind: &str, token: &str, ctx: &rt::AuthContext) -> Result<String, rt::Problem> {
    let granted = scopes_of(token).ok_or_else(|| rt::Problem::unauthorized().with_detail(format!("bad {kind}")))?;
    if let Some(missing) = ctx.scopes.iter().find(|s| !granted.contains(s)) {
        return Err(rt::Problem::forbidden().with_detail(format!("{} needs {missing}", ctx.operation_id)));
    }
    Ok(format!("{kind}:{token}"))
}

fn key(kind: &str, key: &str, good: &str) -> Result<String, rt::Problem> {
    if key == good { Ok(format!("{kind}:{key}")) } else { Err(rt::Problem::unauthorized().with_detail("bad key")) }
}

impl Auth for App {
    type Principal = String;

    /// `ak` is `hk` with the `admin` role, which an apiKey requirement may ask for.
    async fn authenticate_key_header(&self, k: &str, ctx: &rt::AuthContext) -> Result<String, rt::Problem> {
        let roles: &[&str] = if k == "ak" { &["admin"] } else { &[] };
        let principal = key("header", if k == "ak" { "hk" } else { k }, "hk")?;
        if let Some(missing) = ctx.scopes.iter().find(|s| !roles.contains(s)) {
            return Err(rt::Problem::forbidden().with_detail(format!("{} needs role {missing}", ctx.operation_id)));
        }
        Ok(principal)
    }
    async fn authenticate_key_query(&self, k: &str, _: &rt::AuthContext) -> Result<String, rt::Problem> {
        key("query", k, "qk")
    }
    async fn authenticate_key_cookie(&self, k: &str, _: &rt::AuthContext) -> Result<String, rt::Problem> {
        key("cookie", k, "ck")
    }
    async fn authenticate_bearer(&self, t: &str, ctx: &rt::AuthContext) -> Result<String, rt::Problem> {
        token_principal("bearer", t, ctx)
    }
    async fn authenticate_basic(&self, c: &rt::BasicCredentials, _: &rt::AuthContext) -> Result<String, rt::Problem> {
        if (c.username.as_str(), c.password.as_str()) == ("u", "p:w") {
            Ok(format!("basic:{}", c.username))
        } else {
            Err(rt::Problem::unauthorized().with_detail("bad password"))
        }
    }
    async fn authenticate_oauth(&self, t: &str, ctx: &rt::AuthContext) -> Result<String, rt::Problem> {
        token_principal("oauth", t, ctx)
    }
    async fn authenticate_oidc(&self, t: &str, ctx: &rt::AuthContext) -> Result<String, rt::Problem> {
        token_principal("oidc", t, ctx)
    }
}

/// This API's own error body: `{error, detail}`.
impl ErrorPolicy for App {
    fn problem(p: &rt::Problem) -> Problem {
        Problem { error: p.title.clone(), detail: p.detail.clone().or_else(|| p.data.as_ref().map(Value::to_string)) }
    }
}

fn who(p: Option<String>) -> Who {
    Who { principal: p }
}

impl DefaultApi for App {
    async fn open(&self) -> Result<OpenResponse, rt::Problem> {
        Ok(OpenResponse::Ok(who(None)))
    }
    async fn global_default(&self, p: String) -> Result<GlobalDefaultResponse, rt::Problem> {
        Ok(GlobalDefaultResponse::Ok(who(Some(p))))
    }
    async fn api_key_header(&self, p: String) -> Result<ApiKeyHeaderResponse, rt::Problem> {
        Ok(ApiKeyHeaderResponse::Ok(who(Some(p))))
    }
    async fn api_key_query(&self, p: String) -> Result<ApiKeyQueryResponse, rt::Problem> {
        Ok(ApiKeyQueryResponse::Ok(who(Some(p))))
    }
    async fn api_key_cookie(&self, p: String) -> Result<ApiKeyCookieResponse, rt::Problem> {
        Ok(ApiKeyCookieResponse::Ok(who(Some(p))))
    }
    async fn bearer_only(&self, p: String) -> Result<BearerOnlyResponse, rt::Problem> {
        Ok(BearerOnlyResponse::Ok(who(Some(p))))
    }
    async fn basic_only(&self, p: String) -> Result<BasicOnlyResponse, rt::Problem> {
        Ok(BasicOnlyResponse::Ok(who(Some(p))))
    }
    async fn list_items(&self, p: String, params: ListItemsParams) -> Result<ListItemsResponse, rt::Problem> {
        Ok(ListItemsResponse::Ok(who(Some(format!("{p} limit={:?}", params.limit)))))
    }
    async fn create_item(&self, p: String, body: CreateItemRequest) -> Result<CreateItemResponse, rt::Problem> {
        if body.name == "taken" {
            // A handler's problem with a status only the range documents.
            return Err(rt::Problem::new(409).with_detail("name taken"));
        }
        Ok(CreateItemResponse::Created(who(Some(format!("{p} created {}", body.name)))))
    }
    async fn admin_only(&self, p: String) -> Result<AdminOnlyResponse, rt::Problem> {
        Ok(AdminOnlyResponse::Ok(who(Some(p))))
    }
    async fn either(&self, p: String) -> Result<EitherResponse, rt::Problem> {
        Ok(EitherResponse::Ok(who(Some(p))))
    }
    async fn both(&self, p: String) -> Result<BothResponse, rt::Problem> {
        Ok(BothResponse::Ok(who(Some(p))))
    }
    async fn optional(&self, p: Option<String>) -> Result<OptionalResponse, rt::Problem> {
        Ok(OptionalResponse::Ok(who(p)))
    }
    async fn oidc(&self, p: String) -> Result<OidcResponse, rt::Problem> {
        Ok(OidcResponse::Ok(who(Some(p))))
    }
    async fn undocumented(&self, p: String, body: UndocumentedRequest) -> Result<UndocumentedResponse, rt::Problem> {
        Ok(UndocumentedResponse::Created(who(Some(format!("{p} {}", body.n)))))
    }
}

fn client() -> TestClient<impl Endpoint> {
    TestClient::new(app(Arc::new(App)))
}

/// Status, `Content-Type` and the JSON body.
async fn send<E: Endpoint>(req: TestRequestBuilder<'_, E>) -> (StatusCode, String, Value) {
    let resp = req.send().await.0;
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = resp.into_body().into_bytes().await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, ct, body)
}

async fn principal<E: Endpoint>(req: TestRequestBuilder<'_, E>) -> Value {
    let (s, _, b) = send(req).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["principal"].clone()
}

async fn refused<E: Endpoint>(req: TestRequestBuilder<'_, E>, status: StatusCode) -> Value {
    let (s, ct, b) = send(req).await;
    assert_eq!(s, status, "{b}");
    assert_eq!(ct, "application/json", "{b}");
    assert!(b["error"].is_string(), "the spec's own error body: {b}");
    b
}

/// `{basePath}` of `servers[0]` is substituted with its default.
const B: &str = "/v2";

#[tokio::test]
async fn every_kind_is_read_where_its_scheme_says() {
    let cli = client();
    assert_eq!(principal(cli.get(format!("{B}/open"))).await, Value::Null);
    assert_eq!(principal(cli.get(format!("{B}/header")).header("X-Api-Key", "hk")).await, "header:hk");
    assert_eq!(principal(cli.get(format!("{B}/query")).query("api_key", &"qk")).await, "query:qk");
    assert_eq!(principal(cli.get(format!("{B}/cookie")).header("Cookie", "a=1; session=ck")).await, "cookie:ck");
    assert_eq!(principal(cli.get(format!("{B}/bearer")).header("Authorization", "Bearer bt")).await, "bearer:bt");
    // base64("u:p:w"): the password may hold a colon.
    assert_eq!(principal(cli.get(format!("{B}/basic")).header("Authorization", "Basic dTpwOnc=")).await, "basic:u");
    assert_eq!(principal(cli.get(format!("{B}/oidc")).header("Authorization", "Bearer id")).await, "oidc:id");
    // oidc asks for `profile`, which `bt` lacks: 403 through `default`.
    let (s, _, b) = send(cli.get(format!("{B}/oidc")).header("Authorization", "Bearer bt")).await;
    assert_eq!((s, b["detail"].clone()), (StatusCode::FORBIDDEN, json!("oidc needs profile")));
    // The document's global `security` applies where an operation has none.
    assert_eq!(principal(cli.get(format!("{B}/default")).header("Authorization", "Bearer bt")).await, "bearer:bt");
}

#[tokio::test]
async fn missing_and_wrong_credentials_are_401_in_the_spec_error_shape() {
    let cli = client();
    let b = refused(cli.get(format!("{B}/default")), StatusCode::UNAUTHORIZED).await;
    assert_eq!(b["error"], "Unauthorized");
    let b = refused(cli.get(format!("{B}/header")).header("X-Api-Key", "nope"), StatusCode::UNAUTHORIZED).await;
    assert_eq!(b["detail"], "bad key");
    // A key in the wrong place is no key.
    refused(cli.get(format!("{B}/header")).query("X-Api-Key", &"hk"), StatusCode::UNAUTHORIZED).await;
    refused(cli.get(format!("{B}/query")).header("api_key", "qk"), StatusCode::UNAUTHORIZED).await;
    refused(cli.get(format!("{B}/bearer")).header("Authorization", "Basic dTpwOnc="), StatusCode::UNAUTHORIZED).await;
    let b = refused(cli.get(format!("{B}/basic")).header("Authorization", "Basic !!!"), StatusCode::UNAUTHORIZED).await;
    assert!(b["detail"].as_str().unwrap().contains("base64"), "{b}");
    refused(cli.get(format!("{B}/basic")).header("Authorization", "Basic dTp4"), StatusCode::UNAUTHORIZED).await;
    // `oidc` documents only `default` for failures: the 401 is that response.
    refused(cli.get(format!("{B}/oidc")), StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn scopes_reach_the_handler_and_a_missing_one_is_403() {
    let cli = client();
    let read = |t: &'static str| cli.get(format!("{B}/items")).header("Authorization", format!("Bearer {t}"));
    assert_eq!(principal(read("reader")).await, "oauth:reader limit=None");
    let b = refused(read("bt"), StatusCode::FORBIDDEN).await;
    assert_eq!(b["detail"], "listItems needs items:read");
    refused(read("stranger"), StatusCode::UNAUTHORIZED).await;

    let create = |t: &'static str, body: Value| {
        cli.post(format!("{B}/items")).header("Authorization", format!("Bearer {t}")).body_json(&body)
    };
    // createItem documents `4XX`: the 403 and the 400 are that response.
    let b = refused(create("reader", json!({"name": "a"})), StatusCode::FORBIDDEN).await;
    assert_eq!(b["detail"], "createItem needs items:write");
    let (s, _, b) = send(create("writer", json!({"name": "a"}))).await;
    assert_eq!((s, b["principal"].clone()), (StatusCode::CREATED, json!("oauth:writer created a")));
    let b = refused(create("writer", json!({"name": ""})), StatusCode::BAD_REQUEST).await;
    assert!(b["detail"].as_str().unwrap().contains("name"), "the failing field is named: {b}");
    refused(create("writer", json!({"name": "taken"})), StatusCode::CONFLICT).await;
}

/// Scopes on an apiKey requirement are roles: they reach the verifier in
/// `AuthContext::scopes` as OAuth 2.0 scopes do.
#[tokio::test]
async fn roles_on_an_api_key_reach_the_handler() {
    let cli = client();
    let admin = |k: &'static str| cli.get(format!("{B}/admin")).header("X-Api-Key", k);
    assert_eq!(principal(admin("ak")).await, "header:hk");
    let b = refused(admin("hk"), StatusCode::FORBIDDEN).await;
    assert_eq!(b["detail"], "adminOnly needs role admin");
    refused(admin("wrong"), StatusCode::UNAUTHORIZED).await;
    // Elsewhere the requirement lists no role, and the same key passes.
    assert_eq!(principal(cli.get(format!("{B}/header")).header("X-Api-Key", "hk")).await, "header:hk");
}

#[tokio::test]
async fn alternatives_combinations_and_optional_credentials() {
    let cli = client();
    // OR: either alternative admits; a refused first one does not stop the second.
    assert_eq!(principal(cli.get(format!("{B}/either")).header("Authorization", "Bearer bt")).await, "bearer:bt");
    assert_eq!(principal(cli.get(format!("{B}/either")).header("X-Api-Key", "hk")).await, "header:hk");
    let both_sent = cli.get(format!("{B}/either")).header("Authorization", "Bearer wrong").header("X-Api-Key", "hk");
    assert_eq!(principal(both_sent).await, "header:hk");
    refused(cli.get(format!("{B}/either")).header("X-Api-Key", "wrong"), StatusCode::UNAUTHORIZED).await;

    // AND: both or nothing; the handler gets the first scheme's principal.
    refused(cli.get(format!("{B}/both")).header("X-Api-Key", "hk"), StatusCode::UNAUTHORIZED).await;
    let bad_second = cli.get(format!("{B}/both")).header("X-Api-Key", "hk").query("api_key", &"no");
    refused(bad_second, StatusCode::UNAUTHORIZED).await;
    let ok = cli.get(format!("{B}/both")).header("X-Api-Key", "hk").query("api_key", &"qk");
    assert_eq!(principal(ok).await, "header:hk");

    // Optional: anonymous is admitted, a credential is used, a bad one is refused.
    assert_eq!(principal(cli.get(format!("{B}/optional"))).await, Value::Null);
    assert_eq!(principal(cli.get(format!("{B}/optional")).header("Authorization", "Bearer bt")).await, "bearer:bt");
    refused(cli.get(format!("{B}/optional")).header("Authorization", "Bearer wrong"), StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn undocumented_statuses_are_problem_json() {
    let cli = client();
    let (s, ct, b) = send(cli.post(format!("{B}/undocumented")).body_json(&json!({"n": 1}))).await;
    assert_eq!((s, ct.as_str()), (StatusCode::UNAUTHORIZED, "application/problem+json"), "{b}");
    assert_eq!((b["type"].clone(), b["status"].clone()), (json!("about:blank"), json!(401)));
    let (s, ct, b) =
        send(cli.post(format!("{B}/undocumented")).header("X-Api-Key", "hk").body_json(&json!({"n": "x"}))).await;
    assert_eq!((s, ct.as_str()), (StatusCode::BAD_REQUEST, "application/problem+json"), "{b}");
    assert_eq!(b["errors"][0]["field"], "n", "{b}");
    let (s, _, b) =
        send(cli.post(format!("{B}/undocumented")).header("X-Api-Key", "hk").body_json(&json!({"n": 2}))).await;
    assert_eq!((s, b["principal"].clone()), (StatusCode::CREATED, json!("header:hk 2")));
    // Outside any operation: the error body this spec uses most.
    let (s, ct, b) = send(cli.get(format!("{B}/nowhere"))).await;
    assert_eq!((s, ct.as_str(), b["error"].clone()), (StatusCode::NOT_FOUND, "application/json", json!("Not Found")));
}

#[tokio::test]
async fn the_served_document_states_security_as_the_spec_does() {
    let (s, _, doc) = send(client().get(format!("{B}/openapi.json"))).await;
    assert_eq!(s, StatusCode::OK);
    let sec = |path: &str, method: &str| doc["paths"][path][method]["security"].clone();
    assert_eq!(sec("/both", "get"), json!([{"keyHeader": [], "keyQuery": []}]));
    assert_eq!(sec("/either", "get"), json!([{"bearer": []}, {"keyHeader": []}]));
    assert_eq!(sec("/optional", "get"), json!([{}, {"bearer": []}]));
    assert_eq!(sec("/items", "post"), json!([{"oauth": ["items:read", "items:write"]}]));
    assert_eq!(sec("/admin", "get"), json!([{"keyHeader": ["admin"]}]));
    assert_eq!(sec("/open", "get"), Value::Null);
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["keyCookie"], json!({"type": "apiKey", "name": "session", "in": "cookie"}));
    assert_eq!(schemes["basic"], json!({"type": "http", "scheme": "basic"}));
    assert_eq!(
        schemes["oauth"]["flows"]["authorizationCode"]["scopes"],
        json!({"items:read": "", "items:write": ""}),
        "{schemes}"
    );
}

/// `servers[0]` decides the default base path; `app_at` mounts elsewhere.
#[tokio::test]
async fn the_base_path_comes_from_server_variables_and_can_be_moved() {
    assert_eq!(BASE_PATH, "/v2");
    let moved = TestClient::new(app_at(Arc::new(App), "/behind/proxy"));
    assert_eq!(principal(moved.get("/behind/proxy/open")).await, Value::Null);
    let (s, _, _) = send(moved.get("/v2/open")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, doc) = send(moved.get("/behind/proxy/openapi.json")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["servers"][0]["url"], "{scheme}://localhost:{port}/{basePath}");
    assert_eq!(doc["servers"][0]["variables"]["scheme"]["enum"], json!(["http", "https"]));
}
