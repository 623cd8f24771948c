//! In-process tests of the crate generated from the rich fixture spec:
//! query arrays, header parameters, string, label and matrix path
//! parameters, 201/204, oneOf/anyOf, nested objects, arrays of objects,
//! absent vs null.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use fixture_rich_server::{rt::Problem, *};
use poem::{
    Endpoint,
    http::StatusCode,
    test::{TestClient, TestRequestBuilder},
};
use serde_json::{Value, json};

#[derive(Default)]
struct Stub {
    last_patch: Mutex<Option<PetPatch>>,
}

fn pet(name: &str) -> Pet {
    Pet {
        id: 1,
        name: name.into(),
        kind: Kind::OtherThing,
        weight: None,
        ratio: None,
        owner: None,
        nickname: None,
        tags: None,
        shape: None,
        extra: Some(PetExtra::Integer(7)),
        badge: None,
        attributes: None,
        born_at: None,
    }
}

/// The fixture's error body, from any problem.
impl ErrorPolicy for Stub {
    fn error(problem: &Problem) -> Error {
        let data = match &problem.data {
            Some(Value::Object(m)) => Some(Some(m.clone())),
            _ => None,
        };
        Error { code: problem.code.unwrap_or(5000), msg: problem.message().to_owned(), data, timestamp: rt::now() }
    }
}

impl PetsApi for Stub {
    async fn list_pets(&self, params: ListPetsParams) -> Result<ListPetsResponse, Problem> {
        let mut p = pet("echo");
        p.id = i64::from(params.limit);
        p.nickname = params.x_request_id.map(|u| u.to_string());
        p.tags = params.tag.map(|ts| ts.into_iter().map(|label| Tag { label, weight: None }).collect());
        p.ratio = params.min_weight;
        if let Some(f) = params.filter {
            let kinds: Vec<String> = f.kinds.unwrap_or_default().iter().map(ToString::to_string).collect();
            p.name = format!("{} {} {}", f.owner.unwrap_or_default(), kinds.join("+"), f.max_age.unwrap_or(-1));
        }
        if let Some(colors) = params.colors {
            p.name = format!("{} {}", colors.join("+"), params.theme.map_or("-".to_owned(), |t| t.to_string()));
        }
        Ok(ListPetsResponse::Ok(vec![p]))
    }

    async fn search_pets(&self, params: SearchPetsParams) -> Result<SearchPetsResponse, Problem> {
        let w = params.where_;
        let kinds: Vec<String> = w.kinds.unwrap_or_default().iter().map(ToString::to_string).collect();
        let page = params.x_page.as_ref().map_or("-".to_owned(), |p| format!("{:?}/{:?}", p.after, p.size));
        let next = params
            .x_page
            .and_then(|p| p.after)
            .map(|a| SearchPets200XNextPageHeader { after: Some(a + 1), owner: Some(w.owner.clone()) });
        Ok(SearchPetsResponse::Ok {
            body: format!(
                "{} {} {} {page} {}",
                w.owner,
                w.max_age.map_or("-".to_owned(), |a| a.to_string()),
                kinds.join("+"),
                params.note.as_deref().unwrap_or("-")
            ),
            x_next_page: next,
        })
    }

    async fn create_pet(&self, body: NewPet) -> Result<CreatePetResponse, Problem> {
        let mut p = pet(&body.name);
        p.shape = body.shape.map(|s| match s {
            NewPetShape::Cat(c) => PetShape::Cat(c),
            NewPetShape::Dog(d) => PetShape::Dog(d),
        });
        // The request's badge: `serial` was dropped (readOnly), `pin` is here
        // (writeOnly); the response gives a serial and never shows the pin.
        p.badge = body.badge.map(|b| Badge { serial: Some(b.pin.as_ref().map_or(0, |p| p.len() as i64)), ..b });
        // The undeclared labels, typed: echoed as the pet's attributes.
        if let Some(l) = body.labels {
            p.attributes = Some(l.additional_properties.iter().map(|(k, v)| (k.clone(), v.0.to_string())).collect());
        }
        let location = format!("/v2/pets/{}", p.name);
        Ok(CreatePetResponse::Created { body: p, location })
    }

    /// Never compares `If-None-Match`: the generated glue answers 304.
    async fn get_pet(&self, params: GetPetParams) -> Result<GetPetResponse, Problem> {
        let etag = format!("\"{}-v1\"", params.name);
        match params.name.as_str() {
            "ghost" => Err(ErrorCode::NotFound.problem()),
            // A handler bug: a header value HTTP cannot carry.
            "broken" => {
                Ok(GetPetResponse::Ok { body: pet("broken"), etag: "a\nb".into(), x_rate_limit_remaining: None })
            }
            // A handler bug the spec catches: a label too long, a weight out of range.
            "invalid" => {
                let mut p = pet("invalid");
                p.tags = Some(vec![Tag { label: "far too long a label".into(), weight: Some(9) }]);
                Ok(GetPetResponse::Ok { body: p, etag, x_rate_limit_remaining: None })
            }
            name => Ok(GetPetResponse::Ok { body: pet(name), etag, x_rate_limit_remaining: Some(41) }),
        }
    }

    async fn get_pet_photo(&self, params: GetPetPhotoParams) -> Result<GetPetPhotoResponse, Problem> {
        // Streamed: the header chunk, then the name.
        let name = bytes::Bytes::from(params.name.into_bytes());
        let chunks = [Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\n")), Ok(name)];
        Ok(GetPetPhotoResponse::Ok(rt::Binary::from_stream(futures_util::stream::iter(chunks))))
    }

    /// Answers in the media type the glue negotiated.
    async fn get_pet_report(
        &self,
        params: GetPetReportParams,
        media: GetPetReportMedia,
    ) -> Result<GetPetReportResponse, Problem> {
        let body = match media {
            GetPetReportMedia::ApplicationJson => GetPetReport200Content::ApplicationJson(pet(&params.name)),
            GetPetReportMedia::TextCsv => GetPetReport200Content::TextCsv(format!("name\n{}\n", params.name)),
            GetPetReportMedia::ApplicationOctetStream => {
                GetPetReport200Content::ApplicationOctetStream(params.name.into_bytes().into())
            }
        };
        Ok(GetPetReportResponse::Ok(body))
    }

    async fn get_pet_summary(
        &self,
        params: GetPetSummaryParams,
        media: GetPetSummaryMedia,
    ) -> Result<GetPetSummaryResponse, Problem> {
        let body = match media {
            GetPetSummaryMedia::TextPlain => GetPetSummary200Content::TextPlain(params.name),
            GetPetSummaryMedia::ApplicationJson => {
                GetPetSummary200Content::ApplicationJson(GetPetSummary200Response { name: params.name })
            }
        };
        Ok(GetPetSummaryResponse::Ok(body))
    }

    async fn get_ticket(&self, params: GetTicketParams) -> Result<GetTicketResponse, Problem> {
        Ok(GetTicketResponse::Ok(params.id))
    }

    async fn get_tickets_by_ids(&self, params: GetTicketsByIdsParams) -> Result<GetTicketsByIdsResponse, Problem> {
        Ok(GetTicketsByIdsResponse::Ok(params.ids))
    }

    async fn get_tickets_by_codes(
        &self,
        params: GetTicketsByCodesParams,
    ) -> Result<GetTicketsByCodesResponse, Problem> {
        Ok(GetTicketsByCodesResponse::Ok(params.codes))
    }

    async fn get_pet_card(&self, params: GetPetCardParams) -> Result<GetPetCardResponse, Problem> {
        Ok(GetPetCardResponse::Ok(format!("{} says hi", params.name)))
    }

    async fn set_pet_mood(&self, params: SetPetMoodParams, body: String) -> Result<SetPetMoodResponse, Problem> {
        Ok(SetPetMoodResponse::Ok(format!("{} is {body}", params.name)))
    }

    async fn set_pet_card(&self, params: SetPetCardParams, body: String) -> Result<SetPetCardResponse, Problem> {
        Ok(SetPetCardResponse::Ok(format!("{}: {body}", params.name)))
    }

    async fn set_pet_photo(
        &self,
        _: SetPetPhotoParams,
        mut body: rt::ByteStream,
    ) -> Result<SetPetPhotoResponse, Problem> {
        // Counted chunk by chunk: the body is never held whole.
        let mut n = 0;
        while let Some(chunk) = body.chunk().await? {
            n += chunk.len();
        }
        Ok(SetPetPhotoResponse::Ok(n as i64))
    }

    async fn classify_animal(&self, body: Animal) -> Result<ClassifyAnimalResponse, Problem> {
        Ok(ClassifyAnimalResponse::Ok(match body {
            Animal::Kitty(k) => format!("kitty {}", k.name),
            Animal::Puppy(p) => format!("puppy {}", p.name),
        }))
    }

    async fn upload_document(&self, body: UploadDocumentRequest) -> Result<UploadDocumentResponse, Problem> {
        Ok(UploadDocumentResponse::Ok(UploadDocument200Response {
            title: body.title,
            pages: body.pages,
            scan_bytes: body.scan.bytes.len() as i64,
            scan_name: body.scan.file_name,
            extras: body.extras.map(|e| e.len() as i64),
        }))
    }

    async fn replace_tags(&self, body: ReplaceTagsRequestBody) -> Result<ReplaceTagsResponse, Problem> {
        Ok(ReplaceTagsResponse::Ok(body.0.len() as i64))
    }

    async fn send_feedback(&self, body: Feedback) -> Result<SendFeedbackResponse, Problem> {
        Ok(SendFeedbackResponse::Ok(body))
    }

    async fn patch_pet(&self, params: PatchPetParams, body: PetPatch) -> Result<PatchPetResponse, Problem> {
        let mut p = pet(&params.name);
        // PetPatch.weight is a double, Pet.weight a float: echo it as the ratio.
        p.ratio = body.weight;
        Ok(PatchPetResponse::Ok(p))
    }

    async fn update_pet(&self, params: UpdatePetParams, body: PetPatch) -> Result<UpdatePetResponse, Problem> {
        if params.name == "ghost" {
            return Err(ErrorCode::NotFound.problem());
        }
        *self.last_patch.lock().unwrap() = Some(body);
        Ok(UpdatePetResponse::Ok(pet(&params.name)))
    }

    async fn delete_pet(&self, params: DeletePetParams) -> Result<DeletePetResponse, Problem> {
        // Path and query both name `name`: two fields, named by location.
        if params.query_name.as_ref().is_some_and(|q| *q != params.path_name) {
            return Err(ErrorCode::ValidationFailed.problem().with_detail("confirm with ?name="));
        }
        Ok(DeletePetResponse::NoContent)
    }
}

fn client() -> (TestClient<impl Endpoint>, Arc<Stub>) {
    let stub = Arc::new(Stub::default());
    (TestClient::new(app(stub.clone())), stub)
}

async fn send<E: Endpoint>(req: TestRequestBuilder<'_, E>) -> (StatusCode, Value) {
    let resp = req.send().await.0;
    let status = resp.status();
    let bytes = resp.into_body().into_bytes().await.unwrap();
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
}

fn fields(b: &Value) -> Vec<String> {
    b["data"]["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn query_arrays_headers_and_defaults() {
    let (cli, _) = client();
    let id = "6f1c1f9e-5f0e-4a43-9a6c-1d2b3c4d5e6f";
    let (s, b) = send(
        cli.get("/v2/pets")
            .query("tag", &"a")
            .query("tag", &"b")
            .query("min_weight", &"1.5")
            .header("x-request-id", id),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b[0]["tags"], json!([{"label": "a"}, {"label": "b"}]));
    assert_eq!(b[0]["id"], 10, "default limit");
    assert_eq!(b[0]["nickname"], id);
    assert_eq!(b[0]["nickname"], id);
    assert_eq!(b[0]["owner"], Value::Null, "required nullable is sent as null");
    assert_eq!(b[0]["ratio"], 1.5);

    let (s, b) = send(cli.get("/v2/pets").query("tag", &"a,b")).await;
    assert_eq!((s, b[0]["tags"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)));

    let (s, b) = send(
        cli.get("/v2/pets")
            .query("tag", &"waytoolongtag")
            .query("limit", &"0")
            .query("verbose", &"maybe")
            .header("x-request-id", "not-a-uuid"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let f = fields(&b);
    for want in ["tag[0]", "limit", "verbose", "x-request-id"] {
        assert!(f.contains(&want.to_owned()), "{want} missing from {b}");
    }
}

#[tokio::test]
async fn nested_objects_arrays_and_one_of() {
    let (cli, _) = client();
    let (s, b) = send(cli.post("/v2/pets").body_json(&json!({
        "name": "tom", "kind": "cat", "owner": {"name": "ann", "since": "2020-01-31"},
        "tags": [{"label": "x", "weight": 2}], "shape": {"lives": 9}
    })))
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["shape"], json!({"lives": 9}));
    assert_eq!(b["kind"], "other-thing");

    let (s, b) = send(cli.post("/v2/pets").body_json(&json!({
        "name": "Tom", "kind": "bird", "owner": {"name": "", "since": "2020-13-01"},
        "tags": [{"label": "ok"}, {"label": "x", "weight": 6}, {"weight": 1}, {"label": "y"}],
        "shape": {"lives": 3, "good_boy": true}, "lucky_numbers": [1, 100], "chip_id": "nope", "secret": "abc"
    })))
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let f = fields(&b);
    for want in [
        "name",
        "kind",
        "owner.name",
        "owner.since",
        "tags",
        "tags[1].weight",
        "tags[2].label",
        "shape",
        "lucky_numbers[1]",
        "chip_id",
        "secret",
    ] {
        assert!(f.contains(&want.to_owned()), "{want} missing from {f:?}");
    }
    assert!(!b.to_string().contains("abc"), "password values are never echoed");
}

#[tokio::test]
async fn absent_and_null_differ_for_optional_nullable_fields() {
    let (cli, stub) = client();
    let (s, _) = send(cli.put("/v2/pets/rex").body_json(&json!({"weight": 3}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stub.last_patch.lock().unwrap().as_ref().unwrap().nickname, None);
    let (s, _) = send(cli.put("/v2/pets/rex").body_json(&json!({"nickname": null}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stub.last_patch.lock().unwrap().as_ref().unwrap().nickname, Some(None));
    let (s, b) = send(cli.put("/v2/pets/rex").body_json(&json!({"nickname": "x".repeat(13), "weight": null}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(fields(&b), vec!["weight", "nickname"], "{b}");
}

#[tokio::test]
async fn string_path_parameters_and_empty_responses() {
    let (cli, _) = client();
    let (s, b) = send(cli.delete("/v2/pets/rex")).await;
    assert_eq!((s, b), (StatusCode::NO_CONTENT, Value::Null));
    let (s, b) = send(cli.delete("/v2/pets/Rex1")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // `deletePet` has a query `name` too, so the location is part of the field.
    assert_eq!(fields(&b), vec!["path.name"]);
    let (s, b) = send(cli.put("/v2/pets/ghost").body_json(&json!({}))).await;
    assert_eq!((s, b["code"].clone()), (StatusCode::NOT_FOUND, json!(1003)));
}

#[test]
fn emitted_document_round_trips_to_the_fixture_spec() {
    let root = xtask::codegen::workspace_root();
    let text = std::fs::read_to_string(root.join("xtask/tests/fixtures/rich/openapi.yaml")).unwrap();
    let spec: Value = serde_yaml::from_str(&text).unwrap();
    // What `/openapi.json` serves: poem-openapi's document with the patches.
    let emitted: Value = document(Arc::new(Stub::default()));
    let diffs = xtask::spec_norm::diff(&xtask::spec_norm::normalize(&spec), &xtask::spec_norm::normalize(&emitted));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Two generated APIs in one binary: each answers the framework's faults
/// from its own registry and policy, because both are types, not statics.
#[tokio::test]
async fn two_generated_apis_keep_their_own_error_policy() {
    use fixture_rich_server::rt::{Fallback as _, Fault};
    let (cli, _) = client();
    let (s, b) = send(cli.get("/v2/nowhere")).await;
    assert_eq!((s, b["code"].clone(), b["msg"].clone()), (StatusCode::NOT_FOUND, json!(1011), json!("no such route")));
    let theirs = api_server::fault(Fault::RouteNotFound);
    assert_eq!((theirs.status, theirs.code, theirs.title.as_str()), (404, Some(1011), "接口不存在"));
    let mine = fixture_rich_server::Fallback::<Stub>::respond(fixture_rich_server::fault(Fault::Internal));
    assert_eq!(mine.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let b: Value = serde_json::from_slice(&mine.into_body().into_bytes().await.unwrap()).unwrap();
    assert_eq!((b["code"].clone(), b["msg"].clone()), (json!(5000), json!("internal error")));
}

/// A query parameter named like a path parameter is a field of its own, and
/// its validation errors say which one failed.
#[tokio::test]
async fn parameters_sharing_a_name_stay_apart() {
    let (cli, _) = client();
    let (s, _) = send(cli.delete("/v2/pets/rex").query("name", &"rex")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = send(cli.delete("/v2/pets/rex")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = send(cli.delete("/v2/pets/rex").query("name", &"max")).await;
    assert_eq!((s, b["msg"].clone()), (StatusCode::BAD_REQUEST, json!("confirm with ?name=")));
    let (s, b) = send(cli.delete("/v2/pets/rex").query("name", &"x".repeat(21))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["data"]["errors"][0]["field"], "query.name", "{b}");
}

/// Response headers are typed fields of the variant; 304 has no body; a
/// value HTTP cannot carry is the handler's bug, answered 500.
#[tokio::test]
async fn response_headers_and_not_modified() {
    let (cli, _) = client();
    let resp = cli.get("/v2/pets/rex").send().await;
    resp.assert_status_is_ok();
    resp.assert_header("etag", "\"rex-v1\"");
    resp.assert_header("x-rate-limit-remaining", "41");
    resp.assert_content_type("application/json");
    let resp = cli.get("/v2/pets/rex").header("If-None-Match", "\"rex-v1\"").send().await;
    resp.assert_status(StatusCode::NOT_MODIFIED);
    resp.assert_header("etag", "\"rex-v1\"");
    assert!(resp.0.into_body().into_bytes().await.unwrap().is_empty(), "304 has no body");
    // Weak comparison, lists and `*`, done by the glue (the handler never
    // looks at the header); a validator of another version is a 200.
    for inm in ["W/\"rex-v1\"", "\"a\", \"rex-v1\"", "*"] {
        cli.get("/v2/pets/rex").header("If-None-Match", inm).send().await.assert_status(StatusCode::NOT_MODIFIED);
    }
    cli.get("/v2/pets/rex").header("If-None-Match", "\"rex-v0\"").send().await.assert_status_is_ok();
    let (s, b) = send(cli.get("/v2/pets/ghost")).await;
    assert_eq!((s, b["code"].clone()), (StatusCode::NOT_FOUND, json!(1003)));
    let resp = cli.get("/v2/pets/broken").send().await;
    resp.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
    resp.assert_content_type("application/problem+json");

    let body =
        json!({"name": "tom", "kind": "cat", "owner": {"name": "ann", "since": "2020-01-31"}, "shape": {"lives": 9}});
    let resp = cli.post("/v2/pets").body_json(&body).send().await;
    resp.assert_status(StatusCode::CREATED);
    resp.assert_header("location", "/v2/pets/tom");
}

/// A body declared `application/merge-patch+json` is read as such (plain
/// JSON is refused), and responses carry their declared JSON media types.
#[tokio::test]
async fn declared_json_media_types() {
    let (cli, _) = client();
    let resp =
        cli.patch("/v2/pets/rex").content_type("application/merge-patch+json").body(r#"{"weight": 4.5}"#).send().await;
    resp.assert_status_is_ok();
    resp.assert_content_type("application/json; charset=utf-8");
    let resp = cli.patch("/v2/pets/rex").body_json(&json!({"weight": 4.5})).send().await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    resp.assert_content_type("application/problem+json");
    let b: Value = serde_json::from_slice(&resp.0.into_body().into_bytes().await.unwrap()).unwrap();
    assert_eq!(b["code"], 1009, "the registry's UnsupportedMediaType, as the 4XX body: {b}");
}

/// A handler response that breaks the spec is a 500 (responses are checked
/// in debug builds), and the check names each failing JSON path.
#[tokio::test]
async fn responses_are_checked_against_the_spec() {
    assert!(rt::response_checks(), "on in debug builds");
    let (cli, _) = client();
    // getPet documents no 500: the registry's Internal, as problem+json.
    let (s, b) = send(cli.get("/v2/pets/invalid")).await;
    assert_eq!(
        (s, b["status"].clone(), b["code"].clone()),
        (StatusCode::INTERNAL_SERVER_ERROR, json!(500), json!(5000))
    );
    let mut p = pet("x");
    p.tags = Some(vec![Tag { label: "far too long a label".into(), weight: Some(9) }]);
    let mut errs = rt::FieldErrors::default();
    GetPetResponse::Ok { body: p, etag: "\"e\"".into(), x_rate_limit_remaining: None }.check(&mut errs);
    let fields: Vec<String> = errs.into_vec().into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["tags[0].label", "tags[0].weight"]);
    let mut errs = rt::FieldErrors::default();
    GetPetResponse::Ok { body: pet("fine"), etag: "\"e\"".into(), x_rate_limit_remaining: None }.check(&mut errs);
    assert!(errs.is_empty());
}

/// `additionalProperties: false`: an unknown property is a 400 naming it.
#[tokio::test]
async fn closed_objects_refuse_unknown_properties() {
    let (cli, _) = client();
    let body = json!({"name": "tom", "kind": "cat", "owner": {"name": "ann", "nick": "a"}, "shape": {"lives": 9}});
    let (s, b) = send(cli.post("/v2/pets").body_json(&body)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(fields(&b), vec!["owner.nick"], "{b}");
    let (s, doc) = send(cli.get("/v2/openapi.json")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["components"]["schemas"]["Owner"]["additionalProperties"], json!(false), "served as the spec says");
}

/// A component that is an array or a scalar is a Rust alias; its own
/// constraints apply where it is referenced, and the document names it.
#[tokio::test]
async fn value_components_keep_their_constraints_and_names() {
    let _: LuckyNumbers = vec![1, 2];
    let _: ChipId = uuid::Uuid::nil();
    let (cli, _) = client();
    let body = json!({"name": "tom", "kind": "cat", "owner": null, "lucky_numbers": [1, 2, 3, 4], "chip_id": "x"});
    let (s, b) = send(cli.post("/v2/pets").body_json(&body)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let f = fields(&b);
    assert!(f.contains(&"lucky_numbers".to_owned()) && f.contains(&"chip_id".to_owned()), "{b}");
    let (_, doc) = send(cli.get("/v2/openapi.json")).await;
    assert_eq!(doc["components"]["schemas"]["LuckyNumbers"]["maxItems"], 3, "{doc}");
    assert_eq!(doc["components"]["schemas"]["ChipId"]["format"], "uuid");
}

/// `additionalProperties: {schema}` beside `properties` keeps the other
/// properties as a typed map (checked by the schema); `minProperties` and
/// `maxProperties` count all of them.
#[tokio::test]
async fn typed_extra_properties_and_property_counts() {
    let (cli, _) = client();
    let with = |labels: Value| json!({"name": "tom", "kind": "cat", "owner": {"name": "ann", "since": "2020-01-31"}, "labels": labels});
    let (s, b) = send(cli.post("/v2/pets").body_json(&with(json!({"owner": "ann", "legs": 4})))).await;
    assert_eq!((s, &b["attributes"]), (StatusCode::CREATED, &json!({"legs": "4"})), "{b}");
    let (s, b) = send(cli.post("/v2/pets").body_json(&with(json!({"legs": "four"})))).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["labels.legs".to_owned()]), "{b}");
    // Arrays as map values: their own and their items' constraints.
    let aliases = |a: Value| {
        let mut p = with(json!({"owner": "ann"}));
        p["aliases"] = a;
        p
    };
    let (s, b) = send(cli.post("/v2/pets").body_json(&aliases(json!({"ann": ["rex", "r"]})))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = send(cli.post("/v2/pets").body_json(&aliases(json!({"ann": ["rex", "toolong"]})))).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["aliases.ann[1]".to_owned()]), "{b}");
    let (s, b) = send(cli.post("/v2/pets").body_json(&aliases(json!({"ann": ["a", "b", "c"]})))).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["aliases.ann".to_owned()]), "{b}");
    // The values' own range (a newtype carries it, as garde checks map values by diving).
    for legs in [-1, 100] {
        let (s, b) = send(cli.post("/v2/pets").body_json(&with(json!({"legs": legs})))).await;
        assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["labels.legs".to_owned()]), "{legs}: {b}");
    }
    for labels in [json!({}), json!({"a": 1, "b": 2, "c": 3, "d": 4})] {
        let (s, b) = send(cli.post("/v2/pets").body_json(&with(labels))).await;
        assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["labels".to_owned()]), "{b}");
    }
}

/// `style: deepObject`: `filter[key]=value` pairs are one object, coerced
/// and validated by its schema (a closed one refuses unknown keys).
#[tokio::test]
async fn deep_object_query_parameters() {
    let (cli, _) = client();
    let (s, b) =
        send(cli.get("/v2/pets?filter[owner]=ann&filter[kinds]=cat&filter[kinds]=dog&filter[max_age]=3")).await;
    assert_eq!((s, &b[0]["name"]), (StatusCode::OK, &json!("ann cat+dog 3")), "{b}");
    let (s, b) = send(cli.get("/v2/pets?filter[max_age]=old&filter[kinds]=cow&filter[color]=red")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let mut f = fields(&b);
    f.sort();
    assert_eq!(f, ["filter.color", "filter.kinds[0]", "filter.max_age"], "{b}");
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `content: {application/json: …}`: the raw value is a JSON document,
/// checked like a body (errors under the parameter's name); a `text/plain`
/// one is the raw text.
#[tokio::test]
async fn json_content_parameters() {
    let (cli, _) = client();
    let w = enc(r#"{"owner":"ann","max_age":3,"kinds":["cat","dog"]}"#);
    let (s, b) = send(cli.get(format!("/v2/pets/search?where={w}&note={}", enc("hi there")))).await;
    assert_eq!((s, b), (StatusCode::OK, json!("ann 3 cat+dog - hi there")));
    let (s, b) =
        send(cli.get(format!("/v2/pets/search?where={}", enc(r#"{"owner":"bo"}"#))).header("x-page", r#"{"after":7}"#))
            .await;
    assert_eq!((s, b), (StatusCode::OK, json!("bo -  Some(7)/None -")));
    // A response header with JSON `content` is compact JSON, ASCII only.
    let resp = cli
        .get(format!("/v2/pets/search?where={}", enc(r#"{"owner":"zoë"}"#)))
        .header("x-page", r#"{"after":7}"#)
        .send()
        .await
        .0;
    let next = resp.headers().get("x-next-page").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(next.as_deref(), Some(r#"{"after":8,"owner":"zo\u00eb"}"#));
    let next: Value = serde_json::from_str(&next.unwrap()).unwrap();
    assert_eq!(next["owner"], json!("zoë"));

    // Every constraint of the schema, each named by its path in the value.
    let bad = enc(r#"{"owner":"a-very-long-owner","max_age":-1,"kinds":["cat","cow"],"color":"red"}"#);
    let (s, b) = send(cli.get(format!("/v2/pets/search?where={bad}")).header("x-page", r#"{"size":0}"#)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let mut f = fields(&b);
    f.sort();
    assert_eq!(f, ["where.color", "where.kinds[1]", "where.max_age", "where.owner", "x-page.size"], "{b}");
    let (s, b) = send(cli.get(format!("/v2/pets/search?where={}", enc(r#"{"kinds":["cat","dog","cat"]}"#)))).await;
    let mut f = fields(&b);
    f.sort();
    assert_eq!((s, f), (StatusCode::BAD_REQUEST, vec!["where.kinds".to_owned(), "where.owner".to_owned()]), "{b}");
    let (s, b) = send(cli.get(format!("/v2/pets/search?where={}", enc("[1]")))).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["where".to_owned()]), "{b}");

    // Not JSON: one error, naming the parameter, and the others still checked.
    let (s, b) = send(
        cli.get(format!("/v2/pets/search?where={}&note={}", enc("{owner:"), "x".repeat(21))).header("x-page", "{"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let errors = b["data"]["errors"].as_array().unwrap();
    assert_eq!(fields(&b), ["where", "x-page", "note"], "{b}");
    assert!(errors[0]["message"].as_str().unwrap().contains("not valid JSON"), "{b}");

    let (s, b) = send(cli.get("/v2/pets/search")).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["where".to_owned()]), "{b}");
    assert_eq!(b["data"]["errors"][0]["message"], json!("is required"), "{b}");

    // The served document describes them by `content`, as the spec does.
    let doc = document(Arc::new(Stub::default()));
    let p = &doc["paths"]["/pets/search"]["get"]["parameters"][0];
    assert_eq!(p["content"]["application/json"]["schema"]["properties"]["owner"]["maxLength"], json!(10), "{p}");
    assert!(p.get("schema").is_none() && p.get("explode").is_none(), "{p}");
    let h = &doc["paths"]["/pets/search"]["get"]["responses"]["200"]["headers"]["X-Next-Page"];
    assert!(h["content"]["application/json"]["schema"].is_object() && h.get("schema").is_none(), "{h}");
}

/// `multipart/form-data`: text parts coerced and validated like form
/// fields, `format: binary` parts as files (one or several), all within
/// the body limits.
#[tokio::test]
async fn multipart_bodies_with_files() {
    let (cli, _) = client();
    let part = |name: &str, file: Option<&str>, body: &str| match file {
        Some(f) => format!(
            "--XX\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/png\r\n\r\n{body}\r\n"
        ),
        None => format!("--XX\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{body}\r\n"),
    };
    let ct = "multipart/form-data; boundary=XX";
    let body = [
        part("title", None, "scan"),
        part("pages", None, "2"),
        part("scan", Some("a.png"), "PNGDATA"),
        part("extras", Some("b"), "1"),
        part("extras", Some("c"), "22"),
    ]
    .concat()
        + "--XX--\r\n";
    let (s, b) = send(cli.post("/v2/documents").content_type(ct).body(body)).await;
    assert_eq!(
        (s, b),
        (StatusCode::OK, json!({"title": "scan", "pages": 2, "scan_bytes": 7, "scan_name": "a.png", "extras": 2}))
    );
    // A bad text part and a missing file, reported together.
    let body = [part("title", None, "far too long a title"), part("pages", None, "zero")].concat() + "--XX--\r\n";
    let (s, b) = send(cli.post("/v2/documents").content_type(ct).body(body)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let mut f = fields(&b);
    f.sort();
    assert_eq!(f, ["pages", "scan", "title"], "{b}");
    let (s, b) = send(cli.post("/v2/documents").content_type(ct).body("--XX\r\nnot a part")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
}

/// An array as the whole body: its own length limits, and its items'
/// rules under `[i]`.
#[tokio::test]
async fn array_request_bodies() {
    let (cli, _) = client();
    let (s, b) = send(cli.put("/v2/tags").body_json(&json!([{"label": "a"}, {"label": "b"}]))).await;
    assert_eq!((s, b), (StatusCode::OK, json!(2)));
    let (s, b) = send(cli.put("/v2/tags").body_json(&json!([]))).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["body".to_owned()]), "the array itself: {b}");
    let (s, b) = send(cli.put("/v2/tags").body_json(&json!([{"label": "a"}, {"weight": 1}]))).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["[1].label".to_owned()]), "{b}");
}

/// A deprecated operation with `x-deprecated-at` and `x-sunset` says so on
/// every answer (RFC 9745, RFC 8594), errors included; others do not.
#[tokio::test]
async fn deprecated_operations_announce_their_sunset() {
    let (cli, _) = client();
    for path in ["/v2/pets/rex/card", "/v2/pets/NOT-VALID/card"] {
        let resp = cli.get(path).send().await;
        resp.assert_header("deprecation", "@1780272000");
        resp.assert_header("sunset", "Fri, 01 Jan 2027 12:00:00 GMT");
    }
    let resp = cli.get("/v2/pets/rex/photo").send().await;
    resp.assert_header_is_not_exist("deprecation");
    let (_, doc) = send(cli.get("/v2/openapi.json")).await;
    let op = &doc["paths"]["/pets/{name}/card"]["get"];
    assert_eq!((&op["deprecated"], &op["x-sunset"]), (&json!(true), &json!("2027-01-01T12:00:00Z")), "{op}");
}

/// One body, two media types: JSON or a form, chosen by `Content-Type`;
/// form values are coerced by the schema (repeated keys are an array) and
/// validated the same way; any other type is refused.
#[tokio::test]
async fn json_and_form_bodies_of_one_schema() {
    let (cli, _) = client();
    let form = "application/x-www-form-urlencoded";
    let (s, b) =
        send(cli.post("/v2/feedback").content_type(form).body("stars=4&comment=nice%20one&tags=a&tags=b&happy=true"))
            .await;
    assert_eq!((s, b), (StatusCode::OK, json!({"stars": 4, "comment": "nice one", "tags": ["a", "b"], "happy": true})));
    let (s, b) = send(cli.post("/v2/feedback").body_json(&json!({"stars": 5}))).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"stars": 5})));
    let (s, b) = send(cli.post("/v2/feedback").content_type(form).body("stars=9&happy=maybe")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(fields(&b), vec!["happy".to_owned(), "stars".to_owned()], "{b}");
    // A boolean enum: `agreed` may only be true.
    let (s, b) = send(cli.post("/v2/feedback").body_json(&json!({"stars": 5, "agreed": true}))).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"stars": 5, "agreed": true})));
    let (s, b) = send(cli.post("/v2/feedback").content_type(form).body("stars=5&agreed=false")).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["agreed".to_owned()]), "{b}");

    let (s, b) = send(cli.post("/v2/feedback").content_type("text/plain").body("stars=4")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.to_string().contains("application/json or application/x-www-form-urlencoded"), "{b}");
}

/// Bodies that are not JSON: bytes and text, with their media types.
#[tokio::test]
async fn binary_and_text_responses() {
    let (cli, _) = client();
    let resp = cli.get("/v2/pets/rex/photo").send().await;
    resp.assert_status_is_ok();
    resp.assert_content_type("image/png");
    let bytes = resp.0.into_body().into_bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"\x89PNG");
    assert!(bytes.ends_with(b"rex"));
    let resp = cli.get("/v2/pets/rex/card").send().await;
    resp.assert_status_is_ok();
    resp.assert_content_type("text/plain");
    resp.assert_text("rex says hi").await;
}

/// readOnly: ignored in requests, required in responses; writeOnly: required
/// in requests, never in a response.
#[tokio::test]
async fn read_only_and_write_only_properties() {
    let (cli, _) = client();
    let pet = |badge: Value| json!({"name": "tom", "kind": "cat", "owner": {"name": "ann"}, "shape": {"lives": 1}, "badge": badge});
    let (s, b) = send(cli.post("/v2/pets").body_json(&pet(json!({"serial": 99, "pin": "12345", "label": "x"})))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["badge"], json!({"serial": 5, "label": "x"}), "serial from the handler, no pin: {b}");
    let (s, b) = send(cli.post("/v2/pets").body_json(&pet(json!({"label": "x"})))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(fields(&b), vec!["badge.pin"], "{b}");
    // `additionalProperties: false` without properties: only `{}`.
    let (s, b) = send(cli.post("/v2/pets").body_json(&pet(json!({"pin": "12345", "nothing": {}})))).await;
    assert_eq!((s, &b["badge"]["nothing"]), (StatusCode::CREATED, &json!({})), "{b}");
    let (s, b) = send(cli.post("/v2/pets").body_json(&pet(json!({"pin": "12345", "nothing": {"a": 1}})))).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["badge.nothing.a".to_owned()]), "{b}");
    // A response without the required readOnly serial breaks the spec.
    let mut p = pet_value();
    p.badge = Some(Badge { serial: None, pin: Some("1234".into()), label: None, nothing: None });
    let mut errs = rt::FieldErrors::default();
    GetPetResponse::Ok { body: p.clone(), etag: "\"e\"".into(), x_rate_limit_remaining: None }.check(&mut errs);
    let fields: Vec<String> = errs.into_vec().into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["badge.serial"]);
    // Headers are checked against their schemas too.
    p.badge = None;
    let mut errs = rt::FieldErrors::default();
    GetPetResponse::Ok { body: p, etag: "e".into(), x_rate_limit_remaining: Some(-1) }.check(&mut errs);
    let fields: Vec<String> = errs.into_vec().into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["header ETag", "header X-Rate-Limit-Remaining"]);
}

fn pet_value() -> Pet {
    pet("x")
}

/// Text and binary request bodies, with their media types checked.
#[tokio::test]
async fn binary_and_text_requests() {
    let (cli, _) = client();
    let resp = cli.put("/v2/pets/rex/card").content_type("text/plain").body("héllo").send().await;
    resp.assert_status_is_ok();
    resp.assert_text("rex: héllo").await;
    let resp = cli.put("/v2/pets/rex/card").content_type("text/plain").body(vec![0xff, 0xfe]).send().await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    let resp = cli.put("/v2/pets/rex/card").body_json(&json!("x")).send().await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    let (s, b) = send(cli.put("/v2/pets/rex/card").content_type("text/plain")).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["body".to_owned()]));
    // A text body with an enum: one of its values, as sent.
    let resp = cli.put("/v2/pets/rex/mood").content_type("text/plain").body("sleepy").send().await;
    resp.assert_status_is_ok();
    resp.assert_text("rex is sleepy").await;
    let (s, b) = send(cli.put("/v2/pets/rex/mood").content_type("text/plain").body("grumpy")).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["body".to_owned()]), "{b}");
    // The text's schema: 2–10 characters (not bytes: "héllo" is 6 bytes, 5
    // characters), not starting with white space.
    for bad in ["x", "eleven chars", " hello"] {
        let (s, b) = send(cli.put("/v2/pets/rex/card").content_type("text/plain").body(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}: {b}");
        assert_eq!(b["code"], 1001, "{b}");
        assert_eq!(fields(&b), vec!["body".to_owned()], "{b}");
    }
    let (s, b) =
        send(cli.put("/v2/pets/rex/photo").content_type("application/octet-stream").body(vec![0u8; 1000])).await;
    assert_eq!((s, b), (StatusCode::OK, json!(1000)));
}

/// A binary body is streamed to the handler: chunked bodies arrive whole,
/// `maxLength` is its byte limit (declared or found while reading), the
/// media type is checked before the handler runs, and an empty one is missing.
#[tokio::test]
async fn binary_bodies_stream_within_their_limit() {
    let (cli, _) = client();
    let chunked = |parts: Vec<Vec<u8>>| {
        let s = futures_util::stream::iter(parts.into_iter().map(|p| Ok::<_, std::io::Error>(bytes::Bytes::from(p))));
        poem::Body::from_bytes_stream(s)
    };
    let put = |body: poem::Body| cli.put("/v2/pets/rex/photo").content_type("application/octet-stream").body(body);
    let (s, b) = send(put(chunked(vec![vec![1; 1000], vec![2; 3096]]))).await;
    assert_eq!((s, b), (StatusCode::OK, json!(4096)), "exactly the limit");
    // Over the limit while streaming (no Content-Length to refuse early).
    let (s, b) = send(put(chunked(vec![vec![1; 4000], vec![2; 97]]))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.to_string().contains("4096"), "{b}");
    // Over the limit by its declared length: refused before any byte is read.
    let (s, b) = send(put(vec![0u8; 5000].into())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = send(cli.put("/v2/pets/rex/photo").content_type("text/plain").body(vec![1u8; 10])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = send(put(poem::Body::empty())).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["body".to_owned()]));
}

/// One response in several media types: `Accept` picks it (weights, wildcards,
/// the server's order on ties), `Vary: Accept` says so, and nothing acceptable
/// is the documented 406 (in its first media type) or, where none is
/// documented, the server's first choice.
#[tokio::test]
async fn accept_chooses_among_a_responses_media_types() {
    let (cli, _) = client();
    let get = |path: &'static str, accept: Option<&'static str>| {
        let req = cli.get(path);
        async move {
            let resp = match accept {
                Some(a) => req.header("accept", a),
                None => req,
            }
            .send()
            .await
            .0;
            let h = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let (status, ct, vary) = (resp.status(), h("content-type"), h("vary"));
            let body = resp.into_body().into_bytes().await.unwrap().to_vec();
            (status, ct, vary, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let report = "/v2/pets/rex/report";
    let (s, ct, vary, body) = get(report, None).await;
    assert_eq!((s, ct.as_deref(), vary.as_deref()), (StatusCode::OK, Some("application/json"), Some("accept")));
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["name"], "rex");
    let (s, ct, _, body) = get(report, Some("text/csv")).await;
    assert_eq!((s, ct.as_deref(), body.as_str()), (StatusCode::OK, Some("text/csv"), "name\nrex\n"));
    let (_, ct, _, body) = get(report, Some("application/json;q=0.2, application/*;q=0.8")).await;
    assert_eq!((ct.as_deref(), body.as_str()), (Some("application/octet-stream"), "rex"));
    let (_, ct, _, _) = get(report, Some("text/*, */*;q=0.1")).await;
    assert_eq!(ct.as_deref(), Some("text/csv"));
    let (s, ct, _, body) = get(report, Some("image/png")).await;
    assert_eq!((s, ct.as_deref()), (StatusCode::NOT_ACCEPTABLE, Some("application/json")), "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], 1013, "the registry's NotAcceptable");
    // Validation still comes first.
    let (s, _, _, _) = get("/v2/pets/abcdefghijklmnopqrstuvwxyz/report", Some("image/png")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let summary = "/v2/pets/rex/summary";
    let (_, ct, _, body) = get(summary, None).await;
    assert_eq!((ct.as_deref(), body.as_str()), (Some("text/plain"), "rex"), "the spec's first media type");
    let (_, ct, _, _) = get(summary, Some("application/json")).await;
    assert_eq!(ct.as_deref(), Some("application/json"));
    let (s, ct, _, _) = get(summary, Some("image/png")).await;
    assert_eq!((s, ct.as_deref()), (StatusCode::OK, Some("text/plain")), "no 406 documented: the first");

    // The served document lists every media type of each response.
    let (_, doc) = send(cli.get("/v2/openapi.json")).await;
    let content = &doc["paths"]["/pets/{name}/report"]["get"]["responses"]["200"]["content"];
    let mut types: Vec<&str> = content.as_object().unwrap().keys().map(String::as_str).collect();
    types.sort_unstable();
    assert_eq!(types, ["application/json", "application/octet-stream", "text/csv"]);
}

/// A discriminated oneOf: the member is the one `species` names (mapped or
/// by component name), checked as that member only.
#[tokio::test]
async fn discriminated_unions_follow_their_property() {
    let (cli, _) = client();
    let (s, b) = send(cli.post("/v2/animals").body_json(&json!({"species": "Puppy", "name": "rexy"}))).await;
    assert_eq!((s, b), (StatusCode::OK, json!("puppy rexy")));
    let (s, b) = send(cli.post("/v2/animals").body_json(&json!({"species": "feline", "name": "tom"}))).await;
    assert_eq!((s, b), (StatusCode::OK, json!("kitty tom")));
    // Six characters: too long for a Kitty, fine for a Puppy.
    let (s, b) = send(cli.post("/v2/animals").body_json(&json!({"species": "feline", "name": "tomcat"}))).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["name".to_owned()]), "{b}");
    let (s, b) = send(cli.post("/v2/animals").body_json(&json!({"species": "Kitty", "name": "tom"}))).await;
    assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec!["species".to_owned()]), "mapped away: {b}");
    let (_, doc) = send(cli.get("/v2/openapi.json")).await;
    assert_eq!(doc["components"]["schemas"]["Animal"]["discriminator"]["propertyName"], "species");
}

/// `pipeDelimited` arrays are split at pipes; cookie parameters are read
/// from `Cookie` and validated like any other.
#[tokio::test]
async fn delimited_arrays_and_cookie_parameters() {
    let (cli, _) = client();
    let (s, b) = send(cli.get("/v2/pets?colors=red|blue").header("Cookie", "a=1; theme=dark")).await;
    assert_eq!((s, b[0]["name"].clone()), (StatusCode::OK, json!("red+blue dark")), "{b}");
    let (s, b) = send(cli.get("/v2/pets?colors=red|purple").header("Cookie", "theme=neon")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let mut f = fields(&b);
    f.sort();
    assert_eq!(f, vec!["colors[1]", "theme"], "{b}");
}

/// `label` and `matrix` path values: the prefix is stripped and the items
/// split as declared, then coerced and checked like a `simple` value; a
/// value not in its style is a 400 naming the parameter.
#[tokio::test]
async fn label_and_matrix_path_parameters() {
    let (cli, _) = client();
    let ok = |uri: &'static str, want: Value| {
        let cli = &cli;
        async move {
            let (s, b) = send(cli.get(uri)).await;
            assert_eq!((s, &b), (StatusCode::OK, &want), "{uri}");
        }
    };
    ok("/v2/tickets/.5", json!(5)).await;
    ok("/v2/tickets/by-ids/;ids=3;ids=4;ids=5", json!([3, 4, 5])).await;
    ok("/v2/tickets/by-ids/;ids=7", json!([7])).await;
    ok("/v2/tickets/by-codes/;codes=a,b%20c", json!(["a", "b c"])).await;
    for (uri, field) in [
        // No prefix, the wrong one, another parameter's name.
        ("/v2/tickets/5", "id"),
        ("/v2/tickets/;id=5", "id"),
        ("/v2/tickets/by-ids/3;ids=4", "ids"),
        ("/v2/tickets/by-ids/;id=3", "ids"),
        ("/v2/tickets/by-ids/;ids=3;idx=4", "ids"),
        ("/v2/tickets/by-codes/;code=a", "codes"),
        // A bad item, a constraint on the value and on an item.
        ("/v2/tickets/.x", "id"),
        ("/v2/tickets/.0", "id"),
        ("/v2/tickets/by-ids/;ids=3;ids=x", "ids[1]"),
        ("/v2/tickets/by-ids/;ids=3;ids=100", "ids[1]"),
        ("/v2/tickets/by-codes/;codes=a,long", "codes[1]"),
        ("/v2/tickets/by-codes/;codes=a,b,c,d", "codes"),
    ] {
        let (s, b) = send(cli.get(uri)).await;
        assert_eq!((s, fields(&b)), (StatusCode::BAD_REQUEST, vec![field.to_owned()]), "{uri}: {b}");
        assert_eq!(b["code"], json!(1001), "{uri}: {b}");
    }
    // The style's own refusal says what was expected; an item's is the
    // structural pass's.
    let (_, b) = send(cli.get("/v2/tickets/by-ids/;id=3")).await;
    assert_eq!(b["data"]["errors"][0]["message"], json!("must be in matrix style (`;ids=value`)"), "{b}");
    let (_, b) = send(cli.get("/v2/tickets/5")).await;
    assert_eq!(b["data"]["errors"][0]["message"], json!("must be in label style (`.value`)"), "{b}");
}

/// multipleOf, exclusive bounds on numbers and uniqueItems.
#[tokio::test]
async fn multiple_of_exclusive_bounds_and_unique_items() {
    let (cli, _) = client();
    let pet = |score: Value, codes: Value| json!({"name": "tom", "kind": "cat", "owner": {"name": "ann"}, "shape": {"lives": 1}, "score": score, "codes": codes});
    let (s, b) = send(cli.post("/v2/pets").body_json(&pet(json!(2.5), json!([3, 6, 9])))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = send(cli.post("/v2/pets").body_json(&pet(json!(0), json!([3, 3])))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let sorted = |b: &Value| {
        let mut f = fields(b);
        f.sort();
        f
    };
    assert_eq!(sorted(&b), vec!["codes", "score"], "{b}");
    let (s, b) = send(cli.post("/v2/pets").body_json(&pet(json!(2.25), json!([3, 4])))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(sorted(&b), vec!["codes[1]", "score"], "{b}");
}

/// The string formats JSON Schema checks: uri, ipv4, hostname, byte.
#[tokio::test]
async fn string_formats_are_checked() {
    let (cli, _) = client();
    let pet = |extra: Value| {
        let mut p = json!({"name": "tom", "kind": "cat", "owner": {"name": "ann"}, "shape": {"lives": 1}});
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        p
    };
    let good = json!({"homepage": "https://ex.org/a", "ip": "10.0.0.1", "host": "a-b.example.org", "avatar": "aGk="});
    let (s, b) = send(cli.post("/v2/pets").body_json(&pet(good))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let bad = json!({"homepage": "not a uri", "ip": "10.0.0.300", "host": "-bad-.org", "avatar": "%%%"});
    let (s, b) = send(cli.post("/v2/pets").body_json(&pet(bad))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let mut f = fields(&b);
    f.sort();
    assert_eq!(f, vec!["avatar", "homepage", "host", "ip"], "{b}");
}
