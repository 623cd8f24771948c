//! A minimal SMTP server on a tokio listener: enough real SMTP (EHLO, MAIL, RCPT, DATA with
//! dot-unstuffing, RSET, NOOP, QUIT) for lettre, with scripted replies to the end of DATA.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// A message the server accepted (answered 2xx at the end of DATA).
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
}

impl Received {
    /// The value of header `name` (case-insensitive, folded lines joined).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut found: Option<String> = None;
        let mut in_it = false;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if in_it && let Some(v) = found.as_mut() {
                    v.push_str(line);
                }
                continue;
            }
            in_it = false;
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
                && found.is_none()
            {
                found = Some(v.trim().to_owned());
                in_it = true;
            }
        }
        found
    }
}

#[derive(Default)]
struct State {
    /// Replies to the end of DATA, in order; "250 OK" once used up.
    data_replies: VecDeque<String>,
    accepted: Vec<Received>,
    /// Messages transferred (accepted or not).
    transfers: usize,
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl SmtpServer {
    pub async fn start(data_replies: &[&str]) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            data_replies: data_replies.iter().map(|s| (*s).to_owned()).collect(),
            ..State::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            // Owned by this task: aborting it (on drop) ends every connection too.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(session(stream, shared.clone()));
            }
        });
        SmtpServer { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn accepted(&self) -> Vec<Received> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn transfers(&self) -> usize {
        self.state.lock().unwrap().transfers
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn address(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg.find('>').unwrap_or(arg.len());
    arg[start..end].to_owned()
}

async fn reply(w: &mut tokio::net::tcp::OwnedWriteHalf, s: &str) -> bool {
    w.write_all(s.as_bytes()).await.is_ok()
}

async fn session(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if !reply(&mut write, "220 test.invalid ESMTP ready\r\n").await {
        return;
    }
    let (mut from, mut rcpt) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_owned();
        let verb = command.split([' ', ':']).next().unwrap_or_default().to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" => "250-test.invalid\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".to_owned(),
            "HELO" | "NOOP" => "250 OK\r\n".to_owned(),
            "RSET" => {
                (from, rcpt) = (String::new(), Vec::new());
                "250 OK\r\n".to_owned()
            }
            "MAIL" => {
                from = address(&command);
                "250 OK\r\n".to_owned()
            }
            "RCPT" => {
                rcpt.push(address(&command));
                "250 OK\r\n".to_owned()
            }
            "DATA" => {
                if !reply(&mut write, "354 end with <CRLF>.<CRLF>\r\n").await {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let mut st = state.lock().unwrap();
                st.transfers += 1;
                let answer = st.data_replies.pop_front().unwrap_or_else(|| "250 OK queued".to_owned());
                if answer.starts_with('2') {
                    st.accepted.push(Received { mail_from: from.clone(), rcpt_to: rcpt.clone(), data });
                }
                (from, rcpt) = (String::new(), Vec::new());
                format!("{answer}\r\n")
            }
            "QUIT" => {
                let _ = reply(&mut write, "221 bye\r\n").await;
                return;
            }
            _ => "500 unknown command\r\n".to_owned(),
        };
        if !reply(&mut write, &answer).await {
            return;
        }
    }
}
