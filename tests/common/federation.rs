//! The federation part of the harness: a member server runs keyreg and
//! keysync; members are linked into a topology and waited on until their
//! flat keyrings agree.
#![allow(dead_code)] // each test uses its own part

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, plain_mail, send_signal, Gpg, Server};
use crate::sync::Node;

/// One server: its keysync node and its keyreg daemon.
pub struct Member {
    pub node: Node,
    keyreg: Option<Child>,
}

impl Member {
    pub fn new(name: &str) -> Member {
        Member {
            node: Node::new(name),
            keyreg: None,
        }
    }

    pub fn server(&self) -> &Server {
        &self.node.server
    }

    pub fn start(&mut self) {
        self.node.start();
        self.start_keyreg();
    }

    pub fn start_keyreg(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.server().path("keyreg.log"))
            .unwrap();
        let child = Command::new(bin("keyreg"))
            .arg("--config")
            .arg(&self.server().config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.keyreg = Some(child);
    }

    /// Stops keysync and keyreg with SIGTERM.
    pub fn stop(&mut self) {
        self.node.stop();
        if let Some(mut child) = self.keyreg.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// Sends keyreg the signal `name` (`STOP`, `CONT`).
    pub fn signal_keyreg(&self, name: &str) {
        if let Some(child) = &self.keyreg {
            send_signal(&child.id().to_string(), name);
        }
    }

    pub fn crash_keyreg(&mut self) {
        if let Some(mut child) = self.keyreg.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn logs(&self) -> String {
        let keyreg = std::fs::read_to_string(self.server().path("keyreg.log")).unwrap_or_default();
        format!(
            "--- {} keysync:\n{}\n--- keyreg:\n{keyreg}",
            self.node.name,
            self.node.log()
        )
    }

    /// The flat keyring without its date line.
    pub fn flat(&self) -> String {
        let run = self.server().run("db2flat", &[], b"");
        assert_eq!(run.code, 0, "db2flat: {}", run.stderr);
        let text = std::fs::read_to_string(self.server().path("pub/pubkeys.txt")).unwrap();
        text.lines()
            .filter(|line| !line.starts_with("# Created on"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn mail(&self, queue: &str, message: &[u8]) {
        self.server().mail(queue, message);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.crash_keyreg();
        self.node.crash();
    }
}

/// Links each member to the ones `edges` names (both ways).
pub fn link(members: &mut [Member], edges: &[(usize, usize)], extra: &[&str]) {
    let nodes: Vec<(String, u16, String)> = members
        .iter()
        .map(|m| (m.node.name.clone(), m.node.port, m.node.pin.clone()))
        .collect();
    for (index, member) in members.iter_mut().enumerate() {
        let mut text = format!("{}\n", extra.get(index).copied().unwrap_or(""));
        let peers = edges.iter().filter_map(|&(a, b)| match index {
            _ if a == index => Some(b),
            _ if b == index => Some(a),
            _ => None,
        });
        for (priority, peer) in peers.enumerate() {
            let (name, port, pin) = &nodes[peer];
            text.push_str(&format!(
                "[[sync.peer]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\npin = \"{pin}\"\npriority = {priority}\n"
            ));
        }
        let base = std::fs::read_to_string(&member.server().config).unwrap();
        let base = base.split("\n[[sync.peer]]").next().unwrap().to_string();
        std::fs::write(&member.server().config, format!("{base}\n{text}")).unwrap();
    }
}

/// Waits until every member's flat keyring is the same and holds each of
/// `present` and none of `absent`; the common keyring.
pub fn converge(members: &[Member], present: &[&str], absent: &[&str], within: Duration) -> String {
    let started = Instant::now();
    loop {
        let flats: Vec<String> = members.iter().map(Member::flat).collect();
        let same = flats.iter().all(|flat| *flat == flats[0]);
        let complete = present.iter().all(|p| flats[0].contains(p)) && !absent.iter().any(|a| flats[0].contains(a));
        if same && complete {
            return flats[0].clone();
        }
        if started.elapsed() > within {
            let logs: Vec<String> = members.iter().map(Member::logs).collect();
            panic!(
                "no convergence in {within:?} (same: {same}, complete: {complete}):\n{}\n{}",
                flats.join("\n=====\n"),
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Registers a new key for `user_id` by mail at `member`; its fingerprint.
pub fn register(member: &Member, gpg: &Gpg, from: &str, user_id: &str) -> String {
    let key = gpg.key(user_id, "ed25519");
    member.mail("add", &plain_mail(from, &key));
    let email = user_id.rsplit_once('<').unwrap().1.trim_end_matches('>');
    gpg.fingerprint(email)
}
