//! Public specs (`fixtures/public/`, sources in its README) generated as a
//! user would: the crates compile (the workspace builds them, clients
//! included), serve their own document, and answer what the spec leaves
//! undocumented as problem+json.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::{path::Path, sync::Arc};

use poem::{Endpoint, http::StatusCode, test::TestClient};
use serde_json::{Value, json};

fn public(name: &str) -> std::path::PathBuf {
    xtask::codegen::workspace_root().join("xtask/tests/fixtures/public").join(name)
}

/// The served document (`/openapi.json`) against the spec.
fn round_trips(spec: &str, emitted: &Value) {
    let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(public(spec)).unwrap()).unwrap();
    // param-collision.json gives a response object a `type`, which is not
    // a field of OpenAPI's Response Object: readers ignore it, so do we.
    if let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) {
        for op in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|i| i.values_mut()) {
            for r in op.get_mut("responses").and_then(Value::as_object_mut).into_iter().flat_map(|r| r.values_mut()) {
                r.as_object_mut().map(|r| r.remove("type"));
            }
        }
    }
    let diffs = xtask::spec_norm::diff(&xtask::spec_norm::normalize(&spec), &xtask::spec_norm::normalize(emitted));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

async fn send<E: Endpoint>(req: poem::test::TestRequestBuilder<'_, E>) -> (StatusCode, String, Value) {
    let resp = req.send().await.0;
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = resp.into_body().into_bytes().await.unwrap();
    (status, ct, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
}

mod keeper {
    use fixture_keeper_server::{rt::Problem, *};

    /// Keeper carries its credential as an ordinary `Authorization` header
    /// parameter; the handler sees it in the params.
    pub struct Keeper;

    impl ErrorPolicy for Keeper {}

    impl DefaultApi for Keeper {
        async fn enrol(&self, p: EnrolParams, b: EnrolBody) -> Result<EnrolResponse, Problem> {
            if p.authorization != "Bearer k" {
                return Err(Problem::unauthorized());
            }
            let _ = (b.host, b.key);
            Ok(EnrolResponse::Created)
        }
        async fn global_jobs(&self, _: GlobalJobsParams) -> Result<GlobalJobsResponse, Problem> {
            Ok(GlobalJobsResponse::Created(GlobalJobsResult { summary: vec![] }))
        }
        async fn ping(&self, p: PingParams) -> Result<PingResponse, Problem> {
            Ok(PingResponse::Created(PingResult { host: p.authorization, ok: true }))
        }
        async fn report_finish(
            &self,
            _: ReportFinishParams,
            _: ReportFinishBody,
        ) -> Result<ReportFinishResponse, Problem> {
            Err(Problem::new(501))
        }
        async fn report_output(
            &self,
            _: ReportOutputParams,
            _: ReportOutputBody,
        ) -> Result<ReportOutputResponse, Problem> {
            Err(Problem::new(501))
        }
        async fn report_start(&self, _: ReportStartParams, _: ReportStartBody) -> Result<ReportStartResponse, Problem> {
            Err(Problem::new(501))
        }
    }
}

mod collision {
    use fixture_param_collision_server::{rt::Problem, *};

    pub struct Keys;

    impl ErrorPolicy for Keys {}

    impl DefaultApi for Keys {
        async fn key_get(&self, p: KeyGetParams) -> Result<KeyGetResponse, Problem> {
            // Parameters named like the client's own variables arrive intact.
            if p.query && p.url && !p.request && p.response && !p.result && p.client {
                Ok(KeyGetResponse::Ok)
            } else {
                Err(Problem::new(422).with_detail(format!("{p:?}")))
            }
        }
    }
}

mod museum {
    use fixture_museum_server::{rt::Problem, *};

    /// Redocly's museum (OpenAPI 3.1, HTTP basic auth): a handler that
    /// answers 501 everywhere but the hours, enough to serve the document
    /// and walk the security and error paths.
    pub struct Museum;

    impl Auth for Museum {
        type Principal = String;
        async fn authenticate_museum_placeholder_auth(
            &self,
            c: &rt::BasicCredentials,
            _: &rt::AuthContext,
        ) -> Result<String, Problem> {
            if c.password == "open sesame" { Ok(c.username.clone()) } else { Err(Problem::unauthorized()) }
        }
    }

    impl ErrorPolicy for Museum {
        fn error(p: &Problem) -> Error {
            Error { type_: Some("about:blank".into()), title: Some(p.message().to_owned()) }
        }
    }

    impl EventsApi for Museum {
        async fn list_special_events(
            &self,
            _: String,
            _: ListSpecialEventsParams,
        ) -> Result<ListSpecialEventsResponse, Problem> {
            Err(Problem::new(501))
        }
        async fn create_special_event(
            &self,
            _: String,
            _: SpecialEvent,
        ) -> Result<CreateSpecialEventResponse, Problem> {
            Err(Problem::new(501))
        }
        async fn get_special_event(
            &self,
            _: String,
            _: GetSpecialEventParams,
        ) -> Result<GetSpecialEventResponse, Problem> {
            Err(Problem::new(404))
        }
        async fn delete_special_event(
            &self,
            _: String,
            _: DeleteSpecialEventParams,
        ) -> Result<DeleteSpecialEventResponse, Problem> {
            Err(Problem::new(501))
        }
        async fn update_special_event(
            &self,
            _: String,
            _: UpdateSpecialEventParams,
            _: SpecialEventFields,
        ) -> Result<UpdateSpecialEventResponse, Problem> {
            Err(Problem::new(501))
        }
    }

    impl OperationsApi for Museum {
        async fn get_museum_hours(
            &self,
            _: String,
            _: GetMuseumHoursParams,
        ) -> Result<GetMuseumHoursResponse, Problem> {
            Ok(GetMuseumHoursResponse::Ok(vec![]))
        }
    }

    impl TicketsApi for Museum {
        async fn buy_museum_tickets(
            &self,
            _: String,
            _: BuyMuseumTickets,
        ) -> Result<BuyMuseumTicketsResponse, Problem> {
            Err(Problem::new(501))
        }
        async fn get_ticket_code(&self, _: String, _: GetTicketCodeParams) -> Result<GetTicketCodeResponse, Problem> {
            Ok(GetTicketCodeResponse::Ok(b"\x89PNG".to_vec().into()))
        }
    }
}

/// OpenAPI 3.1, normalized to 3.0.3: generated, compiled, served; its
/// document matches the normalized spec; basic auth and its error body work.
#[tokio::test]
async fn museum_from_openapi_3_1_runs() {
    let normalized = serde_json::to_value(xtask::codegen::load_spec(&public("museum.yaml")).unwrap()).unwrap();
    let served = fixture_museum_server::document(Arc::new(museum::Museum));
    let diffs =
        xtask::spec_norm::diff(&xtask::spec_norm::normalize(&normalized), &xtask::spec_norm::normalize(&served));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // Its server URL has a path: mounted at the root instead.
    let cli = TestClient::new(fixture_museum_server::app_at(Arc::new(museum::Museum), ""));
    // base64("ann:open sesame")
    let good = "Basic YW5uOm9wZW4gc2VzYW1l";
    let (s, _, b) = send(cli.get("/museum-hours").header("Authorization", good)).await;
    assert_eq!((s, b), (StatusCode::OK, json!([])));
    let (s, ct, b) = send(cli.get("/museum-hours")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(ct.starts_with("application/"), "{ct}");
    let resp = cli.get("/tickets/3fa85f64-5717-4562-b3fc-2c963f66afa6/qr").header("Authorization", good).send().await;
    resp.assert_status_is_ok();
    resp.assert_content_type("image/png");
}

#[tokio::test]
async fn keeper_serves_its_document_and_its_operations() {
    round_trips("keeper.json", &fixture_keeper_server::document(Arc::new(keeper::Keeper)));
    let cli = TestClient::new(fixture_keeper_server::app(Arc::new(keeper::Keeper)));
    let (s, _, b) = send(cli.get("/ping").header("Authorization", "Bearer k")).await;
    assert_eq!((s, b), (StatusCode::CREATED, json!({"host": "Bearer k", "ok": true})));
    let (s, _, _) =
        send(cli.post("/enrol").header("Authorization", "Bearer k").body_json(&json!({"host": "h", "key": "k"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    // Keeper documents only 201s: everything else is RFC 9457.
    let (s, ct, b) = send(cli.get("/ping")).await;
    assert_eq!((s, ct.as_str()), (StatusCode::BAD_REQUEST, "application/problem+json"));
    assert_eq!(b["errors"][0]["field"], "Authorization", "{b}");
    let (s, ct, b) =
        send(cli.post("/enrol").header("Authorization", "Bearer no").body_json(&json!({"host": "h", "key": "k"})))
            .await;
    assert_eq!(
        (s, ct.as_str(), b["status"].clone()),
        (StatusCode::UNAUTHORIZED, "application/problem+json", json!(401))
    );
    let (s, ct, _) =
        send(cli.post("/enrol").header("Authorization", "Bearer k").content_type("application/json").body("{")).await;
    assert_eq!((s, ct.as_str()), (StatusCode::BAD_REQUEST, "application/problem+json"));
    let (s, ct, _) = send(cli.get("/nowhere")).await;
    assert_eq!((s, ct.as_str()), (StatusCode::NOT_FOUND, "application/problem+json"));
}

#[tokio::test]
async fn param_collision_keeps_every_parameter() {
    round_trips("param-collision.json", &fixture_param_collision_server::document(Arc::new(collision::Keys)));
    let cli = TestClient::new(fixture_param_collision_server::app(Arc::new(collision::Keys)));
    let q = "url=true&request=false&response=true&result=false&client=true";
    let (s, _, b) = send(cli.get(format!("/key/true?{q}"))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, ct, b) = send(cli.get("/key/maybe?url=true")).await;
    assert_eq!((s, ct.as_str()), (StatusCode::BAD_REQUEST, "application/problem+json"), "{b}");
    let fields: Vec<&str> = b["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["query", "request", "response", "result", "client"], "{b}");
}

mod propolis {
    use std::sync::Mutex;

    use fixture_propolis_server::{rt::Problem, *};

    /// Keeps the last ensured instance's disks, to show what was read.
    #[derive(Default)]
    pub struct Propolis {
        pub disks: Mutex<Vec<DiskRequest>>,
    }

    impl ErrorPolicy for Propolis {
        fn error(p: &Problem) -> Error {
            Error {
                error_code: p.code.map(|c| c.to_string()),
                message: format!("{} {:?}", p.message(), p.data),
                request_id: "r1".into(),
            }
        }
    }

    impl DefaultApi for Propolis {
        async fn instance_get(&self) -> Result<InstanceGetResponse, Problem> {
            Err(Problem::new(404))
        }
        async fn instance_ensure(&self, body: InstanceEnsureRequest) -> Result<InstanceEnsureResponse, Problem> {
            *self.disks.lock().unwrap() = body.disks;
            Ok(InstanceEnsureResponse::Created(InstanceEnsureResponseBody { migrate: None }))
        }
        async fn instance_issue_crucible_snapshot_request(
            &self,
            _: InstanceIssueCrucibleSnapshotRequestParams,
        ) -> Result<InstanceIssueCrucibleSnapshotRequestResponse, Problem> {
            Ok(InstanceIssueCrucibleSnapshotRequestResponse::Ok(()))
        }
        async fn instance_migrate_status(
            &self,
            _: InstanceMigrateStatusRequest,
        ) -> Result<InstanceMigrateStatusResponse, Problem> {
            Err(Problem::new(404))
        }
        /// A raw handler: the WebSocket upgrade would be made here; the
        /// test only shows the request arrives untouched.
        async fn instance_serial(&self, request: &poem::Request, _: poem::Body) -> poem::Response {
            let key = request.headers().get("sec-websocket-key").and_then(|v| v.to_str().ok()).unwrap_or("none");
            poem::Response::builder().status(poem::http::StatusCode::IM_A_TEAPOT).body(format!("raw {key}"))
        }
        async fn instance_state_put(
            &self,
            body: InstanceStatePutRequestBody,
        ) -> Result<InstanceStatePutResponse, Problem> {
            match body.0 {
                InstanceStateRequested::Run => Ok(InstanceStatePutResponse::NoContent),
                _ => Err(Problem::new(409)),
            }
        }
        async fn instance_state_monitor(
            &self,
            _: InstanceStateMonitorRequest,
        ) -> Result<InstanceStateMonitorResponse, Problem> {
            Err(Problem::new(404))
        }
    }
}

/// propolis: a recursive oneOf without discriminator (its members named by
/// their implicit `type` tag), `4XX`/`5XX` ranges, an enum request body and
/// a WebSocket operation generated as a raw handler (`--raw`).
#[tokio::test]
async fn propolis_reads_recursive_unions_and_serves_a_raw_handler() {
    use fixture_propolis_server::VolumeConstructionRequest as Vcr;
    let app = Arc::new(propolis::Propolis::default());
    round_trips("propolis-server.json", &fixture_propolis_server::document(app.clone()));
    let cli = TestClient::new(fixture_propolis_server::app(app.clone()));
    let id = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    let url = json!({"type": "url", "block_size": 512, "id": id, "url": "http://x"});
    let file = json!({"type": "file", "block_size": 512, "id": id, "path": "/p"});
    let volume = json!({"type": "volume", "block_size": 512, "id": id, "sub_volumes": [url, {
        "type": "volume", "block_size": 512, "id": id, "sub_volumes": [], "read_only_parent": file}]});
    let props =
        json!({"bootrom_id": id, "description": "d", "id": id, "image_id": id, "memory": 1, "name": "n", "vcpus": 1});
    let disk = |vcr: Value| json!({"device": "nvme", "gen": 1, "name": "d", "read_only": false, "slot": 0, "volume_construction_request": vcr});
    let (s, _, b) = send(cli.put("/instance").body_json(&json!({"properties": props, "disks": [disk(volume)]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let disks = std::mem::take(&mut *app.disks.lock().unwrap());
    let Vcr::Volume(v) = &disks[0].volume_construction_request else { panic!("{disks:?}") };
    assert!(matches!(v.sub_volumes[0], Vcr::Url(_)), "{v:?}");
    let Vcr::Volume(inner) = &v.sub_volumes[1] else { panic!("{v:?}") };
    assert!(matches!(inner.read_only_parent.as_ref().and_then(|p| p.as_deref()), Some(Vcr::File(_))), "{inner:?}");
    // Nested 40 deep (serde_json's depth limit is 128): members are chosen
    // by their tag, never tried in turn, so this is linear, not 4^40.
    let mut deep = url.clone();
    for _ in 0..40 {
        deep = json!({"type": "volume", "block_size": 512, "id": id, "sub_volumes": [deep]});
    }
    let (s, _, b) = send(cli.put("/instance").body_json(&json!({"properties": props, "disks": [disk(deep)]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // A tag no member has, deep inside: 400 with the spec's error body.
    let bad = json!({"type": "volume", "block_size": 512, "id": id, "sub_volumes": [{"type": "tape", "id": id}]});
    let (s, ct, b) = send(cli.put("/instance").body_json(&json!({"properties": props, "disks": [disk(bad)]}))).await;
    assert_eq!((s, ct.as_str()), (StatusCode::BAD_REQUEST, "application/json"), "{b}");
    assert_eq!(b["request_id"], "r1", "{b}");
    // An enum as the whole body.
    let (s, _, b) = send(cli.put("/instance/state").body_json(&json!("Run"))).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, _, b) = send(cli.put("/instance/state").body_json(&json!("Fly"))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // The raw handler gets the request as sent and answers what it built.
    let resp = cli.get("/instance/serial").header("Sec-WebSocket-Key", "k1").send().await;
    resp.assert_status(StatusCode::IM_A_TEAPOT);
    resp.assert_text("raw k1").await;
}

/// Every public spec generates (propolis with its WebSocket operation as a
/// raw handler, as its fixture target does); the workspace build compiles
/// each server and client.
#[test]
fn every_public_spec_generates() {
    for (spec, raw) in [
        ("keeper.json", &[][..]),
        ("param-collision.json", &[]),
        ("museum.yaml", &[]),
        ("propolis-server.json", &["instance_serial".to_owned()]),
        ("buildomat.json", &[]),
    ] {
        let mut doc = xtask::codegen::load_spec(&public(spec)).unwrap();
        xtask::codegen::mark_raw(&mut doc, raw).unwrap();
        xtask::codegen::render_server(&doc, Path::new(spec), "x").unwrap_or_else(|e| panic!("{spec}: {e:#}"));
    }
    // Without `--raw`, propolis stops on the WebSocket upgrade and says how
    // to go on.
    let doc = xtask::codegen::load_spec(&public("propolis-server.json")).unwrap();
    let e = format!("{:#}", xtask::codegen::render_server(&doc, Path::new("p"), "x").unwrap_err());
    assert!(e.contains("#/paths/~1instance~1serial/get/responses/101") && e.contains("--raw instance_serial"), "{e}");
}
