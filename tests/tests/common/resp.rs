//! A fake Redis's side of RESP, for tests that answer the client
//! themselves.

use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// Reads one command (a RESP array of bulk strings); `None` at the end.
pub async fn command<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    r.read_line(&mut line).await.ok().filter(|&n| n > 0)?;
    let count: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        r.read_line(&mut line).await.ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0; len + 2];
        r.read_exact(&mut arg).await.ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

/// A fake Redis on a free loopback port: every command is answered with
/// `answer(its upper-cased name)`; returns the port.
pub async fn serve(answer: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) -> u16 {
    use std::sync::Arc;
    use tokio::io::{AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                while let Some(args) = command(&mut read).await {
                    let name = args
                        .first()
                        .map(|a| a.to_ascii_uppercase())
                        .unwrap_or_default();
                    if write.write_all(&answer(&name)).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}
