//! A sync upstream speaking the paging protocol of `tasks::sync` (cursor = offset), on a poem
//! server bound to port 0, with scripted failure statuses and a log of every query.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use poem::{
    EndpointExt, Response, Route, Server, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    web::{Data, Query},
};
use serde_json::json;
use tokio::task::JoinHandle;

#[derive(Default)]
struct State {
    /// Records per type.
    total: usize,
    /// Per request, in order: `Some(status)` answers that status instead of a page.
    script: VecDeque<Option<u16>>,
    log: Vec<HashMap<String, String>>,
}

pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

#[handler]
fn records(Query(q): Query<HashMap<String, String>>, Data(state): Data<&Arc<Mutex<State>>>) -> Response {
    let mut st = state.lock().unwrap();
    st.log.push(q.clone());
    if let Some(Some(status)) = st.script.pop_front() {
        return Response::builder().status(StatusCode::from_u16(status).unwrap()).body("scripted failure");
    }
    let offset: usize = q.get("cursor").map_or(0, |c| c.parse().unwrap());
    let limit: usize = q["limit"].parse().unwrap();
    let kind = &q["type"];
    let end = (offset + limit).min(st.total);
    let records: Vec<_> = (offset..end)
        .map(|i| json!({ "id": format!("r{i}"), "updated_at": "2025-11-01T00:00:00Z", "data": { "i": i, "type": kind } }))
        .collect();
    let next = (end < st.total).then(|| end.to_string());
    Response::builder()
        .content_type("application/json")
        .body(json!({ "records": records, "next_cursor": next }).to_string())
}

impl Upstream {
    /// `total` records of every type; `script` overrides the first requests' answers.
    pub async fn start(total: usize, script: &[Option<u16>]) -> Upstream {
        let state = Arc::new(Mutex::new(State { total, script: script.iter().copied().collect(), log: Vec::new() }));
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let app = Route::new().at("/api/records", records).data(state.clone());
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        Upstream { addr, state, task }
    }

    /// The base URL (`SYNC_SOURCE_URL`); a path prefix, to check it is kept.
    pub fn url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    /// Every query received, in order.
    pub fn log(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
