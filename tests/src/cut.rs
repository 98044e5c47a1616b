//! A TCP proxy on loopback that loses the Nth frame a client sends on every connection. A frame
//! is one TLS record — the relay protocol's frames travel one or a few to a record, and record
//! boundaries are visible in the clear (a 5-byte header with the length). A stream with a record missing cannot go on (TLS refuses the next one), so the proxy
//! cuts that connection at the same moment: to the client, a lost frame is a connection that
//! died mid-conversation, with whatever was in flight on it unanswered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// The proxy; dropping it stops accepting.
pub struct CuttingProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    cuts: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    /// Listens on a free loopback port and forwards to `target`, losing the `every`th TLS
    /// record the client sends on each connection (and cutting it there, both directions:
    /// whatever the relay was sending on it is lost too). Must run inside a tokio runtime.
    pub async fn start(target: SocketAddr, every: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cuts = Arc::new(AtomicU64::new(0));
        let counted = cuts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // Counted per connection, client to relay: each one loses its Nth record.
                let (records, cuts) = (Arc::new(AtomicU64::new(0)), counted.clone());
                tokio::spawn(async move {
                    // The relay is down: the client's connection closes at once.
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let lossy = Lossy {
                        records,
                        cuts,
                        every: every.max(1),
                    };
                    // Whichever direction ends (a cut, or a side closing) ends both.
                    tokio::select! {
                        () = lossy.pump(cr, sw, true) => {}
                        () = lossy.pump(sr, cw, false) => {}
                    }
                });
            }
        });
        Self { port, cuts, task }
    }

    /// How many connections it has cut so far.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Lossy {
    records: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
    every: u64,
}

impl Lossy {
    /// Forwards whole TLS records; when `counted`, drops the `every`th and ends (cutting the
    /// connection).
    async fn pump(&self, mut from: OwnedReadHalf, mut to: OwnedWriteHalf, counted: bool) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            // Complete records at the front of `pending`.
            let mut whole = 0;
            while pending.len() >= whole + 5 {
                let len = usize::from(u16::from_be_bytes([pending[whole + 3], pending[whole + 4]]));
                if pending.len() < whole + 5 + len {
                    break;
                }
                if counted
                    && (self.records.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(self.every)
                {
                    // Everything before the lost record still goes out.
                    let _ = to.write_all(&pending[..whole]).await;
                    self.cuts.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                whole += 5 + len;
            }
            if whole > 0 {
                if to.write_all(&pending[..whole]).await.is_err() {
                    return;
                }
                pending.drain(..whole);
            }
        }
    }
}
