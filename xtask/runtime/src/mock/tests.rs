use super::*;
use serde_json::json;

fn doc() -> Value {
    json!({
        "openapi": "3.0.3",
        "paths": {
            "/things": {"post": {"responses": {"201": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}},
                        "get": {"responses": {"200": {"content": {"application/json": {"schema": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}}, "next": {"type": "string"}, "total": {"type": "integer"}}}}}}, "400": {"description": "bad"}}}},
            "/things/{thingId}": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}, "404": {"description": "none"}}},
                                   "delete": {"responses": {"204": {"description": "gone"}}},
                                   "put": {"responses": {"200": {"headers": {"ETag": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}, "412": {"description": "stale"}}}}
        },
        "components": {"schemas": {"Thing": {"type": "object", "required": ["thingId", "name"], "properties": {
            "thingId": {"type": "integer", "minimum": 1},
            "name": {"type": "string", "minLength": 3, "maxLength": 5},
            "secret": {"type": "string", "writeOnly": true},
            "kind": {"type": "string", "enum": ["a", "b"]}
        }}}}
    })
}

fn call<'a>(method: &'a str, template: &'a str, params: Value, body: Option<Value>) -> Call<'a> {
    Call { method, template, params, body, media: None }
}

#[test]
fn create_read_list_delete() {
    let m = Mock::new(doc(), 7).expect("mock");
    let created = m
        .answer(call("post", "/things", json!({}), Some(json!({"name": "abc", "secret": "s"}))), |r| Ok(r.clone()))
        .expect("created");
    assert_eq!(created.status, 201);
    assert_eq!(created.body["name"], "abc");
    assert!(created.body.get("secret").is_none(), "writeOnly never answered");
    let id = created.body["thingId"].clone();
    let read = m.answer(call("get", "/things/{thingId}", json!({"thingId": id}), None), |r| Ok(r.clone()));
    assert_eq!(read.expect("read").body, created.body);
    let list = m.answer(call("get", "/things", json!({}), None), |r| Ok(r.clone())).expect("list");
    assert_eq!(list.body["items"], json!([created.body]));
    m.answer(call("delete", "/things/{thingId}", json!({"thingId": id}), None), |r| Ok(r.clone())).expect("gone");
    let again = m.answer(call("get", "/things/{thingId}", json!({"thingId": id}), None), |r| Ok(r.clone()));
    assert_eq!(again.expect_err("missing").status, 404);
}

#[test]
fn links_name_what_an_operation_created() {
    let mut d = doc();
    d["paths"]["/jobs"] = json!({"post": {"operationId": "submit", "responses": {"202": {
        "content": {"application/json": {"schema": {"type": "object", "required": ["job"], "properties": {"job": {"type": "string", "format": "uuid"}}}}},
        "links": {"Read": {"operationId": "getJob", "parameters": {"jobId": "$response.body#/job"}}}}}}});
    d["paths"]["/jobs/{jobId}"] = json!({"get": {"operationId": "getJob", "responses": {
        "200": {"content": {"application/json": {"schema": {"type": "object", "required": ["jobId", "state"], "properties": {"jobId": {"type": "string"}, "state": {"type": "string", "enum": ["queued"]}}}}}},
        "404": {"description": "none"}}}});
    let m = Mock::new(d, 2).expect("mock");
    let submitted = m.answer(call("post", "/jobs", json!({}), None), |r| Ok(r.body.clone())).expect("submitted");
    let job = submitted["job"].clone();
    let read = m.answer(call("get", "/jobs/{jobId}", json!({"jobId": job}), None), |r| Ok(r.body.clone()));
    assert_eq!(read.expect("linked")["jobId"], job);
    let other = m.answer(call("get", "/jobs/{jobId}", json!({"jobId": "nope"}), None), |r| Ok(r.body.clone()));
    assert_eq!(other.expect_err("never created").status, 404);
}

#[test]
fn lists_page_by_the_cursors_they_issue() {
    let m = Mock::new(doc(), 9).expect("mock");
    for _ in 0..3 {
        m.answer(call("post", "/things", json!({}), None), |r| Ok(r.clone())).expect("created");
    }
    let page = |params| m.answer(call("get", "/things", params, None), |r| Ok(r.body.clone()));
    let first = page(json!({"limit": 2})).expect("first page");
    assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["total"], 3);
    let token = first["next"].as_str().expect("more follow").to_owned();
    let second = page(json!({"limit": 2, "page_token": token})).expect("second page");
    assert_eq!(second["items"].as_array().map(Vec::len), Some(1));
    assert!(second.get("next").is_none(), "the last page: {second}");
    assert_eq!(page(json!({"page_token": "forged"})).expect_err("not ours").status, 400);
}

#[test]
fn if_match_names_the_version() {
    let m = Mock::new(doc(), 5).expect("mock");
    let created = m.answer(call("post", "/things", json!({}), None), |r| Ok(r.clone())).expect("created");
    let id = created.body["thingId"].clone();
    let put = |tag: &str| {
        let params = json!({"thingId": id, "If-Match": tag});
        m.answer(call("put", "/things/{thingId}", params, Some(json!({"name": "new"}))), |r| Ok(r.clone()))
    };
    let first = put("\"v1\"").expect("the current version");
    assert_eq!(first.headers["ETag"], "\"v2\"");
    assert_eq!(first.body["name"], "new");
    assert_eq!(put("\"v1\"").expect_err("stale").status, 412);
    put("*").expect("any version");
}

#[test]
fn refused_replies_are_synthesized_again() {
    let m = Mock::new(doc(), 1).expect("mock");
    // A check that accepts only the second kind: the retries reach it.
    let r = m.answer(call("get", "/things/{thingId}", json!({"thingId": 99}), None), |r| Ok(r.clone()));
    assert!(r.is_err(), "nothing created yet");
    let created = m
        .answer(call("post", "/things", json!({}), None), |r| {
            if r.body["kind"] == "b" { Ok(r.clone()) } else { Err("kind".into()) }
        })
        .expect("a later attempt");
    assert_eq!(created.body["kind"], "b");
    let name = created.body["name"].as_str().expect("name");
    assert!((3..=5).contains(&name.chars().count()), "{name}");
}

#[test]
fn same_seed_same_bodies() {
    let run = |seed| {
        let m = Mock::new(doc(), seed).expect("mock");
        (0..5)
            .map(|_| m.answer(call("post", "/things", json!({}), None), |r| Ok(r.body.clone())).expect("ok"))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

#[test]
fn store_is_bounded() {
    let mut s = Store::default();
    for i in 0..MAX_RESOURCES + 5 {
        s.insert(("/c".into(), i.to_string()), Value::Null);
    }
    assert_eq!(s.items.len(), MAX_RESOURCES);
    assert_eq!(s.order.len(), MAX_RESOURCES);
    assert!(!s.items.contains_key(&("/c".to_owned(), "0".to_owned())), "the oldest went first");
}
