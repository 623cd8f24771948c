//! The generic scenario against servers of foreign specs: the public
//! fixture specs served by their generated crates with conforming,
//! hand-written implementations (a stateful museum among them), and
//! servers that break their spec, which must fail.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::{path::PathBuf, sync::Arc};

use poem::{
    Endpoint, EndpointExt, IntoResponse, Route,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
};
use spec_contract::{Contract, Options, Report, Scenario, generic, report::Outcome};

fn public(name: &str) -> PathBuf {
    spec_contract::workspace_root().join("xtask/tests/fixtures/public").join(name)
}

/// Serves `app` on a free local port until the test ends; its base URL.
async fn serve(app: impl Endpoint + 'static) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(async move { poem::Server::new_with_acceptor(acceptor).run(app).await });
    format!("http://{addr}")
}

async fn run(spec: &str, base_url: String, token: Option<&str>) -> Report {
    let contract = Contract::load(&public(spec)).unwrap();
    assert_eq!(Scenario::Auto.resolve(&contract), Scenario::Generic, "{spec}");
    let opts = Options { base_url, token: token.map(str::to_owned), ..Options::default() };
    let report = generic::run(&contract, &opts).await.unwrap();
    spec_contract::print(&report, false);
    report
}

fn failures(r: &Report) -> Vec<String> {
    r.failed_checks()
        .map(|c| match &c.outcome {
            Outcome::Fail(why) => format!("{}: {}", c.name, why.join("; ")),
            _ => c.name.clone(),
        })
        .collect()
}

fn passed(r: &Report) -> Vec<&str> {
    r.checks.iter().filter(|c| c.outcome == Outcome::Pass).map(|c| c.name.as_str()).collect()
}

fn findings(r: &Report) -> Vec<String> {
    r.convention_findings().flat_map(|c| c.conventions.iter().map(move |f| format!("{}: {f}", c.name))).collect()
}

mod museum {
    use std::sync::Mutex;

    use fixture_museum_server::{rt::Problem, *};

    /// A museum keeping its events and tickets; `sloppy` renames what it
    /// stores and never forgets a deleted event (behaviour, not schema, faults).
    #[derive(Default)]
    pub struct Museum {
        pub sloppy: bool,
        pub events: Mutex<Vec<SpecialEvent>>,
        pub tickets: Mutex<Vec<uuid::Uuid>>,
    }

    impl Auth for Museum {
        type Principal = String;
        async fn authenticate_museum_placeholder_auth(
            &self,
            c: &rt::BasicCredentials,
            _: &rt::AuthContext,
        ) -> Result<String, Problem> {
            if c.username == "ann" && c.password == "open sesame" {
                Ok(c.username.clone())
            } else {
                Err(Problem::unauthorized())
            }
        }
    }

    impl ErrorPolicy for Museum {
        fn error(p: &Problem) -> Error {
            Error { type_: Some("about:blank".into()), title: Some(p.message().to_owned()) }
        }
    }

    impl Museum {
        fn find(&self, id: uuid::Uuid) -> Option<SpecialEvent> {
            self.events.lock().unwrap().iter().find(|e| e.event_id == Some(id)).cloned()
        }
    }

    impl EventsApi for Museum {
        async fn list_special_events(
            &self,
            _: String,
            _: ListSpecialEventsParams,
        ) -> Result<ListSpecialEventsResponse, Problem> {
            Ok(ListSpecialEventsResponse::Ok(self.events.lock().unwrap().clone()))
        }
        async fn create_special_event(
            &self,
            _: String,
            mut e: SpecialEvent,
        ) -> Result<CreateSpecialEventResponse, Problem> {
            e.event_id = Some(uuid::Uuid::new_v4());
            if self.sloppy {
                e.name = format!("{} (renamed)", e.name);
            }
            self.events.lock().unwrap().push(e.clone());
            Ok(CreateSpecialEventResponse::Created(e))
        }
        async fn get_special_event(
            &self,
            _: String,
            p: GetSpecialEventParams,
        ) -> Result<GetSpecialEventResponse, Problem> {
            self.find(p.event_id).map(GetSpecialEventResponse::Ok).ok_or_else(|| Problem::new(404))
        }
        async fn delete_special_event(
            &self,
            _: String,
            p: DeleteSpecialEventParams,
        ) -> Result<DeleteSpecialEventResponse, Problem> {
            let mut events = self.events.lock().unwrap();
            let before = events.len();
            if !self.sloppy {
                events.retain(|e| e.event_id != Some(p.event_id));
            }
            if events.len() == before && !self.sloppy {
                return Err(Problem::new(404));
            }
            Ok(DeleteSpecialEventResponse::NoContent)
        }
        async fn update_special_event(
            &self,
            _: String,
            p: UpdateSpecialEventParams,
            f: SpecialEventFields,
        ) -> Result<UpdateSpecialEventResponse, Problem> {
            let mut events = self.events.lock().unwrap();
            let e = events.iter_mut().find(|e| e.event_id == Some(p.event_id)).ok_or_else(|| Problem::new(404))?;
            if let Some(v) = f.name {
                e.name = v;
            }
            if let Some(v) = f.location {
                e.location = v;
            }
            if let Some(v) = f.event_description {
                e.event_description = v;
            }
            if let Some(v) = f.dates {
                e.dates = v;
            }
            if let Some(v) = f.price {
                e.price = v;
            }
            Ok(UpdateSpecialEventResponse::Ok(e.clone()))
        }
    }

    impl OperationsApi for Museum {
        async fn get_museum_hours(
            &self,
            _: String,
            _: GetMuseumHoursParams,
        ) -> Result<GetMuseumHoursResponse, Problem> {
            let day = MuseumDailyHours {
                date: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
                time_open: "09:00".into(),
                time_close: "18:00".into(),
            };
            Ok(GetMuseumHoursResponse::Ok(vec![day]))
        }
    }

    impl TicketsApi for Museum {
        async fn buy_museum_tickets(
            &self,
            _: String,
            t: BuyMuseumTickets,
        ) -> Result<BuyMuseumTicketsResponse, Problem> {
            let id = uuid::Uuid::new_v4();
            self.tickets.lock().unwrap().push(id);
            Ok(BuyMuseumTicketsResponse::Created(MuseumTicketsConfirmation {
                ticket_id: Some(id),
                ticket_date: t.ticket_date,
                ticket_type: t.ticket_type,
                event_id: t.event_id,
                message: "Museum general entry ticket purchased".into(),
                confirmation_code: "ticket-general-e5e5c6-dce78".into(),
            }))
        }
        async fn get_ticket_code(&self, _: String, p: GetTicketCodeParams) -> Result<GetTicketCodeResponse, Problem> {
            if self.tickets.lock().unwrap().contains(&p.ticket_id) {
                Ok(GetTicketCodeResponse::Ok(b"\x89PNG".to_vec().into()))
            } else {
                Err(Problem::new(404))
            }
        }
    }
}

/// Museum (3.1, HTTP basic, CRUD on special events): every step of the
/// CRUD sequence, the synthesized requests, the negative and the
/// missing-credential cases run and conform.
#[tokio::test]
async fn museum_conforms_end_to_end() {
    let base = serve(fixture_museum_server::app_at(Arc::new(museum::Museum::default()), "")).await;
    let report = run("museum.yaml", base, Some("ann:open sesame")).await;
    assert_eq!(failures(&report), Vec::<String>::new());
    assert!(report.passed(), "{}", report.summary());
    assert_eq!(findings(&report), Vec::<String>::new());
    let ok = passed(&report);
    for want in [
        "createSpecialEvent 201 creates an item",
        "getSpecialEvent 200 reads the created item",
        "listSpecialEvents 200 lists the items",
        "updateSpecialEvent 200 updates the item (PATCH)",
        "getSpecialEvent 200 reads the item after PATCH",
        "deleteSpecialEvent 204 deletes the item",
        "getSpecialEvent 404 reads the deleted item",
        "buyMuseumTickets 201 a request synthesized from the spec",
        // The ticket bought is the one whose code is asked for.
        "getTicketCode 200 a request synthesized from the spec",
        "getTicketCode 404 an id that does not exist",
        "getMuseumHours 200 a request synthesized from the spec",
        "deleteSpecialEvent 401 no credential",
        "deleteSpecialEvent 401 wrong credential",
    ] {
        assert!(ok.contains(&want), "{want:?} not among {ok:#?}");
    }
    let negatives = ok.iter().filter(|n| n.contains(" 400 invalid: ")).count();
    assert!(negatives >= 20, "{negatives} negative cases passed: {ok:#?}");
    // Only deleteSpecialEvent documents a status for a missing credential.
    let skipped: Vec<&str> =
        report.checks.iter().filter(|c| matches!(c.outcome, Outcome::Skip(_))).map(|c| c.name.as_str()).collect();
    assert!(skipped.contains(&"getMuseumHours missing credential"), "{skipped:#?}");
    // Keyword coverage is marked by generic runs too.
    let counts = report.coverage.counts();
    let done = |k: &str| counts.iter().find(|(c, _, _)| c.key() == k).map(|(_, d, _)| *d).unwrap();
    assert!(done("statuses") >= 18 && done("constraints") >= 25 && done("responses") >= 5, "{counts:?}");
    // And JUnit: a testcase per check.
    let junit = report.junit();
    assert!(junit.contains(r#"name="getSpecialEvent 404 reads the deleted item""#), "{junit}");
}

/// Without a token only what needs none runs; the rest is not reached,
/// which is no failure.
#[tokio::test]
async fn museum_without_a_token_sends_only_the_credential_cases() {
    let base = serve(fixture_museum_server::app_at(Arc::new(museum::Museum::default()), "")).await;
    let report = run("museum.yaml", base, None).await;
    assert_eq!(failures(&report), Vec::<String>::new());
    assert!(report.passed(), "{}", report.summary());
    assert_eq!(passed(&report), ["deleteSpecialEvent 401 no credential"]);
    assert!(report.table().contains("n/a createSpecialEvent 201: not reachable: "), "{}", report.table());
}

/// A server whose responses conform but whose behaviour does not: what is
/// read back differs from what was sent, a deleted item is still there.
#[tokio::test]
async fn museum_behaviour_findings() {
    let app = museum::Museum { sloppy: true, ..Default::default() };
    let base = serve(fixture_museum_server::app_at(Arc::new(app), "")).await;
    let report = run("museum.yaml", base, Some("ann:open sesame")).await;
    assert_eq!(failures(&report), Vec::<String>::new());
    let found = findings(&report);
    let has = |s: &str| found.iter().any(|f| f.contains(s));
    assert!(has("getSpecialEvent 200 reads the created item: behaviour: /name: sent \""), "{found:#?}");
    assert!(has("getSpecialEvent 200 reads the deleted item: behaviour: accepted with 200"), "{found:#?}");
    // Reported apart: they fail the run only when conventions are strict.
    assert!(report.passed());
    let mut strict = report;
    strict.strict_conventions = true;
    assert!(!strict.passed());
}

mod keeper {
    use fixture_keeper_server::{rt::Problem, *};

    /// Keeper documents only 201s; this one answers them all.
    pub struct Keeper;

    impl ErrorPolicy for Keeper {}

    impl DefaultApi for Keeper {
        async fn enrol(&self, _: EnrolParams, _: EnrolBody) -> Result<EnrolResponse, Problem> {
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
            Ok(ReportFinishResponse::Created(ReportResult { existed_already: false }))
        }
        async fn report_output(
            &self,
            _: ReportOutputParams,
            _: ReportOutputBody,
        ) -> Result<ReportOutputResponse, Problem> {
            Ok(ReportOutputResponse::Created(ReportResult2 { existed_already: false }))
        }
        async fn report_start(&self, _: ReportStartParams, _: ReportStartBody) -> Result<ReportStartResponse, Problem> {
            Ok(ReportStartResponse::Created(ReportResult3 { existed_already: false }))
        }
    }
}

/// Keeper: credentials in header parameters, only 201s documented. Every
/// operation runs; its negative cases are not sent (no 4xx to expect).
#[tokio::test]
async fn keeper_conforms() {
    let base = serve(fixture_keeper_server::app(Arc::new(keeper::Keeper))).await;
    let report = run("keeper.json", base, None).await;
    assert_eq!(failures(&report), Vec::<String>::new());
    assert!(report.passed(), "{}", report.summary());
    let ok = passed(&report);
    assert_eq!(ok.len(), 6, "{ok:#?}");
    assert!(ok.contains(&"ping 201 a request synthesized from the spec"), "{ok:#?}");
    let skipped = report.checks.iter().filter(|c| matches!(c.outcome, Outcome::Skip(_))).count();
    assert!(skipped >= 6, "{skipped}");
}

/// The same command against a server that breaks keeper's spec: a body
/// missing a required member and of the wrong type, an undocumented
/// status, a wrong media type. Each is a spec failure.
#[tokio::test]
async fn a_server_breaking_the_spec_fails() {
    let app = Route::new()
        .at(
            "/ping",
            poem::get(poem::endpoint::make_sync(|_| {
                poem::web::Json(serde_json::json!({"host": 1})).with_status(StatusCode::CREATED)
            })),
        )
        .at("/enrol", poem::post(poem::endpoint::make_sync(|_| StatusCode::OK)))
        .at("/global/jobs", poem::get(poem::endpoint::make_sync(|_| "summary".with_status(StatusCode::CREATED))))
        .map_to_response();
    let base = serve(app).await;
    let report = run("keeper.json", base, None).await;
    let failed = failures(&report);
    let has = |s: &str| failed.iter().any(|f| f.contains(s));
    assert!(has("ping 201 /host: expected string, got integer 1"), "{failed:#?}");
    assert!(has("ping 201 /ok"), "{failed:#?}");
    assert!(
        has("enrol 200 a request synthesized from the spec: enrol 200 status: expected a documented status (201)"),
        "{failed:#?}"
    );
    assert!(has("global_jobs 201 a request synthesized from the spec: global_jobs 201 Content-Type"), "{failed:#?}");
    assert!(!report.passed());
    // What the failing operations answered instead keeps their statuses as gaps.
    assert!(report.gaps().iter().any(|g| g.starts_with("ping 201: ")), "{:?}", report.gaps());
    assert!(report.summary().starts_with(&format!("{} spec failures", failed.len())), "{}", report.summary());
}

mod propolis {
    use fixture_propolis_server::{rt::Problem, *};

    /// No instance exists: reads answer 404 in the `4XX` range, the state
    /// can be set to `Run` only.
    pub struct Propolis;

    impl ErrorPolicy for Propolis {
        fn error(p: &Problem) -> Error {
            Error {
                error_code: p.code.map(|c| c.to_string()),
                message: p.message().to_owned(),
                request_id: "r1".into(),
            }
        }
    }

    impl DefaultApi for Propolis {
        async fn instance_get(&self) -> Result<InstanceGetResponse, Problem> {
            Err(Problem::new(404))
        }
        async fn instance_ensure(&self, _: InstanceEnsureRequest) -> Result<InstanceEnsureResponse, Problem> {
            Ok(InstanceEnsureResponse::Created(InstanceEnsureResponseBody { migrate: None }))
        }
        async fn instance_issue_crucible_snapshot_request(
            &self,
            _: InstanceIssueCrucibleSnapshotRequestParams,
        ) -> Result<InstanceIssueCrucibleSnapshotRequestResponse, Problem> {
            Err(Problem::new(404))
        }
        async fn instance_migrate_status(
            &self,
            _: InstanceMigrateStatusRequest,
        ) -> Result<InstanceMigrateStatusResponse, Problem> {
            Err(Problem::new(404))
        }
        /// Not an upgrade request: refused in the spec's error shape.
        async fn instance_serial(&self, _: &poem::Request, _: poem::Body) -> poem::Response {
            let body = serde_json::json!({"message": "not a WebSocket upgrade", "request_id": "r1"});
            poem::Response::builder()
                .status(poem::http::StatusCode::BAD_REQUEST)
                .content_type("application/json")
                .body(body.to_string())
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

/// propolis: `4XX`/`5XX` ranges, bodies on GETs, a recursive oneOf, an
/// enum as the whole body, a raw WebSocket operation.
#[tokio::test]
async fn propolis_conforms() {
    let base = serve(fixture_propolis_server::app(Arc::new(propolis::Propolis))).await;
    let report = run("propolis-server.json", base, None).await;
    assert_eq!(failures(&report), Vec::<String>::new());
    assert!(report.passed(), "{}", report.summary());
    let ok = passed(&report);
    assert!(ok.contains(&"instance_ensure 201 a request synthesized from the spec"), "{ok:#?}");
    assert!(ok.contains(&"instance_get 404 a request synthesized from the spec"), "{ok:#?}");
    assert!(ok.iter().filter(|n| n.contains(" invalid: ")).count() >= 10, "{ok:#?}");
}

mod collision {
    use fixture_param_collision_server::{rt::Problem, *};

    pub struct Keys;

    impl ErrorPolicy for Keys {}

    impl DefaultApi for Keys {
        async fn key_get(&self, _: KeyGetParams) -> Result<KeyGetResponse, Problem> {
            Ok(KeyGetResponse::Ok)
        }
    }
}

/// param-collision: parameters named like each other and like client
/// variables, an operationId with a dot.
#[tokio::test]
async fn param_collision_conforms() {
    let base = serve(fixture_param_collision_server::app(Arc::new(collision::Keys))).await;
    let report = run("param-collision.json", base, None).await;
    assert_eq!(failures(&report), Vec::<String>::new());
    assert!(report.passed(), "{}", report.summary());
    assert_eq!(passed(&report), ["key.get 200 a request synthesized from the spec"]);
}

/// `auto` keeps this project's scenario for this project's spec.
#[test]
fn auto_picks_the_project_scenario_for_the_project_spec() {
    let contract = Contract::workspace().unwrap();
    assert_eq!(Scenario::Auto.resolve(&contract), Scenario::Project);
    assert_eq!(Scenario::Generic.resolve(&contract), Scenario::Generic);
    assert_eq!(Scenario::parse("auto"), Ok(Scenario::Auto));
    assert!(Scenario::parse("other").is_err());
}

mod security {
    use fixture_security_server::{rt, *};

    /// Accepts the one token `u:p` through every scheme (as `u`/`p` for
    /// basic), with every scope and role.
    pub struct Guard;

    fn check(t: &str) -> Result<String, rt::Problem> {
        if t == "u:p" { Ok(t.to_owned()) } else { Err(rt::Problem::unauthorized().with_detail("bad credential")) }
    }

    impl Auth for Guard {
        type Principal = String;
        async fn authenticate_key_header(&self, k: &str, _: &rt::AuthContext) -> Result<String, rt::Problem> {
            check(k)
        }
        async fn authenticate_key_query(&self, k: &str, _: &rt::AuthContext) -> Result<String, rt::Problem> {
            check(k)
        }
        async fn authenticate_key_cookie(&self, k: &str, _: &rt::AuthContext) -> Result<String, rt::Problem> {
            check(k)
        }
        async fn authenticate_bearer(&self, t: &str, _: &rt::AuthContext) -> Result<String, rt::Problem> {
            check(t)
        }
        async fn authenticate_basic(
            &self,
            c: &rt::BasicCredentials,
            _: &rt::AuthContext,
        ) -> Result<String, rt::Problem> {
            check(&format!("{}:{}", c.username, c.password))
        }
        async fn authenticate_oauth(&self, t: &str, _: &rt::AuthContext) -> Result<String, rt::Problem> {
            check(t)
        }
        async fn authenticate_oidc(&self, t: &str, _: &rt::AuthContext) -> Result<String, rt::Problem> {
            check(t)
        }
    }

    impl ErrorPolicy for Guard {
        fn problem(p: &rt::Problem) -> Problem {
            Problem { error: p.title.clone(), detail: p.detail.clone() }
        }
    }

    fn who(p: Option<String>) -> Who {
        Who { principal: p }
    }

    impl DefaultApi for Guard {
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
        async fn list_items(&self, p: String, _: ListItemsParams) -> Result<ListItemsResponse, rt::Problem> {
            Ok(ListItemsResponse::Ok(who(Some(p))))
        }
        async fn create_item(&self, p: String, _: CreateItemRequest) -> Result<CreateItemResponse, rt::Problem> {
            Ok(CreateItemResponse::Created(who(Some(p))))
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
        async fn undocumented(&self, p: String, _: UndocumentedRequest) -> Result<UndocumentedResponse, rt::Problem> {
            Ok(UndocumentedResponse::Created(who(Some(p))))
        }
    }
}

/// The token goes where each operation's requirement says: apiKey in a
/// header, the query and a cookie, bearer, basic (`user:password`),
/// OAuth2 and OpenID Connect as bearer, AND of two keys; without it, or
/// with a wrong one, each operation documenting a 401 gets it.
#[tokio::test]
async fn every_security_kind_carries_the_token() {
    let base = serve(fixture_security_server::app(Arc::new(security::Guard))).await;
    let contract =
        Contract::load(&spec_contract::workspace_root().join("xtask/tests/fixtures/security/openapi.yaml")).unwrap();
    // The base URL names the base path, as the spec's server URL does.
    let opts = Options { base_url: format!("{base}/v2"), token: Some("u:p".into()), ..Options::default() };
    let report = generic::run(&contract, &opts).await.unwrap();
    spec_contract::print(&report, false);
    assert_eq!(failures(&report), Vec::<String>::new());
    assert!(report.passed(), "{}", report.summary());
    let ok = passed(&report);
    for op in [
        "globalDefault",
        "apiKeyHeader",
        "apiKeyQuery",
        "apiKeyCookie",
        "bearerOnly",
        "basicOnly",
        "listItems",
        "adminOnly",
        "either",
        "both",
        "optional",
        "oidc",
    ] {
        let accepted = format!("{op} 200 a request synthesized from the spec");
        assert!(ok.contains(&accepted.as_str()), "{accepted:?} not among {ok:#?}");
        if op != "optional" {
            for how in ["no credential", "wrong credential"] {
                assert!(ok.iter().any(|n| n.starts_with(op) && n.ends_with(how)), "{op} {how}: {ok:#?}");
            }
        }
    }
    assert!(ok.contains(&"createItem 201 a request synthesized from the spec"), "{ok:#?}");
    assert!(ok.contains(&"createItem 400 invalid: name maxLength"), "{ok:#?}");
}
