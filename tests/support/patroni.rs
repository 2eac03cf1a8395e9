//! A real HA cluster for tests (issue 29, item 1): two PostgreSQL nodes
//! under Patroni, one etcd, and HAProxy in front: one port routing to the
//! primary, one to the replica, each by Patroni's REST health checks
//! (`/primary`, `/replica`). Short Patroni timings (ttl 6 s, loop_wait 1 s,
//! retry_timeout 2 s) make a failover take seconds. Everything lives in a temp
//! dir and is killed (by pid) and removed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Why the HA tests cannot run here, if they cannot (a missing program).
pub fn ha_unavailable() -> Option<String> {
    for (program, package) in
        [("patroni", "patroni"), ("patronictl", "patroni"), ("etcd", "etcd-server"), ("haproxy", "haproxy")]
    {
        let found = ["/usr/bin", "/usr/sbin", "/usr/local/bin"].iter().any(|d| PathBuf::from(d).join(program).exists());
        if !found {
            return Some(format!("{program} not installed (Debian package {package}; scripts/test installs it)"));
        }
    }
    (!PathBuf::from(PG_BIN).join("postgres").exists()).then(|| format!("no PostgreSQL 15 in {PG_BIN}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One Patroni node: its ports and its Patroni process, when running.
struct Node {
    name: String,
    pg_port: u16,
    rest_port: u16,
    patroni: Option<Child>,
}

/// The cluster.
pub struct HaCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    etcd: Child,
    haproxy: Child,
    primary_port: u16,
    replica_port: u16,
}

impl HaCluster {
    /// Starts etcd, two Patroni nodes (`synchronous_mode` as given) and
    /// HAProxy, and waits until the cluster has a leader and a streaming
    /// standby (in synchronous mode: the synchronous standby).
    pub async fn start(synchronous: bool) -> HaCluster {
        let dir = std::env::temp_dir().join(format!("winchester-ha-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let (client, peer) = (free_port(), free_port());
        let etcd = Command::new("etcd")
            .args(["--name", "e", "--data-dir"])
            .arg(dir.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-cluster=e=http://127.0.0.1:{peer}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("etcd.log")).unwrap())
            .spawn()
            .expect("start etcd");
        let nodes: Vec<Node> = (1..=2)
            .map(|i| Node { name: format!("node{i}"), pg_port: free_port(), rest_port: free_port(), patroni: None })
            .collect();
        let scope = dir.file_name().unwrap().to_string_lossy().to_string();
        for node in &nodes {
            let home = dir.join(&node.name);
            std::fs::create_dir_all(&home).unwrap();
            std::fs::write(home.join("patroni.yml"), patroni_yaml(&scope, node, &home, client, synchronous)).unwrap();
        }
        let (primary_port, replica_port) = (free_port(), free_port());
        std::fs::write(dir.join("haproxy.cfg"), haproxy_cfg(&nodes, primary_port, replica_port)).unwrap();
        if as_root() {
            assert!(Command::new("chown").args(["-R", "postgres:"]).arg(&dir).status().unwrap().success());
        }
        let haproxy = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(dir.join("haproxy.cfg"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
            .spawn()
            .expect("start haproxy");
        let mut cluster = HaCluster { dir, nodes, etcd, haproxy, primary_port, replica_port };
        cluster.start_node(0);
        cluster.wait(Duration::from_secs(60), "node1 leads", |c| c.rest(0, "primary")).await;
        cluster.start_node(1);
        let role = if synchronous { "sync" } else { "replica" };
        cluster.wait(Duration::from_secs(60), "node2 streams", |c| c.rest(1, role)).await;
        cluster.wait_routed().await;
        cluster
    }

    /// Starts node `i`'s Patroni (which starts its PostgreSQL).
    pub fn start_node(&mut self, i: usize) {
        let home = self.dir.join(&self.nodes[i].name);
        let mut cmd = Command::new("patroni");
        cmd.arg(home.join("patroni.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(home.join("patroni.log")).unwrap());
        if as_root() {
            use std::os::unix::process::CommandExt;
            let (uid, gid) = postgres_ids();
            cmd.uid(uid).gid(gid).env("HOME", &home);
        }
        self.nodes[i].patroni = Some(cmd.spawn().expect("start patroni"));
    }

    /// The node that is primary now, by Patroni's REST API.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.rest(i, "primary"))
    }

    /// kill -9 of node `i`: its Patroni, its postmaster and every backend
    /// (the postmaster's process group), as a machine lost would.
    pub fn kill_node(&mut self, i: usize) {
        let pid_file = self.dir.join(&self.nodes[i].name).join("data/postmaster.pid");
        let postmaster =
            std::fs::read_to_string(pid_file).ok().and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
        if let Some(mut p) = self.nodes[i].patroni.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if let Some(pm) = postmaster {
            // Patroni starts the postmaster in a session (and process group)
            // of its own, which its backends share.
            let group = process_group(pm);
            let _ = Command::new("kill").args(["-9", &pm.to_string()]).stderr(Stdio::null()).status();
            if let Some(group) = group {
                let _ = Command::new("kill").args(["-9", "--", &format!("-{group}")]).stderr(Stdio::null()).status();
            }
        }
    }

    /// Node `i`'s Patroni REST endpoint `check` answers 200 (`primary`,
    /// `replica`, `sync`...).
    pub fn rest(&self, i: usize, check: &str) -> bool {
        let url = format!("http://127.0.0.1:{}/{check}", self.nodes[i].rest_port);
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "-m", "2", &url])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// `patronictl ARGS` on the cluster; panics unless it succeeds.
    pub fn patronictl(&self, args: &[&str]) -> String {
        let config = self.dir.join(self.nodes.iter().find(|n| n.patroni.is_some()).unwrap().name.clone());
        let out = Command::new("patronictl")
            .arg("-c")
            .arg(config.join("patroni.yml"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run patronictl");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "patronictl {args:?}: {text}");
        text
    }

    /// Waits (up to `limit`) for `ok`; panics with `what` and the logs otherwise.
    pub async fn wait(&self, limit: Duration, what: &str, ok: impl Fn(&HaCluster) -> bool) {
        let start = Instant::now();
        while !ok(self) {
            assert!(start.elapsed() < limit, "{what}: not within {limit:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until HAProxy's primary port reaches a writable server.
    pub async fn wait_routed(&self) {
        let start = Instant::now();
        while !self.writable().await {
            assert!(start.elapsed() < Duration::from_secs(60), "HAProxy routes to no primary\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether a connection through HAProxy's primary port reaches a primary.
    pub async fn writable(&self) -> bool {
        let url = self.url();
        let connect = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(1))
            .connect(&url);
        let Ok(Ok(pool)) = tokio::time::timeout(Duration::from_secs(2), connect).await else { return false };
        let ok =
            sqlx::query_scalar::<_, bool>("SELECT NOT pg_is_in_recovery()").fetch_one(&pool).await.unwrap_or(false);
        pool.close().await;
        ok
    }

    /// The `postgres` database through HAProxy's primary port (`database.url`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.primary_port)
    }

    /// The `postgres` database through HAProxy's replica port (`database.read_url`).
    pub fn read_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.replica_port)
    }

    /// The tail of every log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut files = vec![self.dir.join("etcd.log"), self.dir.join("haproxy.log")];
        files.extend(self.nodes.iter().map(|n| self.dir.join(&n.name).join("patroni.log")));
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {}\n", f.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
        for child in [&mut self.haproxy, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The process group of `pid` (from /proc), if it is running.
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp ...
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

fn as_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// The uid and gid of the `postgres` user (the server refuses to run as root).
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "postgres"]).output().expect("id postgres");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("a postgres user")
    };
    (id("-u"), id("-g"))
}

fn patroni_yaml(scope: &str, node: &Node, home: &std::path::Path, etcd: u16, synchronous: bool) -> String {
    let home = home.display();
    format!(
        r#"scope: {scope}
namespace: /winchester-test/
name: {name}
log: {{level: INFO}}
restapi: {{listen: 127.0.0.1:{rest}, connect_address: 127.0.0.1:{rest}}}
etcd3: {{hosts: 127.0.0.1:{etcd}}}
bootstrap:
  dcs:
    ttl: 6
    loop_wait: 1
    retry_timeout: 2
    maximum_lag_on_failover: 1048576
    synchronous_mode: {synchronous}
    postgresql:
      use_pg_rewind: true
      parameters: {{wal_level: replica, hot_standby: "on", max_wal_senders: 10, max_replication_slots: 10, wal_log_hints: "on", max_connections: 200}}
  initdb: [{{encoding: UTF8}}, {{locale: C}}]
  pg_hba:
    - local all all trust
    - host replication postgres 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {home}/data
  bin_dir: {PG_BIN}
  pgpass: {home}/pgpass
  authentication:
    superuser: {{username: postgres}}
    replication: {{username: postgres}}
  parameters: {{unix_socket_directories: "{home}"}}
"#,
        name = node.name,
        rest = node.rest_port,
        pg = node.pg_port,
    )
}

fn haproxy_cfg(nodes: &[Node], primary: u16, replica: u16) -> String {
    let mut cfg = String::from(
        "global\n  maxconn 500\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30m\n  timeout server 30m\n  timeout check 1s\n",
    );
    for (name, port, check) in [("primary", primary, "/primary"), ("replica", replica, "/replica")] {
        cfg.push_str(&format!(
            "listen {name}\n  bind 127.0.0.1:{port}\n  option httpchk\n  http-check send meth OPTIONS uri {check}\n  http-check expect status 200\n  default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions\n"
        ));
        for n in nodes {
            cfg.push_str(&format!("  server {} 127.0.0.1:{} check port {}\n", n.name, n.pg_port, n.rest_port));
        }
    }
    cfg
}
