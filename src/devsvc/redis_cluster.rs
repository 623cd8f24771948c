//! A private Redis Cluster: cluster-enabled [`PrivateRedis`] nodes joined by
//! `redis-cli --cluster create`, for tests and drills of the cluster mode.

use super::*;

/// Masters and their replicas, stopped (and their dirs removed) when dropped.
pub struct PrivateRedisCluster {
    /// The first `masters` were created as masters; a failover may have changed that since.
    pub nodes: Vec<PrivateRedis>,
    masters: usize,
}

impl PrivateRedisCluster {
    /// `masters` masters with `replicas` replicas each, AOF on every node (so a restarted node
    /// keeps its data), a 1 s node timeout (a dead master is replaced within a few seconds).
    /// Returns once every node reports `cluster_state:ok` and knows every other node.
    pub fn start(masters: usize, replicas: usize) -> anyhow::Result<Self> {
        let total = masters * (1 + replicas);
        let nodes = (0..total).map(|_| PrivateRedis::cluster_node(true)).collect::<anyhow::Result<Vec<_>>>()?;
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        Launch::new("redis-cli")
            .hint(INSTALL_HINT)
            .args(["--cluster", "create"])
            .args(&addrs)
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes")
            .output()
            .context("creating the cluster with redis-cli")?;
        let cluster = PrivateRedisCluster { nodes, masters };
        cluster.wait_until_ok(START_TIMEOUT)?;
        Ok(cluster)
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…` over the masters (the seed list the
    /// binary's `REDIS_URL` takes).
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes[..self.masters].iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// `redis://…` of each node, for a `ClusterClient`.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(PrivateRedis::url).collect()
    }

    /// Waits until every running node reports `cluster_state:ok` and knows all the others,
    /// and every replica is in sync with its master (until then a `WAIT` counts no replica).
    pub fn wait_until_ok(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        loop {
            let infos: Vec<Option<String>> =
                self.nodes.iter().filter(|n| n.pid().is_some()).map(|n| cluster_info(n.port())).collect();
            let clustered = infos
                .iter()
                .all(|i| i.as_deref().is_some_and(|i| i.contains("cluster_state:ok") && i.contains(&known)));
            let synced = || {
                self.nodes.iter().filter(|n| n.pid().is_some()).all(|n| {
                    info(n.port(), "replication").is_some_and(|r| {
                        r.contains("role:master")
                            || (r.contains("master_link_status:up") && r.contains("master_sync_in_progress:0"))
                    })
                })
            };
            if clustered && synced() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the Redis Cluster was not ok after {timeout:?}: {infos:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `INFO section` of the node on `port`, `None` if it does not answer.
pub fn info(port: u16, section: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(500)).ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    redis::cmd("INFO").arg(section).query(&mut conn).ok()
}

/// `CLUSTER INFO` of the node on `port`, `None` if it does not answer.
pub fn cluster_info(port: u16) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(500)).ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    redis::cmd("CLUSTER").arg("INFO").query(&mut conn).ok()
}
