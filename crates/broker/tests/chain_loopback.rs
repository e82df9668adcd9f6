//! Three chain servers on loopback, each in its own tokio runtime on its own thread: elect a
//! leader, commit proposals, kill the leader, measure the time to a new leader (printed, not
//! asserted), commit again, restart the killed server from its directory and watch it catch up.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use josefine::raft::{run_chain, ChainNodeConfig, ChainStatus};
use josefine_chain::{BlockId, NodeId, Role};

struct Server {
    id: NodeId,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    cmd: std_mpsc::Sender<Cmd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Cmd {
    Status(std_mpsc::Sender<ChainStatus>),
    Propose(Bytes, std_mpsc::Sender<Result<BlockId, String>>),
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(id: NodeId, voters: &[(NodeId, SocketAddr)], dir: &Path) -> Server {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (cmd_tx, cmd_rx) = std_mpsc::channel::<Cmd>();
    let cfg = ChainNodeConfig::new(id, voters.to_vec(), dir.to_path_buf());
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let handle = run_chain(cfg, async {
                let _ = stop_rx.await;
            })
            .await
            .expect("chain starts");
            let handle = std::sync::Arc::new(handle);
            let cmd_rx = std::sync::Arc::new(std::sync::Mutex::new(cmd_rx));
            loop {
                let rx = cmd_rx.clone();
                let cmd = tokio::task::spawn_blocking(move || {
                    rx.lock().unwrap().recv_timeout(Duration::from_millis(50))
                })
                .await
                .unwrap();
                match cmd {
                    Ok(Cmd::Status(tx)) => {
                        let _ = tx.send(handle.status());
                    }
                    Ok(Cmd::Propose(p, tx)) => {
                        let h = handle.clone();
                        tokio::spawn(async move {
                            let r = h.propose(p).await.map_err(|e| e.to_string());
                            let _ = tx.send(r);
                        });
                    }
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        });
        // Dropping the runtime aborts every task: sockets close as after a kill.
        drop(rt);
    });
    Server {
        id,
        stop: Some(stop_tx),
        cmd: cmd_tx,
        thread: Some(thread),
    }
}

impl Server {
    fn status(&self) -> Option<ChainStatus> {
        let (tx, rx) = std_mpsc::channel();
        self.cmd.send(Cmd::Status(tx)).ok()?;
        rx.recv_timeout(Duration::from_secs(2)).ok()
    }
    fn propose(&self, p: &'static str) -> Result<BlockId, String> {
        let (tx, rx) = std_mpsc::channel();
        self.cmd
            .send(Cmd::Propose(Bytes::from_static(p.as_bytes()), tx))
            .map_err(|e| e.to_string())?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?
    }
    fn kill(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let (tx, _) = std_mpsc::channel::<Cmd>();
        self.cmd = tx; // disconnects the command loop
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn wait_leader(servers: &[&Server], timeout: Duration) -> Option<NodeId> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for s in servers {
            if let Some(st) = s.status() {
                if st.role == Role::Leader {
                    return Some(s.id);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn three_servers_elect_commit_survive_leader_kill_and_catch_up() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let voters: Vec<(NodeId, SocketAddr)> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", free_port()).parse().unwrap()))
        .collect();
    let mut servers: Vec<Server> = (0..3)
        .map(|i| start(voters[i].0, &voters, dirs[i].path()))
        .collect();

    let t0 = Instant::now();
    let refs: Vec<&Server> = servers.iter().collect();
    let leader = wait_leader(&refs, Duration::from_secs(15)).expect("a first leader");
    println!("first leader: server {leader} after {:?}", t0.elapsed());
    let li = servers.iter().position(|s| s.id == leader).unwrap();
    let mut last = BlockId::default();
    for p in ["a", "b", "c"] {
        last = servers[li].propose(p).expect("commit on the leader");
    }
    let follower = &servers[(li + 1) % 3];
    assert!(
        matches!(follower.propose("x"), Err(e) if e.contains("not the chain leader")),
        "a follower must refuse with a leader hint"
    );

    // Kill the leader; measure until another server is leader.
    let victim = servers.remove(li);
    let victim_id = victim.id;
    let killed_at = Instant::now();
    victim.kill();
    let refs: Vec<&Server> = servers.iter().collect();
    let new_leader = wait_leader(&refs, Duration::from_secs(15)).expect("a new leader");
    let failover = killed_at.elapsed();
    println!("leader {victim_id} killed; new leader {new_leader} after {failover:?}");
    let ni = servers.iter().position(|s| s.id == new_leader).unwrap();
    let after = servers[ni].propose("d").expect("commit after failover");
    assert!(after.height > last.height);

    // Restart the killed server from its directory: it must catch up to the new commit.
    let vi = voters.iter().position(|v| v.0 == victim_id).unwrap();
    let restarted = start(victim_id, &voters, dirs[vi].path());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = restarted.status();
        if st.is_some_and(|s| s.commit.height >= after.height) {
            println!("restarted server {victim_id} caught up: {st:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted server did not catch up: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    restarted.kill();
    for s in servers {
        s.kill();
    }
}
