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

#[test]
fn a_restart_waits_for_a_port_held_while_the_server_was_down() {
    let mut server = RedisServer::start();
    let port = server.port();
    server.kill();
    // Someone else's listener on the port, let go after 600 ms: it
    // accepts connections (the kernel's backlog) and never answers.
    let holder = TcpListener::bind(("127.0.0.1", port)).expect("the port, free after the kill");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(600));
        drop(holder);
    });
    let start = Instant::now();
    server.restart();
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "ready while the port was held: {:?}",
        start.elapsed()
    );
    release.join().unwrap();
    assert_eq!(ping(port), "+PONG\r\n");
}

#[test]
fn a_listener_answering_something_else_is_not_taken_for_the_server() {
    let mut server = RedisServer::start();
    let port = server.port();
    server.kill();
    // An HTTP server on the port for 600 ms: it answers every
    // connection, with something that is not RESP.
    let holder = TcpListener::bind(("127.0.0.1", port)).expect("the port, free after the kill");
    holder.set_nonblocking(true).unwrap();
    let serve = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_millis(600);
        while Instant::now() < until {
            match holder.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    let start = Instant::now();
    server.restart();
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "took the HTTP server for Redis: {:?}",
        start.elapsed()
    );
    serve.join().unwrap();
    assert_eq!(ping(port), "+PONG\r\n");
}
