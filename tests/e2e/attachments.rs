//! The relay's attachment blob store (`docs/attachments.md`), through the real relay process:
//! an upload survives `kill -9` and resumes where the relay's copy ends, the download opens
//! with the blob format's opener, a blob changed on the relay's disk is caught, the relay's
//! files hold no plaintext, and the limits answer with their codes.

use std::time::{Duration, Instant};

use tessera_crypto::attachment::{AttachmentError, FileKey, Opener, Sealer};
use tessera_e2e::device::TestDevice;
use tessera_e2e::relay::Relay;
use tessera_net::{ClientError, RelayClient};
use tessera_proto::{BlobId, ErrorCode, MAX_BLOB_PIECE};

const MARKER: &[u8] = b"PTARMIGAN-PLAINTEXT-MARKER";

/// A file of `len` bytes with the marker every 64 KiB.
fn file(len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(7) % 251) as u8).collect();
    for at in (0..len.saturating_sub(MARKER.len())).step_by(65_536) {
        f[at..at + MARKER.len()].copy_from_slice(MARKER);
    }
    f
}

fn seal(key: &FileKey, data: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let mut s = Sealer::new(key, data.len() as u64).unwrap();
    let mut blob = Vec::new();
    for part in data.chunks(1 << 20) {
        blob.extend(s.push(part).unwrap());
    }
    let (rest, digest) = s.finish().unwrap();
    blob.extend(rest);
    (blob, digest)
}

/// Uploads `blob[from..to]` in pieces; the relay's count after the last.
async fn upload(c: &RelayClient, id: BlobId, blob: &[u8], from: u64, to: usize) -> u64 {
    let mut at = from;
    while (at as usize) < to {
        let end = (at as usize + MAX_BLOB_PIECE).min(to);
        let next = c
            .blob_write(id, at, blob[at as usize..end].to_vec())
            .await
            .unwrap();
        assert_eq!(
            next, end as u64,
            "each piece is stored where the last ended"
        );
        at = next;
    }
    at
}

/// Downloads blob `id` of a file of `len` bytes through an opener.
async fn download(
    c: &RelayClient,
    id: BlobId,
    key: &FileKey,
    len: u64,
    digest: [u8; 32],
) -> Result<Vec<u8>, AttachmentError> {
    let size = tessera_crypto::attachment::blob_len(len);
    let mut opener = Opener::new(key, len, digest)?;
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let piece = c.blob_read(id, at, MAX_BLOB_PIECE as u32).await.unwrap();
        assert!(!piece.is_empty());
        at += piece.len() as u64;
        out.extend(opener.push(&piece)?);
    }
    opener.finish()?;
    Ok(out)
}

fn code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Relay { code, .. } => code,
        other => panic!("not a relay error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_an_upload_survives_kill_9_resumes_and_downloads_intact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let config = "[limits]\nrequests_per_second = 100000\nrequest_burst = 100000\n\
                  [blobs]\nmax_size = 67108864\nquota = 100663296\n";
    let mut relay = Relay::start_configured(&data, config);
    let alice = TestDevice::new(51);
    let bob = TestDevice::new(52);
    drop(alice.register(&relay.address).await);
    drop(bob.register(&relay.address).await);

    let len = 24 << 20;
    let plain = file(len);
    let key = FileKey::from_bytes([3; 32]);
    let (blob, digest) = seal(&key, &plain);
    let id: BlobId = [0x42; 16];
    let (a, _ap) = alice.login(&relay.address).await;
    let (b, _bp) = bob.login(&relay.address).await;
    assert_eq!(a.blob_open(id, blob.len() as u64, 1).await.unwrap(), 0);
    let t = Instant::now();
    let half = upload(&a, id, &blob, 0, blob.len() / 2).await;
    let upload_rate = half as f64 / t.elapsed().as_secs_f64() / 1e6;
    // Not readable before it is whole; nobody else may write it.
    assert_eq!(
        code(b.blob_read(id, 0, 100).await.unwrap_err()),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(b.blob_write(id, half, vec![0; 10]).await.unwrap_err()),
        ErrorCode::NotFound
    );

    // kill -9 mid-upload; on restart the upload goes on from the relay's copy.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &relay.process.pid().to_string()])
        .status();
    relay.process.wait_timeout(Duration::from_secs(10)).unwrap();
    drop((a, b));
    relay = Relay::start_configured(&data, config);
    let (a, _ap) = alice.login(&relay.address).await;
    let stored = a.blob_open(id, blob.len() as u64, 1).await.unwrap();
    assert_eq!(stored, half, "every confirmed piece survived");
    // A piece sent again at an old offset changes nothing.
    assert_eq!(
        a.blob_write(id, 0, blob[..100].to_vec()).await.unwrap(),
        half
    );
    upload(&a, id, &blob, stored, blob.len()).await;

    let (b, _bp) = bob.login(&relay.address).await;
    let t = Instant::now();
    let back = download(&b, id, &key, len as u64, digest).await.unwrap();
    let download_rate = blob.len() as f64 / t.elapsed().as_secs_f64() / 1e6;
    assert!(back == plain, "the file arrives as it was sent");
    eprintln!(
        "blob of {} MiB on loopback (debug build): upload {upload_rate:.1} MB/s, download \
         {download_rate:.1} MB/s",
        blob.len() >> 20
    );
    // The relay's data holds no plaintext.
    for entry in walk(&data) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext in {}",
            entry.display()
        );
    }
    // Its one fetch done, the blob is gone.
    b.blob_fetched(id).await.unwrap();
    assert_eq!(
        code(b.blob_read(id, 0, 100).await.unwrap_err()),
        ErrorCode::NotFound
    );

    // A blob changed on the relay's disk: the download fails at the changed chunk.
    let small = file(300_000);
    let (blob2, digest2) = seal(&key, &small);
    let id2: BlobId = [0x43; 16];
    a.blob_open(id2, blob2.len() as u64, 2).await.unwrap();
    upload(&a, id2, &blob2, 0, blob2.len()).await;
    let path = data.join("blobs").join(hex(&id2));
    let mut on_disk = std::fs::read(&path).unwrap();
    on_disk[2 * 65_552 + 9] ^= 0x20;
    std::fs::write(&path, on_disk).unwrap();
    assert_eq!(
        download(&b, id2, &key, small.len() as u64, digest2)
            .await
            .unwrap_err(),
        AttachmentError::Chunk(2)
    );

    // Limits: the size limit (64 MiB) and the account's quota (96 MiB; the changed blob of
    // 300 kB is still held).
    assert_eq!(
        code(a.blob_open([1; 16], 65 << 20, 1).await.unwrap_err()),
        ErrorCode::QuotaExceeded
    );
    a.blob_open([2; 16], 60 << 20, 1).await.unwrap();
    assert_eq!(
        code(a.blob_open([3; 16], 36 << 20, 1).await.unwrap_err()),
        ErrorCode::QuotaExceeded
    );
    a.blob_open([3; 16], 35 << 20, 1).await.unwrap();
    // A complete blob takes nothing more; bytes past a blob's end are refused.
    assert_eq!(
        a.blob_write(id2, 0, vec![1; 10]).await.unwrap(),
        blob2.len() as u64
    );
    a.blob_open([4; 16], 10, 1).await.unwrap();
    assert_eq!(
        code(a.blob_write([4; 16], 0, vec![1; 11]).await.unwrap_err()),
        ErrorCode::Conflict
    );
}

fn hex(id: &BlobId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
