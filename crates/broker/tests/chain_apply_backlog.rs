//! A chain server whose application stops reading committed blocks keeps ticking and
//! heartbeating (B5 in the design notes): its followers see no election, and once the
//! application reads again it receives every block, in order, none lost.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use bytes::Bytes;
use josefine::raft::{
    apply_channel, limits::COMMITTED_QUEUE_MAX, run_chain, Applied, ChainHandle, ChainNodeConfig,
};
use josefine_chain::{NodeId, Role};
use tokio::sync::{mpsc, watch};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads `rx` while `open` is true, sending the heights of data blocks to `out`.
async fn reader(
    mut rx: mpsc::Receiver<Applied>,
    mut open: watch::Receiver<bool>,
    out: mpsc::UnboundedSender<u64>,
) {
    loop {
        if open.wait_for(|o| *o).await.is_err() {
            return;
        }
        match rx.recv().await {
            Some(Applied::Block(b)) if !b.payload.is_empty() => {
                let _ = out.send(b.id.height);
            }
            Some(_) => {}
            None => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_application_stalls_neither_ticks_nor_heartbeats() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let voters: Vec<(NodeId, SocketAddr)> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", free_port()).parse().unwrap()))
        .collect();
    let mut handles: Vec<ChainHandle> = Vec::new();
    let mut gates = Vec::new();
    let mut outs = Vec::new();
    let mut stops = Vec::new();
    for (i, &(id, _)) in voters.iter().enumerate() {
        let (tx, rx) = apply_channel();
        let mut cfg = ChainNodeConfig::new(id, voters.clone(), dirs[i].path().to_path_buf());
        cfg.apply = Some(tx);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        handles.push(
            run_chain(cfg, async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap(),
        );
        stops.push(stop_tx);
        let (gate_tx, gate_rx) = watch::channel(true);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        tokio::spawn(reader(rx, gate_rx, out_tx));
        gates.push(gate_tx);
        outs.push(out_rx);
    }
    let leader = loop {
        if let Some(i) = handles.iter().position(|h| h.status().role == Role::Leader) {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let term = handles[leader].status().term;

    // The leader's application stops reading; propose more than its channel holds.
    gates[leader].send_replace(false);
    let total = COMMITTED_QUEUE_MAX + 200;
    let leader_handle = std::sync::Arc::new(handles.swap_remove(leader));
    let mut answers = Vec::new();
    for n in 0..total {
        let h = leader_handle.clone();
        answers.push(tokio::spawn(async move {
            h.propose(Bytes::from(format!("block {n}"))).await
        }));
    }
    // Longer than the largest election timeout (2 s): a stalled loop would have let the
    // followers elect someone else.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(leader_handle.status().role, Role::Leader);
    assert_eq!(leader_handle.status().term, term, "no election happened");
    for h in &handles {
        let s = h.status();
        assert_eq!(s.term, term, "a follower saw an election: {s:?}");
    }

    // Reading again: every proposal commits and the application gets every block, in order.
    gates[leader].send_replace(true);
    let mut committed = 0;
    for a in answers {
        if tokio::time::timeout(Duration::from_secs(30), a)
            .await
            .expect("answered")
            .unwrap()
            .is_ok()
        {
            committed += 1;
        }
    }
    assert_eq!(committed, total);
    let out = &mut outs[leader];
    let mut heights = Vec::new();
    while heights.len() < total {
        let h = tokio::time::timeout(Duration::from_secs(10), out.recv())
            .await
            .expect("every block arrives")
            .unwrap();
        heights.push(h);
    }
    assert!(
        heights.windows(2).all(|w| w[1] > w[0]),
        "blocks arrive in chain order"
    );
    for s in stops {
        let _ = s.send(());
    }
}
