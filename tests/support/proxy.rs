//! A TCP proxy the fault tests put between us and Postgres or RabbitMQ, to cut connections
//! without touching the machine's shared servers.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    generation: Arc<Mutex<CancellationToken>>,
    /// Cancelled to stop forwarding while keeping connections open (a blackholed peer).
    stalled: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let open = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(Mutex::new(CancellationToken::new()));
        let stalled = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (o, g, s, st) = (
            open.clone(),
            generation.clone(),
            stop.clone(),
            stalled.clone(),
        );
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = s.cancelled() => return,
                };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = g.lock().expect("lock").clone();
                let stall = st.lock().expect("lock").clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.cancelled() => {}
                        _ = stall.cancelled() => {
                            // Hold both ends open, forwarding nothing, until cut.
                            cut.cancelled().await;
                        }
                    }
                });
            }
        });
        Proxy {
            addr,
            open,
            generation,
            stalled,
            stop,
        }
    }

    /// Drops every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        let mut generation = self.generation.lock().expect("lock");
        generation.cancel();
        *generation = CancellationToken::new();
    }

    /// Stops forwarding on every open connection without closing it: what was sent is
    /// never answered. New connections are forwarded normally.
    pub fn stall(&self) {
        let mut stalled = self.stalled.lock().expect("lock");
        stalled.cancel();
        *stalled = CancellationToken::new();
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.generation.lock().expect("lock").cancel();
    }
}
