//! The test servers' own restart, as the tests beside it use it: while a
//! killed server is down its port is anyone's (another test binary's
//! listener, or a load test's client connection taking its local port
//! from the same range), and the restart must neither fail at once nor
//! take that holder for the server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::common::redis_server::RedisServer;

/// The server's reply to a plain `PING`.
fn ping(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(b"PING\r\n").unwrap();
    let mut reply = [0u8; 16];
    let n = stream.read(&mut reply).expect("a reply");
    String::from_utf8_lossy(&reply[..n]).into_owned()
}

/// Restarts a server while `hold` has its port: the restart must end
/// only after the holder let go, with the server answering `PING`.
fn restart_while_held(hold: impl FnOnce(TcpListener, Instant) + Send + 'static) {
    let mut server = RedisServer::start();
    let took = server.restart_while_port_held(hold);
    assert!(
        took >= RedisServer::PORT_HELD,
        "ready while the port was held: {took:?}"
    );
    assert_eq!(ping(server.port()), "+PONG\r\n");
}

#[test]
fn a_restart_waits_for_a_port_held_while_the_server_was_down() {
    // Someone else's listener: it accepts connections (the kernel's
    // backlog) and never answers.
    restart_while_held(|holder, until| {
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        drop(holder);
    });
}

#[test]
fn a_listener_answering_something_else_is_not_taken_for_the_server() {
    // An HTTP server: it answers every connection, with something that is
    // not RESP.
    restart_while_held(|holder, until| {
        holder.set_nonblocking(true).unwrap();
        while Instant::now() < until {
            match holder.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
}
